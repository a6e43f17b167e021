"""Waiting for an eventually-true condition: the pipeline is asynchronous, so tests and benchmarks poll for outcomes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(fetch: Callable[[], T], timeout_s: float = 60.0, interval_s: float = 0.3) -> T:
    """Call ``fetch`` until it returns something truthy and return that; on timeout, fail with the last value."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = fetch()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not met in {timeout_s} s; last value: {last!r}")


async def wait_for_async(check: Callable[[], Awaitable[object]], what: str, timeout_s: float = 60.0,
                         interval_s: float = 0.2) -> None:
    """Await ``check`` until it returns something truthy; on timeout, fail saying ``what`` never happened."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(interval_s)
