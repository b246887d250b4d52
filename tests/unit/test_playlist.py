from pathlib import Path

from services.pusher.playlist import (
    Variant,
    bitrates,
    codec_string,
    master_playlist,
    parse_media_playlist,
)


def test_codec_strings() -> None:
    assert codec_string("h264", "High", 40) == "avc1.640028"
    assert codec_string("h264", "Main", 31) == "avc1.4d001f"
    assert codec_string("hevc", "Main", 93) == "hvc1.1.6.L93.B0"
    assert codec_string("aac", "LC", 0) == "mp4a.40.2"


def test_bitrates_from_segments(tmp_path: Path) -> None:
    (tmp_path / "a.ts").write_bytes(b"x" * 1000)
    (tmp_path / "b.ts").write_bytes(b"x" * 3000)
    pl = tmp_path / "index.m3u8"
    pl.write_text("#EXTM3U\n#EXTINF:2.000000,\na.ts\n#EXTINF:1.000000,\nb.ts\n#EXT-X-ENDLIST\n")
    assert parse_media_playlist(pl.read_text()) == [(2.0, "a.ts"), (1.0, "b.ts")]
    assert bitrates(pl) == (24000, int(8 * 4000 / 3))


def test_master_lists_audio_once_and_variants_by_bandwidth() -> None:
    text = master_playlist(
        [
            Variant("240p/index.m3u8", 426, 240, 400_000, 350_000, "avc1.64001e,mp4a.40.2"),
            Variant("360p/index.m3u8", 640, 360, 800_000, 700_000, "avc1.64001e,mp4a.40.2"),
        ],
        "audio/index.m3u8",
    )
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    assert sum(1 for ln in lines if ln.startswith("#EXT-X-MEDIA:TYPE=AUDIO")) == 1
    infs = [ln for ln in lines if ln.startswith("#EXT-X-STREAM-INF")]
    assert "BANDWIDTH=800000" in infs[0] and "RESOLUTION=640x360" in infs[0]
    assert 'AUDIO="audio"' in infs[1] and 'CODECS="avc1.64001e,mp4a.40.2"' in infs[1]
    assert lines[lines.index(infs[0]) + 1] == "360p/index.m3u8"
