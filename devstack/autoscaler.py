"""The local autoscaler of `reel up` (REEL_AUTOSCALE=1): every few seconds it reads the
backlog and lag the tracker exports, applies the HPA's rule per worker kind
(reel/autoscale.py) and writes the counts to run (reel/replicas.py), which the supervisor
reconciles - the HPA and the StatefulSet controller, apart, as in Kubernetes.

Its death changes nothing that runs: the supervisor keeps the last counts and restarts it,
and it starts again from the fleet that runs, as a restarted HPA controller does (no
scale-in within the window below it). Every decision is logged, appended to
`logs/autoscaler-decisions.jsonl` with the metric beside it, and exported.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from prometheus_client import Counter, Gauge
from prometheus_client.parser import text_string_to_metric_families

from reel import discovery, health, logs, replicas
from reel.autoscale import Decision, History, Rule, Scaling, decide, scalings
from reel.kafka import admin_client
from reel.settings import Settings, load

log = logging.getLogger("devstack.autoscaler")

DESIRED = Gauge("reel_autoscaler_desired_replicas", "Replicas the autoscaler wants, by worker kind", ["kind"])
CURRENT = Gauge("reel_autoscaler_current_replicas", "Replicas running when it decided, by worker kind", ["kind"])
DECISIONS = Counter("reel_autoscaler_decisions_total", "Decisions by worker kind and reason", ["kind", "reason"])
MAX = Gauge("reel_autoscaler_max_replicas", "The most replicas the rule allows, by worker kind", ["kind"])
METRIC = Gauge("reel_autoscaler_metric", "The metric each kind was scaled on, as read", ["kind"])

Samples = dict[tuple[str, str], float]  # (metric name, group) -> value


def parse(text: str) -> Samples:
    """The tracker's per-group series from a Prometheus exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "group" in sample.labels:
                out[(sample.name, sample.labels["group"])] = float(sample.value)
    return out


def running(home: Path) -> dict[str, int]:
    """The slots the supervisor runs per kind, draining ones not counted (services.json)."""
    try:
        slots = json.loads((home / "services.json").read_text())
    except (OSError, ValueError):
        return {}
    counts: dict[str, int] = {}
    for s in slots:
        if s.get("wanted", True):
            counts[s["kind"]] = counts.get(s["kind"], 0) + 1
    return counts


class Autoscaler:
    """The rule applied per kind on each step, with the history the HPA keeps."""

    def __init__(self, scales: list[Scaling], partitions: Callable[[str], int]) -> None:
        self.scales = scales
        self.partitions = partitions
        self.histories: dict[str, History] = {}

    def step(self, samples: Samples, current: dict[str, int], now: float) -> list[tuple[Scaling, Rule, Decision]]:
        """Each kind's decision, with the rule it was made by (max capped at partitions)."""
        out = []
        for s in self.scales:
            have = current.get(s.kind, 0)
            value = samples.get((s.metric, s.group))
            if value is None:  # no metric, no change: as the HPA when its metric is missing
                continue
            history = self.histories.get(s.kind) or History.starting(now, have)  # from the fleet that runs
            rule = s.rule.capped(self.partitions(s.topic))
            decision, self.histories[s.kind] = decide(rule, value, have, now, history)
            out.append((s, rule, decision))
        return out


def topic_partitions(admin: AdminClient) -> Callable[[str], int]:
    cache: dict[str, tuple[float, int]] = {}

    def count(topic: str) -> int:
        at, n = cache.get(topic, (0.0, 0))
        if time.monotonic() - at > 60 or n == 0:
            meta = admin.list_topics(topic, timeout=10).topics.get(topic)
            n = len(meta.partitions) if meta is not None and meta.partitions else 1
            cache[topic] = (time.monotonic(), n)
        return n

    return count


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return parse(resp.read().decode())


def run(settings: Settings, stopping: threading.Event) -> None:
    home = settings.home
    admin = admin_client(settings)
    scaler = Autoscaler(scalings(settings), topic_partitions(admin))
    journal = home / "logs" / "autoscaler-decisions.jsonl"
    journal.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{settings.tracker_port}/metrics"
    while not stopping.wait(settings.autoscale_interval_s):
        try:
            samples = scrape(url)
        except OSError as exc:
            log.warning("no metrics from the tracker (%s): the fleet stays as it is", exc)
            continue
        current, now = running(home), time.monotonic()
        if not current:
            continue  # the supervisor has not written its fleet yet
        try:
            decisions = scaler.step(samples, current, now)
        except KafkaException as exc:  # the partition counts: the broker is out of reach
            log.warning("no partition counts (%s): the fleet stays as it is", exc)
            continue
        desired = {s.kind: current.get(s.kind, 0) for s in scaler.scales} | {s.kind: d.desired for s, _, d in decisions}
        replicas.write(home, desired, time.time())
        with journal.open("a") as out:
            for s, rule, d in decisions:
                line = {"pid": os.getpid(), "now": now, "at": time.time(), "kind": s.kind, "max": rule.max_replicas}
                line |= asdict(d)
                out.write(json.dumps(line) + "\n")
                export(s.kind, rule, d)
        log.info("decided: %s", ", ".join(describe(s.kind, d) for s, _, d in decisions))


def export(kind: str, rule: Rule, d: Decision) -> None:
    DESIRED.labels(kind).set(d.desired)
    MAX.labels(kind).set(rule.max_replicas)
    CURRENT.labels(kind).set(d.current)
    METRIC.labels(kind).set(d.metric)
    DECISIONS.labels(kind, d.reason).inc()


def describe(kind: str, d: Decision) -> str:
    count = f"{d.current}->{d.desired}" if d.desired != d.current else str(d.current)
    return f"{kind} {count} ({d.metric:.1f}, {d.reason})"


def main() -> None:
    settings = load()
    logs.setup("autoscaler", settings.log_level)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    port = health.serve(settings.metrics_port, settings.bind_address)
    discovery.announce(settings, "autoscaler", 0, port)
    log.info("autoscaling every %.0fs; metrics on 127.0.0.1:%d", settings.autoscale_interval_s, port)
    run(settings, stopping)


if __name__ == "__main__":
    main()
