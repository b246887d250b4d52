"""The probes' rules, served over real HTTP on loopback."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

from reel.health import Health, serve


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def refused() -> None:
    """A connection to a port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_liveness_follows_the_loop() -> None:
    health = Health({}, stalled_s=0.3)
    port = serve(0, "127.0.0.1", health)
    assert get(port, "/healthz") == (200, "ok\n")
    time.sleep(0.5)  # no turn of the loop
    status, body = get(port, "/healthz")
    assert status == 503 and "has not turned" in body
    health.tick()
    assert get(port, "/healthz")[0] == 200


def test_readiness_names_what_is_out_of_reach_and_rechecks() -> None:
    reachable = {"storage": True}

    def storage() -> None:
        if not reachable["storage"]:
            refused()

    health = Health({"kafka": lambda: None, "storage": storage}, recheck_s=0.2)
    port = serve(0, "127.0.0.1", health)
    assert get(port, "/readyz") == (200, "ok\n")
    reachable["storage"] = False
    assert get(port, "/readyz")[0] == 200  # checked less than recheck_s ago: the last answer
    time.sleep(0.3)
    assert get(port, "/readyz") == (503, "storage: ConnectionRefusedError\n")
    status, body = get(port, "/metrics")
    assert status == 200 and "python_info" in body  # the metrics on every other path, as before


def test_without_probes_every_path_is_metrics() -> None:
    port = serve(0, "127.0.0.1")
    assert "python_info" in get(port, "/healthz")[1]
