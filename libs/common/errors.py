"""Error kinds every consumer understands (snuba/arroyo's taxonomy).

- ``InvalidEvent`` (in libs.common.events): the message itself is bad — dead-letter it, never retry.
- ``TransientError``: a backend we depend on is down or overloaded — wait and retry the same work, never dead-letter
  healthy messages because S3 or ClickHouse blinked.
- anything else: a bug or a poison message — bounded retries, then the dead-letter topic.
"""

from __future__ import annotations


class TransientError(Exception):
    """A dependency is temporarily unavailable; the work should be retried unchanged, without limit, with backoff."""
