"""Benchmarks: measured, never asserted (the machines are shared and noisy)."""
