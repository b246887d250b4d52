"""Which transcoder partition a pulled segment goes to, decided when its span is ready.

The splitter lays each unit on a lane (a transcoder's partition) when it splits the
video, for the fleet it expects. By the time the unit is pulled the fleet may look
otherwise: an autoscaled video is split for transcoders not yet alive, and the
cooperative assignor hands the new ones whichever partitions it moves; one of four
transcoders in a benchmark run held 1 unit of a video's 12 and another 4. So a unit
leaves its lane for the least loaded member when the lane's owner has more queued, every
partition still read in order by one member at a time: one unit more for a lane the
splitter guessed (laid for transcoders not alive then), two for a lane it laid on the
live members, which it balanced itself.

Not at one more on the splitter's own lanes: a unit still being pulled for a member is
not queued yet, so a member can look a unit lighter than it is. When the first round of
a video's pulls on a fixed fleet ended together, four pullers each saw one transcoder with
nothing queued (its own first span was on its way) and all sent it theirs: 4 units on it
and 2 on two others, where the lanes kept give 3 each and one 2. At two more, a video
split for four transcoders none of which was alive kept every lane (owners one unit
ahead at most, or none yet): one of the four ran 5 of its 12 units and two ran 2.
Two still herds when one puller is slow (a curve run: two pullers at one instant, 4 units
on one of eight transcoders); docs/decisions.md says what would end it.
"""

from __future__ import annotations

import zlib

# Units more queued on the lane's owner than on the least loaded member that move a unit.
MOVE_AT = 2  # the splitter's lane, laid on the live members
MOVE_GUESSED_AT = 1  # a lane laid for transcoders still to come


def bind_lane(lane: int, members: list[dict[int, int]], key: str, guessed: bool = False) -> int:
    """The partition for a unit the splitter laid on `lane` (-1: none, keys decide), given
    each live member's partitions and the units queued on each (in work included).

    Kept: no lane, no member holding partitions, a lane no member holds (mid-rebalance:
    it will have an owner), or an owner less than MOVE_AT units ahead of the least loaded
    (MOVE_GUESSED_AT for a guessed lane). Else the least loaded member's least queued partition;
    ties between members go by the unit's key, so pullers deciding at once spread."""
    owners = [m for m in members if m]
    if lane < 0 or not owners:
        return lane
    load = [sum(m.values()) for m in owners]
    holder = next((i for i, m in enumerate(owners) if lane in m), None)
    least = min(load)
    if holder is None or load[holder] - least < (MOVE_GUESSED_AT if guessed else MOVE_AT):
        return lane
    idle = [m for m, n in zip(owners, load, strict=True) if n == least]
    chosen = idle[zlib.crc32(key.encode()) % len(idle)]
    return min(chosen, key=lambda p: (chosen[p], p))
