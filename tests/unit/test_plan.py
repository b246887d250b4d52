from fractions import Fraction

import pytest

from services.splitter.plan import (
    balanced_plan,
    dispatch_order,
    fleet_for,
    gop_frames,
    lane_owners,
    lanes,
    longest_lane,
    plan_segments,
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


def test_count_follows_fleet_and_oversubscription() -> None:
    fps = Fraction(24)
    segs = plan_segments(24 * 600, fps, workers=2, gop=48)  # 10 min, 2 workers x 3
    assert len(segs) == 6
    check_grid(segs, 24 * 600, 48)
    assert max(s.frame_count for s in segs) - min(s.frame_count for s in segs) <= 48


def test_minimum_length_clamps_the_count() -> None:
    segs = plan_segments(24 * 30, Fraction(24), workers=8, gop=48, min_seconds=12)
    assert len(segs) == 2  # 30 s can hold only two 12 s segments
    assert all(s.frame_count >= 12 * 24 for s in segs)


def test_maximum_length_clamps_the_count() -> None:
    segs = plan_segments(24 * 3600, Fraction(24), workers=1, gop=48, max_seconds=120)
    assert len(segs) == 30 and all(s.frame_count <= 120 * 24 for s in segs)
    check_grid(segs, 24 * 3600, 48)


def test_test_minimum_gives_joins_on_short_clips() -> None:
    segs = plan_segments(250, Fraction(25), workers=1, gop=50, min_seconds=2)
    assert len(segs) == 3  # 10 s, 1 worker x 3, 2 s minimum: two joins
    check_grid(segs, 250, 50)


def test_odd_frame_rate_remainder_goes_to_the_last_segment() -> None:
    total = 1799  # 60.0 s at 29.97 fps, not a whole number of GOPs
    segs = plan_segments(total, Fraction(30000, 1001), workers=2, gop=60, min_seconds=12)
    check_grid(segs, total, 60)
    assert segs[-1].frame_count % 60 != 0


def test_clip_shorter_than_one_gop_is_one_segment() -> None:
    segs = plan_segments(30, Fraction(25), workers=4, gop=50, min_seconds=2)
    assert [(s.start_frame, s.frame_count) for s in segs] == [(0, 30)]


def test_no_frames_is_an_error() -> None:
    with pytest.raises(ValueError):
        plan_segments(0, Fraction(25), workers=1, gop=50)


def test_dispatch_is_costliest_first() -> None:
    segs = plan_segments(24 * 100 + 7, Fraction(24), workers=2, gop=48, min_seconds=2)
    work = [(s.index, float(s.frame_count)) for s in segs] + [(-1, 500.0)]
    order = dispatch_order(work)
    assert order[0] == -1 and sorted(order) == [-1, *range(len(segs))]
    cost = dict(work)
    assert [cost[u] for u in order] == sorted(cost.values(), reverse=True)
    assert dispatch_order([(3, 1.0), (1, 1.0), (2, 1.0)]) == [1, 2, 3]  # ties by id: the plan is reproducible


def test_every_lane_starts_in_the_first_round_of_pulls() -> None:
    """Eight transcoders and eight pullers, each with two partitions of its group's topic:
    the first eight requests (one per lane, as lanes() fills them) go one to each puller,
    each puller's on one partition, so it pulls them in dispatch order."""
    work = [(i, 100.0 - i) for i in range(22)] + [(-1, 120.0)]
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
    assert pull_partitions(order, []) == {} and pull_partitions(order, [[]]) == {}


def test_lanes_balance_the_fleet_longest_first() -> None:
    from services.splitter.plan import lanes

    work = [(i, 20.0) for i in range(6)] + [(-1, 6.0)]  # six 20 s segments and the audio
    members = [[0, 2, 4, 6], [1, 3, 5, 7]]
    out = lanes(work, members)
    per_member = [sum(20.0 if u >= 0 else 6.0 for u, p in out.items() if p in m) for m in members]
    assert sorted(per_member) == [60.0, 66.0]  # three segments each, the audio to one
    assert len({p for u, p in out.items() if u >= 0}) == 6  # spread over partitions
    assert lanes(work, []) == {} and lanes(work, [[]]) == {}


def test_costs_weigh_length_and_the_share_of_video_bytes() -> None:
    from services.splitter.plan import segment_costs

    segs = plan_segments(24 * 60, Fraction(24), workers=1, gop=48)  # 3 x 20 s
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


def test_busy_segments_are_spread_over_the_fleet() -> None:
    from services.splitter.plan import lanes, segment_costs

    segs = plan_segments(24 * 120, Fraction(24), workers=2, gop=48)  # 6 x 20 s
    busy = {0: 9, 1: 4, 2: 6, 3: 6, 4: 5, 5: 6}  # MB of video per segment, as in the benchmark
    samples = [(f / 24, busy[f // 480]) for f in range(24 * 120)]
    out = lanes(list(enumerate(segment_costs(segs, Fraction(24), samples))), [[0], [1]])
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
    lane = lanes([(i, 10.0) for i in range(8)], lane_owners(live, 4, 4, 8)[0])
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
    lane = lanes(units, lane_owners([], planned_for=4, partitions=16, units=len(units))[0])
    assert len(set(lane.values())) == 13  # one unit a partition
    per_member = [sum(1 for p in lane.values() if p in held) for held in ASSIGNMENTS[assignment]]
    assert sorted(per_member) == [3, 3, 3, 4], per_member


def test_partitions_are_spread_over_blocks_and_classes_alike() -> None:
    assert spread_partitions(16, fleet=4, units=4) == [0, 5, 10, 15]  # a block each, a class each
    assert spread_partitions(16, fleet=8, units=8) == [0, 2, 4, 6, 9, 11, 13, 15]
    assert spread_partitions(16, fleet=4, units=40) == list(range(16))  # more units: every partition
    assert spread_partitions(4, fleet=3, units=0) == [0]


def frames_of(segments) -> list[float]:
    return [float(s.frame_count) for s in segments]


def test_longest_lane_is_the_greedy_longest_first_one() -> None:
    assert longest_lane([5, 4, 3, 3, 3], 2) == 10  # 5+3 | 4+3+3 (the best split, 9, is not its)
    assert longest_lane([3, 3, 3, 3], 4) == 3
    assert longest_lane([7], 3) == 7


def test_the_plan_leaves_room_for_the_audio_in_the_lanes() -> None:
    """180 s at 25 fps (90 GOPs of 50 frames), 4 workers, the audio 405 frames' worth:
    12 segments (6 of 8 GOPs, 6 of 7) and the audio make 13 units, and one lane runs the
    audio and three 350s: 1455. Eleven (2 of 9 GOPs, 9 of 8) and the audio run 3 a lane,
    450+400+400 at the most: 1250 (the mean is 1226)."""
    fps = Fraction(25)
    planned = plan_segments(4500, fps, workers=4, gop=50, min_seconds=8)
    assert len(planned) == 12 and longest_lane([*frames_of(planned), 405.0], 4) == 1455
    segs = balanced_plan(4500, fps, 4, 50, frames_of, [405.0], min_seconds=8)
    check_grid(segs, 4500, 50)
    assert len(segs) == 11 and sorted({s.frame_count for s in segs}) == [400, 450]
    assert longest_lane([*frames_of(segs), 405.0], 4) == 1250


def test_the_plan_stays_where_nothing_is_gained() -> None:
    fps = Fraction(25)
    # No audio: 12 segments spread 1150 at the most; 11 would leave 1250 on one lane.
    assert len(balanced_plan(4500, fps, 4, 50, frames_of, min_seconds=8)) == 12
    # One worker runs everything whatever the count: ties keep the most segments.
    assert len(balanced_plan(4500, fps, 1, 50, frames_of, [405.0], min_seconds=8)) == 3

    # 8 s on 2 workers: 4 segments and the audio, 141.6 the longest lane; 3 (of 2, 1 and 1
    # GOPs, the long one weighed a hair under twice a short one, as bytes may) 141.48: a
    # 0.1 % gain, not worth another plan.
    def nearly(segments):
        return [f * (0.999 if f > 60 else 1.0) for f in frames_of(segments)]

    assert longest_lane([*nearly(split_evenly(240, 60, 3)), 21.6], 2) < 141.6

    assert len(balanced_plan(240, Fraction(30), 2, 60, nearly, [21.6], min_seconds=2)) == 4
    # The minimum length bounds how few: 20 s at 8 s a segment is 2 whatever is asked.
    assert len(balanced_plan(500, fps, 4, 50, frames_of, [45.0], min_seconds=8)) == 2
