"""The HPA's rule, replayed over recorded metric series against counts worked out by hand
from the Kubernetes documentation's algorithm (desired = ceil(metric / target) outside a
0.1 tolerance; stabilisation windows; Pods and Percent policies per period, Max)."""

from __future__ import annotations

from reel.autoscale import (
    CAPPED,
    POLICY,
    SCALED,
    STABILISED,
    STEADY,
    WITHIN_TOLERANCE,
    Behavior,
    History,
    Policy,
    Rule,
    decide,
    proposal,
)

ONE_MINUTE_DOWN = Behavior(down_window_s=60)


def replay(rule: Rule, start: int, series: list[tuple[float, float]], history: History | None = None) -> list[tuple]:
    """(time, metric) steps from `start` replicas: (desired, reason) per step."""
    current, out = start, []
    history = history or History()
    for now, metric in series:
        decision, history = decide(rule, metric, current, now, history)
        assert decision.current == current and decision.metric == metric
        out.append((decision.desired, decision.reason))
        current = decision.desired
    return out


def test_a_burst_scales_out_at_the_policy_rate_then_in_after_the_window() -> None:
    rule = Rule(target=10, min_replicas=1, max_replicas=8, behavior=ONE_MINUTE_DOWN)
    series = [(0, 95), (15, 95), (30, 70), (45, 76), (60, 20), (75, 0), (90, 0), (105, 0), (120, 0)]
    assert replay(rule, 1, series) == [
        (5, POLICY),  # ceil(9.5) = 10; up limit max(1 + 4 pods, ceil(1 * 2)) = 5
        (8, CAPPED),  # 10 again; the 0 s event is not inside (15 - 15, 15]: limit max(9, 10), max 8
        (8, STABILISED),  # 70 / 80 = 0.875, outside 0.1: 7, but the window holds 10
        (8, WITHIN_TOLERANCE),  # 76 / 80 = 0.95
        (8, STABILISED),  # 2, window (0, 60] holds 10, 7, 8
        (8, STABILISED),  # 0, window (15, 75] holds 7, 8, 2
        (8, STABILISED),  # 0, window (30, 90] holds 8, 2, 0
        (2, STABILISED),  # 0, window (45, 105] holds 2, 0, 0: down to 2 (100 % per 15 s allows 0)
        (1, CAPPED),  # 0, window holds only zeros; min 1
    ]


def test_a_flapping_metric_holds_the_highest_count_of_the_window() -> None:
    rule = Rule(target=10, min_replicas=1, max_replicas=8, behavior=ONE_MINUTE_DOWN)
    series = [(0, 38), (15, 62), (30, 38), (45, 62), (60, 38), (75, 62), (90, 38)]
    assert replay(rule, 5, series, History.starting(0, 5)) == [
        (5, STABILISED),  # ceil(3.8) = 4; the controller's start recorded 5
        (7, SCALED),  # 62 / 50 = 1.24: ceil(6.2) = 7
        (7, STABILISED),  # 4; the window holds 7
        (7, STEADY),  # 62 / 70 = 0.886, outside 0.1: ceil(6.2) = 7, the current count
        (7, STABILISED),
        (7, STEADY),
        (7, STABILISED),
    ]


def test_the_tolerance_is_the_hpas_floating_point() -> None:
    rule = Rule(target=10, min_replicas=1, max_replicas=16)
    assert proposal(45, 5, rule) == 5  # 1 - 0.9 = 0.0999…: within
    assert proposal(55, 5, rule) == 6  # 1.1 - 1 = 0.1000…09: outside, ceil(5.5)
    assert proposal(0, 3, rule) == 0
    assert proposal(0, 0, rule) == 0 and proposal(0.5, 0, rule) == 1


def test_from_zero_the_first_backlog_brings_one_back() -> None:
    rule = Rule(target=60, min_replicas=0, max_replicas=8, behavior=Behavior(down_window_s=0))
    assert replay(rule, 0, [(0, 0), (5, 30), (10, 30), (15, 0)]) == [
        (0, STEADY),
        (1, SCALED),  # ceil(0.5); limit max(0 + 4, ceil(0 * 2)) = 4
        (1, STEADY),  # 30 / 60 = 0.5, outside 0.1: ceil(0.5) = 1, the current count
        (0, SCALED),  # no window: down at once (100 % of 1 allowed)
    ]


def test_a_pods_policy_limits_each_period() -> None:
    slow = Behavior(up=(Policy("Pods", 1, 60),), down=(Policy("Pods", 1, 30),), down_window_s=0)
    rule = Rule(target=10, min_replicas=1, max_replicas=8, behavior=slow)
    assert replay(rule, 2, [(0, 100), (30, 100), (61, 100), (70, 10), (80, 10), (101, 10)]) == [
        (3, POLICY),  # 2 + 1
        (3, POLICY),  # the +1 at 0 s is inside (-30, 30]: the period started at 2, limit 3
        (4, POLICY),  # it left the period
        (2, POLICY),  # ceil(0.25) = 1; the period (40, 70] started at 4 - 1 = 3: limit 3 - 1
        (2, POLICY),  # (50, 80] holds +1 and -2: started at 2 - 1 + 2 = 3, limit 2
        (1, SCALED),  # both left the period
    ]


def test_select_max_takes_the_policy_allowing_the_most_change() -> None:
    rule = Rule(target=1, min_replicas=1, max_replicas=100)
    assert replay(rule, 2, [(0, 50)]) == [(6, POLICY)]  # max(2 + 4, ceil(2 * 2) = 4)
    assert replay(rule, 10, [(0, 50)]) == [(20, POLICY)]  # max(10 + 4, ceil(10 * 2) = 20)


def test_max_is_never_above_the_partition_count_and_a_fleet_outside_the_bounds_is_brought_in() -> None:
    rule = Rule(target=10, min_replicas=2, max_replicas=32).capped(16)
    assert rule.max_replicas == 16
    assert replay(rule, 20, [(0, 500)]) == [(16, CAPPED)]
    assert replay(rule, 1, [(0, 0)]) == [(2, CAPPED)]
    assert Rule(target=1, min_replicas=2, max_replicas=8).capped(1).max_replicas == 2  # never below min


def test_a_restarted_controller_does_not_scale_in_before_its_window() -> None:
    rule = Rule(target=10, min_replicas=1, max_replicas=8, behavior=ONE_MINUTE_DOWN)
    assert replay(rule, 6, [(100, 0), (130, 0), (161, 0)], History.starting(100, 6)) == [
        (6, STABILISED),
        (6, STABILISED),
        (1, CAPPED),  # the start's 6 left the window (101, 161]
    ]
