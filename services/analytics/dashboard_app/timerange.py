"""The time-range picker's arithmetic: presets resolved to a minute-aligned [start, end) in UTC.

Minute alignment matters twice: the rollups count whole minutes, and a range that moves only once a minute lets
st.cache_data serve every panel from cache between minutes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pandas as pd

WHOLE_LAUNCH = "Whole launch"
CUSTOM = "Custom"
PRESETS: dict[str, timedelta | None] = {
    WHOLE_LAUNCH: None,  # first to last minute with data (at most the last 7 days of it)
    "Last hour": timedelta(hours=1),
    "Last 6 hours": timedelta(hours=6),
    "Last 24 hours": timedelta(hours=24),
    "Last 7 days": timedelta(days=7),
    CUSTOM: None,
}
MAX_SPAN = timedelta(days=7)  # the per-minute series refuses longer ranges (10,080 points)
EMPTY_FALLBACK = timedelta(hours=1)  # an empty store still gets a sensible (empty) last hour
MINUTE = timedelta(minutes=1)


def next_minute(moment: datetime) -> datetime:
    """The start of the minute after ``moment`` (so the current, incomplete minute is included)."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0) + MINUTE


def _utc(value: object) -> datetime | None:
    """A data_bounds value (naive UTC string, timestamp or None/NaT) as an aware UTC datetime."""
    if value is None:
        return None
    stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    if pd.isna(stamp):
        return None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def resolve(
    preset: str,
    now: datetime,
    first_minute: object = None,
    last_minute: object = None,
    custom: tuple[date, date] | None = None,
) -> tuple[datetime, datetime]:
    """[start, end) for a preset; ``first_minute``/``last_minute`` come from the data_bounds query."""
    if preset == CUSTOM and custom is not None:
        start = datetime.combine(custom[0], time(), UTC)
        end = datetime.combine(custom[1], time(), UTC) + timedelta(days=1)
        return max(start, end - MAX_SPAN), end
    span = PRESETS.get(preset)
    if span is not None:
        end = next_minute(now)
        return end - span, end
    first, last = _utc(first_minute), _utc(last_minute)
    if first is None or last is None:
        end = next_minute(now)
        return end - EMPTY_FALLBACK, end
    end = last + MINUTE
    return max(first, end - MAX_SPAN), end
