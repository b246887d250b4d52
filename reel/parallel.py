"""A few threads for a task's independent I/O steps (uploads, probes, copies)."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def in_threads(fn: Callable[[T], R], items: Iterable[T], workers: int = 4) -> list[R]:
    """fn over items on a few threads; results in order, the first error raised. Each
    call runs in the caller's context: the task's log fields (and so its fault arms'
    conditions) go with it."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(contextvars.copy_context().run, fn, item) for item in items]
        return [f.result() for f in futures]
