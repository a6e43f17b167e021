"""`howhot dlq` as an operator uses it against a real broker (Tansu): the topic names `dlq list` prints are accepted
back by `--topic`, and a broker that does not answer is one line on stderr and exit 1, not a traceback."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from libs.cli import dlq
from libs.cli.main import main
from libs.common.broker import EmbeddedBroker
from libs.common.events import PhotoUploaded, dlq_topic
from libs.common.ids import new_id
from libs.common.netutil import free_port
from libs.common.settings import KafkaSettings

pytestmark = pytest.mark.integration
TOPIC = PhotoUploaded.TOPIC


async def _dead_letter(bootstrap: str, marker: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(dlq_topic(TOPIC), marker, headers=[
            ("source_topic", TOPIC.encode()), ("error_type", b"InvalidEvent"), ("error", b"poison"),
            ("source_partition", b"0"), ("source_offset", b"0"), ("consumer_group", b"g")])
    finally:
        await producer.stop()


def test_dlq_topic_accepts_the_dead_letter_topic_name_that_list_prints(
    kafka_broker: EmbeddedBroker, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOWHOT_KAFKA_BOOTSTRAP", kafka_broker.bootstrap)
    asyncio.run(_dead_letter(kafka_broker.bootstrap, new_id().encode()))
    assert main(["dlq", "list", "--json"]) == 0
    printed = capsys.readouterr().out
    assert f'"dlq": "{dlq_topic(TOPIC)}[' in printed
    for name in (TOPIC, dlq_topic(TOPIC)):  # the source topic, or the DLQ topic exactly as printed above
        assert main(["dlq", "list", "--topic", name]) == 0
        assert "0 dead-lettered" not in capsys.readouterr().out


def test_dlq_against_a_broker_that_does_not_answer_fails_cleanly(
    capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dlq, "READER_START_DEADLINE_S", 1, raising=False)
    monkeypatch.setenv("HOWHOT_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")  # nothing listens there
    assert main(["dlq", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("howhot dlq: Kafka broker error:") and "Traceback" not in err


def test_a_failed_dlq_read_closes_its_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unclosed aiokafka client leaks its connections and warns "Unclosed AIOKafkaConsumer" at exit."""
    consumers: list[AIOKafkaConsumer] = []

    class RecordingConsumer(AIOKafkaConsumer):  # the real consumer; only remembered, to look at it afterwards
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            consumers.append(self)

    monkeypatch.setattr(dlq, "AIOKafkaConsumer", RecordingConsumer)
    monkeypatch.setattr(dlq, "READER_START_DEADLINE_S", 1, raising=False)
    settings = KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(KafkaConnectionError):
        asyncio.run(dlq.list_dead_letters(settings, TOPIC))
    assert len(consumers) == 1 and consumers[0]._closed, "the consumer was left open"
