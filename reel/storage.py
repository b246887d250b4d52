"""Object storage on the minio client: checked objects and resumable multipart uploads.

Every object written here carries its sha256 in metadata, and events carry the
key and checksum of every object they point at; readers verify before use.
minio-py's multipart calls are private API (pinned minio 7.2.x); they are used
only in the multipart section of `Storage` below.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import io
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TypeVar

import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.datatypes import Part
from minio.error import S3Error

from reel import metrics
from reel.faults import fault_point
from reel.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

PART_SIZE = 8 * 1024 * 1024  # fixed, so a re-run cuts the same parts and can reuse them
MIN_PART = 5 * 1024 * 1024
SHA_META = "sha256"
CHUNK = 1024 * 1024


class ChecksumMismatch(Exception):
    """An object's bytes do not hash to what the event said."""


class ObjectMissing(Exception):
    """The key does not exist (NoSuchKey) or its bucket does not (NoSuchBucket)."""


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str
    sha256: str
    size: int

    def as_record(self) -> dict[str, object]:
        return {"bucket": self.bucket, "key": self.key, "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_record(cls, rec: dict[str, object]) -> ObjectRef:
        return cls(str(rec["bucket"]), str(rec["key"]), str(rec["sha256"]), int(rec["size"]))  # type: ignore[call-overload]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def transient(exc: BaseException) -> bool:
    if isinstance(exc, S3Error):
        return exc.code in ("InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout")
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


def retrying(call: Callable[[], T], budget_s: float = 30.0, what: str = "storage call") -> T:
    """Retry a storage call in place on transient faults, with backoff and jitter."""
    deadline = time.monotonic() + budget_s
    delay = 0.2
    while True:
        try:
            return call()
        except Exception as exc:
            if not transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (%r); retrying in %.1fs", what, exc, delay)
            metrics.STORAGE_RETRIES.inc()
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 5.0)


def _missing(exc: S3Error) -> bool:
    return exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject")


class Storage:
    def __init__(self, client: Minio, settings: Settings, retry_budget_s: float = 30.0) -> None:
        self.client = client
        self.settings = settings
        self.retry_budget_s = retry_budget_s

    @classmethod
    def from_settings(cls, settings: Settings, retry_budget_s: float | None = None) -> Storage:
        # Few, short retries inside urllib3; our own loop owns the retry budget.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=3, read=60),
            retries=urllib3.Retry(total=1, backoff_factor=0.1),
            maxsize=8,
            cert_reqs="CERT_REQUIRED",  # with s3_secure: the store's certificate, against s3_ca or the system's
            ca_certs=settings.s3_ca or None,
        )
        client = Minio(
            settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=settings.s3_secure,
            region=settings.s3_region,
            http_client=http,
        )
        return cls(client, settings, settings.storage_retry_s if retry_budget_s is None else retry_budget_s)

    def _retry(self, call: Callable[[], T], what: str) -> T:
        return retrying(call, self.retry_budget_s, what)

    # -- buckets ---------------------------------------------------------------
    def ping(self) -> bool:
        self.client.list_buckets()
        return True

    def ensure_buckets(self) -> None:
        s = self.settings
        for bucket in (s.bucket_sources, s.bucket_work, s.bucket_outputs):
            if not self._retry(partial(self.client.bucket_exists, bucket), "bucket_exists"):
                try:
                    self.client.make_bucket(bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
        self.allow_playback(s.bucket_outputs, [o.strip() for o in s.playback_origins.split(",") if o.strip()])

    def allow_playback(self, bucket: str, origins: list[str]) -> bool:
        """A CORS rule letting web pages of `origins` GET the bucket's objects (the presigned
        URL is still what authorises each one): players fetch media by XHR from another
        origin than the page's. False where the server has no per-bucket CORS (MinIO sets
        it server-wide, MINIO_API_CORS_ALLOW_ORIGIN)."""
        rules = "".join(f"<AllowedOrigin>{o}</AllowedOrigin>" for o in origins)
        body = (
            f"<CORSConfiguration><CORSRule>{rules}<AllowedMethod>GET</AllowedMethod>"
            "<AllowedMethod>HEAD</AllowedMethod><AllowedHeader>*</AllowedHeader>"
            "<ExposeHeader>Content-Length</ExposeHeader><ExposeHeader>Content-Range</ExposeHeader>"
            "<MaxAgeSeconds>3600</MaxAgeSeconds></CORSRule></CORSConfiguration>"
        ).encode()
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        try:  # minio-py has no bucket-CORS call: the signed request is made by its own executor
            self._retry(
                lambda: self.client._execute(
                    "PUT", bucket, body=body, headers={"Content-MD5": md5}, query_params={"cors": ""}
                ),
                "put bucket cors",
            )
        except S3Error as exc:
            if exc.code not in ("NotImplemented", "MethodNotAllowed"):
                raise
            log.info("%s: the server keeps no per-bucket CORS rule (%s)", bucket, exc.code)
            return False
        return True

    # -- objects ---------------------------------------------------------------
    def put_bytes(self, bucket: str, key: str, data: bytes) -> ObjectRef:
        digest = hashlib.sha256(data).hexdigest()
        self._retry(
            lambda: self.client.put_object(bucket, key, io.BytesIO(data), len(data), metadata={SHA_META: digest}),
            f"put {bucket}/{key}",
        )
        return ObjectRef(bucket, key, digest, len(data))

    def put_file(
        self,
        bucket: str,
        key: str,
        path: Path,
        progress: Callable[[int], None] | None = None,
    ) -> ObjectRef:
        """Upload a file; large files go through the resumable multipart upload."""
        size = path.stat().st_size
        digest = sha256_file(path)
        if size <= PART_SIZE:
            self._retry(
                lambda: self.client.fput_object(bucket, key, str(path), metadata={SHA_META: digest}),
                f"put {bucket}/{key}",
            )
            if progress:
                progress(size)
        else:
            MultipartUpload(self, bucket, key, path, digest).run(progress)
        return ObjectRef(bucket, key, digest, size)

    def copy(self, ref: ObjectRef, bucket: str, key: str) -> ObjectRef:
        """Server-side copy; the sha256 metadata travels with the object."""
        source = CopySource(ref.bucket, ref.key)
        self._guard_missing(lambda: self.client.copy_object(bucket, key, source), ref.bucket, ref.key)
        return ObjectRef(bucket, key, ref.sha256, ref.size)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        return self.get_range(bucket, key, 0, 0)

    def get_range(self, bucket: str, key: str, offset: int, length: int) -> bytes:
        """length bytes from offset (0: to the end; fewer at the end of the object, none past it)."""

        def call() -> bytes:
            try:
                resp = self.client.get_object(bucket, key, offset=offset, length=length)
            except S3Error as exc:
                if exc.code == "InvalidRange" and offset > 0:
                    return b""
                raise
            try:
                return bytes(resp.read())
            finally:
                resp.close()
                resp.release_conn()

        return self._guard_missing(call, bucket, key)

    def download(self, bucket: str, key: str, path: Path, progress: Callable[[int], None] | None = None) -> None:
        """Append the object's bytes to `path` from its current length (a ranged GET): a
        download cut off, in this process or an earlier one, goes on where it stopped."""

        def call() -> None:
            offset = path.stat().st_size if path.exists() else 0
            try:
                resp = self.client.get_object(bucket, key, offset=offset)
            except S3Error as exc:
                if exc.code == "InvalidRange" and offset > 0:
                    return  # it was all there
                raise
            try:
                with open(path, "ab") as f:  # small reads: a cut loses at most the one in hand
                    for chunk in resp.stream(64 * 1024):
                        f.write(chunk)
                        if progress:
                            progress(len(chunk))
            finally:
                resp.close()
                resp.release_conn()

        path.parent.mkdir(parents=True, exist_ok=True)
        self._guard_missing(call, bucket, key)

    def get_file(self, ref: ObjectRef, path: Path) -> Path:
        """Download an object and verify it hashes to the event's checksum."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._guard_missing(lambda: self.client.fget_object(ref.bucket, ref.key, str(path)), ref.bucket, ref.key)
        actual = sha256_file(path)
        if actual != ref.sha256:
            raise ChecksumMismatch(f"{ref.bucket}/{ref.key}: sha256 {actual} != {ref.sha256}")
        return path

    def stat(self, bucket: str, key: str) -> dict[str, object]:
        st = self._guard_missing(lambda: self.client.stat_object(bucket, key), bucket, key)
        meta = {k.lower(): v for k, v in (st.metadata or {}).items()}
        return {
            "size": st.size,
            "etag": st.etag,
            "sha256": meta.get("x-amz-meta-" + SHA_META),
            "last_modified": st.last_modified,
        }

    def ref(self, bucket: str, key: str) -> ObjectRef:
        """An ObjectRef for a stored object, from its size and sha256 metadata."""
        st = self.stat(bucket, key)
        if not st["sha256"]:
            raise ChecksumMismatch(f"{bucket}/{key} carries no sha256")
        return ObjectRef(bucket, key, str(st["sha256"]), int(st["size"]))  # type: ignore[call-overload]

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.stat(bucket, key)
        except ObjectMissing:
            return False
        return True

    def list(self, bucket: str, prefix: str = "", recursive: bool = True) -> list[str]:
        return self._retry(
            lambda: [str(o.object_name) for o in self.client.list_objects(bucket, prefix=prefix, recursive=recursive)],
            f"list {bucket}/{prefix}",
        )

    def remove_prefix(self, bucket: str, prefix: str) -> int:
        keys = self.list(bucket, prefix)
        for key in keys:
            self._retry(partial(self.client.remove_object, bucket, key), f"remove {key}")
        return len(keys)

    def presign_get(self, bucket: str, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        return self.client.presigned_get_object(bucket, key, expires=expires)

    # -- multipart uploads: resumed by `MultipartUpload`, or by clients through presigned parts
    def open_uploads(self, bucket: str, key: str) -> builtins.list[str]:  # `list` is a method here
        result = self._retry(lambda: self.client._list_multipart_uploads(bucket, prefix=key), "list uploads")
        return [str(u.upload_id) for u in result.uploads if u.object_name == key]

    def create_upload(self, bucket: str, key: str, sha256: str) -> str:
        headers: dict[str, str | list[str] | tuple[str]] = {"x-amz-meta-" + SHA_META: sha256}
        return self._retry(lambda: self.client._create_multipart_upload(bucket, key, headers), "create upload")

    def uploaded_parts(self, bucket: str, key: str, upload_id: str) -> dict[int, tuple[str, int]]:
        """Each part the store holds: number -> (ETag, size)."""
        parts: dict[int, tuple[str, int]] = {}
        marker: str | None = None
        while True:
            res = self._retry(
                partial(self.client._list_parts, bucket, key, upload_id, part_number_marker=marker), "list parts"
            )
            for part in res.parts:
                parts[part.part_number] = (part.etag.strip('"'), int(part.size or 0))
            if not res.is_truncated:
                return parts
            marker = res.next_part_number_marker

    def complete_upload(self, bucket: str, key: str, upload_id: str, etags: dict[int, str]) -> None:
        parts = [Part(n, etags[n]) for n in sorted(etags)]
        self._retry(lambda: self.client._complete_multipart_upload(bucket, key, upload_id, parts), "complete upload")

    def presign_part(self, bucket: str, key: str, upload_id: str, number: int, expires: timedelta) -> str:
        """A URL a client PUTs one part to, holding no credentials itself."""
        query: dict[str, str | list[str] | tuple[str]] = {"uploadId": upload_id, "partNumber": str(number)}
        return self.client.get_presigned_url("PUT", bucket, key, expires=expires, extra_query_params=query)

    def _guard_missing(self, call: Callable[[], T], bucket: str, key: str) -> T:
        try:
            return self._retry(call, f"{bucket}/{key}")
        except S3Error as exc:
            if _missing(exc):
                raise ObjectMissing(f"{bucket}/{key} does not exist ({exc.code})") from exc
            raise


def _parts(path: Path, part_size: int) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as f:
        number = 1
        while chunk := f.read(part_size):
            yield number, chunk
            number += 1


class MultipartUpload:
    """A multipart upload that resumes: after a kill, the next run finds the open upload,
    lists its parts and uploads only those whose ETag is not the MD5 of the local part."""

    def __init__(
        self,
        storage: Storage,
        bucket: str,
        key: str,
        path: Path,
        sha256: str,
        part_size: int = PART_SIZE,
    ) -> None:
        if part_size < MIN_PART:
            raise ValueError("S3 parts are at least 5 MiB (except the last)")
        self.storage = storage
        self.client = storage.client
        self.bucket, self.key, self.path, self.sha256 = bucket, key, path, sha256
        self.part_size = part_size
        self.uploaded = 0  # parts sent by this run
        self.reused = 0  # parts found complete and identical

    def _open_uploads(self) -> list[str]:
        return self.storage.open_uploads(self.bucket, self.key)

    def _listed_parts(self, upload_id: str) -> dict[int, str]:
        return {n: etag for n, (etag, _size) in self.storage.uploaded_parts(self.bucket, self.key, upload_id).items()}

    def run(self, progress: Callable[[int], None] | None = None) -> None:
        local = {n: hashlib.md5(d).hexdigest() for n, d in _parts(self.path, self.part_size)}
        open_ids = self._open_uploads()
        upload_id, done = None, {}
        if open_ids:
            upload_id, done = open_ids[-1], self._listed_parts(open_ids[-1])
            # A part that differs means another file was being uploaded: start over.
            if any(local.get(n) != etag for n, etag in done.items()):
                self.abort_all()
                upload_id, done = None, {}
        if upload_id is None:
            upload_id = self.storage.create_upload(self.bucket, self.key, self.sha256)
        parts: dict[int, str] = {}
        for number, data in _parts(self.path, self.part_size):
            if done.get(number) == local[number]:
                self.reused += 1
                metrics.UPLOAD_PARTS.labels("reused").inc()
            else:
                self.storage._retry(
                    partial(
                        self.client._upload_part,
                        self.bucket,
                        self.key,
                        data,
                        None,
                        upload_id,
                        number,
                    ),
                    f"upload part {number}",
                )
                self.uploaded += 1
                metrics.UPLOAD_PARTS.labels("sent").inc()
                if number < len(local):
                    fault_point("mid-part")
            parts[number] = local[number]
            if progress:
                progress(len(data))
        self.storage.complete_upload(self.bucket, self.key, upload_id, parts)
        log.info(
            "uploaded %s/%s in %d parts: %d sent, %d reused from an earlier upload",
            self.bucket,
            self.key,
            len(local),
            self.uploaded,
            self.reused,
        )

    def abort_all(self) -> int:
        """Abort every open upload of this key (a 'whole pod lost' drill)."""
        ids = self._open_uploads()
        for upload_id in ids:
            self.client._abort_multipart_upload(self.bucket, self.key, upload_id)
        return len(ids)
