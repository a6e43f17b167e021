"""Waiting for an eventually-true condition: the pipeline is asynchronous, so tests and benchmarks poll for outcomes."""

from __future__ import annotations

import time
from collections.abc import Callable
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
