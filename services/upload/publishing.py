"""The upload service's view of the event bus: either it takes the event durably, or it says it is unavailable.

An upload is accepted only once photo.uploaded is on the broker (acks=all). This adapter turns every way the broker can
fail (producer not started yet, Kafka errors, a publish that hangs) into one exception the handlers understand, so
they never import aiokafka.
"""

from __future__ import annotations

from libs.common.bus import EventPublisher, LateBoundPublisher

PUBLISH_TIMEOUT_S = 10.0  # acks=all normally takes milliseconds; past this the client is better told to retry


class BusUnavailable(Exception):
    """The event could not be handed to the broker (or it is unknown whether it was): treat the request as refused."""


class GuardedPublisher(LateBoundPublisher):
    """The upload's publisher: every broker failure becomes BusUnavailable (→ 503), a hung publish included."""

    def __init__(self, inner: EventPublisher | None = None, *, timeout_s: float = PUBLISH_TIMEOUT_S) -> None:
        super().__init__(inner, unavailable=BusUnavailable, timeout_s=timeout_s)
