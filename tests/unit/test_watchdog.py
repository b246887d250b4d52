from __future__ import annotations

import threading
import time

from reel.transaction import watchdog


def test_watchdog_fires_when_the_block_overruns_and_not_when_it_ends_in_time() -> None:
    overran = threading.Event()
    with watchdog(0.1, overran.set):
        overran.wait(5)  # a commit that hangs: the watchdog's thread fires
    assert overran.is_set()

    in_time = threading.Event()
    with watchdog(0.3, in_time.set):
        pass
    time.sleep(0.6)  # well past its deadline: cancelled on leaving the block
    assert not in_time.is_set()
