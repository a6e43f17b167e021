"""StorageGiveUp, the stages' deadline for storage errors, driven by a controlled clock (no waiting in real time).

The pipeline test (test_faults_blobstore_pipeline.py) shows the behaviour end to end; this one pins the edge cases
that are slow or racy to reach there: a store that is down for the give-up write too, and recovery after the deadline.
"""

from __future__ import annotations

import pytest

from libs.common.blobs import BlobStoreUnavailable, StorageGiveUp
from libs.common.events import InvalidEvent

pytestmark = pytest.mark.asyncio

DEADLINE_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Stage:
    """Work and give-up steps whose storage health the test switches."""

    def __init__(self) -> None:
        self.work_fails = True
        self.give_up_fails = False
        self.work_calls = 0
        self.gave_up = 0

    async def work(self) -> None:
        self.work_calls += 1
        if self.work_fails:
            raise BlobStoreUnavailable("S3 failed after retries: InternalError")

    async def give_up(self) -> None:
        if self.give_up_fails:
            raise BlobStoreUnavailable("S3 unreachable")
        self.gave_up += 1
        raise InvalidEvent("storage_unavailable: failed")


async def test_storage_errors_propagate_until_the_deadline_then_the_photo_is_failed() -> None:
    clock, stage = Clock(), Stage()
    give_up = StorageGiveUp(DEADLINE_S, clock=clock)
    for clock.now in (0.0, 4.0, DEADLINE_S - 0.1):
        with pytest.raises(BlobStoreUnavailable):  # the consumer backs off and redelivers
            await give_up.run("m1", stage.work, stage.give_up)
    clock.now = DEADLINE_S
    with pytest.raises(InvalidEvent):  # failed status written, message dead-lettered
        await give_up.run("m1", stage.work, stage.give_up)
    assert stage.gave_up == 1
    assert give_up.tracked() == 0


async def test_a_store_down_for_the_failure_record_too_keeps_waiting_and_recovery_does_the_work() -> None:
    clock, stage = Clock(), Stage()
    give_up = StorageGiveUp(DEADLINE_S, clock=clock)
    with pytest.raises(BlobStoreUnavailable):
        await give_up.run("m1", stage.work, stage.give_up)
    stage.give_up_fails = True
    clock.now = 3 * DEADLINE_S
    with pytest.raises(BlobStoreUnavailable):  # nothing could be recorded: still a transient wait, not a loss
        await give_up.run("m1", stage.work, stage.give_up)
    stage.work_fails = False  # the store is back: the work is retried first and the photo is not failed
    await give_up.run("m1", stage.work, stage.give_up)
    assert stage.gave_up == 0
    assert give_up.tracked() == 0


async def test_each_message_has_its_own_clock() -> None:
    clock, stage = Clock(), Stage()
    give_up = StorageGiveUp(DEADLINE_S, clock=clock)
    with pytest.raises(BlobStoreUnavailable):
        await give_up.run("old", stage.work, stage.give_up)
    clock.now = DEADLINE_S
    with pytest.raises(BlobStoreUnavailable):  # a newer message's first failure: its clock starts now
        await give_up.run("new", stage.work, stage.give_up)
    with pytest.raises(InvalidEvent):
        await give_up.run("old", stage.work, stage.give_up)
    assert give_up.tracked() == 1
