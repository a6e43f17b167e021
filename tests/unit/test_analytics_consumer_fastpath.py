"""The analytics consumer's fast path is wired: bulk validation, RowBinary blocks, GC tuning undone at shutdown."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from libs.common.bus import Delivery, RecordingPublisher
from libs.common.bus.bulk import INGEST_GC_GEN0_THRESHOLD
from libs.common.events.examples import examples
from libs.common.settings import KafkaSettings, Settings
from services.analytics.app import _ingest_gc_context
from services.analytics.consumer import batch_writer, build_consumer
from services.analytics.ingest_rowbinary import RowBinaryBlock
from services.analytics.store import AnyInsertBlock, QueryResult


class BlockRecorder:
    database = "howhot"

    def __init__(self) -> None:
        self.blocks: list[AnyInsertBlock] = []

    async def insert_blocks(self, blocks: Sequence[AnyInsertBlock]) -> None:
        self.blocks.extend(blocks)

    async def query(self, sql: str, parameters: dict[str, Any]) -> QueryResult:
        return QueryResult([], [])

    async def ping(self) -> bool:
        return True


def test_the_consumer_validates_in_bulk_and_pipelines() -> None:
    settings = Settings(kafka=KafkaSettings(bootstrap="127.0.0.1:9"))
    runner = build_consumer(settings, BlockRecorder(), RecordingPublisher())
    assert runner._bulk_decode and runner._pipelined


async def test_batches_are_written_as_rowbinary_blocks() -> None:
    store = BlockRecorder()
    events = examples()
    await batch_writer(store)([Delivery(e, e.TOPIC, 0, i, e.to_bytes()) for i, e in enumerate(events)])
    assert store.blocks and all(isinstance(b, RowBinaryBlock) for b in store.blocks)
    assert sum(len(b.rows) for b in store.blocks) == len(events)


async def test_gc_tuning_is_undone_at_shutdown() -> None:
    before = gc.get_threshold()
    context = _ingest_gc_context(web.Application())
    await context.__anext__()
    assert gc.get_threshold()[0] == INGEST_GC_GEN0_THRESHOLD and gc.get_freeze_count() > 0
    assert [x async for x in context] == []  # runs the cleanup half
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
