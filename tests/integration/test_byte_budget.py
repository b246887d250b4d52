"""Only the bytes needed: the splitter's probe and index read headers, the puller one span.
Counted by a TCP proxy on loopback in front of the real S3 server.

ffmpeg's HTTP reader asks for open-ended ranges and drops the connection when it seeks,
so what the server sends is what was needed plus the read-ahead in flight at each seek
(a few MB on loopback, whatever the size of the file). The bounds are that: absolute, on
a source large enough that reading it whole would break them."""

from __future__ import annotations

import dataclasses
import socket
import threading
from pathlib import Path

import pytest

from devstack.clips import synthetic
from devstack.procs import free_port
from reel import media
from reel.settings import Settings
from reel.storage import Storage

MB = 1024 * 1024
READ_AHEAD = 12 * MB  # in flight when ffmpeg drops a connection to seek, measured 4-8 MB here


class CountingProxy:
    """Forwards 127.0.0.1:port to the S3 server and counts the bytes it sends back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port, self.bytes_down = target, free_port(), 0
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(65536):
                if count:
                    self.bytes_down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def big_source(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int]:
    """60 s of 640x360 at a high bitrate (about 35 MB), moov at the end as cameras write it."""
    path = tmp_path_factory.mktemp("big") / "big.mp4"
    synthetic(path, size="640x360", seconds=60, audio=False, extra=("-b:v", "6000k", "-g", "50"))
    ref = Storage.from_settings(stack).put_file(stack.bucket_sources, "budget/big.mp4", path)
    return ref.key, ref.size


def proxied(stack: Settings) -> tuple[Storage, CountingProxy]:
    proxy = CountingProxy(("127.0.0.1", stack.s3_port))
    return Storage.from_settings(dataclasses.replace(stack, s3_endpoint=f"127.0.0.1:{proxy.port}")), proxy


def test_probe_reads_headers_only(stack: Settings, big_source: tuple[str, int]) -> None:
    storage, proxy = proxied(stack)
    try:
        probe = media.probe(storage.presign_get(stack.bucket_sources, big_source[0]))
    finally:
        proxy.close()
    assert probe.video is not None and probe.video.frames == 1500
    assert big_source[1] > 30 * MB
    assert proxy.bytes_down < READ_AHEAD, f"{proxy.bytes_down} of {big_source[1]} bytes"


def test_the_sample_index_is_read_by_range(stack: Settings, big_source: tuple[str, int]) -> None:
    from reel.mp4 import read_video_samples

    storage, proxy = proxied(stack)
    try:
        samples = read_video_samples(lambda at, n: storage.get_range(stack.bucket_sources, big_source[0], at, n))
    finally:
        proxy.close()
    assert samples is not None and len(samples) == 1500
    assert sum(size for _, size in samples) > 0.9 * big_source[1]  # it saw where the whole file's bytes lie
    assert proxy.bytes_down < 1 * MB, f"{proxy.bytes_down} of {big_source[1]} bytes"


def test_a_span_pull_reads_about_its_share(stack: Settings, big_source: tuple[str, int], tmp_path: Path) -> None:
    from services.puller.handler import span_args

    storage, proxy = proxied(stack)
    try:
        url = storage.presign_get(stack.bucket_sources, big_source[0])
        media.run_ffmpeg(span_args(url, 30.0, 6.0, tmp_path / "span.mp4"), timeout=120)
    finally:
        proxy.close()
    span = 8.0 / 60 * big_source[1]  # 6 s, its margin and the keyframe before, of 60 s
    assert proxy.bytes_down < span + 2 * READ_AHEAD, f"{proxy.bytes_down} of {big_source[1]} bytes"
    assert media.probe(tmp_path / "span.mp4").video is not None
