"""Every worker's HTTP listener: /metrics, and the probes an orchestrator acts on.

- /healthz (liveness) answers 503 once the worker's loop has not turned for `stalled_s`:
  the loop polls Kafka ten times a second whether or not a task runs (the task has a
  thread of its own), so a loop that stops is wedged, and a restart is the cure. An
  HTTP server that merely answers would keep a wedged worker alive.
- /readyz (readiness) answers 503 while the broker or object storage cannot be reached,
  checked at most every `recheck_s` so that probes do not load either.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer

from prometheus_client.exposition import MetricsHandler


class Health:
    def __init__(self, checks: dict[str, Callable[[], object]], stalled_s: float = 60.0, recheck_s: float = 5.0):
        self.checks = checks  # name -> a call that raises when that dependency is out of reach
        self.stalled_s = stalled_s
        self.recheck_s = recheck_s
        self.turned = time.monotonic()
        self._checked = -float("inf")
        self._problems: list[str] = []
        self._lock = threading.Lock()

    def tick(self) -> None:
        """The loop turned."""
        self.turned = time.monotonic()

    def live(self) -> str | None:
        """None when live, else why not."""
        idle = time.monotonic() - self.turned
        return f"the loop has not turned for {idle:.0f}s" if idle > self.stalled_s else None

    def ready(self) -> str | None:
        with self._lock:  # one check at a time; the others read its result
            if time.monotonic() - self._checked > self.recheck_s:
                self._problems = []
                for name, check in self.checks.items():
                    try:
                        check()
                    except Exception as exc:  # noqa: BLE001 - any failure means not ready
                        self._problems.append(f"{name}: {type(exc).__name__}")
                self._checked = time.monotonic()
            return "; ".join(self._problems) or None


def serve(port: int, addr: str, health: Health | None = None) -> int:
    """/metrics (and, given health, /healthz and /readyz) on addr:port, in a daemon
    thread; port 0 picks a free one. Returns the port."""

    class Handler(MetricsHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if health is None or path not in ("/healthz", "/readyz"):
                return super().do_GET()
            problem = health.live() if path == "/healthz" else health.ready()
            body = (problem or "ok").encode() + b"\n"
            self.send_response(503 if problem else 200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return None

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - probes every few seconds
            pass

    server = ThreadingHTTPServer((addr, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return int(server.server_address[1])
