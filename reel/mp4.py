"""Where a file's video samples lie in time, from its MP4/QuickTime sample table.

The splitter weighs segments by their share of the source's compressed bytes (busy
scenes take longer to encode); the pusher counts each joined part's frames; the
transcoder's gate reads each new segment's packets (one ffprobe costs a small node a
few tenths of a second, and every unit had one per rung). The sample
table sits in the `moov` box, so this reads a few box headers and the `moov` by range,
never the media itself. Anything else (a fragmented MP4, a table it cannot read) gives
None, and the caller does without (or asks ffprobe).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
Read = Callable[[int, int], bytes]  # (offset, length) -> bytes, fewer at the end of the file

MAX_MOOV = 64 << 20  # a two-hour film's table is a few MB; beyond this, do without
MAX_SAMPLES = 10_000_000  # four hours at 240 fps is 3.5 M: more is a damaged count
MAX_TOP_BOXES = 64  # ftyp, free, mdat, moov, meta...: a long walk is a damaged file


def _header(data: bytes, at: int) -> tuple[int, bytes, int]:
    """A box's (size, type, header length) at `at`; size 0 means "to the end"."""
    size, kind = struct.unpack_from(">I4s", data, at)
    if size == 1:
        return struct.unpack_from(">Q", data, at + 8)[0], kind, 16
    return size, kind, 8


def boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of each box in data[start:end]."""
    end = len(data) if end is None else end
    at = start
    while at + 8 <= end:
        size, kind, head = _header(data, at)
        size = size or end - at
        if size < head or at + size > end:
            return
        yield kind, at + head, at + size
        at += size


def find_moov(read: Read) -> bytes | None:
    """Walk the top-level boxes by their headers and read the moov (wherever it is)."""
    at = 0
    for _ in range(MAX_TOP_BOXES):
        head = read(at, 16)
        if len(head) < 8:
            return None
        size, kind, _ = _header(head, at=0)
        if kind == b"moov":
            if size < 8 or size > MAX_MOOV:
                return None
            return read(at, size)
        if size < 8:  # size 0 (to the end of the file) or damaged: nothing after it
            return None
        at += size
    return None


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    return next(((s, e) for k, s, e in boxes(data, start, end) if k == kind), None)


def _path(data: bytes, start: int, end: int, *kinds: bytes) -> tuple[int, int] | None:
    span: tuple[int, int] | None = (start, end)
    for kind in kinds:
        if span is None:
            return None
        span = _child(data, span[0], span[1], kind)
    return span


def _track(moov: bytes, handler: bytes) -> tuple[int, int, int, int, int] | None:
    """(trak start, trak end, stbl start, stbl end, timescale) of the first track whose
    handler is `handler` (b"vide", b"soun")."""
    top = _child(moov, 0, len(moov), b"moov")
    if top is None:
        return None
    for kind, start, end in boxes(moov, *top):
        if kind != b"trak":
            continue
        mdia = _child(moov, start, end, b"mdia")
        hdlr = _child(moov, *mdia, b"hdlr") if mdia else None
        if mdia is None or hdlr is None or moov[hdlr[0] + 8 : hdlr[0] + 12] != handler:
            continue
        mdhd, stbl = _child(moov, *mdia, b"mdhd"), _path(moov, *mdia, b"minf", b"stbl")
        if mdhd is None or stbl is None:
            return None
        version = moov[mdhd[0]]
        (timescale,) = struct.unpack_from(">I", moov, mdhd[0] + (20 if version == 1 else 12))
        return (start, end, *stbl, timescale) if timescale else None
    return None


def _video_track(moov: bytes) -> tuple[int, int, int, int, int] | None:
    return _track(moov, b"vide")


def video_samples(moov: bytes) -> list[tuple[float, int]] | None:
    """(decode time in seconds from the track's start, size in bytes) of every sample of
    the first video track, or None when the table is not there (fragmented) or unreadable."""
    track = _video_track(moov)
    table = _table(moov, track[2], track[3]) if track else None
    if track is None or table is None:
        return None
    sizes, deltas = table
    out, t = [], 0
    for size, delta in zip(sizes, deltas, strict=True):
        out.append((t / track[4], size))
        t += delta
    return out


def video_packets(moov: bytes) -> list[tuple[float, float, float, bool]] | None:
    """(pts, dts, duration in seconds, keyframe) of every sample of the first video track,
    in decode order, as ffmpeg's demuxer gives them: composition offsets (ctts) applied,
    shifted back by the track's one edit and on by an empty edit before it, keyframes from
    stss. None for what it does not model (other edit lists, a frame the edit would cut):
    ask ffprobe then."""
    track = _video_track(moov)
    table = _table(moov, track[2], track[3]) if track else None
    if track is None or table is None:
        return None
    trak_start, trak_end, stbl_start, stbl_end, timescale = track
    _sizes, deltas = table
    edit = _single_edit(moov, trak_start, trak_end, timescale)
    offsets = _offsets(moov, stbl_start, stbl_end, len(deltas))
    keys = _sync(moov, stbl_start, stbl_end, len(deltas))
    if edit is None or offsets is None or keys is None:
        return None
    delay, shift, until = edit
    out, t = [], 0
    for delta, offset, key in zip(deltas, offsets, keys, strict=True):
        pts = t + offset - shift
        if pts < 0 or pts >= until:  # outside the edit: ffmpeg would discard it
            return None
        out.append(((pts + delay) / timescale, (t - shift + delay) / timescale, delta / timescale, key))
        t += delta
    return out


def audio_packets(moov: bytes) -> list[tuple[float, float, float, bool]] | None:
    """(pts, dts, duration in seconds, keyframe) of every packet of the first audio track,
    as ffmpeg's demuxer gives an `mp4a` track (AAC, or MP3 in MP4): shifted back by its one
    edit (the encoder's priming: the first packet lies before 0, which the decoder
    discards), the last cut where the edit ends, any after it dropped. Other sample entries'
    samples are not always its packets (PCM is read a chunk at a time). None for what it
    does not model."""
    track = _track(moov, b"soun")
    table = _table(moov, track[2], track[3]) if track else None
    if track is None or table is None or _sample_entry(moov, track[2], track[3]) != b"mp4a":
        return None
    trak_start, trak_end, _stbl_start, _stbl_end, timescale = track
    _sizes, deltas = table
    edit = _single_edit(moov, trak_start, trak_end, timescale)
    if edit is None or edit[0] or edit[1] > deltas[0]:  # a delay, or more than one packet before the start
        return None
    _delay, shift, until = edit
    out, t = [], 0
    for delta in deltas:
        start = t - shift
        if start >= until:
            break
        length = min(delta, until - start)
        out.append((start / timescale, start / timescale, length / timescale, True))
        t += delta
    return out


def _sample_entry(data: bytes, start: int, end: int) -> bytes | None:
    """The format of the first sample description (stsd): b"mp4a", b"avc1", ..."""
    stsd = _child(data, start, end, b"stsd")
    if stsd is None or stsd[0] + 16 > stsd[1]:
        return None
    return data[stsd[0] + 12 : stsd[0] + 16]


def bit_rate(moov: bytes, handler: bytes = b"vide") -> int | None:
    """A track's average bits per second over its media, as ffprobe reports a stream's
    bit_rate for an MP4: every sample's bytes over the summed sample durations."""
    track = _track(moov, handler)
    table = _table(moov, track[2], track[3]) if track else None
    if track is None or table is None:
        return None
    sizes, deltas = table
    return sum(sizes) * 8 * track[4] // sum(deltas) if sum(deltas) else None


def _single_edit(moov: bytes, start: int, end: int, timescale: int) -> tuple[int, int, float] | None:
    """The track's one edit: (delay, shift, length), in the track's timescale. delay: an
    empty edit before it (a stream copy with its source's timestamps kept starts there);
    shift: where in the media it starts; length: how long it lasts from there (unbounded
    without an edit list or with a duration of 0). None for any other edit list."""
    elst = _path(moov, start, end, b"edts", b"elst")
    if elst is None:
        return 0, 0, math.inf
    version = moov[elst[0]]
    (entries,) = struct.unpack_from(">I", moov, elst[0] + 4)
    fmt = ">QqhH" if version == 1 else ">IihH"
    size = struct.calcsize(fmt)
    edits = [struct.unpack_from(fmt, moov, elst[0] + 8 + i * size) for i in range(min(entries, 3))]
    mvhd = _path(moov, 0, len(moov), b"moov", b"mvhd")
    if mvhd is None or not 1 <= entries <= 2 or any(rate != 1 for _d, _m, rate, _f in edits):
        return None
    (movie_scale,) = struct.unpack_from(">I", moov, mvhd[0] + (20 if moov[mvhd[0]] == 1 else 12))
    delay = 0
    if entries == 2:  # an empty edit first, as ffmpeg rescales it (to the nearest tick)
        empty, media_time = edits[0][0], edits[0][1]
        if media_time != -1 or not movie_scale:
            return None
        delay = (empty * timescale + movie_scale // 2) // movie_scale
    duration, media_time = edits[-1][0], edits[-1][1]
    if media_time < 0:
        return None
    # The edit's length is in the movie's timescale: a frame's start must lie inside it.
    return delay, media_time, (duration * timescale / movie_scale if duration and movie_scale else math.inf)


def _offsets(data: bytes, start: int, end: int, count: int) -> list[int] | None:
    """Each sample's composition offset (ctts; version 1 may be negative), 0 without one."""
    ctts = _child(data, start, end, b"ctts")
    if ctts is None:
        return [0] * count
    version = data[ctts[0]]
    (entries,) = struct.unpack_from(">I", data, ctts[0] + 4)
    if ctts[0] + 8 + 8 * entries > ctts[1]:
        return None
    pairs = struct.unpack_from(f">{2 * entries}{'i' if version else 'I'}", data, ctts[0] + 8)
    out = [offset for n, offset in zip(pairs[::2], pairs[1::2], strict=True) for _ in range(n)]
    return out if len(out) == count else None


def _sync(data: bytes, start: int, end: int, count: int) -> list[bool] | None:
    """Which samples are keyframes (stss, numbered from 1); every one without the box."""
    stss = _child(data, start, end, b"stss")
    if stss is None:
        return [True] * count
    (entries,) = struct.unpack_from(">I", data, stss[0] + 4)
    if stss[0] + 8 + 4 * entries > stss[1]:
        return None
    keys = [False] * count
    for n in struct.unpack_from(f">{entries}I", data, stss[0] + 8):
        if not 1 <= n <= count:
            return None
        keys[n - 1] = True
    return keys


def _table(data: bytes, start: int, end: int) -> tuple[list[int], list[int]] | None:
    """Sample sizes (stsz) and durations (stts), which must count the same samples: a
    damaged count then shows before anything is built from it."""
    stsz, stts = _child(data, start, end, b"stsz"), _child(data, start, end, b"stts")
    if stsz is None or stts is None:
        return None
    fixed, count = struct.unpack_from(">II", data, stsz[0] + 4)
    (entries,) = struct.unpack_from(">I", data, stts[0] + 4)
    if stts[0] + 8 + 8 * entries > stts[1] or (not fixed and stsz[0] + 12 + 4 * count > stsz[1]):
        return None
    pairs = struct.unpack_from(f">{2 * entries}I", data, stts[0] + 8)
    if not 0 < count <= MAX_SAMPLES or sum(pairs[::2]) != count:
        return None
    sizes = [fixed] * count if fixed else list(struct.unpack_from(f">{count}I", data, stsz[0] + 12))
    deltas = [delta for n, delta in zip(pairs[::2], pairs[1::2], strict=True) for _ in range(n)]
    return sizes, deltas


def from_moov(read: Read, parse: Callable[[bytes], T | None]) -> T | None:
    """parse(moov) of the file `read` reads; None without a moov or when a box is shorter
    than its fields (a damaged file: the caller does without, or asks ffprobe)."""
    try:
        moov = find_moov(read)
        return parse(moov) if moov else None
    except (struct.error, IndexError, ValueError):
        return None


def read_video_samples(read: Read) -> list[tuple[float, int]] | None:
    return from_moov(read, video_samples)


def read_video_packets(read: Read) -> list[tuple[float, float, float, bool]] | None:
    return from_moov(read, video_packets)


def file_reader(path: Path) -> Read:
    """Range reads of a local file."""

    def read(at: int, n: int) -> bytes:
        with path.open("rb") as f:
            f.seek(at)
            return f.read(n)

    return read
