"""When a pipeline stage stops waiting for the blob store and fails the photo instead.

A store that is down answers nothing: the consumer waits (BlobStoreUnavailable is a TransientError) and loses nothing.
But a store that keeps failing one photo's requests (a broken object, a flapping node, a stuck bucket partition)
would keep that photo "processing" forever and its partition blocked behind it. So each message gets a deadline
measured from its first storage failure: before it, storage errors propagate (the consumer backs off and retries);
after it, the stage records a failed status with a reason and dead-letters the message (``howhot dlq replay`` once
the store is healthy). If even the failed status cannot be written, the store is down after all and the wait goes on.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from libs.common.blobs.base import BlobStoreUnavailable
from libs.common.settings import BlobSettings

DEFAULT_GIVE_UP_AFTER_S: float = BlobSettings.model_fields["give_up_after_s"].default
log = logging.getLogger(__name__)

MAX_TRACKED = 10_000  # messages failing at once; older entries (partitions moved away mid-outage) are dropped


class StorageGiveUp:
    """Per-message clocks started by the first storage failure; shared by all concurrent handlers of one stage."""

    def __init__(self, give_up_after_s: float = DEFAULT_GIVE_UP_AFTER_S, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.give_up_after_s = give_up_after_s
        self._clock = clock
        self._first_failure: OrderedDict[str, float] = OrderedDict()

    def expired(self, message_id: str) -> bool:
        """Note a storage failure of ``message_id``; true once its first failure is ``give_up_after_s`` old."""
        now = self._clock()
        first = self._first_failure.setdefault(message_id, now)
        while len(self._first_failure) > MAX_TRACKED:
            self._first_failure.popitem(last=False)
        return now - first >= self.give_up_after_s

    def forget(self, message_id: str) -> None:
        self._first_failure.pop(message_id, None)

    def tracked(self) -> int:
        return len(self._first_failure)

    async def run(
        self,
        message_id: str,
        work: Callable[[], Awaitable[None]],
        give_up: Callable[[], Awaitable[None]],
    ) -> None:
        """Run ``work``; on a storage failure re-raise it until the deadline passes, then call ``give_up``.

        ``give_up`` records the failure (and usually raises InvalidEvent to dead-letter the message). The clock is
        kept only while ``give_up`` itself hits the unavailable store, so a recovered store gets ``work`` retried
        first and a photo is never failed for an outage that is already over.
        """
        try:
            await work()
        except BlobStoreUnavailable as exc:
            if not self.expired(message_id):
                raise
            log.error("storage kept failing; giving up on the message",
                      extra={"message_id": message_id, "after_s": self.give_up_after_s, "error": repr(exc)})
            try:
                await give_up()
            except BlobStoreUnavailable:
                raise
            except BaseException:
                self.forget(message_id)
                raise
        self.forget(message_id)
