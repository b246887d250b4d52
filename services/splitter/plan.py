"""Segment planning on the output GOP grid, counted in frames (pure)."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Segment:
    index: int
    start_frame: int
    frame_count: int


def gop_frames(fps: Fraction, gop_seconds: float = 2.0) -> int:
    """G = round(2 s x fps) frames: 48 at 24 fps, 60 at 29.97."""
    return max(1, round(float(fps) * gop_seconds))


BALANCE_GAIN = 0.05  # how much sooner a plan of fewer segments must finish to be taken


def count_bounds(total_frames: int, fps: Fraction, gop: int, min_seconds: float, max_seconds: float) -> tuple[int, int]:
    """The fewest and the most segments of whole GOPs, each between min_seconds and
    max_seconds long (but the last), that `total_frames` may be split into."""
    total_gops = math.ceil(total_frames / gop)
    gop_s = gop / float(fps)
    min_gops = max(1, math.ceil(min_seconds / gop_s - 1e-9))
    max_gops = max(min_gops, math.floor(max_seconds / gop_s + 1e-9))
    fewest = math.ceil(total_gops / max_gops)  # none over the maximum
    most = max(fewest, 1, total_gops // min_gops)  # none under the minimum, unless it must
    return min(fewest, total_gops), min(most, total_gops)


def split_evenly(total_frames: int, gop: int, count: int) -> list[Segment]:
    """`count` segments of whole GOPs spread evenly: they differ by at most one GOP (the
    last also takes the remainder frames)."""
    base, extra = divmod(math.ceil(total_frames / gop), count)
    segments, start = [], 0
    for i in range(count):
        frames = min((base + (1 if i < extra else 0)) * gop, total_frames - start)
        segments.append(Segment(i, start, frames))
        start += frames
    return segments


def plan_segments(
    total_frames: int,
    fps: Fraction,
    workers: int,
    gop: int,
    oversubscription: int = 3,
    min_seconds: float = 12.0,
    max_seconds: float = 120.0,
) -> list[Segment]:
    """Split `total_frames` into segments of whole GOPs (all but the last): workers x
    oversubscription of them, clamped so each lies between min_seconds and max_seconds."""
    if total_frames <= 0:
        raise ValueError("nothing to plan: no frames")
    fewest, most = count_bounds(total_frames, fps, gop, min_seconds, max_seconds)
    return split_evenly(total_frames, gop, min(max(workers * oversubscription, fewest), most))


def balanced_plan(
    total_frames: int,
    fps: Fraction,
    workers: int,
    gop: int,
    weigh: Callable[[list[Segment]], list[float]],
    others: Sequence[float] = (),
    oversubscription: int = 3,
    min_seconds: float = 12.0,
    max_seconds: float = 120.0,
) -> list[Segment]:
    """plan_segments' split, or one of up to `workers` fewer segments when its units - the
    segments weighed by `weigh`, and `others` (the audio task's cost) - spread over the
    workers longest first finish clearly sooner (by BALANCE_GAIN): 12 segments and the audio
    put 4 units on one of 4 workers and 3 on the rest (its lane 1.19x the mean), 11 and the
    audio 3 on each (1.02x). The costs are estimates: a smaller gain keeps the plan."""
    planned = plan_segments(total_frames, fps, workers, gop, oversubscription, min_seconds, max_seconds)
    fewest, _most = count_bounds(total_frames, fps, gop, min_seconds, max_seconds)
    best, best_span = planned, longest_lane([*weigh(planned), *others], workers) * (1 - BALANCE_GAIN)
    for count in range(len(planned) - 1, max(fewest, len(planned) - workers) - 1, -1):
        segments = split_evenly(total_frames, gop, count)
        span = longest_lane([*weigh(segments), *others], workers)
        if span < best_span - 1e-9:
            best, best_span = segments, span
    return best


def segment_costs(segments: list[Segment], fps: Fraction, samples: Sequence[tuple[float, int]] | None) -> list[float]:
    """Each segment's encode cost, in frames: half its length, half its share of the
    source's video bytes (samples: (seconds from the first frame, bytes)). On Big Buck
    Bunny's 20 s segments the encode times ran 24-40 s and followed the bytes
    (correlation 0.85-0.95) around a floor that follows the length; with no samples,
    the length alone."""
    lengths = [float(s.frame_count) for s in segments]
    if not samples:
        return lengths
    bounds = [float(s.start_frame / fps) for s in segments[1:]]
    per = [0] * len(segments)
    for t, size in samples:
        per[bisect_right(bounds, t)] += size
    total = sum(per)
    if total <= 0:
        return lengths
    frames = sum(lengths)
    return [0.5 * n + 0.5 * frames * b / total for n, b in zip(lengths, per, strict=True)]


def dispatch_order(work: list[tuple[int, float]]) -> list[int]:
    """Unit ids, costliest first (the order lanes() fills the fleet in): the last to
    finish is a short one, and the first len(fleet) units each start a lane."""
    return [unit for unit, _ in sorted(work, key=lambda w: (-w[1], w[0]))]


def longest_first(costs: Sequence[float], members: int) -> list[int]:
    """Longest-processing-time-first: each cost (in dispatch order, costliest first) to the
    member with the least work so far. Returns the member of each, in that order."""
    load = [0.0] * members
    out = []
    for cost in costs:
        m = min(range(members), key=lambda i: (load[i], i))
        out.append(m)
        load[m] += cost
    return out


def longest_lane(costs: Sequence[float], members: int) -> float:
    """The most work longest_first leaves one of `members`."""
    ordered = sorted(costs, reverse=True)
    load = [0.0] * max(1, members)
    for m, cost in zip(longest_first(ordered, len(load)), ordered, strict=True):
        load[m] += cost
    return max(load)


def lanes(work: list[tuple[int, float]], members: list[list[int]]) -> dict[int, int]:
    """Each unit (id, cost), longest first, goes to the member with the least work so far
    (longest_first), on that member's partitions in turn. Returns unit id -> partition
    ({} when no member owns a partition: keys decide)."""
    owners = [sorted(p) for p in members if p]
    if not owners:
        return {}
    cost_of = dict(work)
    order = dispatch_order(work)
    used = [0] * len(owners)
    out = {}
    for unit, m in zip(order, longest_first([cost_of[u] for u in order], len(owners)), strict=True):
        out[unit] = owners[m][used[m] % len(owners[m])]
        used[m] += 1
    return out


def pull_partitions(order: list[int], pullers: list[list[int]]) -> dict[int, int]:
    """Where each unit's pull request goes: unit ids in dispatch order to the live pullers
    in turn, each on one partition of its own. A partition is read in order, so every
    puller pulls its units in the order given and each lane's first unit is pulled in the
    first round (hashed keys left some pullers two of the first units and others none:
    one of eight transcoders waited 10 s for its first span). {} with no live puller."""
    owners = sorted(min(p) for p in pullers if p)
    return {unit: owners[i % len(owners)] for i, unit in enumerate(order)} if owners else {}


def fleet_for(live: int, heading: int, work_s: float, target_s: float, most: int, siblings: int = 0) -> int:
    """The transcoders a video is split for. Not autoscaled (target 0): the live members.
    Autoscaled: the fleet the autoscaler is heading for when that is larger - its desired
    count, or the work this video brings (ceil(work / target), the backlog it adds over
    the target per replica) - never past max. A video split for the one transcoder alive
    could not use the eight its backlog is about to bring. Its siblings (videos requested
    in the same burst) bring work no backlog shows yet: their splits run in parallel, and
    each shows only once split. They are counted at this video's size, the only one known."""
    if target_s <= 0:
        return max(1, live)
    return max(1, live, min(most, max(heading, math.ceil(work_s * (1 + siblings) / target_s))))


def lane_owners(
    members: list[list[int]], planned_for: int, partitions: int, units: int
) -> tuple[list[list[int]], bool]:
    """Whose partitions the lanes go to, and whether they are a guess: the live members'
    when the video is split for them; when it is split for more, partitions on their own,
    spread_partitions, so whichever partitions the new members take, each is likely to
    find its share (the puller settles each lane when it pulls, a guessed one sooner:
    services/puller/lanes.py)."""
    if planned_for > sum(1 for m in members if m):
        return [[p] for p in spread_partitions(partitions, planned_for, units)], True
    return members, False


def spread_partitions(partitions: int, fleet: int, units: int) -> list[int]:
    """One partition for each unit (every partition once there are more units), spread
    evenly over the fleet's blocks of neighbours and over its every-fleet-th classes
    alike: the cooperative-sticky assignor often hands a new member one or the other (not
    always: a member that stays keeps a block and the rest go round the new ones), and on
    the lowest partitions the member handed the last block (12-15 of 16) got no unit."""
    block = -(-partitions // fleet)
    in_block: Counter[int] = Counter()
    in_class: Counter[int] = Counter()
    chosen: list[int] = []
    for _ in range(max(1, min(units, partitions))):
        free = (p for p in range(partitions) if p not in chosen)
        p = min(free, key=lambda p: (in_block[p // block] + in_class[p % fleet], p))
        chosen.append(p)
        in_block[p // block] += 1
        in_class[p % fleet] += 1
    return sorted(chosen)
