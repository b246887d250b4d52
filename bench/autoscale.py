"""`python -m bench autoscale`: scale-out and autoscaling on simulated small nodes.

Each node is a cgroup v1 `cpu` group of NODE_CPU cores holding slot i of every worker kind
and their ffmpeg children; the stack (Kafka, SeaweedFS, Postgres, tracker, autoscaler, this
driver) has STACK_CPU cores of its own (devstack/nodes.py). It needs root and a writable
cgroup hierarchy: elsewhere it says so and reports no figure. It brings its own stack, on
ports apart, under .reel-cache/bench/autoscale.

1. Scale-out curve: one video on fixed fleets of 1, 2, 4 and 8 nodes against one ffmpeg
   command in one node's group; speed-up and efficiency per size beside the Amdahl
   projection from the serial part measured on one node (split and stitch).
2. Diverse burst: videos of 5 s to 3 min arriving in a burst, then a trickle, then nothing,
   on the autoscaled fleet (0..8 nodes: idle, it holds none), the fixed fleet of 8, and one
   fixed node on the burst's first videos only (its figures scaled by media-seconds).
   Makespan, latency p50 and p95, node-seconds, time from the first video to a new node's
   first task, time to scale in after the last video, hand-backs by cause.

A figure counts only where the nodes' quotas were enforced (cpu.stat nr_throttled > 0).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import cpu
from devstack import down, nodes, up
from devstack import fleet as fleet_proc
from devstack.autoscaler import parse
from devstack.baseline import ladder_command, psnr
from devstack.clips import synthetic
from reel import PROJECT_ROOT, ladder, replicas, retries
from reel.contract import Registry
from reel.kafka import admin_client, member_partitions, read_to_end
from reel.pipeline import PIPELINE, TRANSCODER, WORKER_KINDS
from reel.settings import Settings, load
from reel.storage import Storage
from reel.submit import submit, wait

NODE_CPU, STACK_CPU = 0.2, 0.4
MIN_SEGMENT_S = 8.0  # the tiny profile encodes below 8 s in two passes: keep every segment one-pass
SIZE = "640x360"
# The curve's ladder: the tiny profile's rungs at x264's default preset (bench/profiles). A
# unit's fixed cost (its pull, process starts, probes, uploads, transactions: 2-2.5 s of a
# 0.2-core node) weighs less against an encode that does more per frame. The burst keeps the
# tiny profile, so its figures stay comparable from run to run.
CURVE_PROFILE, BURST_PROFILE = "tiny-medium", "tiny"
PROFILES_DIR = Path(__file__).parent / "profiles"
SETTLE_WAIT_S = 330  # the longest a fleet is given to settle after its last video


@dataclass(frozen=True)
class Plan:
    max_nodes: int
    curve_sizes: tuple[int, ...]
    curve_seconds: int  # one video; at 8 nodes 22 segments of 8-10 s (the minimum, above)
    trace: tuple[tuple[int, int], ...]  # (arrival s, length s): a burst, a trickle, then nothing
    short_trace: tuple[tuple[int, int], ...]  # for one node: the burst's short ones
    target_s: float  # backlog per replica, weighted media-seconds
    min_nodes: int  # the autoscaled fleet's floor: at 0 an idle fleet holds no node
    down_window_s: float  # scale-in waits for the highest count asked in this window


FULL = Plan(
    max_nodes=8,
    curve_sizes=(1, 2, 4, 8),
    curve_seconds=180,
    trace=((0, 180), (0, 5), (0, 45), (0, 90), (0, 20), (0, 10), (0, 30), (60, 15), (120, 60), (180, 5), (240, 120)),
    short_trace=((0, 5), (0, 45), (0, 20), (0, 10), (0, 30)),
    target_s=30.0,
    min_nodes=0,
    down_window_s=15.0,
)
# `python -m bench autoscale quick`: the same steps in a few minutes, to see that they run.
QUICK = Plan(2, (1, 2), 24, ((0, 20), (0, 5), (20, 10)), ((0, 5),), 5.0, 0, 30.0)
PORTS = {"REEL_KAFKA_PORT": "23092", "REEL_S3_PORT": "20333", "REEL_PG_PORT": "23432", "REEL_TRACKER_PORT": "27280"}


@dataclass
class Sample:
    t: float  # seconds since the run's first submission
    running: dict[str, int]  # per kind, wanted and alive
    draining: int
    nodes: int  # nodes with at least one slot alive
    desired: int  # the autoscaler's transcoders (0: fixed fleet)
    backlog: float  # the transcoders' backlog, media-seconds


@dataclass
class Run:
    name: str
    floor: int  # the nodes it starts and settles back at
    submitted: dict[str, float] = field(default_factory=dict)  # video id -> wall time
    completed: dict[str, float] = field(default_factory=dict)
    media_s: dict[str, float] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    throttled: dict[str, int] = field(default_factory=dict)
    beats: list[dict[str, Any]] = field(default_factory=list)
    start_s: dict[str, float] = field(default_factory=dict)  # the fleet's start: slots alive, groups spread
    cpu_s: dict[str, dict[str, float]] = field(default_factory=dict)  # CPU-seconds by component (bench/cpu.py)


def environment(home: Path) -> dict[str, str]:
    env = {**os.environ, **PORTS, "REEL_HOME": str(home)}
    env |= {"REEL_NODE_CPU": str(NODE_CPU), "REEL_STACK_CPU": str(STACK_CPU), "REEL_MIN_SEGMENT_S": str(MIN_SEGMENT_S)}
    env |= {"REEL_DRAIN_TIMEOUT_S": "900", "REEL_LOG_LEVEL": "INFO", "REEL_PROFILES_DIR": str(PROFILES_DIR)}
    env.pop("DATABASE_URL", None)
    return env


def fixed(n: int) -> dict[str, str]:
    return {"REEL_WORKERS_PER_KIND": str(n), "REEL_TRANSCODERS": str(n), "REEL_PLAN_WORKERS": str(n)}


def autoscaled(plan: Plan) -> dict[str, str]:
    return {
        "REEL_AUTOSCALE": "1",
        "REEL_AUTOSCALE_MIN": str(plan.min_nodes),
        "REEL_AUTOSCALE_MAX": str(plan.max_nodes),
        "REEL_AUTOSCALE_TARGET_S": str(plan.target_s),
        "REEL_AUTOSCALE_INTERVAL_S": "2",
        "REEL_AUTOSCALE_DOWN_WINDOW_S": str(plan.down_window_s),
    }


def sample(home: Path, tracker_port: int, t: float) -> Sample:
    try:
        slots = json.loads((home / "services.json").read_text())
    except (OSError, ValueError):
        slots = []
    running: dict[str, int] = {}
    up_nodes, draining = set(), 0
    for s in slots:
        if s["kind"] not in WORKER_KINDS or not s["pid"]:
            continue
        up_nodes.add(s["slot"])
        if s.get("wanted", True):
            running[s["kind"]] = running.get(s["kind"], 0) + 1
        else:
            draining += 1
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{tracker_port}/metrics", timeout=2) as resp:
            backlog = parse(resp.read().decode()).get(("reel_backlog_media_seconds", TRANSCODER.group), 0.0)
    except OSError:
        backlog = math.nan
    desired = replicas.read(home).get(TRANSCODER.name, 0)
    return Sample(t, running, draining, len(up_nodes), desired, backlog)


def settled(s: Sample, size: int) -> bool:
    return s.draining == 0 and all(s.running.get(k, 0) == size for k in WORKER_KINDS)


def groups_spread(settings: Settings, size: int) -> bool:
    """Every worker group has `size` members and each holds partitions of its input: a
    video split while a cooperative rebalance still moves them was laid on the lanes of
    whoever held partitions then."""
    admin = admin_client(settings)
    for spec in PIPELINE:
        held = member_partitions(admin, spec.group, spec.input)
        if len(held) != size or not all(held):
            return False
    return True


def run_fleet(
    settings: Settings,
    env: dict[str, str],
    name: str,
    trace: Sequence[tuple[float, Path, float]],
    settle_to: int,
    profile: str = BURST_PROFILE,
) -> Run:
    """One fleet, started at `settle_to` nodes: the trace's videos submitted at their times,
    sampled every second until every video has ended and the fleet is back at that size."""
    group = nodes.Nodes(settings.home, NODE_CPU, STACK_CPU)
    throttled_before = group.throttled()
    proc = fleet_proc.start(env, settings.home / "logs" / f"bench-{name}.log", settings.tracker_port, timeout=300)
    run = Run(name, floor=settle_to)
    try:
        size = settle_to
        began = time.monotonic()
        deadline = began + 180  # every slot up and in its group before the clock starts
        while not settled(sample(settings.home, settings.tracker_port, 0), size):
            assert time.monotonic() < deadline, f"{name}: the fleet did not start"
            time.sleep(1)
        alive = time.monotonic()
        while not groups_spread(settings, size):
            assert time.monotonic() < deadline, f"{name}: the groups did not spread their partitions"
            time.sleep(0.5)
        run.start_s = {"alive": alive - began, "groups_spread": time.monotonic() - alive}
        spread = run.start_s["groups_spread"]
        print(f"{name}: slots alive after {alive - began:.1f}s, groups spread {spread:.1f}s later", flush=True)
        cpu_before = cpu.snapshot()
        t0 = time.time()
        storage = Storage.from_settings(settings)
        ends: dict[str, dict[str, Any]] = {}

        def one(at: float, source: Path, seconds: float) -> None:
            time.sleep(max(0.0, t0 + at - time.time()))
            sub = submit(settings, storage, source, profile, ["mp4"], request_id=f"bench-{uuid.uuid4()}")
            run.submitted[sub.video_id], run.media_s[sub.video_id] = time.time(), seconds
            ends[sub.video_id] = wait(settings, sub.video_id, sub.submitted_ms, timeout=3600)
            run.completed[sub.video_id] = time.time()

        threads = [threading.Thread(target=one, args=item, daemon=True) for item in trace]
        for th in threads:
            th.start()
        last_done = None
        while True:
            s = sample(settings.home, settings.tracker_port, time.time() - t0)
            run.samples.append(s)
            if last_done is None and not any(th.is_alive() for th in threads):
                last_done = time.time()
            if last_done is not None and (settled(s, settle_to) or time.time() - last_done > SETTLE_WAIT_S):
                break
            time.sleep(1)
        failed = [e.get("reason") for e in ends.values() if e["topic"] != "video.completed"]
        assert not failed and len(ends) == len(trace), f"{name}: {failed}"
        registry = Registry()
        since = int(t0 * 1000) - 5000
        msgs = read_to_end(settings, ["task.progress"], since_ms=since)
        beats = [registry.decode_for_topic("task.progress", m.value()) for m in msgs]
        run.beats = [b for b in beats if b["video_id"] in ends]
        run.cpu_s = cpu.by_component(cpu_before, cpu.snapshot())
        after = group.throttled()  # before the fleet stops: its groups go with it
        run.throttled = {g: n - throttled_before.get(g, 0) for g, n in after.items()}
    finally:
        fleet_proc.halt(proc, grace=120)
        keep_logs(settings.home / "logs", name)
    return run


STACK_LOGS = ("kafka.log", "s3.log", "postgres.log")  # still written to by the stack


def keep_logs(logs: Path, name: str) -> None:
    """Each fleet's logs in a folder of their own: the next fleet's slots log to the same names."""
    kept = logs / "runs" / name
    shutil.rmtree(kept, ignore_errors=True)
    kept.mkdir(parents=True)
    for log in [*logs.glob("*.log"), *logs.glob("*.jsonl")]:
        if log.name not in STACK_LOGS:
            shutil.move(log, kept / log.name)


def summary(run: Run) -> dict[str, Any]:
    t0 = min(run.submitted.values())
    latencies = sorted(run.completed[v] - run.submitted[v] for v in run.completed)
    makespan = max(run.completed.values()) - t0
    within = [s for s in run.samples if s.t <= makespan]
    handed: dict[str, int] = {}
    for b in run.beats:
        if b["state"] == "handed_back":
            cause = retries.CAUSES.get(b["message"] or "", "other")
            handed[cause] = handed.get(cause, 0) + 1
    first_new = [
        b["produced_at"] / 1000 - t0
        for b in run.beats
        if b["state"] == "started" and int(b["worker"].rsplit("-", 1)[1]) >= run.floor
    ]
    last = max(run.completed.values()) - t0
    at_min = next((s.t for s in run.samples if s.t > last and settled(s, run.floor)), None)
    return {
        "videos": len(run.completed),
        "media_s": sum(run.media_s.values()),
        "makespan_s": makespan,
        "latency_p50_s": statistics.median(latencies),
        "latency_p95_s": latencies[min(len(latencies) - 1, math.ceil(0.95 * len(latencies)) - 1)],
        "node_seconds_makespan": sum(s.nodes for s in within),  # one sample a second
        "node_seconds_with_tail": sum(s.nodes for s in run.samples),
        "most_nodes": max(s.nodes for s in run.samples),
        "first_new_node_busy_s": min(first_new) if first_new else None,
        "scale_in_after_last_s": (at_min - last) if at_min is not None else None,
        "handbacks": handed,
        "nodes_throttled": {g: n for g, n in run.throttled.items() if g.startswith("node-")},
    }


def video_times(settings: Settings, video_id: str) -> dict[str, float]:
    """From video.requested to video.completed by the events' clocks, and the serial parts."""
    topics = ["video.requested", "video.split", "segment.uploaded", "video.completed"]
    registry = Registry()
    at: dict[str, list[float]] = {t: [] for t in topics}
    for m in read_to_end(settings, topics):
        e = registry.decode_for_topic(m.topic(), m.value())
        if e["video_id"] == video_id:
            at[m.topic()].append(e["produced_at"] / 1000)
    return {
        "wall_s": at["video.completed"][0] - at["video.requested"][0],
        "split_s": at["video.split"][0] - at["video.requested"][0],
        "stitch_s": at["video.completed"][0] - max(at["segment.uploaded"]),
    }


def command_in_node(settings: Settings, source: Path, out: Path) -> float:
    """The one ffmpeg command a user would run, in one node's group: its wall time."""
    profile = ladder.load(CURVE_PROFILE, PROFILES_DIR)
    rends = ladder.renditions(profile, 640, 360)
    out.mkdir(parents=True, exist_ok=True)
    group = nodes.Nodes(settings.home, NODE_CPU, STACK_CPU).node(0)
    t0 = time.monotonic()
    cmd = ladder_command(source, profile, rends, 50, out)
    subprocess.run(cmd, check=True, preexec_fn=nodes.joining(group))  # noqa: PLW1509 - no threads run here
    return time.monotonic() - t0


def curve(plan: Plan, settings: Settings, env: dict[str, str], work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    source = work / f"curve-{plan.curve_seconds}s.mp4"
    if not source.exists():
        synthetic(source, size=SIZE, seconds=plan.curve_seconds)
    command_s = command_in_node(settings, source, work / "command")
    sizes: dict[str, Any] = {}
    storage = Storage.from_settings(settings)
    for n in plan.curve_sizes:
        one_video = [(0.0, source, float(plan.curve_seconds))]
        run = run_fleet(settings, env | fixed(n), f"curve-{n}", one_video, settle_to=n, profile=CURVE_PROFILE)
        (vid,) = run.completed
        times = video_times(settings, vid)
        out = work / f"curve-{n}.mp4"
        ref = json.loads(storage.get_bytes(settings.bucket_outputs, f"{vid}/manifest.json"))
        key = next(r["key"] for r in ref["outputs"] if r["kind"] == "mp4" and r["rung"] == "360p")
        out.write_bytes(storage.get_bytes(settings.bucket_outputs, key))
        starts = Counter(b["worker"] for b in run.beats if b["stage"] == TRANSCODER.name and b["state"] == "started")
        sizes[str(n)] = times | {
            "throttled": summary(run)["nodes_throttled"],
            "fleet_start_s": run.start_s,
            "cpu_s": run.cpu_s,  # own and ffmpeg children's, by component, from submission to the end
            "units_per_transcoder": sorted(starts.values(), reverse=True),  # the rounds each lane ran
            "out": str(out),
        }
    one = sizes["1"]
    serial = (one["split_s"] + one["stitch_s"]) / one["wall_s"]
    nodes.leave()  # scoring is not part of any run: at full speed
    for n in plan.curve_sizes:
        row = sizes[str(n)]
        row["speedup_vs_one_node"] = one["wall_s"] / row["wall_s"]
        row["efficiency"] = row["speedup_vs_one_node"] / n
        row["amdahl_projection"] = 1 / (serial + (1 - serial) / n)
        row["speedup_vs_command"] = command_s / row["wall_s"]
        row["psnr_360p"] = psnr(Path(row.pop("out")), source, 640, 360)
    command_psnr = psnr(work / "command" / "360p.mp4", source, 640, 360)
    return {"source_s": plan.curve_seconds, "command_s": command_s, "command_psnr_360p": command_psnr}, sizes


def burst(plan: Plan, settings: Settings, env: dict[str, str], work: Path, png: Path) -> dict[str, Any]:
    sources = {}
    for _t, seconds in plan.trace:
        path = work / f"trace-{seconds}s.mp4"
        if not path.exists():
            synthetic(path, size=SIZE, seconds=seconds)
        sources[seconds] = path
    trace = [(t, sources[s], float(s)) for t, s in plan.trace]
    short = [(t, sources[s], float(s)) for t, s in plan.short_trace]
    runs = {
        "autoscaled": run_fleet(settings, env | autoscaled(plan), "autoscaled", trace, settle_to=plan.min_nodes),
        "fixed-max": run_fleet(settings, env | fixed(plan.max_nodes), "fixed-max", trace, settle_to=plan.max_nodes),
        "one-node-short": run_fleet(settings, env | fixed(1), "one-node", short, settle_to=1),
    }
    out = {name: summary(run) for name, run in runs.items()}
    one = out["one-node-short"]
    scale = sum(s for _t, s in plan.trace) / one["media_s"]
    out["one-node-short"]["scaled_to_trace"] = {"makespan_s": one["makespan_s"] * scale, "by": scale}
    plot(runs["autoscaled"], runs["fixed-max"], plan, png)
    out["series"] = {name: [s.__dict__ for s in run.samples] for name, run in runs.items() if name != "one-node-short"}
    return out


def plot(auto: Run, fixed_run: Run, plan: Plan, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for run, style in ((auto, "-"), (fixed_run, ":")):
        t = [s.t for s in run.samples]
        top.plot(t, [s.running.get("transcoder", 0) for s in run.samples], style, label=f"{run.name}: transcoders")
        top.plot(t, [s.nodes for s in run.samples], style, label=f"{run.name}: nodes up", alpha=0.6)
        bottom.plot(t, [s.backlog for s in run.samples], style, label=f"{run.name}: transcoder backlog")
    top.plot([s.t for s in auto.samples], [s.desired for s in auto.samples], "--", label="autoscaled: desired")
    for at, _s in plan.trace:
        bottom.axvline(at, color="grey", lw=0.5)
    top.set_ylabel("replicas")
    bottom.set_ylabel("media-seconds (weighted)")
    bottom.set_xlabel("seconds since the first video")
    top.legend(fontsize=7)
    bottom.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(
    work: Path, mode: str = "full", sizes: tuple[int, ...] = (), stored: dict[str, Any] | None = None
) -> dict[str, Any]:
    """mode "full" (both parts), "quick" (both, small), "curve": the curve only (at `sizes`
    if given), the burst kept from `stored` (the last full run's), its date with it; or
    "burst": the burst only, the stored curve kept the same way."""
    if not nodes.available():
        return {"skipped": "no writable cgroup v1 cpu hierarchy (root on /sys/fs/cgroup/cpu): no scale-out figure"}
    work.mkdir(parents=True, exist_ok=True)
    env = environment(work / "home")
    settings = load(env)
    down(settings, say=lambda _m: None)
    for part in ("kafka", "s3", "postgres", "logs"):  # every run starts clean: an earlier run's
        shutil.rmtree(settings.home / part, ignore_errors=True)  # leftovers would join this one
    up(settings, with_services=False, say=print)  # and this driver into the stack's group
    plan = QUICK if mode == "quick" else FULL
    if sizes:
        plan = replace(plan, curve_sizes=sizes)
    day = time.strftime("%Y-%m-%d")
    try:
        if mode == "burst" and stored and "curve" in stored:
            kept_curve = stored["curve"]
            head = {k: v for k, v in kept_curve.items() if k != "sizes"}
            by_size = kept_curve["sizes"]
        else:
            head, by_size = curve(plan, settings, env, work)
            head |= {"date": day, "profile": CURVE_PROFILE}
        if mode == "curve" and stored and "burst" in stored:
            kept = stored["burst"]
            bursts = kept | {"date": kept.get("date", stored["date"]), "profile": kept.get("profile", BURST_PROFILE)}
        else:
            png = work / "autoscale.png" if mode == "quick" else PROJECT_ROOT / "bench" / "results" / "autoscale.png"
            bursts = burst(plan, settings, env, work, png) | {"date": day, "profile": BURST_PROFILE}
            bursts |= {"target_s": plan.target_s, "min_nodes": plan.min_nodes, "down_window_s": plan.down_window_s}
    finally:
        down(settings, say=lambda _m: None)
    return {
        "date": day,
        "plan": mode,
        "node_cpu": NODE_CPU,
        "stack_cpu": STACK_CPU,
        "size": SIZE,
        "curve": head | {"sizes": by_size},
        "burst": bursts,
    }


def report(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return result["skipped"]
    c = result["curve"]
    head = f"scale-out, one {c['source_s']} s video, nodes of {result['node_cpu']} core"
    lines = [f"{head}; the one command in one node: {c['command_s']:.0f} s"]
    lines.append("nodes  wall s  speed-up  efficiency  Amdahl  vs command  stitch s  PSNR 360p  throttled  units")
    for n, r in c["sizes"].items():
        lines.append(
            f"{n:>5}  {r['wall_s']:6.1f}  {r['speedup_vs_one_node']:8.2f}  {r['efficiency']:10.2f}  "
            f"{r['amdahl_projection']:6.2f}  {r['speedup_vs_command']:10.2f}  {r['stitch_s']:8.1f}  "
            f"{r['psnr_360p']:9.2f}  {sum(r['throttled'].values()):9}  {r.get('units_per_transcoder')}"
        )
    lines.append(f"(the command: PSNR 360p {c['command_psnr_360p']:.2f} dB)")
    b = result["burst"]
    lines.append("burst   makespan  p50   p95   node-s (with tail)  most  first new busy  scale-in  hand-backs")
    for name in ("autoscaled", "fixed-max", "one-node-short"):
        r = b[name]
        lines.append(
            f"{name:<14} {r['makespan_s']:6.0f}  {r['latency_p50_s']:4.0f}  {r['latency_p95_s']:4.0f}  "
            f"{r['node_seconds_makespan']:6.0f} ({r['node_seconds_with_tail']:.0f})  {r['most_nodes']:4}  "
            f"{r['first_new_node_busy_s'] or 0:14.1f}  {r['scale_in_after_last_s'] or 0:8.1f}  {r['handbacks']}"
        )
    a, f = b["autoscaled"], b["fixed-max"]
    lines.append(
        f"autoscaled / fixed max: makespan {a['makespan_s'] / f['makespan_s']:.2f}x, "
        f"node-seconds {a['node_seconds_with_tail'] / f['node_seconds_makespan']:.2f}x"
    )
    return "\n".join(lines)
