"""One frozen settings object, read from REEL_* environment variables.

Every address and credential comes from here, so the same code runs against the
embedded stack or an external Kafka, S3/MinIO and Postgres. docs/settings.md
lists them; tests/unit/test_settings.py keeps that list honest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import quote

from reel import PROJECT_ROOT
from reel.tokens import DEV_TOKEN, DEV_TOKENS


@dataclass(frozen=True)
class Settings:
    home: Path = PROJECT_ROOT / ".reel"  # REEL_HOME: state of the embedded stack
    kafka_port: int = 19092  # embedded broker; its controller listens on the next port
    kafka_bootstrap: str = ""  # empty: the embedded broker at 127.0.0.1:kafka_port
    kafka_advertised_port: int = 0  # 0: kafka_port; the port the embedded broker tells clients to use
    kafka_libs: Path = PROJECT_ROOT / "stack" / "kafka" / "libs"  # broker jars, from Maven
    kafka_partitions: int = 16
    kafka_security: str = "plaintext"  # plaintext | sasl_ssl (TLS + SCRAM-SHA-512; the embedded broker too)
    kafka_username: str = "reel"  # the SCRAM user, with sasl_ssl
    kafka_password: str = "reel-dev-kafka-password"  # its password; set your own
    kafka_ca: str = ""  # CA bundle the broker's certificate is checked against (sasl_ssl); empty: the system's
    s3_port: int = 18333  # embedded SeaweedFS; uses P..P+4 and P+10000..P+10004, all below the ephemeral range
    s3_endpoint: str = ""  # empty: the embedded server at 127.0.0.1:s3_port
    s3_access_key: str = "reel"
    s3_secret_key: str = "reel-secret-key"
    s3_secure: bool = False  # S3 over TLS
    s3_ca: str = (
        ""  # CA bundle the store's certificate is checked against (by reel and its ffmpeg); empty: the system's
    )
    s3_region: str = "us-east-1"
    bucket_sources: str = "reel-sources"
    bucket_work: str = "reel-work"
    bucket_outputs: str = "reel-outputs"
    storage_retry_s: float = 30.0  # a storage call is retried in place this long before the attempt fails
    database_url: str = ""  # DATABASE_URL or REEL_DATABASE_URL; empty: embedded Postgres
    pg_port: int = 15432  # embedded Postgres
    pg_tls: bool = False  # embedded Postgres over TLS only (Debian's server; sslmode=verify-full, a password)
    pg_sslmode: str = ""  # libpq's sslmode for the database (verify-full: TLS, the server's name checked)
    pg_ca: str = ""  # CA bundle the database's certificate is checked against (libpq's sslrootcert)
    pg_password: str = "reel-dev-pg-password"  # with pg_tls: the embedded server's password; set your own
    metrics_port: int = 0  # each worker's /metrics, /healthz, /readyz; 0: a free port (9100 in the image)
    bind_address: str = "127.0.0.1"  # where /metrics and the tracker listen; 0.0.0.0 in a container
    tracker_port: int = 18080
    tracker_role: str = "all"  # all | projector | api | migrate (services/tracker/__main__.py)
    tracker_url: str = ""  # how viewers reach the tracker; empty: http://127.0.0.1:tracker_port
    tenant_tokens: str = DEV_TOKENS  # tenant:sha256-of-token pairs the tracker accepts (reel/tokens.py)
    tracker_token: str = DEV_TOKEN  # the bearer token the CLI presents to the tracker
    tracker_open: str = "/readyz,/metrics,/docs,/openapi.json"  # answered without a token (and /healthz)
    auth_failures: int = 10  # failed authentications a client may make per auth_window_s ...
    auth_window_s: float = 60.0  # ... before it is refused (HTTP 429) until the window frees
    playback_secret: str = "reel-dev-playback-secret"  # HMAC key of playlist tokens; set your own
    playback_ttl_s: float = 3600.0  # playback links live this long at least (and the video's length + 10 min)
    outputs_base_url: str = ""  # a CDN or public bucket in front of reel-outputs: links name it, unsigned
    playback_origins: str = "*"  # web origins whose pages may play the outputs (CORS), comma-separated
    tracker_batch: int = 500  # events the tracker projects per Postgres transaction
    callback_secret: str = "reel-dev-callback-secret"  # HMAC key of callbacks; set your own
    callback_max_attempts: int = 8  # a callback is abandoned after this many failed POSTs
    # An unfinished video is late (reel_video_lateness_max > 1, an alert) past this budget.
    video_budget_s: float = 300.0
    video_budget_per_media_s: float = 10.0
    callback_backoff_s: float = 2.0  # delay after the first failed POST; doubles each time
    callback_allow: str = ""  # hosts (or host:port) callbacks may reach though not public, comma-separated
    workers_per_kind: int = 1  # fleet size of the splitter, puller and pusher under `reel up`
    transcoders: int = 2  # fleet size of the transcoder under `reel up`
    autoscale: bool = False  # `reel up` scales each worker kind on its backlog (devstack/autoscaler.py)
    autoscale_min: int = 1  # replicas of each worker kind, at least (0 allowed locally)
    autoscale_max: int = 8  # and at most (never above its input topic's partitions)
    autoscale_target_s: float = 60.0  # backlog per replica: media-seconds weighted by stage cost
    autoscale_target_lag: float = 2.0  # the splitter's: videos waiting per replica
    autoscale_interval_s: float = 5.0
    autoscale_down_window_s: float = 300.0  # scale-in waits for the highest count asked in this window
    kubernetes_namespace: str = ""  # in a cluster: where the splitter reads the transcoders' StatefulSet
    transcoder_statefulset: str = "reel-transcoder"
    node_cpu: float = 0.0  # > 0: each slot i of `reel up` runs in a cgroup "node i" of this many cores
    stack_cpu: float = 0.4  # with node_cpu: the cores of the stack's own cgroup
    session_timeout_ms: int = 6000
    transaction_timeout_ms: int = 10000
    max_attempts: int = 3
    drain_timeout_s: float = 150.0  # a task is finished if it ends within this, on SIGTERM or a moved partition
    oversubscription: int = 3  # segments per live transcoder
    profiles_dir: str = ""  # your own encoding profiles (JSON, as in reel/profiles/); searched first
    plan_workers: int = 0  # plan segments for this many transcoders; 0: the live count
    min_segment_s: float = 12.0  # clamp of a segment's length (tests use 2)
    max_segment_s: float = 120.0
    max_duration_s: float = 4 * 3600.0  # longer sources are refused
    max_dimension: int = 7680  # pixels a side; larger sources are refused
    scratch_dir: str = ""  # local work files; empty: the system temp folder
    log_level: str = "INFO"
    ready_timeout_s: float = 90.0
    stalled_s: float = 60.0  # /healthz fails once a worker's loop has not turned for this long
    slot: int = 0  # REEL_SLOT: this worker's slot; names its transactional.id
    fault: str = ""  # test-only: a fault point at which the process SIGKILLs its group

    def __post_init__(self) -> None:
        # Derived defaults: an unset address means the embedded stack's.
        # Over TLS, the embedded stack's servers are checked against its own CA (devstack/tls.py).
        if not self.kafka_bootstrap:
            object.__setattr__(self, "kafka_bootstrap", f"127.0.0.1:{self.kafka_port}")
            if self.kafka_security != "plaintext" and not self.kafka_ca:
                object.__setattr__(self, "kafka_ca", str(self.stack_ca))
        if not self.s3_endpoint:
            object.__setattr__(self, "s3_endpoint", f"127.0.0.1:{self.s3_port}")
            if self.s3_secure and not self.s3_ca:
                object.__setattr__(self, "s3_ca", str(self.stack_ca))
        if not self.tracker_url:
            object.__setattr__(self, "tracker_url", f"http://127.0.0.1:{self.tracker_port}")

    @property
    def stack_ca(self) -> Path:
        """The embedded stack's CA, made by `reel up` when a link is to be encrypted."""
        return self.home / "tls" / "ca.pem"

    @property
    def embedded_postgres(self) -> bool:
        return not self.database_url

    @property
    def postgres_url(self) -> str:
        """The database's URL, with pg_sslmode and pg_ca as libpq parameters (a URL such
        as CloudNativePG's has none); the embedded server over TLS is checked against the
        stack's CA."""
        url, mode, ca = self.database_url, self.pg_sslmode, self.pg_ca
        if not url:
            user = f"postgres:{quote(self.pg_password, safe='')}" if self.pg_tls else "postgres"
            url = f"postgresql://{user}@127.0.0.1:{self.pg_port}/postgres"
            if self.pg_tls:
                mode, ca = mode or "verify-full", ca or str(self.stack_ca)
        params = [f"sslmode={mode}"] * bool(mode) + [f"sslrootcert={quote(ca)}"] * bool(ca)
        return url + ("&" if "?" in url else "?") + "&".join(params) if params else url


def _coerce(raw: str, kind: type) -> object:
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind is Path:
        return Path(raw).expanduser()
    return kind(raw)


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from REEL_<FIELD> variables (DATABASE_URL is honoured too)."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    hints = {"Path": Path, "str": str, "int": int, "float": float, "bool": bool}
    for field in fields(Settings):
        raw = env.get("REEL_" + field.name.upper())
        if raw is None and field.name == "database_url":
            raw = env.get("DATABASE_URL")
        if raw is not None:
            values[field.name] = _coerce(raw, hints[str(field.type)])
    return Settings(**values)  # type: ignore[arg-type]
