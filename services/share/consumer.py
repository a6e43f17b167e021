"""The share stage's consumer: group "share" over photo.scored (render cards) and photo.deleted (drop them)."""

from __future__ import annotations

from libs.common.bus import ConsumerRunner, EventPublisher
from libs.common.events import PhotoDeleted, PhotoScored
from libs.common.settings import Settings
from services.share.handlers import ShareHandlers

CONSUMER_GROUP = "share"
TOPICS = [PhotoScored.TOPIC, PhotoDeleted.TOPIC]
CONCURRENCY = 4  # photos in flight: their blob reads and writes overlap while the renderer draws one at a time


def build_consumer(settings: Settings, handlers: ShareHandlers, dlq: EventPublisher) -> ConsumerRunner:
    """One runner per process; one photo's events stay in order (the runner chains them by photo id)."""
    return ConsumerRunner(
        settings.kafka,
        group_id=CONSUMER_GROUP,
        topics=TOPICS,
        dlq_publisher=dlq,
        handler=handlers.handle,
        concurrency=CONCURRENCY,
    )
