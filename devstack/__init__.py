"""The embedded stack: Kafka, SeaweedFS, Postgres and the services, on loopback.

`up` is idempotent (what runs and answers is left alone), checks everything it
can before starting anything, and on a failure stops what it started itself, so
nothing is left half-started. `down` stops everything in `.reel/stack.json`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass

from devstack import kafka, nodes, postgres, s3
from devstack.procs import Component, StackError, StateFile, alive, ephemeral_ports, port_taken, spawn, stop
from reel import PROJECT_ROOT, replicas
from reel.settings import Settings

__all__ = ["StackError", "up", "down", "status"]


@dataclass(frozen=True)
class Part:
    name: str
    port_setting: str  # the REEL_ variable that moves it
    ports: Callable[[Settings], list[int]]
    start: Callable[[Settings], Component]
    healthy: Callable[[Settings], bool]


def _start_services(settings: Settings) -> Component:
    log = settings.home / "logs" / "supervisor.log"
    env = {"REEL_HOME": str(settings.home)}
    proc = spawn("services", [sys.executable, "-m", "devstack.supervisor"], log, env, PROJECT_ROOT)
    return Component("services", proc.pid, [], str(log), "supervisor")


def _services_healthy(settings: Settings) -> bool:
    comp = StateFile(settings.home).read().get("services")
    return comp is not None and alive(comp.pid)


PARTS = [
    Part("kafka", "REEL_KAFKA_PORT", kafka.ports, kafka.start, kafka.healthy),
    Part("s3", "REEL_S3_PORT", s3.ports, s3.start, s3.healthy),
    Part("postgres", "REEL_PG_PORT", lambda s: [s.pg_port], postgres.start, postgres.healthy),
    Part("services", "", lambda s: [], _start_services, _services_healthy),
]


def _preflight(settings: Settings, todo: list[Part]) -> None:
    for tool, package in (("ffmpeg", "ffmpeg"), ("ffprobe", "ffmpeg"), ("java", "default-jre")):
        if shutil.which(tool) is None:
            raise StackError(f"{tool} is not installed; run: apt-get install -y {package}")
    ephemeral = ephemeral_ports()
    for part in todo:
        for port in part.ports(settings):
            if port in ephemeral:
                raise StackError(
                    f"port {port} ({part.name}) lies in this machine's ephemeral range "
                    f"{ephemeral.start}-{ephemeral.stop - 1}, which outgoing connections take from; "
                    f"move {part.name} below it with {part.port_setting}"
                )
            if port_taken(port):
                raise StackError(
                    f"port {port} ({part.name}) is taken by another process; "
                    f"free it or move {part.name} with {part.port_setting}"
                )


def _running(settings: Settings, comps: dict[str, Component], part: Part) -> bool:
    comp = comps.get(part.name)
    if comp is None:
        return False
    if comp.pid == 0:  # external
        return True
    return alive(comp.pid) and part.healthy(settings)


def up(settings: Settings, with_services: bool = True, say: Callable[[str], None] = print) -> dict[str, Component]:
    state = StateFile(settings.home)
    comps = state.read()
    parts = [p for p in PARTS if with_services or p.name != "services"]
    if not settings.embedded_postgres:
        postgres.check_external(settings)
        comps["postgres"] = Component("postgres", 0, [], "", "DATABASE_URL (external)")
        parts = [p for p in parts if p.name != "postgres"]
    todo = [p for p in parts if not _running(settings, comps, p)]
    for part in todo:  # a dead record is stale: forget it before checking its ports
        comps.pop(part.name, None)
    _preflight(settings, todo)
    if settings.node_cpu and todo:
        _into_stack_group(settings)
    started: list[Component] = []
    try:
        for part in parts:
            if part in todo:
                say(f"starting {part.name} ...")
                comp = part.start(settings)
                started.append(comp)
                comps[part.name] = comp
                state.write(comps)
            else:
                say(f"{part.name} already running (pid {comps[part.name].pid})")
    except BaseException:
        for comp in reversed(started):
            _stop(settings, comp)
            comps.pop(comp.name, None)
        state.write(comps)
        raise
    state.write(comps)
    return comps


def _into_stack_group(settings: Settings) -> None:
    """With simulated nodes, everything `up` starts from here on (Kafka, SeaweedFS, Postgres,
    the supervisor and, through it, the tracker and autoscaler) is born in the stack's
    capped group; the supervisor moves each worker into its node's."""
    if not nodes.available():
        raise StackError("REEL_NODE_CPU needs a writable cgroup v1 cpu hierarchy (/sys/fs/cgroup/cpu) and root")
    group = nodes.Nodes(settings.home, settings.node_cpu, settings.stack_cpu).stack()
    (group / "cgroup.procs").write_text(str(os.getpid()))


def _stop(settings: Settings, comp: Component) -> None:
    if comp.pid == 0:
        return
    if comp.name == "postgres":
        postgres.stop(settings, comp)
    stop(comp.pid, grace=180.0 if comp.name == "services" else 30.0)


def down(settings: Settings, say: Callable[[str], None] = print) -> None:
    state = StateFile(settings.home)
    comps = state.read()
    for name in ("services", "postgres", "s3", "kafka"):
        comp = comps.pop(name, None)
        if comp is None:
            continue
        say(f"stopping {name} (pid {comp.pid})")
        _stop(settings, comp)
        state.write(comps)
    state.path.unlink(missing_ok=True)
    if nodes.available():  # whether or not REEL_NODE_CPU is still set: the groups are the home's
        nodes.Nodes(settings.home, settings.node_cpu, settings.stack_cpu).remove(wait_s=15.0)


def status(settings: Settings) -> list[dict[str, object]]:
    comps = StateFile(settings.home).read()
    rows: list[dict[str, object]] = []
    for part in PARTS:
        comp = comps.get(part.name)
        if comp is None:
            rows.append({"name": part.name, "pid": None, "address": "", "state": "stopped"})
            continue
        ok = _running(settings, comps, part)
        rows.append(
            {
                "name": part.name,
                "pid": comp.pid or None,
                "address": comp.address,
                "ports": comp.ports,
                "state": "healthy" if ok else "down",
                "log": comp.log,
            }
        )
    services = settings.home / "services.json"
    if "services" in comps and services.exists():
        slots = json.loads(services.read_text())
        desired = replicas.read(settings.home)
        for kind in dict.fromkeys(w["kind"] for w in slots):
            mine = [w for w in slots if w["kind"] == kind]
            running = sum(1 for w in mine if w["pid"] and alive(w["pid"]) and w.get("wanted", True))
            if kind in desired:
                rows.append({"name": f"  {kind}", "pid": None, "state": f"{running} running, {desired[kind]} desired"})
            for w in mine:
                pid = w["pid"]
                state = "running" if pid and alive(pid) else "restarting"
                if not w.get("wanted", True):
                    state = "draining (scale-in)"
                node = f"node {w['node']}" if w.get("node") is not None else ""
                rows.append(
                    {
                        "name": f"  {w['kind']}-{w['slot']}",
                        "pid": pid,
                        "address": node,
                        "state": state,
                        "log": str(settings.home / "logs" / f"{w['kind']}-{w['slot']}.log"),
                    }
                )
    return rows
