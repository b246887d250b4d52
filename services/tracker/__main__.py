"""Run the tracker: python -m services.tracker

The projector (Kafka -> Postgres) in one thread, the status endpoint (uvicorn) in another."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

import uvicorn

from reel.service import check_connections, start
from reel.storage import Storage
from services.tracker import callbacks
from services.tracker.api import create_app
from services.tracker.consume import Projector, refresh_gauges

log = logging.getLogger("services.tracker")


def main() -> int:
    proc = start("tracker")
    s = proc.settings
    check_connections(s)
    projector = Projector(s, proc.stopping)
    failed: list[BaseException] = []

    def project() -> None:
        try:
            projector.run()
        except BaseException as exc:  # noqa: BLE001 - the process exits with it
            failed.append(exc)
            log.exception("projector stopped")
            proc.stopping.set()

    projecting = threading.Thread(target=project, name="projector", daemon=True)
    projecting.start()
    threading.Thread(target=refresh_gauges, args=(s, proc.stopping), daemon=True).start()
    threading.Thread(target=callbacks.run, args=(s, proc.stopping), name="callbacks", daemon=True).start()
    app = create_app(s, Storage.from_settings(s))
    # log_config=None: uvicorn's loggers go through ours (one JSON object per line).
    config = uvicorn.Config(app, host=s.bind_address, port=s.tracker_port, log_level="warning", log_config=None)
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, name="http", daemon=True).start()
    projector.ready.wait(60)
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:  # "ready" means it answers
        time.sleep(0.05)
    log.info("%s ready on http://127.0.0.1:%d", proc.worker_id, s.tracker_port)
    proc.stopping.wait()
    server.should_exit = True
    projecting.join(timeout=15)  # it closes its consumer and connection itself
    log.info("%s stopped", proc.worker_id)
    if projecting.is_alive():  # wedged in a client call: do not hang in interpreter shutdown
        os._exit(1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
