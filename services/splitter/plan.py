"""Segment planning on the output GOP grid, counted in frames (pure)."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
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


def split_evenly(total_frames: int, gop: int, count: int, first_gop: int = 0) -> list[Segment]:
    """`count` segments of whole GOPs from `first_gop` on, spread evenly: they differ by at
    most one GOP (the video's last also takes the remainder frames)."""
    start = first_gop * gop
    base, extra = divmod(math.ceil((total_frames - start) / gop), count)
    segments = []
    for i in range(count):
        frames = min((base + (1 if i < extra else 0)) * gop, total_frames - start)
        segments.append(Segment(i, start, frames))
        start += frames
    return segments


def plan_lanes(
    total_frames: int,
    fps: Fraction,
    workers: int,
    gop: int,
    gop_costs: Sequence[float],
    audio: float = 0.0,
    oversubscription: int = 3,
    min_seconds: float = 12.0,
    max_seconds: float = 120.0,
) -> list[list[Segment]]:
    """The video cut into lanes, one for each of up to `workers` transcoders, then each
    lane into its segments. Lanes are runs of whole GOPs whose costs (`gop_costs`, one a
    GOP) make the longest lane as short as it can be, the last lane also carrying the
    audio (`audio`, same units); each lane is then cut into `oversubscription` segments of
    whole GOPs, none shorter than min_seconds (but the video's last) nor longer than
    max_seconds. Cutting segments first and spreading them after cannot do as well: 90
    GOPs in 22 segments are 20 of 4 GOPs and 2 of 5, and with the audio on eight lanes
    one of them runs 13 GOPs; laid out first, seven lanes run 12 in three segments of 4
    and the eighth 6 GOPs beside the audio. Returns the lanes in video order, the segments
    indexed from 0 through them; the last, the audio's, may hold none."""
    if total_frames <= 0:
        raise ValueError("nothing to plan: no frames")
    gops = math.ceil(total_frames / gop)
    gop_s = gop / float(fps)
    min_gops = max(1, math.ceil(min_seconds / gop_s - 1e-9))
    max_gops = max(min_gops, math.floor(max_seconds / gop_s + 1e-9))
    sizes = lane_sizes(list(gop_costs), max(1, min(workers, gops // min_gops)), audio, min_gops)
    out: list[list[Segment]] = []
    first, index = 0, 0
    for size in sizes:
        count = max(-(-size // max_gops), min(oversubscription, size // min_gops), 1) if size else 0
        cut = split_evenly(min(total_frames, (first + size) * gop), gop, count, first) if size else []
        out.append([Segment(index + i, s.start_frame, s.frame_count) for i, s in enumerate(cut)])
        first, index = first + size, index + count
    return out


def lane_sizes(costs: list[float], lanes: int, audio: float = 0.0, least: int = 1) -> list[int]:
    """GOPs in each of `lanes` consecutive runs of `costs`, the last also carrying `audio`,
    so the costliest run is as cheap as it can be: the least bound the runs fit under,
    found by bisection, each run filled up to it in turn but never below `least` GOPs
    while any are left (the last run may be short, or empty when the audio alone is as
    long as a lane)."""

    def fill(bound: float) -> list[int] | None:
        sizes, at = [], 0
        for lane in range(lanes):
            load, taken = audio if lane == lanes - 1 else 0.0, 0
            while at < len(costs) and (taken < least or load + costs[at] <= bound + 1e-9):
                load, at, taken = load + costs[at], at + 1, taken + 1
            if load > bound + 1e-9:
                return None
            sizes.append(taken)
        return sizes if at == len(costs) else None

    low = max([audio, *costs, (sum(costs) + audio) / lanes])
    high = sum(costs) + audio + sum(sorted(costs)[-least:])
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (low, mid) if fill(mid) else (mid, high)
    found = fill(high)
    assert found is not None
    return found


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


def segment_cost(segment: Segment, gop: int, gop_costs: Sequence[float]) -> float:
    """A segment's cost: its GOPs' (it starts on a whole GOP; the video's last may end short)."""
    end = -(-(segment.start_frame + segment.frame_count) // gop)
    return sum(gop_costs[segment.start_frame // gop : end])


def dispatch_order(groups: list[list[tuple[int, float]]]) -> list[int]:
    """Unit ids (groups of (id, cost), each a lane) in rounds: every group's costliest unit
    left, groups costliest first (the order lanes() fills the fleet in). The first round
    starts every lane, and the last units to finish are each lane's cheapest."""
    ranked = costliest_first(groups)
    rounds = max((len(g) for g in ranked), default=0)
    return [g[r][0] for r in range(rounds) for g in ranked if r < len(g)]


def group_cost(group: list[tuple[int, float]]) -> float:
    return sum(cost for _, cost in group)


def costliest_first(groups: list[list[tuple[int, float]]]) -> list[list[tuple[int, float]]]:
    """Groups costliest first, each its units costliest first (ties by id: reproducible);
    lanes() and dispatch_order() both go in this order."""
    ranked = sorted(groups, key=lambda g: (-group_cost(g), g))
    return [sorted(g, key=lambda u: (-u[1], u[0])) for g in ranked]


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


def lanes(groups: list[list[tuple[int, float]]], members: list[list[int]]) -> dict[int, int]:
    """Each group of units (id, cost) - a planned lane, or a unit alone - goes whole to a
    member, costliest first to the one with the least work so far (longest_first), its
    units on that member's partitions in turn. Returns unit id -> partition ({} when no
    member owns a partition: keys decide)."""
    owners = [sorted(p) for p in members if p]
    if not owners:
        return {}
    ranked = costliest_first(groups)
    used = [0] * len(owners)
    out = {}
    for group, m in zip(ranked, longest_first([group_cost(g) for g in ranked], len(owners)), strict=True):
        for unit, _cost in group:
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
