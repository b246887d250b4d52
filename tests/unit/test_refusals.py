"""ffmpeg's refusals as reel reads them: the table against ffmpeg's own words, from real
runs on generated inputs (reel/refusals.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reel import media
from reel.media import flags
from reel.refusals import classify
from reel.task import Kind

PATTERN = flags("-f lavfi -i testsrc2=size=176x144:rate=25:duration=1")


def stderr_of(*args: str) -> str:
    done = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", *args], capture_output=True, text=True)
    assert done.returncode != 0, "ffmpeg was expected to refuse"
    return done.stderr


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("refusals")
    subprocess.run(["ffmpeg", "-v", "error", *PATTERN, "-c:v", "msmpeg4", str(folder / "divx.avi")], check=True)
    subprocess.run(["ffmpeg", "-v", "error", *PATTERN, "-c:v", "libvpx", str(folder / "vp8.webm")], check=True)
    (folder / "zeros.mp4").write_bytes(bytes(65536))
    (folder / "list.mp4").write_text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nhttp://127.0.0.1:9/x.ts\n")
    return folder


def test_a_codec_the_container_cannot_carry(made: Path, tmp_path: Path) -> None:
    verdict = classify(stderr_of("-i", str(made / "divx.avi"), "-c", "copy", "-f", "mp4", str(tmp_path / "o.mp4")))
    assert verdict is not None and verdict.code == "container-cannot-carry"
    assert verdict.kind is Kind.UNSUPPORTED_INPUT and verdict.words == "MS-MPEG4 v3 video cannot be copied into MP4"
    vp8 = classify(stderr_of("-i", str(made / "vp8.webm"), "-c", "copy", "-f", "mov", str(tmp_path / "o.mov")))
    assert vp8 is not None and vp8.words == "VP8 video cannot be copied into QuickTime (MOV)"


def test_a_playlist_is_refused_before_it_opens_anything(made: Path) -> None:
    said = stderr_of(*media.upload_input(str(made / "list.mp4")), "-f", "null", "-")
    verdict = classify(said)
    assert verdict is not None and verdict.kind is Kind.UNSUPPORTED_INPUT
    assert verdict.words == "HLS playlists are not accepted as sources; upload the media file itself"


def test_not_media_and_no_stream_are_bad_or_unsupported_inputs(made: Path) -> None:
    zeros = classify(stderr_of("-i", str(made / "zeros.mp4"), "-f", "null", "-"))
    assert zeros is not None and zeros.kind is Kind.BAD_INPUT and zeros.code == "invalid-data"
    no_audio = classify(stderr_of("-i", str(made / "divx.avi"), "-map", "0:a:0", "-f", "null", "-"))
    assert no_audio is not None and no_audio.code == "no-stream"


def test_what_the_table_does_not_know_is_left_to_the_counted_attempts() -> None:
    preset = stderr_of(*PATTERN, "-c:v", "libx264", "-preset", "no-such-preset", "-f", "null", "-")
    assert classify(preset) is None  # a profile's mistake, or the machine's: retried, then given up
    assert classify(stderr_of("-f", "lavfi", "-i", "anullsrc", "-af", "nosuchfilter", "-f", "null", "-")) is None
    assert classify("Connection reset by peer") is None


def test_a_media_error_says_the_words_and_keeps_ffmpegs_line(made: Path, tmp_path: Path) -> None:
    with pytest.raises(media.MediaError) as refused:
        media.run_ffmpeg(["-i", str(made / "divx.avi"), "-c", "copy", "-f", "mp4", str(tmp_path / "o.mp4")], timeout=30)
    assert str(refused.value).startswith("MS-MPEG4 v3 video cannot be copied into MP4 (ffmpeg exited with 1: [mp4]")
    assert " @ 0x" not in str(refused.value)  # the pointer in ffmpeg's tag says nothing
