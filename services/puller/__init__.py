"""The puller service."""
