"""Prometheus metrics every service exposes on its own /metrics endpoint."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

TASKS = Counter("reel_tasks_total", "Tasks finished by a worker", ["stage", "outcome"])
TASK_SECONDS = Histogram(
    "reel_task_seconds", "Wall time of one task", ["stage"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)  # fmt: skip
IN_FLIGHT = Gauge("reel_tasks_in_flight", "Tasks being worked on", ["stage"])
DEAD_LETTERS = Counter("reel_dead_letters_total", "Records sent to a dead-letter topic", ["topic", "kind"])
UP = Gauge("reel_service_up", "1 while the service runs", ["service", "slot"])


def serve(port: int) -> int:
    """Start the /metrics endpoint on loopback; port 0 picks a free one. Returns the port."""
    server, _thread = start_http_server(port, addr="127.0.0.1")
    return int(server.server_address[1])
