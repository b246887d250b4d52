"""Processes of the embedded stack: spawn detached, record, probe, stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path


class StackError(Exception):
    """One line naming the cause and what to do; `reel up` prints it and exits non-zero."""


@dataclass
class Component:
    name: str
    pid: int
    ports: list[int] = field(default_factory=list)
    log: str = ""
    address: str = ""


class StateFile:
    """.reel/stack.json: what `reel up` started, so `reel down` and `reel ps` find it."""

    def __init__(self, home: Path) -> None:
        self.path = home / "stack.json"

    def read(self) -> dict[str, Component]:
        if not self.path.exists():
            return {}
        raw = json.loads(self.path.read_text())
        return {name: Component(**c) for name, c in raw.items()}

    def write(self, components: dict[str, Component]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({n: asdict(c) for n, c in components.items()}, indent=2))
        tmp.replace(self.path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def ephemeral_ports() -> range:
    """The ports this machine hands to outgoing connections: a server port among them
    can be taken by any client socket at any moment, so the stack keeps out of them."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)  # Linux's default


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(
    name: str,
    argv: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a detached process in its own session, output appended to its log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
            user=user,
        )
    except FileNotFoundError as exc:
        raise StackError(f"{name}: cannot run {argv[0]!r} ({exc.strerror})") from exc
    finally:
        out.close()


def wait_ready(
    name: str,
    pid: int,
    ready: Callable[[], bool],
    timeout: float,
    log: Path | None = None,
) -> None:
    """Poll `ready` until it answers, the process dies, or the deadline passes;
    on a failure the process is stopped, so nothing is left half-started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            raise StackError(f"{name} exited during start-up; see {log}: {tail(log)}")
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
            pass
        time.sleep(0.3)
    stop(pid, grace=5.0)
    raise StackError(
        f"{name} did not become ready within {timeout:.0f}s; see {log} (raise REEL_READY_TIMEOUT_S on a slow machine)"
    )


def tail(log: Path | None, lines: int = 3) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:])


def stop(pid: int, grace: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after the grace period."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not alive(pid):
                return
            time.sleep(0.1)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
