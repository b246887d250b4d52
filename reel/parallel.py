"""A few threads for a task's independent I/O steps (uploads, probes, copies). Each call
runs in the caller's context: the task's log fields (and so its fault arms' conditions)
go with it."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def _submit(pool: ThreadPoolExecutor, fn: Callable[..., R], *args: Any) -> Future[R]:
    return pool.submit(contextvars.copy_context().run, fn, *args)


def in_threads(fn: Callable[[T], R], items: Iterable[T], workers: int = 4) -> list[R]:
    """fn over items on a few threads; results in order, the first error raised."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [_submit(pool, fn, item) for item in items]
        return [f.result() for f in futures]


@contextmanager
def alongside(fn: Callable[..., R], *args: Any) -> Iterator[Future[R]]:
    """fn(*args) on a thread while the block runs; leaving the block waits for it."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield _submit(pool, fn, *args)
