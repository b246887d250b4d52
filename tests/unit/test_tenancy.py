"""Tenant names, prefixes and the keys an event may name (pure)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reel import keys, tenancy
from reel.submit import ID_NS, video_id_for
from reel.tenancy import Refused, check_event, check_key, check_tenant, prefix, safe_file_name

BUCKETS = ("reel-sources", "reel-work", "reel-outputs")
VID = str(uuid.uuid4())


def test_the_default_tenant_keeps_the_layout_of_before_and_others_get_their_own() -> None:
    assert prefix("default") == ""
    assert prefix("acme") == "tenants/acme/"
    ev = {"tenant": "acme", "video_id": VID, "generation": 1, "track": "video", "segment_index": 3}
    assert keys.work(ev, "a1", "span.mp4") == f"tenants/acme/{VID}/1/video/00003/a1/span.mp4"
    assert keys.tombstone(ev) == f"tenants/acme/failed/{VID}/1.json"
    assert keys.output("acme", VID, "mp4/360p.mp4") == f"tenants/acme/{VID}/mp4/360p.mp4"
    assert keys.work({**ev, "tenant": "default"}, "a1", "x") == f"{VID}/1/video/00003/a1/x"


@pytest.mark.parametrize("name", ["", "A", "-a", "a-", "a_b", "a/b", "a.b", "x" * 33, "café", "a\x00", " a"])
def test_a_tenant_name_is_short_lowercase_and_plain(name: str) -> None:
    with pytest.raises(Refused):
        check_tenant(name)


@pytest.mark.parametrize(
    "key",
    [
        "tenants/acme/../beta/x.mp4",  # back out of the prefix
        "tenants/acme/./x.mp4",
        "/tenants/acme/x.mp4",  # absolute
        "tenants/acme//x.mp4",
        "tenants/acme/%2e%2e/beta/x.mp4",  # URL-encoded ..
        "tenants/acme/x\\..\\y.mp4",  # backslashes
        "tenants/acme/x\x00.mp4",  # NUL
        "tenants/acme/\u2024\u2024/x.mp4",  # one-dot leaders, which look like ..
        "tenants/acme/ｘ.mp4",  # fullwidth letters
        "tenants/acme/x.mp4\n",
        "tenants/beta/x.mp4",  # another tenant's
        "tenants/acmeish/x.mp4",
        "uploads/x.mp4",  # the default tenant's
        "tenants/acme/" + "a" * 1100,
    ],
)
def test_keys_that_leave_the_prefix_or_hide_tricks_are_refused(key: str) -> None:
    with pytest.raises(Refused):
        check_key("acme", key)


def test_the_default_tenant_may_not_reach_into_anothers_prefix() -> None:
    assert check_key("default", "uploads/ab/x.mp4") == "uploads/ab/x.mp4"
    with pytest.raises(Refused, match="another tenant"):
        check_key("default", "tenants/acme/uploads/ab/x.mp4")


@given(st.text(max_size=200))
def test_a_safe_file_name_is_always_a_key_part_under_the_prefix(name: str) -> None:
    key = keys.upload("acme", "ab" * 32, safe_file_name(name))
    assert check_key("acme", key) == key
    assert key.count("/") == 4  # no name adds a folder


@given(st.text(max_size=300))
def test_any_key_check_key_accepts_stays_under_the_prefix(key: str) -> None:
    try:
        check_key("acme", key)
    except Refused:
        return
    assert key.startswith("tenants/acme/") and ".." not in key.split("/")


def event(**over: object) -> dict[str, object]:
    ev: dict[str, object] = {
        "tenant": "acme",
        "video_id": VID,
        "source": {"bucket": "reel-sources", "key": "tenants/acme/uploads/ab/x.mp4"},
        "renditions": [{"object": {"bucket": "reel-work", "key": f"tenants/acme/{VID}/0/r.mp4"}}],
    }
    return ev | over


def test_an_event_naming_only_its_tenants_objects_passes() -> None:
    check_event(event(), BUCKETS)


@pytest.mark.parametrize(
    "change",
    [
        {"tenant": "Acme"},
        {"video_id": "../../etc"},
        {"video_id": VID.upper()},  # keys use the canonical form: one id, one folder
        {"source": {"bucket": "somebody-elses", "key": "tenants/acme/x.mp4"}},
        {"source": {"bucket": "reel-sources", "key": "tenants/beta/uploads/ab/x.mp4"}},
        {"renditions": [{"object": {"bucket": "reel-work", "key": "tenants/acme/../beta/r.mp4"}}]},
    ],
    ids=["tenant", "video-id", "video-id-case", "bucket", "source-key", "nested-key"],
)
def test_an_event_reaching_outside_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(Refused):
        check_event(event(**change), BUCKETS)


def test_two_tenants_sending_the_same_file_get_two_videos() -> None:
    sha = "ab" * 32
    a, b = (video_id_for(t, None, sha, "default", ["hls"]) for t in ("acme", "beta"))
    assert a != b
    assert video_id_for("acme", "r1", sha, "default", ["hls"]) != video_id_for("beta", "r1", sha, "default", ["hls"])
    # the default tenant's ids are those reel gave before tenants
    assert video_id_for("default", "r1", sha, "x", []) == str(uuid.uuid5(ID_NS, "request:r1"))


@pytest.mark.parametrize(
    "name,part",
    [
        ("clip.mp4", "clip.mp4"),
        ("../../etc/passwd\x00.mp4", "passwd_.mp4"),
        ("C:\\x\\my clip.mov", "my_clip.mov"),
        ("...", "source"),
        ("café.mp4", "caf_.mp4"),
    ],
)
def test_a_file_name_keeps_its_last_part_made_safe(name: str, part: str) -> None:
    assert safe_file_name(name) == part


def test_an_unreadable_tenant_is_reported_as_the_default() -> None:
    assert tenancy.known({"tenant": "../x"}) == "default"
    assert tenancy.known({"tenant": "acme"}) == "acme"
