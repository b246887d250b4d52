"""`reel up / down / ps` as a user runs them, on ports of their own."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.procs import alive, ephemeral_ports, free_port, port_taken

# Below the kernel's ephemeral range (32768-60999): an outgoing connection of any other
# process cannot be holding one of these when the test binds it.
PORTS = {"REEL_KAFKA_PORT": "21092", "REEL_S3_PORT": "17333", "REEL_PG_PORT": "21432"}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    e = {**os.environ, **PORTS, "REEL_HOME": str(tmp_path / "home")}
    e.pop("DATABASE_URL", None)
    yield e
    reel(e, "down")  # whatever a failing test left


def reel(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reel.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stack_pids(env: dict[str, str]) -> dict[str, int]:
    state = Path(env["REEL_HOME"]) / "stack.json"
    if not state.exists():
        return {}
    return {n: c["pid"] for n, c in json.loads(state.read_text()).items()}


def all_ports() -> list[int]:
    s3 = int(PORTS["REEL_S3_PORT"])
    kafka, pg = int(PORTS["REEL_KAFKA_PORT"]), int(PORTS["REEL_PG_PORT"])
    return [kafka, kafka + 1, pg, *range(s3, s3 + 5), *range(s3 + 10000, s3 + 10005)]


def test_up_twice_then_down(env: dict[str, str]) -> None:
    first = reel(env, "up")
    assert first.returncode == 0, first.stderr
    pids = stack_pids(env)
    assert set(pids) == {"kafka", "s3", "postgres", "services"}
    assert all(alive(p) for p in pids.values())

    second = reel(env, "up")
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stderr
    assert stack_pids(env) == pids  # idempotent: nothing restarted

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the supervisor brings up every worker slot
        ps = reel(env, "ps")
        if ps.stdout.count("running") >= 5:
            break
        time.sleep(0.5)
    assert ps.stdout.count("healthy") == 4, ps.stdout
    for kind in ("splitter-0", "puller-0", "transcoder-0", "pusher-0", "tracker-0"):
        assert kind in ps.stdout
    services = json.loads((Path(env["REEL_HOME"]) / "services.json").read_text())
    worker_pids = [w["pid"] for w in services]

    down = reel(env, "down")
    assert down.returncode == 0, down.stderr
    assert not any(alive(p) for p in [*pids.values(), *worker_pids])
    assert not any(port_taken(p) for p in all_ports())
    assert stack_pids(env) == {}


def test_crashed_worker_is_restarted(env: dict[str, str]) -> None:
    assert reel(env, "up").returncode == 0
    services = Path(env["REEL_HOME"]) / "services.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = json.loads(services.read_text()) if services.exists() else []
        victim = next((w for w in workers if w["kind"] == "puller" and w["pid"]), None)
        if victim:
            break
        time.sleep(0.3)
    assert victim is not None
    os.killpg(victim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    new_pid = None
    while time.monotonic() < deadline:
        w = next(w for w in json.loads(services.read_text()) if w["kind"] == "puller")
        if w["pid"] and w["pid"] != victim["pid"] and alive(w["pid"]):
            new_pid = w["pid"]
            break
        time.sleep(0.3)
    assert new_pid is not None, "the supervisor did not restart the killed worker"


def _assert_nothing_started(env: dict[str, str]) -> None:
    assert stack_pids(env) == {}
    out = subprocess.run(["pgrep", "-f", env["REEL_HOME"]], capture_output=True, text=True)
    assert out.stdout.strip() == "", f"left running: {out.stdout}"


def test_up_with_a_taken_port_fails_clearly(env: dict[str, str]) -> None:
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", int(PORTS["REEL_S3_PORT"]) + 2))
        blocker.listen()
        result = reel(env, "up")
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert f"port {int(PORTS['REEL_S3_PORT']) + 2} (s3) is taken" in line and "REEL_S3_PORT" in line
    _assert_nothing_started(env)


def test_up_refuses_a_port_outgoing_connections_may_take(env: dict[str, str]) -> None:
    # SeaweedFS's gRPC ports sit 10000 above its S3 port: one such port in the ephemeral
    # range once failed a whole CI run when a client socket happened to hold it.
    ephemeral = ephemeral_ports()
    env["REEL_S3_PORT"] = str(ephemeral.start - 10000)
    result = reel(env, "up")
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert f"port {ephemeral.start} (s3) lies in this machine's ephemeral range" in line, line
    assert "REEL_S3_PORT" in line
    _assert_nothing_started(env)


def test_up_with_a_refusing_database_url_fails_clearly(env: dict[str, str]) -> None:
    env["DATABASE_URL"] = f"postgresql://reel@127.0.0.1:{free_port()}/reel"
    result = reel(env, "up")
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert "Postgres at DATABASE_URL cannot be reached" in line
    _assert_nothing_started(env)


def test_part_not_ready_in_time_stops_what_started(env: dict[str, str]) -> None:
    env["REEL_READY_TIMEOUT_S"] = "0.2"  # Kafka cannot answer that fast
    result = reel(env, "up")
    assert result.returncode == 1
    assert "did not become ready within" in result.stderr
    _assert_nothing_started(env)


def test_missing_java_is_named(env: dict[str, str], tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("ffmpeg", "ffprobe", "mvn"):
        (bindir / tool).symlink_to(subprocess.check_output(["which", tool], text=True).strip())
    env["PATH"] = str(bindir)
    result = reel(env, "up")
    assert result.returncode == 1
    assert "java is not installed" in result.stderr
    _assert_nothing_started(env)
