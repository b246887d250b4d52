"""ffmpeg arguments for the pusher's packaging (pure): the gapless join of every rung, each
an MP4 with the once-encoded audio, HLS from a joined rung, and the poster."""

from __future__ import annotations

from pathlib import Path

from reel.media import flags

BITEXACT = flags("-fflags +bitexact")


def concat_list(parts: list[Path]) -> str:
    return "".join(f"file '{p}'\n" for p in parts)


def join_args(rungs: list[tuple[Path, Path]], audio: Path | None) -> list[str]:
    """Join every rung's segments (concat demuxer, stream copy) and mux the audio into each,
    in one ffmpeg run: (concat listing, output MP4) per rung. Each output is the bytes a run
    of its own would write; one process start less per rung (half a second on a small node)."""
    args: list[str] = []
    for listing, _out in rungs:
        args += ["-f", "concat", "-safe", "0", "-i", str(listing)]
    if audio is not None:
        args += ["-i", str(audio)]
    for i, (_listing, out) in enumerate(rungs):
        maps = ["-map", f"{i}:v:0", *(["-map", f"{len(rungs)}:a:0"] if audio is not None else [])]
        args += [*maps, "-c", "copy", "-movflags", "+faststart", *BITEXACT, "-y", str(out)]
    return args


# Every rendition is packaged by its own ffmpeg run, and each run shifts its timestamps
# until none is negative: the video by its B-frame delay (2 frames, 67 ms at 30 fps), the
# audio by its priming (21 ms). A player aligns renditions by timestamp, so the audio
# played 45 ms early. A fixed offset, larger than any such delay, makes no shift needed
# and keeps every rendition on the MP4's timeline.
HLS_TS_OFFSET_S = 1.0


def hls_args(src: Path, stream: str, out_dir: Path, fmp4: bool, hls_time: float = 2.0) -> list[str]:
    """One media playlist from one stream of a joined file; fMP4 segments for HEVC."""
    args = ["-i", str(src), *flags(f"-map 0:{stream}:0 -c copy -output_ts_offset {HLS_TS_OFFSET_S} -f hls")]
    args += [*flags(f"-hls_time {hls_time} -hls_playlist_type vod"), *BITEXACT]
    if fmp4:
        args += [*flags("-hls_segment_type fmp4 -hls_fmp4_init_filename init.mp4 -hls_segment_filename")]
        args.append(str(out_dir / "seg_%05d.m4s"))
    else:
        args += ["-hls_segment_filename", str(out_dir / "seg_%05d.ts")]
    return [*args, "-y", str(out_dir / "index.m3u8")]


def poster_args(src: Path, at: float, out: Path) -> list[str]:
    return ["-ss", f"{at:.3f}", "-i", str(src), "-frames:v", "1", "-q:v", "3", "-y", str(out)]
