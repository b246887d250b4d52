"""Postgres: DATABASE_URL if set, else an embedded server from PyPI `pgserver`.

pgserver ships Postgres binaries; we run them ourselves with pg_ctl on a TCP port
on loopback, so the server outlives `reel up`. Postgres refuses to run as root,
so as root it runs as the system user `pgserver` (pgserver's own helpers make it).

pgserver's build has no OpenSSL, so with REEL_PG_TLS the server is Debian's
`postgresql` instead, in a data folder of its own: TLS only (`hostssl`), the stack's
certificate, SCRAM passwords; clients connect with sslmode=verify-full.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from devstack import tls as devstack_tls
from devstack.procs import Component, StackError, alive, wait_ready
from reel.settings import Settings

PG_USER = "pgserver"

with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
    warnings.simplefilter("ignore")
    from pgserver._commands import POSTGRES_BIN_PATH
    from pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )


DEBIAN_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


def _bin(name: str, settings: Settings | None = None) -> str:
    if settings is not None and settings.pg_tls:
        if not DEBIAN_BIN:
            raise StackError("REEL_PG_TLS needs Debian's Postgres server; run: apt-get install -y postgresql")
        return str(DEBIAN_BIN[-1] / name)
    return str(POSTGRES_BIN_PATH / name)


def _data(settings: Settings) -> Path:
    return settings.home / ("postgres-tls" if settings.pg_tls else "postgres")


def check_external(settings: Settings) -> None:
    try:
        with psycopg.connect(settings.database_url, connect_timeout=5) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise StackError(
            f"Postgres at DATABASE_URL cannot be reached ({first}); "
            "fix DATABASE_URL or unset it to use the embedded Postgres"
        ) from exc


def _as_user() -> str | None:
    if os.geteuid() != 0:
        return None
    ensure_user_exists(PG_USER)
    return PG_USER


def _prepare(settings: Settings, user: str | None) -> None:
    data = _data(settings)
    data.mkdir(parents=True, exist_ok=True)
    if user:
        ensure_prefix_permissions(data)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        shutil.chown(data, user, user)
        os.chmod(data, 0o700)
    if not (data / "PG_VERSION").exists():
        cmd = [_bin("initdb", settings), "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "utf8"]
        result = subprocess.run(cmd, capture_output=True, text=True, user=user)
        if result.returncode != 0:
            raise StackError(f"initdb failed: {result.stderr.strip()[-300:]}")
        if settings.pg_tls:
            _secure(settings, data, user)


def _secure(settings: Settings, data: Path, user: str | None) -> None:
    """TLS only from the network, with the stack's certificate, and a password (set on the
    first start, over the local socket, which stays trusted)."""
    tls = devstack_tls.ensure(settings.home)
    for src, name in ((tls.cert, "server.crt"), (tls.key, "server.key")):
        shutil.copyfile(src, data / name)
        os.chmod(data / name, 0o600)
        if user:
            shutil.chown(data / name, user, user)
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        conf.write("password_encryption = 'scram-sha-256'\n")
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 0.0.0.0/0 reject\n"
    )


def start(settings: Settings) -> Component:
    user = _as_user()
    _prepare(settings, user)
    data = _data(settings)
    log = settings.home / "logs" / "postgres.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if user:
        log.touch()
        shutil.chown(log, user, user)
    opts = f"-h 127.0.0.1 -p {settings.pg_port} -k {data}"
    cmd = [_bin("pg_ctl", settings), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"]
    result = subprocess.run(cmd, capture_output=True, text=True, user=user, start_new_session=True)
    if result.returncode != 0:
        raise StackError(f"Postgres did not start: {result.stdout.strip()[-200:]}; see {log}")
    pid = int((data / "postmaster.pid").read_text().split()[0])
    if settings.pg_tls:  # over the trusted local socket: the password TLS clients give
        with psycopg.connect(host=str(data), port=settings.pg_port, user="postgres", dbname="postgres") as conn:
            conn.execute(sql.SQL("ALTER USER postgres PASSWORD {}").format(sql.Literal(settings.pg_password)))
    wait_ready("postgres", pid, lambda: healthy(settings), settings.ready_timeout_s, log)
    return Component("postgres", pid, [settings.pg_port], str(log), shown(settings.postgres_url))


def shown(url: str) -> str:
    """The URL as `reel ps` shows and the stack's state file keeps it: no password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def stop(settings: Settings, component: Component) -> None:
    data = _data(settings)
    if not alive(component.pid):
        return
    cmd = [_bin("pg_ctl", settings), "-D", str(data), "-m", "fast", "-w", "stop"]
    subprocess.run(cmd, capture_output=True, text=True, user=_as_user())


def healthy(settings: Settings) -> bool:
    try:
        with psycopg.connect(settings.postgres_url, connect_timeout=2) as conn:
            conn.execute("select 1")
        return True
    except psycopg.Error:
        return False
