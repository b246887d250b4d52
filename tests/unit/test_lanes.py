"""Where a pulled span goes: its lane, or the least loaded transcoder's partition."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from reel.settings import load
from services.puller.handler import Deps, lane_now
from services.puller.lanes import bind_lane

KEY = "video-1/video/00003"


def test_a_lane_whose_owner_has_at_most_one_more_queued_than_the_least_loaded_is_kept() -> None:
    members = [{0: 1, 4: 0}, {1: 0, 5: 1}, {2: 1}]
    assert bind_lane(4, members, KEY) == 4
    assert bind_lane(1, members, KEY) == 1
    assert bind_lane(2, [{0: 0}, {2: 1}], KEY) == 2


def test_the_first_round_of_pulls_does_not_pile_onto_a_transcoder_whose_span_is_on_its_way() -> None:
    """Curve run 11, 8 nodes: four pullers ending their first pulls together each saw one
    transcoder with nothing queued (its own first span was still being pulled)."""
    members = [{0: 0, 8: 0}] + [{p: 1, p + 8: 0} for p in range(1, 8)]
    assert [bind_lane(lane, members, f"video-1/video/{lane:05d}") for lane in (9, 12, 7, 15)] == [9, 12, 7, 15]


def test_a_unit_laid_on_a_busier_transcoder_goes_to_the_least_loaded_ones_least_queued_partition() -> None:
    """Run 23's case: the moved partitions went round the new members, one of four
    transcoders held a single lane of the video's twelve."""
    members = [{0: 2, 3: 1}, {1: 0, 7: 0, 9: 1}, {2: 0}]
    assert bind_lane(3, members, KEY) == 2  # 3 queued there; the third member has none
    members[2][2] = 1  # now the second and third both hold one
    assert bind_lane(0, members, KEY) in {7, 2}
    assert bind_lane(0, members, KEY) == bind_lane(0, members, KEY)  # by the key, not by chance
    assert bind_lane(9, members, KEY) == 9  # its owner has the least: kept


def test_a_guessed_lane_moves_at_one_unit_more_queued_on_its_owner() -> None:
    """A video split for four transcoders none of which was alive (burst run 27): the
    owners one unit apart kept every lane, and one of the four ran 5 of its 12 units."""
    members = [{0: 2, 5: 0}, {1: 1, 6: 0}, {2: 1}, {3: 1}]
    assert bind_lane(0, members, KEY) == 0  # laid on these members: kept at one more
    assert bind_lane(0, members, KEY, guessed=True) in {1, 6, 2, 3}  # another member's
    assert bind_lane(0, members, KEY, guessed=True) in {6, 2, 3}  # its least queued partition
    assert bind_lane(1, members, KEY, guessed=True) == 1  # even with the least: kept
    assert bind_lane(0, [{0: 1}, {1: 1}], KEY, guessed=True) == 0


def test_ties_between_least_loaded_members_go_by_the_key_so_pullers_spread() -> None:
    members = [{0: 3}] + [{p: 0} for p in range(1, 9)]
    chosen = {bind_lane(0, members, f"video-1/video/{i:05d}") for i in range(32)}
    assert len(chosen) >= 5  # 32 keys over 8 idle members: not all onto one


@pytest.mark.parametrize(
    ("lane", "members"),
    [
        (-1, [{0: 5}, {1: 0}]),  # no lane: the record's key decides
        (3, []),  # no transcoder alive yet
        (3, [{}, {}, {}]),  # members caught mid-rebalance hold nothing
        (3, [{0: 4}, {1: 0}]),  # the lane's partition is between owners: it will have one
    ],
)
def test_without_a_live_owner_to_compare_the_lane_stands(lane: int, members: list[dict[int, int]]) -> None:
    assert bind_lane(lane, members, KEY) == lane


def test_the_puller_keeps_its_lane_when_the_queues_cannot_be_read(caplog: pytest.LogCaptureFixture) -> None:
    settings = load({})

    def broker_down() -> list[dict[int, int]]:
        raise TimeoutError("no answer in 5 s")

    deps = Deps(settings, None, broker_down)  # type: ignore[arg-type]  # no storage needed
    with caplog.at_level(logging.WARNING):
        assert lane_now(6, KEY, deps) == 6
    assert "no answer in 5 s" in caplog.text
    moved = dataclasses.replace(deps, transcoders=lambda: [{6: 2}, {1: 0}])
    assert lane_now(6, KEY, dataclasses.replace(deps, transcoders=lambda: [{6: 1}, {1: 0}])) == 6
    assert lane_now(6, KEY, moved) == 1
    one_ahead = dataclasses.replace(deps, transcoders=lambda: [{6: 1}, {1: 0}])
    assert lane_now(6, KEY, one_ahead, guessed=True) == 1
