"""Object storage against the real S3 server (SeaweedFS), through the minio adapter."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from reel.settings import Settings
from reel.storage import (
    PART_SIZE,
    ChecksumMismatch,
    MultipartUpload,
    ObjectMissing,
    ObjectRef,
    Storage,
    sha256_file,
)

UPLOADER = """
import sys
from pathlib import Path
from reel import settings
from reel.storage import MultipartUpload, Storage, sha256_file
storage = Storage.from_settings(settings.load())
path = Path(sys.argv[2])
up = MultipartUpload(storage, sys.argv[1], sys.argv[3], path, sha256_file(path))
done = 0
def progress(n):
    global done
    done += 1
    print("part", done, flush=True)
up.run(progress)
print("complete", flush=True)
"""


def test_put_get_stat_list_presign(storage: Storage, stack: Settings, tmp_path: Path) -> None:
    prefix = f"t-{uuid.uuid4()}/"
    ref = storage.put_bytes(stack.bucket_work, prefix + "a.bin", b"hello reel")
    storage.put_bytes(stack.bucket_work, prefix + "b/c.bin", b"x")
    assert ref.sha256 == hashlib.sha256(b"hello reel").hexdigest()
    st = storage.stat(stack.bucket_work, ref.key)
    assert st["size"] == 10 and st["sha256"] == ref.sha256
    assert sorted(storage.list(stack.bucket_work, prefix)) == [prefix + "a.bin", prefix + "b/c.bin"]
    assert storage.get_file(ref, tmp_path / "a.bin").read_bytes() == b"hello reel"
    with urllib.request.urlopen(storage.presign_get(stack.bucket_work, ref.key)) as resp:
        assert resp.read() == b"hello reel"
    assert storage.remove_prefix(stack.bucket_work, prefix) == 2
    assert storage.list(stack.bucket_work, prefix) == []


def test_checksum_mismatch_and_missing_object(storage: Storage, stack: Settings, tmp_path: Path) -> None:
    key = f"t-{uuid.uuid4()}/x.bin"
    ref = storage.put_bytes(stack.bucket_work, key, b"payload")
    wrong = ObjectRef(ref.bucket, ref.key, "0" * 64, ref.size)
    with pytest.raises(ChecksumMismatch):
        storage.get_file(wrong, tmp_path / "x.bin")
    with pytest.raises(ObjectMissing):
        storage.stat(stack.bucket_work, key + ".nope")
    with pytest.raises(ObjectMissing):
        storage.get_bytes("no-such-bucket-reel", "k")


def _random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    return path


def test_multipart_upload_resumes_after_sigkill(
    storage: Storage, stack: Settings, stack_env: dict[str, str], tmp_path: Path
) -> None:
    source = _random_file(tmp_path / "big.bin", 4 * PART_SIZE + 1234)  # 5 parts, last short
    total = 5
    key = f"t-{uuid.uuid4()}/big.bin"
    proc = subprocess.Popen(
        [sys.executable, "-c", UPLOADER, stack.bucket_outputs, str(source), key],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **stack_env},
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "part 2":
            break
    os.kill(proc.pid, signal.SIGKILL)  # mid-upload: two parts sent, nothing completed
    proc.wait()
    assert not storage.exists(stack.bucket_outputs, key)

    resumed = MultipartUpload(storage, stack.bucket_outputs, key, source, sha256_file(source))
    resumed.run()
    assert resumed.reused >= 2
    assert resumed.uploaded < total
    assert resumed.uploaded + resumed.reused == total
    ref = ObjectRef(stack.bucket_outputs, key, sha256_file(source), source.stat().st_size)
    assert sha256_file(storage.get_file(ref, tmp_path / "back.bin")) == ref.sha256
    assert storage.stat(stack.bucket_outputs, key)["sha256"] == ref.sha256


def test_multipart_upload_of_a_different_file_reuses_nothing(storage: Storage, stack: Settings, tmp_path: Path) -> None:
    key = f"t-{uuid.uuid4()}/big.bin"
    first = _random_file(tmp_path / "one.bin", 2 * PART_SIZE + 10)
    upload_id = storage.create_upload(stack.bucket_outputs, key, sha256_file(first))
    with open(first, "rb") as f:
        storage.client._upload_part(stack.bucket_outputs, key, f.read(PART_SIZE), None, upload_id, 1)
    second = _random_file(tmp_path / "two.bin", 2 * PART_SIZE + 10)
    other = MultipartUpload(storage, stack.bucket_outputs, key, second, sha256_file(second))
    other.run()
    assert other.reused == 0 and other.uploaded == 3
    ref = ObjectRef(stack.bucket_outputs, key, sha256_file(second), second.stat().st_size)
    storage.get_file(ref, tmp_path / "back.bin")  # raises on a mismatch
    assert storage.stat(stack.bucket_outputs, key)["sha256"] == ref.sha256


def test_small_parts_are_refused(storage: Storage, stack: Settings, tmp_path: Path) -> None:
    path = _random_file(tmp_path / "f.bin", 10)
    with pytest.raises(ValueError):
        MultipartUpload(storage, stack.bucket_outputs, "k", path, "", part_size=1024)
