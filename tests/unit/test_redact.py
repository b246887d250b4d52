from __future__ import annotations

from datetime import timedelta

from minio import Minio

from reel.redact import object_of, redact

ACCESS, SECRET = "AKPLANTEDACCESS42", "planted-secret-0f9e"


def presigned(bucket: str, key: str) -> str:
    # minio signs locally when it knows the region: no server needed.
    client = Minio("127.0.0.1:9", access_key=ACCESS, secret_key=SECRET, secure=False, region="us-east-1")
    return client.presigned_get_object(bucket, key, expires=timedelta(hours=1))


def test_a_presigned_url_in_ffmpeg_words_becomes_its_bucket_and_key() -> None:
    url = presigned("reel-sources", "uploads/ab12/my clip.mp4")
    assert "X-Amz-Signature" in url and ACCESS in url  # the credential rides in the query
    line = f"[in#0 @ 0x55] Error opening input: {url}: Invalid data found when processing input"
    got = redact(f"ffprobe failed: {line} | Input #0, mov, from '{url}':")
    name = "reel-sources/uploads/ab12/my clip.mp4"
    assert got == (
        f"ffprobe failed: [in#0 @ 0x55] Error opening input: {name}: "
        f"Invalid data found when processing input | Input #0, mov, from '{name}':"
    )
    assert ACCESS not in got and "X-Amz" not in got


def test_virtual_host_urls_cut_queries_and_plain_text() -> None:
    assert object_of("https://media.s3.eu-west-1.amazonaws.com/a/b.ts?X-Amz-Signature=ff") == "media/a/b.ts"
    assert object_of("http://127.0.0.1:18333/reel-work/v/0/span.mp4") == "reel-work/v/0/span.mp4"
    # A query printed without its URL (a cut line) loses its parameters too.
    assert redact("params X-Amz-Credential=AK%2F2026&X-Amz-Signature=abc end") == "params end"
    assert redact("nothing to hide: /tmp/reel-pull-1/span.mp4") == "nothing to hide: /tmp/reel-pull-1/span.mp4"
