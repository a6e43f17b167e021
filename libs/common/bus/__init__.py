"""The event bus: aiokafka producer and consumer runner (Tansu locally, Apache Kafka in production)."""

from libs.common.bus.consumer import ConsumerRunner, ConsumerStats, Delivery
from libs.common.bus.kafka import BrokerNotConfigured, client_kwargs, ensure_topics, start_with_retry
from libs.common.bus.late import LateBoundPublisher
from libs.common.bus.memory import RecordingPublisher
from libs.common.bus.producer import EventPublisher, KafkaEventPublisher

__all__ = [
    "BrokerNotConfigured",
    "ConsumerRunner",
    "ConsumerStats",
    "Delivery",
    "EventPublisher",
    "KafkaEventPublisher",
    "LateBoundPublisher",
    "RecordingPublisher",
    "client_kwargs",
    "ensure_topics",
    "start_with_retry",
]
