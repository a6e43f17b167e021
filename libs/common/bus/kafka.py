"""aiokafka connection details shared by producers, consumers and admin: one place that reads KafkaSettings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from libs.common.events import TOPICS, dlq_topic
from libs.common.settings import KafkaSettings

log = logging.getLogger(__name__)

CONNECT_BACKOFF_MAX_S = 5.0  # services wait for a broker that is down at start; cap the retry interval


class BrokerNotConfigured(RuntimeError):
    """No bootstrap servers: run through ``howhot up`` (embedded Tansu) or set HOWHOT_KAFKA_BOOTSTRAP."""


def client_kwargs(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments common to every aiokafka client."""
    if not settings.bootstrap:
        raise BrokerNotConfigured("HOWHOT_KAFKA_BOOTSTRAP is empty: start the stack with `howhot up` or set it")
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism:
        kwargs["sasl_mechanism"] = settings.sasl_mechanism
        kwargs["sasl_plain_username"] = settings.sasl_username
        kwargs["sasl_plain_password"] = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    return kwargs


async def start_with_retry(
    client: Any, what: str, deadline_s: float | None = None, stop: asyncio.Event | None = None
) -> bool:
    """Start an aiokafka client, retrying with capped backoff while the broker cannot serve it yet.

    Any retriable Kafka error is waited out, not only an unreachable broker: a consumer whose topic has no metadata
    yet (topics not created, advertised listener not reachable yet) gets UnknownTopicOrPartitionError from
    ``start()``, and letting it escape would end the service's consumer loop for good. Non-retriable errors
    (authentication, configuration) still raise at once.

    Returns False (client not started) if ``stop`` was set while waiting, even in the middle of one ``start()``
    (which can block for a whole request timeout), so shutdown never hangs on a dead broker; the caller still
    owns the client and should ``stop()`` it.
    """
    delay = 0.2
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        if stop is not None and stop.is_set():
            return False
        try:
            return await _start_unless_stopped(client, stop)
        except KafkaError as exc:
            if not (isinstance(exc, KafkaConnectionError) or exc.retriable):
                raise
            if deadline_s is not None and loop.time() - started > deadline_s:
                raise
            log.warning(
                "broker cannot serve this client yet, retrying",
                extra={"what": what, "error": repr(exc), "retry_in_s": delay},
            )
            if stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, CONNECT_BACKOFF_MAX_S)


async def _start_unless_stopped(client: Any, stop: asyncio.Event | None) -> bool:
    """One ``client.start()``; abandoned (returns False) as soon as ``stop`` is set."""
    if stop is None:
        await client.start()
        return True
    return await unless_stopped(client.start(), stop)


async def unless_stopped(work: Awaitable[Any], stop: asyncio.Event, grace_s: float = 0.0) -> bool:
    """Await ``work`` unless ``stop`` is set first and ``work`` does not finish ``grace_s`` later: then cancel it and
    return False. True when it finished; its own error is re-raised."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and grace_s > 0:
            await asyncio.wait({task}, timeout=grace_s)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if task.cancelled():
        return False
    task.result()
    return True


async def ensure_topics(settings: KafkaSettings, topics: tuple[str, ...] = TOPICS) -> list[str]:
    """Create every topic and its dead-letter twin if missing; returns the topics that were created."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await start_with_retry(admin, "admin", deadline_s=60)
    try:
        existing = set(await admin.list_topics())
        wanted = [t for topic in topics for t in (topic, dlq_topic(topic)) if t not in existing]
        created: list[str] = []
        for name in wanted:
            try:
                await admin.create_topics(
                    [NewTopic(name, num_partitions=settings.partitions, replication_factor=settings.replication_factor)]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:  # another process created it between list and create
                if "already exists" not in str(exc).lower():
                    raise
        return created
    finally:
        await admin.close()
