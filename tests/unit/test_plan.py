import itertools
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.splitter.plan import (
    dispatch_order,
    fleet_for,
    gop_frames,
    lane_owners,
    lane_sizes,
    lanes,
    plan_lanes,
    pull_partitions,
    split_evenly,
    spread_partitions,
)


def check_grid(segments, total: int, gop: int) -> None:
    assert segments[0].start_frame == 0
    for a, b in zip(segments, segments[1:], strict=False):
        assert b.start_frame == a.start_frame + a.frame_count  # contiguous, no gap
    assert sum(s.frame_count for s in segments) == total
    for s in segments[:-1]:
        assert s.frame_count % gop == 0 and s.start_frame % gop == 0  # whole GOPs


@pytest.mark.parametrize(
    "fps,gop",
    [
        (Fraction(24), 48),
        (Fraction(30000, 1001), 60),
        (Fraction(24000, 1001), 48),
        (Fraction(25), 50),
        (Fraction(60), 120),
    ],
)
def test_gop_is_two_seconds_in_frames(fps: Fraction, gop: int) -> None:
    assert gop_frames(fps) == gop


def flat(lanes) -> list:
    return [s for lane in lanes for s in lane]


def plan(total: int, fps: Fraction, workers: int, gop: int, audio: float = 0.0, **bounds) -> list:
    """The plan by length alone (each GOP weighs its frames)."""
    costs = [float(min(gop, total - i)) for i in range(0, total, gop)]
    return plan_lanes(total, fps, workers, gop, costs, audio, **bounds)


def test_count_follows_fleet_and_oversubscription() -> None:
    fps = Fraction(24)
    lanes = plan(24 * 600, fps, workers=2, gop=48)  # 10 min, 2 workers x 3
    assert [len(lane) for lane in lanes] == [3, 3]
    check_grid(flat(lanes), 24 * 600, 48)
    assert [s.index for s in flat(lanes)] == list(range(6))
    assert max(s.frame_count for s in flat(lanes)) - min(s.frame_count for s in flat(lanes)) <= 48


def test_minimum_length_clamps_the_count() -> None:
    segs = flat(plan(24 * 30, Fraction(24), workers=8, gop=48, min_seconds=12))
    assert len(segs) == 2  # 30 s can hold only two 12 s segments
    assert all(s.frame_count >= 12 * 24 for s in segs)


def test_maximum_length_clamps_the_count() -> None:
    segs = flat(plan(24 * 3600, Fraction(24), workers=1, gop=48, max_seconds=120))
    assert len(segs) == 30 and all(s.frame_count <= 120 * 24 for s in segs)
    check_grid(segs, 24 * 3600, 48)


def test_test_minimum_gives_joins_on_short_clips() -> None:
    segs = flat(plan(250, Fraction(25), workers=1, gop=50, min_seconds=2))
    assert len(segs) == 3  # 10 s, 1 worker x 3, 2 s minimum: two joins
    check_grid(segs, 250, 50)


def test_odd_frame_rate_remainder_goes_to_the_last_segment() -> None:
    total = 1799  # 60.0 s at 29.97 fps, not a whole number of GOPs
    segs = flat(plan(total, Fraction(30000, 1001), workers=2, gop=60, min_seconds=12))
    check_grid(segs, total, 60)
    assert segs[-1].frame_count % 60 != 0


def test_clip_shorter_than_one_gop_is_one_segment() -> None:
    segs = flat(plan(30, Fraction(25), workers=4, gop=50, min_seconds=2))
    assert [(s.start_frame, s.frame_count) for s in segs] == [(0, 30)]


def test_no_frames_is_an_error() -> None:
    with pytest.raises(ValueError):
        plan_lanes(0, Fraction(25), 1, 50, [])


def gops_in(lane) -> list[int]:
    return [s.frame_count // 50 for s in lane]


def test_lanes_are_laid_out_before_they_are_cut() -> None:
    """The scale-out curve's video: 180 s at 25 fps, 90 GOPs of 50 frames, on 8 transcoders,
    the audio 270 frames' worth. Cut evenly into 22 segments first (20 of 4 GOPs, 2 of 5),
    no spread of them and the audio does better than a lane of 13 GOPs; laid out first,
    seven lanes run 12 GOPs in three segments of 4 and the eighth one of 6 beside the
    audio (570)."""
    lanes = plan(4500, Fraction(25), workers=8, gop=50, audio=270.0, min_seconds=8)
    check_grid(flat(lanes), 4500, 50)
    assert [gops_in(lane) for lane in lanes] == [[4, 4, 4]] * 7 + [[6]]
    lengths = [sum(s.frame_count for s in lane) for lane in lanes]
    assert max(lengths[:-1]) == 600 and lengths[-1] + 270 == 570


def test_the_audio_lane_carries_less_video() -> None:
    """On 4 transcoders with the audio 405 frames' worth: three lanes of 25 GOPs and one of
    15 beside the audio (1155), where 12 even segments put the audio and three 7-GOP
    segments on one lane (1455)."""
    lanes = plan(4500, Fraction(25), workers=4, gop=50, audio=405.0, min_seconds=8)
    assert [sum(gops_in(lane)) for lane in lanes] == [25, 25, 25, 15]
    assert [len(lane) for lane in lanes] == [3, 3, 3, 3]
    # An audio as long as a lane goes alone: its lane holds no video.
    alone = plan(4500, Fraction(25), workers=8, gop=50, audio=650.0, min_seconds=8)
    assert alone[-1] == [] and max(sum(gops_in(lane)) for lane in alone) == 13


def test_lanes_follow_the_cost_not_the_length() -> None:
    """Each GOP weighs its bytes: a busy first half (3 a GOP, the rest 1) gets lanes of
    fewer GOPs."""
    costs = [3.0] * 12 + [1.0] * 12
    lanes = plan_lanes(24 * 50, Fraction(25), 4, 50, costs, min_seconds=2)
    assert [sum(gops_in(lane)) for lane in lanes] == [4, 4, 4, 12]
    check_grid(flat(lanes), 1200, 50)


def test_no_lane_is_cut_below_the_minimum_for_its_cost() -> None:
    """A costly stretch would make a lane of 1 GOP; the minimum (4 GOPs) holds, and the
    lanes after it share the rest."""
    costs = [40.0] + [1.0] * 39
    lanes = plan_lanes(40 * 50, Fraction(25), 4, 50, costs, min_seconds=8)
    assert all(s.frame_count >= 200 for s in flat(lanes))
    assert sum(gops_in(lanes[0])) == 4


def best_bound(costs: list[float], lanes: int, audio: float) -> float:
    """Brute force: every way to cut `costs` into `lanes` runs (the last with the audio),
    the cheapest costliest run."""
    n, best = len(costs), float("inf")
    for cuts in itertools.combinations_with_replacement(range(n + 1), lanes - 1):
        edges = [0, *cuts, n]
        loads = [sum(costs[a:b]) for a, b in itertools.pairwise(edges)]
        loads[-1] += audio
        best = min(best, max(loads))
    return best


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=9), st.integers(1, 4), st.integers(0, 12), st.integers(1, 3))
def test_lane_sizes_make_the_longest_lane_as_short_as_it_can_be(costs, lanes, audio, least) -> None:
    """Optimal with no minimum; with one, every run holds it while GOPs are left."""
    floats = [float(c) for c in costs]
    sizes = lane_sizes(floats, lanes, float(audio), least)
    assert len(sizes) == lanes and sum(sizes) == len(costs)
    edges = list(itertools.accumulate([0, *sizes]))
    assert all(s >= min(least, len(costs) - edges[i]) for i, s in enumerate(sizes))
    loads = [sum(costs[a:b]) for a, b in itertools.pairwise(edges)]
    loads[-1] += audio
    if least == 1:
        assert max(loads) == pytest.approx(best_bound(floats, lanes, float(audio)))


def singles(work):
    return [[unit] for unit in work]


def test_dispatch_is_costliest_first() -> None:
    segs = flat(plan(24 * 100 + 7, Fraction(24), workers=2, gop=48, min_seconds=2))
    work = [(s.index, float(s.frame_count)) for s in segs] + [(-1, 500.0)]
    order = dispatch_order(singles(work))
    assert order[0] == -1 and sorted(order) == [-1, *range(len(segs))]
    cost = dict(work)
    assert [cost[u] for u in order] == sorted(cost.values(), reverse=True)
    assert dispatch_order(singles([(3, 1.0), (1, 1.0), (2, 1.0)])) == [1, 2, 3]  # ties by id: reproducible


def test_dispatch_starts_every_lane_in_the_first_round() -> None:
    """Lanes costliest first, each its costliest unit first, one unit of each a round."""
    groups = [[(0, 4.0), (1, 4.0), (2, 4.0)], [(3, 4.0), (4, 4.0), (5, 4.0)], [(6, 6.0), (-1, 5.4)]]
    assert dispatch_order(groups) == [0, 3, 6, 1, 4, -1, 2, 5]


def test_every_lane_starts_in_the_first_round_of_pulls() -> None:
    """Eight transcoders and eight pullers, each with two partitions of its group's topic:
    the first eight requests (one per lane, as lanes() fills them) go one to each puller,
    each puller's on one partition, so it pulls them in dispatch order."""
    lanes_planned = plan(4500, Fraction(25), workers=8, gop=50, audio=270.0, min_seconds=8)
    work = [[(s.index, float(s.frame_count)) for s in lane] for lane in lanes_planned]
    work[-1].append((-1, 270.0))
    order = dispatch_order(work)
    transcoders = [[i, i + 8] for i in range(8)]
    lane = lanes(work, transcoders)
    pullers = [[15 - i, 7 - i] for i in range(8)]  # assigned in any order
    pull_on = pull_partitions(order, pullers)
    first = order[:8]
    owner = {p: n for n, parts in enumerate(transcoders) for p in parts}
    assert len({owner[lane[u]] for u in first}) == 8  # a lane's first unit each
    assert sorted(pull_on[u] for u in first) == list(range(8))  # one to each puller, its lowest partition
    assert {pull_on[u] for u in order} == set(range(8))  # and only those: each puller reads one, in order
    per_puller = [sum(1 for u in order if pull_on[u] == p) for p in range(8)]
    assert sorted(per_puller) == [2] + [3] * 7
    for planned in lanes_planned:  # a lane's units all on its transcoder
        assert len({owner[lane[s.index]] for s in planned}) == 1
    assert pull_partitions(order, []) == {} and pull_partitions(order, [[]]) == {}


def test_lanes_balance_the_fleet_longest_first() -> None:
    from services.splitter.plan import lanes

    work = [(i, 20.0) for i in range(6)] + [(-1, 6.0)]  # six 20 s segments and the audio
    members = [[0, 2, 4, 6], [1, 3, 5, 7]]
    out = lanes(singles(work), members)
    per_member = [sum(20.0 if u >= 0 else 6.0 for u, p in out.items() if p in m) for m in members]
    assert sorted(per_member) == [60.0, 66.0]  # three segments each, the audio to one
    assert len({p for u, p in out.items() if u >= 0}) == 6  # spread over partitions
    assert lanes(singles(work), []) == {} and lanes(singles(work), [[]]) == {}
    # Planned lanes go whole: three lanes on two members, the costliest alone.
    planned = [[(0, 20.0), (1, 20.0)], [(2, 20.0), (3, 20.0)], [(4, 20.0), (5, 10.0), (-1, 6.0)]]
    out = lanes(planned, [[0, 2], [1, 3]])
    assert out[0] % 2 == out[1] % 2 and out[2] % 2 == out[3] % 2 and out[4] % 2 == out[5] % 2 == out[-1] % 2
    assert out[0] % 2 != out[2] % 2  # the two 40s apart; the 36 with one of them


def test_costs_weigh_length_and_the_share_of_video_bytes() -> None:
    from services.splitter.plan import segment_costs

    segs = split_evenly(24 * 60, 48, 3)  # 3 x 20 s
    assert [s.start_frame for s in segs] == [0, 480, 960]
    # 1 byte a frame, but the middle 20 s are busy (3 a frame); a sample on a boundary
    # belongs to the segment it starts.
    samples = [(f / 24, 3 if 480 <= f < 960 else 1) for f in range(24 * 60)]
    costs = segment_costs(segs, Fraction(24), samples)
    assert costs == pytest.approx(
        [0.5 * 480 + 0.5 * 1440 / 5, 0.5 * 480 + 0.5 * 1440 * 3 / 5, 0.5 * 480 + 0.5 * 1440 / 5]
    )
    assert sum(costs) == pytest.approx(1440)  # still counted in frames: the audio's weight holds
    assert segment_costs(segs, Fraction(24), None) == [480.0, 480.0, 480.0]
    assert segment_costs(segs, Fraction(24), [(0.0, 0)]) == [480.0, 480.0, 480.0]


def test_a_segment_weighs_what_its_gops_weigh() -> None:
    """The lanes are planned on GOP costs and laid by segment costs: the two agree."""
    from services.splitter.plan import segment_cost, segment_costs

    total, fps = 24 * 61 + 7, Fraction(24)  # a short last GOP
    samples = [(f / 24, 3 if 480 <= f < 960 else 1) for f in range(total)]
    per_gop = segment_costs(split_evenly(total, 48, -(-total // 48)), fps, samples)
    segs = split_evenly(total, 48, 4)
    assert [segment_cost(s, 48, per_gop) for s in segs] == pytest.approx(segment_costs(segs, fps, samples))


def test_busy_segments_are_spread_over_the_fleet() -> None:
    from services.splitter.plan import lanes, segment_costs

    segs = split_evenly(24 * 120, 48, 6)  # 6 x 20 s
    busy = {0: 9, 1: 4, 2: 6, 3: 6, 4: 5, 5: 6}  # MB of video per segment, as in the benchmark
    samples = [(f / 24, busy[f // 480]) for f in range(24 * 120)]
    out = lanes(singles(list(enumerate(segment_costs(segs, Fraction(24), samples)))), [[0], [1]])
    # By length alone the even segments (the two busiest among them) share a member.
    assert out[0] != out[2] and out[0] == out[1]


def test_an_autoscaled_video_is_split_for_the_fleet_it_will_bring() -> None:
    assert fleet_for(live=2, heading=0, work_s=500, target_s=0, most=8) == 2  # not autoscaled: the live ones
    assert fleet_for(live=0, heading=0, work_s=500, target_s=0, most=8) == 1
    assert fleet_for(live=1, heading=1, work_s=144, target_s=60, most=8) == 3  # ceil(144 / 60): its own work
    assert fleet_for(live=1, heading=6, work_s=10, target_s=60, most=8) == 6  # where the autoscaler heads
    assert fleet_for(live=1, heading=1, work_s=6000, target_s=60, most=8) == 8  # never past max
    assert fleet_for(live=10, heading=2, work_s=10, target_s=60, most=8) == 10  # nor below those alive
    # A burst's siblings, counted at this video's size: ceil(144 x 3 / 60); ceil(10 x 2 / 60).
    assert fleet_for(live=1, heading=1, work_s=144, target_s=60, most=8, siblings=2) == 8
    assert fleet_for(live=1, heading=1, work_s=10, target_s=60, most=8, siblings=1) == 1
    assert fleet_for(live=1, heading=0, work_s=144, target_s=30, most=8, siblings=6) == 8  # never past max
    assert fleet_for(live=2, heading=0, work_s=144, target_s=0, most=8, siblings=5) == 2  # not autoscaled


def test_lanes_for_a_fleet_still_coming_go_over_every_partition() -> None:
    live = [[0, 1, 2, 3]]
    assert lane_owners(live, planned_for=1, partitions=4, units=8) == (live, False)
    assert lane_owners(live, planned_for=3, partitions=4, units=8) == ([[0], [1], [2], [3]], True)
    assert lane_owners([], planned_for=1, partitions=2, units=3) == ([[0], [1]], True)
    lane = lanes(singles([(i, 10.0) for i in range(8)]), lane_owners(live, 4, 4, 8)[0])
    assert sorted(lane.values()) == [0, 0, 1, 1, 2, 2, 3, 3]  # two units on each: any owner gets its share


# 16 partitions handed to 4 transcoders: in blocks of neighbours and every 4th (the two
# shapes of the cooperative-sticky assignor's shares), and run 21's own after a scale from 0.
ASSIGNMENTS = {
    "blocks": [list(range(i, i + 4)) for i in range(0, 16, 4)],
    "every 4th": [list(range(i, 16, 4)) for i in range(4)],
    "run 21": [[12, 13, 14, 15], [11, 10, 1, 0], [9, 7, 5, 3], [8, 6, 4, 2]],
}


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=str)
def test_fewer_units_than_partitions_reach_every_member_of_the_fleet_to_come(assignment: str) -> None:
    """A video split for 4 transcoders not yet there, 13 units over 16 partitions: each of
    the 4 gets 3 or 4 of them, whether the partitions are handed out in blocks or every 4th
    (laid on the lowest partitions, run 21's 12 units left the member handed 12-15 none)."""
    units = [(i, 10.0) for i in range(13)]
    lane = lanes(singles(units), lane_owners([], planned_for=4, partitions=16, units=len(units))[0])
    assert len(set(lane.values())) == 13  # one unit a partition
    per_member = [sum(1 for p in lane.values() if p in held) for held in ASSIGNMENTS[assignment]]
    assert sorted(per_member) == [3, 3, 3, 4], per_member


def test_partitions_are_spread_over_blocks_and_classes_alike() -> None:
    assert spread_partitions(16, fleet=4, units=4) == [0, 5, 10, 15]  # a block each, a class each
    assert spread_partitions(16, fleet=8, units=8) == [0, 2, 4, 6, 9, 11, 13, 15]
    assert spread_partitions(16, fleet=4, units=40) == list(range(16))  # more units: every partition
    assert spread_partitions(4, fleet=3, units=0) == [0]
