"""Run the tracker: python -m services.tracker

The projector (Kafka -> Postgres) in one thread, the status endpoint (uvicorn) in another;
or, in a cluster, each on its own (REEL_TRACKER_ROLE)."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable

import psycopg
import uvicorn

from reel import logs
from reel.service import Process, check_connections, start
from reel.settings import load
from reel.storage import Storage
from services.tracker import callbacks, db
from services.tracker.api import create_app
from services.tracker.consume import Projector, refresh_gauges

log = logging.getLogger("services.tracker")


def main() -> int:
    """REEL_TRACKER_ROLE: all (one process, as `reel up` runs it), projector (the one
    consumer of every event: projection, gauges, callbacks), api (the HTTP API, any number
    of replicas) or migrate (the schema, then exit: a Job or init container)."""
    role = load().tracker_role
    if role not in ROLES:
        log.error("REEL_TRACKER_ROLE=%r: one of %s", role, ", ".join(ROLES))
        return 2
    if role == "migrate":
        return migrate_only()
    proc = start("tracker", looping=role != "api")
    s = proc.settings
    check_connections(s)
    failed: list[BaseException] = []
    projecting = None
    if role in ("all", "projector"):
        projector = Projector(s, proc.stopping, on_turn=proc.health.tick)
        projecting = threading.Thread(target=_guard, args=(projector.run, proc, failed), name="projector", daemon=True)
        projecting.start()
        threading.Thread(target=refresh_gauges, args=(s, proc.stopping), daemon=True).start()
        threading.Thread(target=callbacks.run, args=(s, proc.stopping), name="callbacks", daemon=True).start()
        projector.ready.wait(60)
    server = None
    if role in ("all", "api"):
        app = create_app(s, Storage.from_settings(s))
        # log_config=None: uvicorn's loggers go through ours (one JSON object per line).
        config = uvicorn.Config(app, host=s.bind_address, port=s.tracker_port, log_level="warning", log_config=None)
        server = uvicorn.Server(config)
        threading.Thread(target=server.run, name="http", daemon=True).start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:  # "ready" means it answers
            time.sleep(0.05)
    log.info("%s ready (%s) on http://%s:%d", proc.worker_id, role, s.bind_address, s.tracker_port)
    proc.stopping.wait()
    if server is not None:
        server.should_exit = True
    if projecting is not None:
        projecting.join(timeout=15)  # it closes its consumer and connection itself
    log.info("%s stopped", proc.worker_id)
    if projecting is not None and projecting.is_alive():  # wedged in a client call: do not hang in shutdown
        os._exit(1)
    return 1 if failed else 0


ROLES = ("all", "projector", "api", "migrate")


def _guard(run: Callable[[], None], proc: Process, failed: list[BaseException]) -> None:
    try:
        run()
    except BaseException as exc:  # noqa: BLE001 - the process exits with it
        failed.append(exc)
        log.exception("projector stopped")
        proc.stopping.set()


def migrate_only() -> int:
    """What a deployment needs before anything runs: the schema and the buckets. Both
    idempotent, so every tracker pod may run it first (an init container)."""
    s = load()
    logs.setup("tracker-migrate", s.log_level)
    with psycopg.connect(s.postgres_url, autocommit=True, connect_timeout=10) as conn:
        db.migrate(conn)  # one migrator at a time (an advisory lock)
        applied = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    Storage.from_settings(s).ensure_buckets()
    buckets = ", ".join((s.bucket_sources, s.bucket_work, s.bucket_outputs))
    log.info("schema at %s; buckets %s", applied[-1] if applied else "nothing", buckets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
