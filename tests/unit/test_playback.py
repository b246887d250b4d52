from __future__ import annotations

from datetime import timedelta

import pytest

from reel.settings import load
from services.tracker.playback import MARGIN_S, MAX_TTL_S, BadToken, Grant, child_key, lifetime, rewrite, sign, verify
from services.tracker.playlists import Links, output_url

VID = "7d3c0e0a-2f1b-5c4d-9e8f-0a1b2c3d4e5f"
MASTER = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="audio",DEFAULT=YES,AUTOSELECT=YES,URI="audio/index.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=700000,CODECS="avc1.64001e,mp4a.40.2",RESOLUTION=640x360,AUDIO="audio"
360p/index.m3u8
"""
MEDIA = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI="init.mp4"
#EXTINF:2.000000,
seg_00000.m4s
#EXTINF:1.200000,
seg_00001.m4s
#EXT-X-ENDLIST
"""


def test_a_token_verifies_for_its_video_until_it_expires() -> None:
    token = sign("k", Grant(VID, 2, 1_000))
    assert verify("k", VID, token, now=999) == Grant(VID, 2, 1_000)
    with pytest.raises(BadToken, match="expired"):
        verify("k", VID, token, now=1_000)
    with pytest.raises(BadToken, match="signature"):
        verify("other key", VID, token, now=0)
    with pytest.raises(BadToken, match="signature"):  # another video's token
        verify("k", "00000000-0000-0000-0000-000000000000", token, now=0)
    generation, expires, mac = token.split(".")
    for forged in (f"3.{expires}.{mac}", f"{generation}.99999.{mac}", "garbage", ""):
        with pytest.raises(BadToken):  # nothing in it can be changed without the key
            verify("k", VID, forged, now=0)


def test_links_outlive_the_video_by_a_margin_within_the_presign_limit() -> None:
    assert lifetime(5.0, 3600) == 3600
    assert lifetime(2 * 3600.0, 3600) == 2 * 3600 + MARGIN_S
    assert lifetime(None, 60) == max(60, MARGIN_S)
    assert lifetime(30 * 24 * 3600.0, 3600) == MAX_TTL_S


def test_every_uri_of_a_playlist_is_rewritten_and_nothing_else() -> None:
    master = rewrite(MASTER, lambda uri: f"https://t/{uri}?token=x")
    assert 'URI="https://t/audio/index.m3u8?token=x"' in master
    assert "\nhttps://t/360p/index.m3u8?token=x\n" in master
    assert master.count("https://t/") == 2 and 'CODECS="avc1.64001e,mp4a.40.2"' in master
    media = rewrite(MEDIA, lambda uri: "S/" + uri)
    want = MEDIA.replace('URI="init.mp4"', 'URI="S/init.mp4"').replace("\nseg_", "\nS/seg_")
    assert media == want


def test_child_keys_stay_inside_the_videos_hls_folder() -> None:
    assert child_key(f"{VID}/hls/master.m3u8", "360p/index.m3u8") == f"{VID}/hls/360p/index.m3u8"
    assert child_key(f"{VID}/hls/360p/index.m3u8", "seg_00001.ts") == f"{VID}/hls/360p/seg_00001.ts"
    for bad in ("../../other/hls/master.m3u8", "/etc/passwd", "http://evil/x.ts", "seg.ts?x=1"):
        with pytest.raises(ValueError):
            child_key(f"{VID}/hls/360p/index.m3u8", bad)


def links(**settings: str) -> Links:
    def presign(bucket: str, key: str, expires: timedelta) -> str:
        return f"https://s3/{bucket}/{key}?X-Amz-Expires={int(expires.total_seconds())}&X-Amz-Signature=f"

    s = load({"REEL_TRACKER_URL": "https://reel.example", "REEL_PLAYBACK_SECRET": "k", **settings})
    return Links(s, presign, "default", VID, 1, 7200.0, now=1_000_000.0)


def test_links_are_signed_playlists_and_presigned_objects_by_default() -> None:
    got = links()
    assert got.ttl == 7200 + MARGIN_S and got.expires == 1_000_000 + 7800
    token = got.token()
    assert verify("k", VID, token, now=1_000_000) == Grant(VID, 1, 1_007_800)
    assert got.playlist() == f"https://reel.example/videos/{VID}/hls/master.m3u8?token={token}"
    assert got.playlist("360p", "t") == f"https://reel.example/videos/{VID}/hls/360p/index.m3u8?token=t"
    assert got.object("reel-outputs", "a/b.ts").endswith("X-Amz-Expires=7800&X-Amz-Signature=f")
    assert "X-Amz-Expires=9001&" in got.object("reel-outputs", "a/b.ts", at_least_s=9000)  # never before the token
    assert got.watch() == f"https://reel.example/videos/{VID}/watch?token={token}"  # players send no headers
    assert got.events() == f"https://reel.example/videos/{VID}/events?token={token}"  # nor does EventSource
    master = {"kind": "hls-master", "rung": None, "object": {"bucket": "reel-outputs", "key": f"{VID}/hls/master.m3u8"}}
    assert output_url(got, master) == got.playlist()


def test_behind_a_public_base_url_links_name_it_unsigned() -> None:
    got = links(REEL_OUTPUTS_BASE_URL="https://cdn.example/reel-outputs/")
    assert got.object("reel-outputs", f"{VID}/mp4/360p.mp4") == f"https://cdn.example/reel-outputs/{VID}/mp4/360p.mp4"
    assert got.playlist() == f"https://cdn.example/reel-outputs/{VID}/hls/master.m3u8"  # its URIs are relative
    assert got.playlist("360p") == f"https://cdn.example/reel-outputs/{VID}/hls/360p/index.m3u8"
