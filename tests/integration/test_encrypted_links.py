"""Every link encrypted and authenticated, on a stack of its own: Kafka over SASL_SSL with
SCRAM-SHA-512 (the embedded broker made that way: its CA and certificate generated at
`reel up`, the SCRAM user created when its storage is formatted), S3 over TLS, Postgres
(Debian's server) TLS-only with sslmode=verify-full. A video goes through every service
that way and its output is read back over verified TLS; plaintext clients, wrong
passwords and clients that do not trust the CA are refused; no credential shows in a log."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import KafkaException

from devstack import fleet as fleet_proc
from devstack.clips import synthetic
from reel import media
from reel.kafka import admin_client
from reel.settings import Settings
from reel.storage import Storage
from reel.submit import submit, wait
from tests import stacks
from tests.e2e.media_checks import download, judge

PASSWORD = "planted-kafka-password-5f1c"
S3_SECRET = "planted-s3-secret-9d2e"
PG_PASSWORD = "planted-pg-password-77ab"
ENV = {
    "REEL_S3_SECURE": "1",
    "REEL_S3_SECRET_KEY": S3_SECRET,
    "REEL_PG_TLS": "1",
    "REEL_PG_PASSWORD": PG_PASSWORD,
    "REEL_KAFKA_PORT": "26192",
    "REEL_S3_PORT": "20433",
    "REEL_PG_PORT": "26532",
    "REEL_TRACKER_PORT": "26180",
    "REEL_KAFKA_SECURITY": "sasl_ssl",
    "REEL_KAFKA_PASSWORD": PASSWORD,
    "REEL_MIN_SEGMENT_S": "2",
    "REEL_TRANSCODERS": "1",
}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Settings]]:
    with stacks.own_stack(tmp_path_factory.mktemp("secured") / "home", ENV) as stack:
        yield stack


def refused(s: Settings) -> str:
    with pytest.raises(KafkaException) as exc:
        admin_client(s).list_topics(timeout=4)
    return str(exc.value)


def test_the_broker_takes_only_authenticated_tls_clients(secured: tuple[dict[str, str], Settings]) -> None:
    _env, s = secured
    assert s.kafka_ca == s.s3_ca == str(s.stack_ca)  # the embedded stack's own CA
    assert admin_client(s).list_topics(timeout=10).topics  # TLS verified, SCRAM accepted
    refused(dataclasses.replace(s, kafka_security="plaintext"))
    refused(dataclasses.replace(s, kafka_password="not-the-password"))
    refused(dataclasses.replace(s, kafka_ca="/etc/ssl/certs/ca-certificates.crt"))  # the system's CAs do not know it


def test_storage_and_postgres_take_only_verified_tls(secured: tuple[dict[str, str], Settings]) -> None:
    _env, s = secured
    assert Storage.from_settings(s).ping()  # https, the stack's CA
    with pytest.raises(urllib.error.URLError):  # plain http to the S3 port
        urllib.request.urlopen(f"http://{s.s3_endpoint}/healthz", timeout=5)
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):  # the system's CAs
        urllib.request.urlopen(f"https://{s.s3_endpoint}/healthz", timeout=5)
    with psycopg.connect(s.postgres_url, connect_timeout=5) as conn:
        assert conn.execute("SHOW ssl").fetchone() == ("on",)
        assert conn.info.pgconn.ssl_in_use
    base = f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{s.pg_port}/postgres"
    for url, says in (
        (f"{base}?sslmode=disable", "no encryption"),  # pg_hba: hostnossl ... reject
        (base.replace(PG_PASSWORD, "wrong") + f"?sslmode=verify-full&sslrootcert={s.stack_ca}", "password"),
        (f"{base}?sslmode=verify-full&sslrootcert=system", "certificate verify failed"),
    ):
        with pytest.raises(psycopg.OperationalError, match=says):
            psycopg.connect(url, connect_timeout=5)


def test_a_video_goes_through_every_service_over_the_encrypted_broker(
    secured: tuple[dict[str, str], Settings], tmp_path: Path
) -> None:
    env, s = secured
    proc = fleet_proc.start(env, tmp_path / "supervisor.log", s.tracker_port)
    try:
        clip = synthetic(tmp_path / "clip.mp4", seconds=2)
        sub = submit(s, Storage.from_settings(s), clip, "tiny", ["mp4"], request_id="encrypted-links")
        end = wait(s, sub.video_id, sub.submitted_ms, timeout=300)
        assert end["topic"] == "video.completed", end
        mp4 = next(o["object"] for o in end["outputs"] if o["kind"] == "mp4")
        url = Storage.from_settings(s).presign_get(mp4["bucket"], mp4["key"])
        assert url.startswith("https://")
        probe = media.probe(url, upload=True, ca_file=s.s3_ca)  # ffmpeg verifying the store's certificate
        assert probe.video is not None and probe.duration == pytest.approx(2.0, abs=0.1)
        with pytest.raises(media.MediaError):  # ... and refusing it against the system's CAs
            media.probe(url, upload=True)
        out = tmp_path / "out"
        download(s, Storage.from_settings(s), sub.video_id, out)  # over verified TLS, checked by sha256
        judge(clip, out)  # frames, sizes, A/V sync, durations: what a viewer sees
        shown = subprocess.run(
            [sys.executable, "-m", "reel.cli", "ps"], env=env, capture_output=True, text=True, timeout=60
        )
        assert shown.returncode == 0 and "postgres" in shown.stdout, shown.stderr
    finally:
        fleet_proc.halt(proc)
    kafka = s.home / "kafka"
    logs = [
        *s.home.joinpath("logs").glob("*.log"),
        tmp_path / "supervisor.log",
        kafka / "server.log",
        kafka / "console.log",
    ]
    assert len(logs) > 5
    planted = (PASSWORD, S3_SECRET, PG_PASSWORD)
    texts = {p.name: p.read_text(errors="replace") for p in logs if p.exists()} | {"reel ps": shown.stdout}
    leaked = [(where, x) for where, text in texts.items() for x in planted if x in text]
    assert not leaked, leaked
