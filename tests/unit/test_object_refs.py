from __future__ import annotations

from reel.checkpoints import object_refs


def test_object_refs_finds_every_object_however_deep() -> None:
    event = {
        "video_id": "v",
        "source": {"bucket": "src", "key": "a.mp4", "etag": "e", "size": 1},
        "renditions": [
            {"rung": "240p", "object": {"bucket": "work", "key": "v/0/240p.mp4"}},
            {"rung": "360p", "object": {"bucket": "work", "key": "v/0/360p.mp4"}},
        ],
        "manifest": None,
        "formats": ["mp4"],
    }
    assert object_refs(event) == [("src", "a.mp4"), ("work", "v/0/240p.mp4"), ("work", "v/0/360p.mp4")]
    assert object_refs({"bucket": None, "key": "x"}) == []  # not an object reference
