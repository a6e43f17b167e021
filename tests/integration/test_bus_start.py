"""Starting bus clients against a real Tansu broker that answers but cannot serve the topic yet: the client must wait
(``start_with_retry``), not raise, or a service's consumer loop dies for good at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka import AIOKafkaConsumer

from libs.common.broker import tansu_binary
from libs.common.bus import start_with_retry
from libs.common.ids import new_id
from libs.common.netutil import LOOPBACK, free_port, wait_for_port

pytestmark = pytest.mark.integration

REQUEST_TIMEOUT_MS = 7000  # above Tansu's ~5 s first JoinGroup; aiokafka's default (40 s) would make this test slow


@pytest.fixture
def misadvertised_broker() -> Iterator[tuple[str, int]]:
    """Tansu listening on one port but advertising another where nothing listens yet (as while a broker's advertised
    listener is still being wired up): bootstrap succeeds, then every metadata refresh fails, so aiokafka's
    ``_wait_on_metadata`` raises UnknownTopicOrPartitionError. Yields (bootstrap, advertised port)."""
    port, advertised = free_port(), free_port()
    process = subprocess.Popen(
        [tansu_binary(), "broker", "--listener-url", f"tcp://{LOOPBACK}:{port}",
         "--advertised-listener-url", f"tcp://{LOOPBACK}:{advertised}", "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_for_port(LOOPBACK, port)
        yield f"{LOOPBACK}:{port}", advertised
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.asynccontextmanager
async def forwarder(listen_port: int, target: str) -> AsyncIterator[None]:
    """A plain TCP relay on loopback: makes the broker's advertised address reachable."""
    host, port = target.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, LOOPBACK, listen_port)
    try:
        yield
    finally:
        server.close()


async def test_consumer_start_waits_while_its_topic_is_unavailable(misadvertised_broker: tuple[str, int]) -> None:
    bootstrap, advertised = misadvertised_broker
    consumer = AIOKafkaConsumer(
        f"t-{new_id()}", bootstrap_servers=bootstrap, group_id=f"g-{new_id()}", enable_auto_commit=False,
        request_timeout_ms=REQUEST_TIMEOUT_MS, session_timeout_ms=6000, heartbeat_interval_ms=500,
    )
    stop = asyncio.Event()
    start = asyncio.create_task(start_with_retry(consumer, "consumer:test", stop=stop))
    try:
        # one full metadata wait fails inside start(); the retry loop must absorb it
        await asyncio.sleep(REQUEST_TIMEOUT_MS / 1000 + 2)
        assert not start.done() or start.exception() is None, f"start gave up: {start.exception()!r}"
        async with forwarder(advertised, bootstrap):
            assert await asyncio.wait_for(start, 60) is True
            assert consumer.assignment()
    finally:
        stop.set()
        if not start.done():
            start.cancel()
        with contextlib.suppress(BaseException):
            await start
        await consumer.stop()


async def test_stop_during_a_blocked_start_returns_promptly(misadvertised_broker: tuple[str, int]) -> None:
    """One ``start()`` against such a broker blocks for aiokafka's whole request timeout (40 s, more than the
    service's 30 s shutdown grace); a stop request must end the runner at once, without an error."""
    from libs.common.bus import ConsumerRunner, RecordingPublisher
    from libs.common.events import PhotoUploaded
    from libs.common.settings import KafkaSettings

    bootstrap, _ = misadvertised_broker

    async def handler(_: object) -> None:
        pass

    runner = ConsumerRunner(KafkaSettings(bootstrap=bootstrap), group_id=f"g-{new_id()}",
                            topics=[PhotoUploaded.TOPIC], dlq_publisher=RecordingPublisher(), handler=handler)
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(2)  # bootstrap done, now inside the metadata wait
    assert not task.done()
    runner.stop()
    await asyncio.wait_for(task, 5)
