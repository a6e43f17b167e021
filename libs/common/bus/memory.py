"""In-memory publisher for unit tests of handlers (the integration tests use the real broker)."""

from __future__ import annotations

from dataclasses import dataclass, field

from libs.common.events import Event


@dataclass
class RecordingPublisher:
    """Collects what handlers publish so tests can assert on it."""

    events: list[Event] = field(default_factory=list)
    raw: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]] = field(default_factory=list)

    async def publish(self, event: Event) -> None:
        self.events.append(event)

    async def publish_many(self, events: list[Event]) -> None:
        self.events.extend(events)

    async def publish_raw(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        self.raw.append((topic, value, key, headers))

    def of_type(self, cls: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, cls)]
