"""The autoscaling rule, as Kubernetes' HPA applies it to an external metric with an
`AverageValue` target (pure): one function, `decide`, for the local autoscaler and for the
`behavior` the HPAs and KEDA objects are given, so the two scale alike.

Per step, as the HPA controller does it: outside [min, max] the count is brought inside;
else the proposal is `ceil(metric / target)`, unless `metric / (current * target)` is
within the tolerance of 1 (then it stays); the proposal is stabilised (the lowest within
the scale-up window, the highest within the scale-down window win); then limited by the
rate policies (`Pods` and `Percent` per period, over the changes made within it,
`selectPolicy` Max takes the policy allowing the most change) and by [min, max].
`max` is never above the input topic's partition count: a member past it gets nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from reel import pipeline
from reel.settings import Settings


@dataclass(frozen=True)
class Policy:
    type: str  # "Pods" or "Percent"
    value: int
    period_s: float


@dataclass(frozen=True)
class Behavior:
    # The HPA's defaults: up at once by the larger of 4 pods or 100 % per 15 s; down by up
    # to 100 % per 15 s, to the highest recommendation of the last 300 s.
    up: tuple[Policy, ...] = (Policy("Pods", 4, 15), Policy("Percent", 100, 15))
    up_window_s: float = 0.0
    down: tuple[Policy, ...] = (Policy("Percent", 100, 15),)
    down_window_s: float = 300.0


@dataclass(frozen=True)
class Rule:
    target: float  # the metric's value per replica (AverageValue)
    min_replicas: int
    max_replicas: int
    tolerance: float = 0.1
    behavior: Behavior = field(default_factory=Behavior)

    def capped(self, partitions: int) -> Rule:
        """This rule with max no higher than the input topic's partition count."""
        return replace(self, max_replicas=max(self.min_replicas, min(self.max_replicas, partitions)))


# Why a decision came out as it did (reel_autoscaler_decisions_total{reason}).
SCALED = "scaled"  # to the metric's proposal
STEADY = "steady"  # the proposal is the current count
WITHIN_TOLERANCE = "within_tolerance"
STABILISED = "stabilised"  # a recommendation in a window held the count
CAPPED = "capped"  # by min or max
POLICY = "policy"  # by a rate policy


@dataclass(frozen=True)
class Decision:
    metric: float
    current: int
    proposal: int  # what the metric alone asks for, after the tolerance
    desired: int  # what to run now
    reason: str


@dataclass(frozen=True)
class History:
    """What the HPA controller keeps per target between steps (in memory: a restarted
    controller starts again with its current count as the only recommendation)."""

    recommendations: tuple[tuple[float, int], ...] = ()  # (time, proposal)
    ups: tuple[tuple[float, int], ...] = ()  # (time, replicas added)
    downs: tuple[tuple[float, int], ...] = ()  # (time, replicas removed)

    @classmethod
    def starting(cls, now: float, current: int) -> History:
        # As the HPA controller on its first sight of a target: no scale-down within the
        # window below what runs now.
        return cls(recommendations=((now, current),))


def within_tolerance(metric: float, current: int, rule: Rule) -> bool:
    return current > 0 and abs(1.0 - metric / (current * rule.target)) <= rule.tolerance


def proposal(metric: float, current: int, rule: Rule) -> int:
    """ceil(metric / target), unless the metric per replica is within tolerance of it
    (floating point as the HPA's: 55 for 5 replicas of 10 is outside 0.1)."""
    if within_tolerance(metric, current, rule):
        return current
    return max(0, math.ceil(metric / rule.target))


def _changed(events: tuple[tuple[float, int], ...], now: float, period_s: float) -> int:
    return sum(n for t, n in events if t > now - period_s)


def _limit(policies: tuple[Policy, ...], current: int, history: History, now: float, up: bool) -> int:
    """The furthest count the rate policies allow from `current` (selectPolicy Max)."""
    limits = []
    for p in policies:
        start = current - _changed(history.ups, now, p.period_s) + _changed(history.downs, now, p.period_s)
        if up:
            limits.append(start + p.value if p.type == "Pods" else math.ceil(start * (1 + p.value / 100)))
        else:
            limits.append(start - p.value if p.type == "Pods" else int(start * (1 - p.value / 100)))
    if not limits:
        return current
    return max(max(limits), current) if up else min(min(limits), current)


def decide(rule: Rule, metric: float, current: int, now: float, history: History) -> tuple[Decision, History]:
    """One step of the rule: the count to run now and the history to keep."""
    b = rule.behavior
    if current > rule.max_replicas or current < rule.min_replicas:
        desired = min(max(current, rule.min_replicas), rule.max_replicas)
        decision = Decision(metric, current, desired, desired, CAPPED)
        return decision, _record(history, b, now, current, desired, None)  # as the HPA: no proposal kept
    wanted = proposal(metric, current, rule)
    held = [n for t, n in history.recommendations if t > now - b.up_window_s]
    kept = [n for t, n in history.recommendations if t > now - b.down_window_s]
    stable = max(current, min([wanted, *held]))
    stable = min(stable, max([wanted, *kept]))
    settled = WITHIN_TOLERANCE if within_tolerance(metric, current, rule) else SCALED
    reason = STABILISED if stable != wanted else settled
    desired = stable
    if stable > current:
        limit = _limit(b.up, current, history, now, up=True)
        allowed = min(rule.max_replicas, limit)
        if stable > allowed:
            desired, reason = allowed, POLICY if limit < rule.max_replicas else CAPPED
    elif stable < current:
        limit = _limit(b.down, current, history, now, up=False)
        allowed = max(rule.min_replicas, limit)
        if stable < allowed:
            desired, reason = allowed, POLICY if limit > rule.min_replicas else CAPPED
    if reason == SCALED and desired == current:
        reason = STEADY
    return Decision(metric, current, wanted, desired, reason), _record(history, b, now, current, desired, wanted)


def _record(
    history: History, behavior: Behavior, now: float, current: int, desired: int, wanted: int | None
) -> History:
    """Keep the proposal (if one was made) and the change, dropping what no window or
    period can reach any more."""
    window = max(behavior.up_window_s, behavior.down_window_s)
    period = max((p.period_s for p in (*behavior.up, *behavior.down)), default=0.0)
    recs = tuple((t, n) for t, n in history.recommendations if t > now - window)
    ups = tuple(e for e in history.ups if e[0] > now - period)
    downs = tuple(e for e in history.downs if e[0] > now - period)
    if wanted is not None:
        recs += ((now, wanted),)
    if desired > current:
        ups += ((now, desired - current),)
    elif desired < current:
        downs += ((now, current - desired),)
    return History(recs, ups, downs)


# -- what each worker kind scales on --------------------------------------------------------
BACKLOG_METRIC = "reel_backlog_media_seconds"  # per group: work still to do, weighted by stage cost
LAG_METRIC = "reel_consumer_lag"  # per group: records not yet committed


@dataclass(frozen=True)
class Scaling:
    kind: str  # the worker kind (a StatefulSet in Kubernetes)
    group: str  # its consumer group: the metric's label
    topic: str  # its input topic: max is capped at its partition count
    metric: str
    rule: Rule


def scalings(settings: Settings) -> list[Scaling]:
    """One rule per worker kind. The splitter scales on lag (a video's length is not known
    before it is split), the others on the backlog of their input."""
    behavior = Behavior(down_window_s=settings.autoscale_down_window_s)
    out = []
    for spec in pipeline.PIPELINE:
        if spec is pipeline.SPLITTER:
            metric, target = LAG_METRIC, settings.autoscale_target_lag
        else:
            metric, target = BACKLOG_METRIC, settings.autoscale_target_s
        rule = Rule(target, settings.autoscale_min, settings.autoscale_max, behavior=behavior)
        out.append(Scaling(spec.name, spec.group, spec.input, metric, rule))
    return out
