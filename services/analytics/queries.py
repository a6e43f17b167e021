"""The registry of named, parameterized queries: the only SQL the query API will run.

Each query is SQL with ClickHouse ``{name:Type}`` placeholders (bound server-side, never formatted into the string), a
pydantic model that validates its parameters at the edge, and a description for the dashboard and CLI. ``{db}`` is
replaced by the (validated) database name. To add a query: write a params model and append a ``NamedQuery`` to
``QUERIES``; the HTTP API and its schema listing pick it up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from libs.common.events import EVENT_TYPES
from libs.common.ids import ID_PATTERN

EventTypeName = Literal[tuple(cls.model_fields["type"].default for cls in EVENT_TYPES)]  # type: ignore[valid-type]

MAX_ROWS = 1000  # the API returns JSON to a browser: bigger result sets belong in ClickHouse itself
DEFAULT_RECENT = 100
MAX_MINUTES_SPAN = timedelta(days=7)  # 10,080 points: beyond that a chart wants hours, not minutes


class QueryParams(BaseModel):
    """Base of every parameter model: unknown parameters are an error (a typo must not silently widen a query)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def bind(self) -> dict[str, Any]:
        """Values for ClickHouse parameter binding, keyed by their placeholder (alias) names."""
        return self.model_dump(by_alias=True)


class _TimeRange(QueryParams):
    start: AwareDatetime | None = Field(default=None, alias="from", description="inclusive, ISO 8601 with timezone")
    end: AwareDatetime | None = Field(default=None, alias="to", description="exclusive, ISO 8601 with timezone")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError("'from' must be before 'to'")
        return self


class EventCountsParams(_TimeRange):
    """Optional time range over occurred_at."""


class PhotoEventsParams(QueryParams):
    photo_id: str = Field(pattern=ID_PATTERN)


class VisitorEventsParams(QueryParams):
    visitor_id: str = Field(pattern=ID_PATTERN)


class _MinuteSeriesRange(_TimeRange):
    """A required, bounded range for per-minute series (one point per minute)."""

    start: AwareDatetime = Field(alias="from", description="inclusive, ISO 8601 with timezone")
    end: AwareDatetime = Field(alias="to", description="exclusive, ISO 8601 with timezone")

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if self.end - self.start > MAX_MINUTES_SPAN:
            raise ValueError(f"range longer than {MAX_MINUTES_SPAN.days} days: ask for a coarser series")
        return self


class EventsPerMinuteParams(_MinuteSeriesRange):
    type: EventTypeName  # type: ignore[valid-type]


class RecentEventsParams(QueryParams):
    limit: int = Field(default=DEFAULT_RECENT, ge=1, le=MAX_ROWS)


class DedupStatsParams(_TimeRange):
    photo_id: str | None = Field(default=None, pattern=ID_PATTERN)


@dataclass(frozen=True)
class NamedQuery:
    """One query the API may run: its SQL template, parameter model and what it is for."""

    name: str
    description: str
    sql: str
    params: type[QueryParams]

    def render(self, database: str) -> str:
        return self.sql.replace("{db}", database)

    def schema(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.params.model_json_schema(by_alias=True),
        }


_RANGE = (
    "({from:Nullable(DateTime64(3, 'UTC'))} IS NULL OR occurred_at >= {from:Nullable(DateTime64(3, 'UTC'))})"
    " AND ({to:Nullable(DateTime64(3, 'UTC'))} IS NULL OR occurred_at < {to:Nullable(DateTime64(3, 'UTC'))})"
)
_EVENT_COLUMNS = "event_id, type, occurred_at, photo_id, visitor_id, share_id, topic, partition, offset, payload"

# S608 below: the f-strings only splice the module's own constants; every value is a server-side bound parameter.
QUERIES: dict[str, NamedQuery] = {
    q.name: q
    for q in (
        NamedQuery(
            "event_counts",
            "Distinct events per type, optionally within [from, to).",
            f"SELECT type, uniqExact(event_id) AS events FROM {{db}}.events WHERE {_RANGE}"  # noqa: S608
            " GROUP BY type ORDER BY type",
            EventCountsParams,
        ),
        NamedQuery(
            "photo_events",
            "Every event of one photo in the order it happened (its journey through the pipeline).",
            f"SELECT {_EVENT_COLUMNS} FROM {{db}}.events FINAL WHERE photo_id = {{photo_id:String}}"  # noqa: S608
            f" ORDER BY occurred_at, event_id LIMIT {MAX_ROWS}",
            PhotoEventsParams,
        ),
        NamedQuery(
            "visitor_events",
            "Every event of one visitor in the order it happened (page views, uploads, shares, ratings).",
            f"SELECT {_EVENT_COLUMNS} FROM {{db}}.events FINAL WHERE visitor_id = {{visitor_id:String}}"  # noqa: S608
            f" ORDER BY occurred_at, event_id LIMIT {MAX_ROWS}",
            VisitorEventsParams,
        ),
        NamedQuery(
            "events_per_minute",
            "Distinct events of one type per minute within [from, to) (minutes without events are absent).",
            "SELECT toStartOfMinute(occurred_at) AS minute, uniqExact(event_id) AS events FROM {db}.events"
            " WHERE type = {type:String} AND occurred_at >= {from:DateTime64(3, 'UTC')}"
            " AND occurred_at < {to:DateTime64(3, 'UTC')} GROUP BY minute ORDER BY minute",
            EventsPerMinuteParams,
        ),
        NamedQuery(
            "recent_events",
            "The latest events by occurred_at, newest first (LIMIT 1 BY event_id: exact without FINAL).",
            f"SELECT {_EVENT_COLUMNS} FROM {{db}}.events ORDER BY occurred_at DESC, event_id"  # noqa: S608
            " LIMIT 1 BY event_id LIMIT {limit:UInt32}",
            RecentEventsParams,
        ),
        NamedQuery(
            "dedup_stats",
            "Stored rows vs distinct events (duplicates not yet merged away), optionally for one photo and range.",
            "SELECT count() AS rows, uniqExact(event_id) AS events, rows - events AS duplicates FROM {db}.events"  # noqa: S608
            f" WHERE ({{photo_id:Nullable(String)}} IS NULL OR photo_id = {{photo_id:Nullable(String)}}) AND {_RANGE}",
            DedupStatsParams,
        ),
    )
}


# ---------------------------------------------------------------------------------------------------------------------
# The virality dashboard's queries (tables from infra/clickhouse/002–008; what each table is for, and why it is shaped
# so, is in the migration's header).
#
# Exactness: the minute rollups hold exact sets (duplicates cannot inflate them; minute_counts hashes ids to 64 bits),
# photo_stages holds min/max (idempotent), scored_faces and ratings are read with FINAL. Every figure below is
# therefore exact whether or not ClickHouse has merged away duplicate events yet; visitors use uniq (exact to 65,536
# per state, see 003). Rollup-based figures count whole minutes: a minute belongs to [from, to) when its start does
# (the dashboard's picker is minute-aligned).
# ---------------------------------------------------------------------------------------------------------------------

SHARE_ACTIONS = "share.action"  # minute_counts' pseudo-type: a result made public once per sharer, each channel press
RollupMetric = Literal["evaluations", "uploads", "visitors", "page_views", "shares", "share_views", "ratings"]
_METRIC_TYPES = {  # metric → minute_counts.type ('visitors' merges the visitor sets of every type instead)
    "evaluations": "face.scored",
    "uploads": "photo.uploaded",
    "visitors": "",
    "page_views": "page.viewed",
    "shares": SHARE_ACTIONS,  # 008_share_actions.sql: pressing "Share" again after a reload is not another share
    "share_views": "share.viewed",
    "ratings": "rating.submitted",
}

# Spike detection: a robust z-score of each minute against a centered rolling median, scaled by the rolling MAD.
# seriesOutliersDetectTukey works in chDB 26.9 too, but it judges every minute against the whole range's quartiles,
# so the peak hours of an ordinary daily curve get flagged; a local baseline does not have that problem.
SPIKE_WINDOW_MINUTES = 90  # ±90 min: wider than a press spike's ~30–60 min decay, so the spike stays a minority
SPIKE_MIN_SCORE = 6.0  # robust z; Poisson noise alone almost never reaches 6 scaled MADs
SPIKE_MIN_RATIO = 1.8  # and at least ~2× the baseline: a spike people should notice, not a statistical blip
SPIKE_MIN_VALUE = 10  # below ten events a minute "spikes" are noise of a quiet night
SPIKE_MERGE_GAP_MINUTES = 10  # spike minutes this close are one spike: a decaying wave dips under the bar for minutes
MAD_TO_SIGMA = 1.4826  # MAD × 1.4826 estimates σ for normal data
HOT_RATING_1TO10 = 7.0  # on the 1–10 scale a 7 or more counts as "hot"
HOT_RATING_HOT_OR_NOT = 0.5  # hot_or_not ratings are 1 (hot) or 0 (not)
AGE_BIN_YEARS = 5  # histogram bar width: coarse enough to read, fine enough to see the 18–24 bulge


class RangeParams(_TimeRange):
    """Optional time range [from, to) over each figure's own event time."""


class KpiParams(_TimeRange):
    """Optional range; "today" is the UTC day that contains the range's end (or now)."""


class SeriesParams(_MinuteSeriesRange):
    """A bounded per-minute series of one metric."""

    metric: RollupMetric = "evaluations"  # type: ignore[valid-type]

    def bind(self) -> dict[str, Any]:
        return {**super().bind(), "rollup_type": _METRIC_TYPES[self.metric]}


_F = "{from:Nullable(DateTime64(3, 'UTC'))}"
_T = "{to:Nullable(DateTime64(3, 'UTC'))}"


def _in_range(column: str) -> str:
    """``column`` within the optional [from, to) parameters."""
    return f"({_F} IS NULL OR {column} >= {_F}) AND ({_T} IS NULL OR {column} < {_T})"


NEVER_MS = 9223372036854775807  # photo_stages' "stage not reached" (Int64 max, the neutral value of min)


def _ms_in_range(column: str) -> str:
    """An Int64 epoch-milliseconds ``column`` within the optional [from, to) parameters."""
    return (
        f"({_F} IS NULL OR {column} >= toUnixTimestamp64Milli(assumeNotNull({_F})))"
        f" AND ({_T} IS NULL OR {column} < toUnixTimestamp64Milli(assumeNotNull({_T})))"
    )


# One row per photo uploaded in range, with the first time (epoch ms, NEVER_MS = not reached) it reached each stage.
# FINAL merges photo_stages' min/max columns (exact whatever the merge state; WHERE applies after FINAL, as ClickHouse
# never moves non-key conditions of a FINAL query to PREWHERE). On 64-bit keys and plain Int64 columns it costs a
# fraction of FINAL on photo_timeline, and far less than GROUP BY photo_key once merges caught up (measured in
# benchmarks/results/dashboard_queries.md).
_PHOTO_ROWS = f"""
SELECT photo_key, uploaded_ms AS up, detected_ms AS det, scored_ms AS sc, carded_ms AS card, shared_ms AS sh,
       viewed_ms AS sv, faces_found AS faces, via_key AS via
FROM {{db}}.photo_stages FINAL
WHERE uploaded_ms != {NEVER_MS} AND {_ms_in_range('uploaded_ms')}
"""  # noqa: S608
_SHARE_KEYS = "SELECT cityHash64(share_id) AS share_key, photo_id, toUnixTimestamp64Milli(shared_at) AS shared" \
    " FROM {db}.shares FINAL"


def _hour_fully_in_range(hour: str) -> str:
    """Every minute of the hour starting at ``hour`` lies in the optional [from, to) (a minute is in when its start
    is)."""
    return f"({_F} IS NULL OR {hour} >= {_F}) AND ({_T} IS NULL OR {hour} + INTERVAL 59 MINUTE < {_T})"


def _visitor_states(hour_types: str, minute_filter: str) -> str:
    """uniq states of visitors in [from, to): whole hours from hour_visitors (types ``hour_types``), the partial hours
    at the edges from minute_visitors (rows matching ``minute_filter``). Columns: type, visitors, edge (1 = minute)."""
    return f"""
    SELECT type, visitors, 0 AS edge FROM {{db}}.hour_visitors
    WHERE type IN {hour_types} AND {_hour_fully_in_range('hour')}
    UNION ALL
    SELECT type, visitors, 1 AS edge FROM {{db}}.minute_visitors
    WHERE {minute_filter} AND {_in_range('minute')} AND NOT ({_hour_fully_in_range('toStartOfHour(minute)')})
    """  # noqa: S608


_FACES = f"SELECT * FROM {{db}}.scored_faces FINAL WHERE {_in_range('occurred_at')}"  # noqa: S608
_AGE_BAND = (
    "multiIf(age < 18, '<18', age < 25, '18-24', age < 35, '25-34', age < 45, '35-44', age < 55, '45-54', '55+')"
)


def _median_p95_or_null(expr: str, cond: str) -> tuple[str, str]:
    """Interpolated exact median and p95 (median of 20 and 140 is 80, not 140) that answer NULL (JSON null), not NaN,
    when no row qualifies. Both come from one ``quantilesExactInclusiveIf`` (ClickHouse computes an aggregate written
    twice once), so the values are sorted once, not twice: ~20 % of the KPI pass over 1.25M photos."""
    both = f"quantilesExactInclusiveIf(0.5, 0.95)({expr}, {cond})"
    empty = f"countIf({cond}) = 0"
    return f"if({empty}, NULL, round({both}[1], 3))", f"if({empty}, NULL, round({both}[2], 3))"


_RESULT_TIME = _median_p95_or_null("(sc - up) / 1000", f"uploaded AND sc != {NEVER_MS}")
_CYCLE_TIME = _median_p95_or_null("(up - s.shared) / 1000", "s.share_key != 0")
_COUNTED_TYPES = "('share.viewed', 'rating.submitted')"
SHARE_LINK = "share link"  # upload_sources' referrer of the uploads that came through a share (004_panel_rollups.sql)
_TODAY_MS = f"1000 * toUnixTimestamp(toStartOfDay(ifNull({_T}, now64(3, 'UTC')) - toIntervalMillisecond(1)))"
# Share views and ratings sum per-minute exact sets: an event's duplicates share its occurred_at, hence its minute, so
# the sum of exact per-minute counts is the exact total, without one hash set of millions of ids. Shares are share
# actions (008): their ids are merged over the whole range, because going public again after a reload is the same
# action in a later minute; far fewer ids than views or ratings, so the one set stays small. Photos
# and evaluations (the faces of each photo's scoring) come from the photo_stages pass the latencies need anyway. The
# K-factor's uploads through a share sum upload_sources' 'share link' sets the same way: its denominator (distinct
# sharers) is an anonymous rollup that deleting a photo leaves alone, so its numerator must be one too (read from
# photo_stages, deleting an upload that came through a share lowered K while its sharer still counted). The
# share → upload cycle reads only the upload rows that came through a share (via_key is set by the upload event
# alone, so GROUP BY photo_key over those rows is exact without merging the rest) and joins just them with shares.
_KPIS_SQL = f"""
SELECT p.evaluations AS evaluations, p.evaluations_today AS evaluations_today, v.all_visitors AS visitors,
       p.photos AS photos, sa.shares AS shares, r.share_views AS share_views, r.ratings AS ratings,
       v.sharers AS sharers, u.attributed_uploads AS attributed_uploads,
       if(v.sharers = 0, NULL, round(u.attributed_uploads / v.sharers, 4)) AS k_factor,
       c.cycle_p50_s AS share_to_upload_p50_s, c.cycle_p95_s AS share_to_upload_p95_s,
       p.result_p50_s AS result_p50_s, p.result_p95_s AS result_p95_s
FROM (
    SELECT sumIf(n, type = 'share.viewed') AS share_views,
           sumIf(n, type = 'rating.submitted') AS ratings
    FROM (
        SELECT minute, type, uniqExactMerge(events) AS n FROM {{db}}.minute_counts
        WHERE type IN {_COUNTED_TYPES} AND {_in_range('minute')} GROUP BY minute, type
    )
) AS r
CROSS JOIN (
    SELECT uniqExactMerge(events) AS shares FROM {{db}}.minute_counts
    WHERE type = '{SHARE_ACTIONS}' AND {_in_range('minute')}
) AS sa
CROSS JOIN (
    SELECT uniqMergeIf(visitors, type = '*' OR edge = 1) AS all_visitors,
           uniqMergeIf(visitors, type = 'photo.shared') AS sharers
    FROM ({_visitor_states("('*', 'photo.shared')", '1')})
) AS v
CROSS JOIN (
    SELECT countIf(uploaded) AS photos,
           sumIf(faces_scored, scored) AS evaluations,
           sumIf(faces_scored, scored AND sc >= {_TODAY_MS}) AS evaluations_today,
           {_RESULT_TIME[0]} AS result_p50_s, {_RESULT_TIME[1]} AS result_p95_s
    FROM (
        SELECT uploaded_ms AS up, scored_ms AS sc, faces_scored,
               uploaded_ms != {NEVER_MS} AND {_ms_in_range('uploaded_ms')} AS uploaded,
               scored_ms != {NEVER_MS} AND {_ms_in_range('scored_ms')} AS scored
        FROM {{db}}.photo_stages FINAL
    )
) AS p
CROSS JOIN (
    SELECT sum(n) AS attributed_uploads
    FROM (
        SELECT minute, uniqExactMerge(uploads) AS n FROM {{db}}.upload_sources
        WHERE referrer = '{SHARE_LINK}' AND {_in_range('minute')} GROUP BY minute
    )
) AS u
CROSS JOIN (
    SELECT {_CYCLE_TIME[0]} AS cycle_p50_s, {_CYCLE_TIME[1]} AS cycle_p95_s
    FROM (
        SELECT photo_key, min(uploaded_ms) AS up, max(via_key) AS via FROM {{db}}.photo_stages
        WHERE via_key != 0 GROUP BY photo_key HAVING {_ms_in_range('up')}
    ) AS a
    LEFT JOIN ({_SHARE_KEYS}) AS s ON a.via = s.share_key
) AS c
SETTINGS join_use_nulls = 0
"""  # noqa: S608

_SERIES_BOUNDS = (
    "minute >= toStartOfMinute({from:DateTime64(3, 'UTC')}) AND minute < {to:DateTime64(3, 'UTC')}"
)
_WINDOW = f"ORDER BY minute ROWS BETWEEN {SPIKE_WINDOW_MINUTES} PRECEDING AND {SPIKE_WINDOW_MINUTES} FOLLOWING"
# minute, value, baseline (rolling median), score (robust z), is_spike.
_SERIES_SQL = f"""
SELECT minute, value, baseline, score,
       score >= {SPIKE_MIN_SCORE} AND value >= {SPIKE_MIN_RATIO} * baseline AND value >= {SPIKE_MIN_VALUE} AS is_spike
FROM (
    SELECT minute, value, baseline,
           round((value - baseline) / greatest({MAD_TO_SIGMA} * mad, sqrt(baseline), 1), 2) AS score
    FROM (
        SELECT minute, value, baseline,
               quantileExact(0.5)(abs(value - baseline)) OVER w AS mad
        FROM (
            SELECT minute, value, quantileExact(0.5)(value) OVER w AS baseline
            FROM (
                SELECT minute, toFloat64(sum(n)) AS value
                FROM (
                    SELECT minute, uniqExactMerge(events) AS n FROM {{db}}.minute_counts
                    WHERE {{rollup_type:String}} != '' AND type = {{rollup_type:String}} AND {_SERIES_BOUNDS}
                    GROUP BY minute
                    UNION ALL
                    SELECT minute, uniqMerge(visitors) AS n FROM {{db}}.minute_visitors
                    WHERE {{rollup_type:String}} = '' AND {_SERIES_BOUNDS}
                    GROUP BY minute
                )
                GROUP BY minute
                ORDER BY minute WITH FILL FROM toDateTime(toStartOfMinute({{from:DateTime64(3, 'UTC')}}), 'UTC')
                    TO toDateTime({{to:DateTime64(3, 'UTC')}}, 'UTC') STEP INTERVAL 1 MINUTE
            )
            WINDOW w AS ({_WINDOW})
        )
        WINDOW w AS ({_WINDOW})
    )
)
"""  # noqa: S608

# One row per spike: spike minutes less than SPIKE_MERGE_GAP_MINUTES apart belong to the same spike (a press wave
# decays noisily, and one dip under the threshold must not split it in two).
_SPIKE_WINDOWS = f"""
SELECT min(minute) AS start, max(minute) + INTERVAL 1 MINUTE AS end, argMax(minute, value) AS peak_minute,
       max(value) AS peak_value, argMax(baseline, value) AS baseline_at_peak, round(sum(value - baseline)) AS excess
FROM (
    SELECT minute, value, baseline,
           sum(gap_s > {SPIKE_MERGE_GAP_MINUTES * 60}) OVER (ORDER BY minute ROWS UNBOUNDED PRECEDING) AS spike
    FROM (
        SELECT minute, value, baseline,
               dateDiff('second', lagInFrame(minute, 1, toDateTime(0, 'UTC'))
                   OVER (ORDER BY minute ROWS BETWEEN 1 PRECEDING AND CURRENT ROW), minute) AS gap_s
        FROM ({_SERIES_SQL}) WHERE is_spike
    )
)
GROUP BY spike
"""  # noqa: S608

# Photos uploaded within each spike's window, counted per referrer (domain, 'share link' or 'direct') and utm_source,
# from the per-minute upload_sources rollup (exact sets; duplicates share their minute). One row per spike, dimension
# and value, carrying the spike's own columns, so that the spikes query computes the series once, not twice.
_SPIKE_SOURCE_ROWS = f"""
SELECT w.start AS start, w.end AS end, w.peak_minute AS peak_minute, w.peak_value AS peak_value,
       w.baseline_at_peak AS baseline_at_peak, w.excess AS excess, p.dimension AS dimension, p.value AS value,
       sum(p.n) AS n_photos
FROM (
    SELECT start, end, peak_minute, peak_value, baseline_at_peak, excess,
           arrayJoin(arrayMap(k -> start + toIntervalMinute(k), range(toUInt32(dateDiff('minute', start, end)))))
               AS minute
    FROM ({_SPIKE_WINDOWS})
) AS w
LEFT JOIN (
    SELECT minute, dimension, value, n
    FROM (
        SELECT minute, referrer, utm_source, uniqExactMerge(uploads) AS n FROM {{db}}.upload_sources
        WHERE {_SERIES_BOUNDS} GROUP BY minute, referrer, utm_source
    )
    ARRAY JOIN ['referrer', 'utm_source'] AS dimension, [referrer, utm_source] AS value
) AS p ON p.minute = w.minute
GROUP BY start, end, peak_minute, peak_value, baseline_at_peak, excess, dimension, value
SETTINGS join_use_nulls = 0
"""  # noqa: S608


def _top(dimension: str) -> str:
    """The value of ``dimension`` that brought most of a spike's photos (ties: the greater value) and its percent."""
    cond = f"dimension = '{dimension}'"
    return (
        f"argMaxIf(value, (n_photos, value), {cond}) AS top_{dimension},"
        f" if(sumIf(n_photos, {cond}) = 0, 0, round(100 * maxIf(n_photos, {cond}) / sumIf(n_photos, {cond}), 1))"
        f" AS top_{dimension}_pct"
    )


_SPIKES_SQL = f"""
SELECT start, end, peak_minute, peak_value, baseline_at_peak, excess, {_top('referrer')}, {_top('utm_source')},
       sumIf(n_photos, dimension = 'referrer') AS photos
FROM ({_SPIKE_SOURCE_ROWS})
GROUP BY start, end, peak_minute, peak_value, baseline_at_peak, excess
ORDER BY start
"""  # noqa: S608

_SPIKE_SOURCES_SQL = f"""
SELECT start, dimension, value, n_photos AS photos,
       round(100 * photos / sum(photos) OVER (PARTITION BY start, dimension), 1) AS pct
FROM ({_SPIKE_SOURCE_ROWS})
WHERE dimension != ''
ORDER BY start, dimension, photos DESC, value
LIMIT {MAX_ROWS}
"""  # noqa: S608

# The funnel counts one unit, distinct visitors, at every step, so each bar is a share of the one before (it counted
# photos, then uploads, after a first step in visitors: one visitor with three photos read 300 %). 'visited' merges
# the page-view and upload visitor states (uniq, like the KPIs' visitors), so an uploader whose page view fell before
# the range still counts as a visitor. The later steps follow the visitors who uploaded in range, with what their
# photos did later (any time), from photo_stages FINAL and its owner_key (009): each photo reaches a depth (1 uploaded,
# 2 a face found, 3 scored, 4 shared, 5 share viewed by someone else, 6 its share brought an upload by a visitor other
# than the sharer), each step requiring the one before; a visitor's depth is their deepest photo's, and step k counts
# the visitors of depth ≥ k (exact: 64-bit owner keys). Uploads without a visitor id count in no visitor step.
_FUNNEL_STEPS = ("uploaded", "face found", "got a result", "shared", "share viewed", "brought an upload")
# Photos whose share brought an upload by someone other than the sharer. Only upload rows carry via_key, but rows
# written before 009 lack the owner its backfill added in another row: max per photo merges the two.
_BROUGHT_AN_UPLOAD = """
SELECT s.photo_key FROM (
    SELECT cityHash64(share_id) AS share_key, cityHash64(photo_id) AS photo_key, cityHash64(sharer) AS sharer_key
    FROM {db}.shares FINAL
) AS s
INNER JOIN (
    SELECT max(via_key) AS via, max(owner_key) AS uploader FROM {db}.photo_stages WHERE via_key != 0 GROUP BY photo_key
) AS u ON u.via = s.share_key
WHERE u.uploader != s.sharer_key
"""
_FUNNEL_SQL = f"""
SELECT step, value, unit FROM (
    SELECT 1 AS n, 'visited' AS step, toUInt64(uniqMerge(visitors)) AS value, 'visitors' AS unit
    FROM ({_visitor_states("('page.viewed', 'photo.uploaded')", "type IN ('page.viewed', 'photo.uploaded')")})
    UNION ALL
    SELECT t.1 AS n, t.2 AS step, toUInt64(t.3) AS value, 'visitors' AS unit
    FROM (
        SELECT arrayJoin([{", ".join(f"({k + 2}, '{name}', countIf(depth >= {k + 1}))"
                                     for k, name in enumerate(_FUNNEL_STEPS))}]) AS t
        FROM (
            SELECT owner_key, max(1 + face + result + shared + viewed + brought) AS depth
            FROM (
                SELECT owner_key, faces_found > 0 AS face, face AND scored_ms != {NEVER_MS} AS result,
                       result AND shared_ms != {NEVER_MS} AS shared, shared AND viewed_ms != {NEVER_MS} AS viewed,
                       viewed AND photo_key IN ({_BROUGHT_AN_UPLOAD}) AS brought
                FROM {{db}}.photo_stages FINAL
                WHERE uploaded_ms != {NEVER_MS} AND owner_key != 0 AND {_ms_in_range('uploaded_ms')}
            )
            GROUP BY owner_key
        )
    )
)
ORDER BY n
"""  # noqa: S608

# Ratings by the rater's and the rated face's gender, from the per-minute rollup of 006 (rating_genders): each
# rating.submitted carries both genders as known when it was made (the rated face's as shown; face 0 of the rater's own
# latest scored photo, as the website named it), so nothing is joined at read time. Exact sets per minute: an event's
# duplicates share its minute, genders and id, so the sum of per-minute counts is exact. '' (ratings without the
# field: raters without a photo, events from before it existed) reads 'unknown'. Whole minutes, like every rollup panel.
_HOT_RATINGS_SQL = f"""
SELECT if(rater = '', 'unknown', rater) AS rater_gender, if(rated = '', 'unknown', rated) AS rated_gender,
       sum(n) AS ratings, sumIf(n, is_hot = 1) AS hot, round(100 * hot / ratings, 1) AS hot_pct
FROM (
    SELECT minute, rater_gender AS rater, rated_gender AS rated, hot AS is_hot, uniqExactMerge(ratings) AS n
    FROM {{db}}.rating_genders
    WHERE {_in_range('minute')}
    GROUP BY minute, rater, rated, is_hot
)
GROUP BY rater_gender, rated_gender
ORDER BY rater_gender, rated_gender
"""  # noqa: S608



def _stage(n: int, name: str, start: str, end: str) -> str:
    """One stage_latency row: photos that reached both stamps, median and p95 of the gap in milliseconds."""
    done = f"{start} != {NEVER_MS} AND {end} != {NEVER_MS}"
    p50, p95 = _median_p95_or_null(f"{end} - {start}", done)
    return f"({n}, '{name}', countIf({done}), {p50}, {p95})"


_STAGE_LATENCY_SQL = f"""
SELECT stage, photos, p50_ms, p95_ms FROM (
    SELECT arrayJoin([
        {_stage(1, 'upload → faces', 'up', 'det')},
        {_stage(2, 'faces → scored', 'det', 'sc')},
        {_stage(3, 'scored → card', 'sc', 'card')},
        {_stage(4, 'upload → result', 'up', 'sc')}
    ]) AS t, t.1 AS n, t.2 AS stage, t.3 AS photos, t.4 AS p50_ms, t.5 AS p95_ms
    FROM ({_PHOTO_ROWS})
)
ORDER BY n
"""  # noqa: S608

_TRAFFIC_SOURCES_SQL = f"""
SELECT dimension, value, sum(n) AS uploads,
       round(100 * uploads / sum(uploads) OVER (PARTITION BY dimension), 1) AS pct
FROM (
    SELECT minute, referrer, utm_source, uniqExactMerge(uploads) AS n FROM {{db}}.upload_sources
    WHERE {_in_range('minute')} GROUP BY minute, referrer, utm_source
)
ARRAY JOIN ['referrer', 'utm_source'] AS dimension, [referrer, utm_source] AS value
GROUP BY dimension, value
ORDER BY dimension, uploads DESC, value
LIMIT {MAX_ROWS}
"""  # noqa: S608


class NoParams(QueryParams):
    """The query takes no parameters."""


_VIRALITY_QUERIES = (
    NamedQuery(
        "data_bounds",
        "First and last minute with any event (NULLs on an empty store): the dashboard's 'whole launch' range.",
        "SELECT if(count() = 0, NULL, min(minute)) AS first_minute, if(count() = 0, NULL, max(minute)) AS last_minute"
        " FROM {db}.minute_rollup",
        NoParams,
    ),
    NamedQuery(
        "kpis",
        "Headline figures in [from, to): evaluations (faces scored; also today), visitors, photos, shares (a result"
        " made public, once per sharer, plus each press of a channel), share views, ratings, K-factor (uploads"
        " attributed to a share ÷ distinct sharers), share→attributed upload cycle time and time to result"
        " (upload→scored), median and p95 in seconds.",
        _KPIS_SQL,
        KpiParams,
    ),
    NamedQuery(
        "activity_per_minute",
        "One metric per minute in [from, to) with empty minutes as 0, its rolling-median baseline, a robust z-score"
        f" (MAD) and is_spike (score ≥ {SPIKE_MIN_SCORE}, ≥ {SPIKE_MIN_RATIO}× baseline, ≥ {SPIKE_MIN_VALUE}).",
        _SERIES_SQL + " ORDER BY minute",
        SeriesParams,
    ),
    NamedQuery(
        "spikes",
        "Each spike of a metric in [from, to): start, end, peak, baseline, excess over baseline, and the referrer and"
        " utm_source that brought most of the photos uploaded during it (with their share in percent).",
        _SPIKES_SQL,
        SeriesParams,
    ),
    NamedQuery(
        "spike_sources",
        "For each spike (by its start), photos uploaded during it per referrer domain and per utm_source.",
        _SPIKE_SOURCES_SQL,
        SeriesParams,
    ),
    NamedQuery(
        "funnel",
        "Distinct visitors at every step: visited (a page view or an upload in range) → uploaded (at least one photo"
        " in range) → face found → got a result → shared → share viewed (by someone else) → brought an upload (by"
        " another visitor, through their share). Steps after 'uploaded' follow those uploaders and what their photos"
        " did later; each step requires the one before, so no step exceeds the one before it.",
        _FUNNEL_SQL,
        RangeParams,
    ),
    NamedQuery(
        "stage_latency",
        "Per pipeline stage, for photos uploaded in range: photos that completed it, median and p95 in milliseconds"
        " (from the events' occurred_at).",
        _STAGE_LATENCY_SQL,
        RangeParams,
    ),
    NamedQuery(
        "age_histogram",
        f"Scored faces per {AGE_BIN_YEARS}-year estimated-age bin and gender, faces scored in range.",
        f"SELECT toUInt16(intDiv(toUInt16(greatest(age, 0)), {AGE_BIN_YEARS}) * {AGE_BIN_YEARS}) AS age_from,"  # noqa: S608
        " gender, count() AS faces"
        f" FROM ({_FACES}) GROUP BY age_from, gender ORDER BY age_from, gender",
        RangeParams,
    ),
    NamedQuery(
        "gender_split",
        "Scored faces per estimated gender, with percent of all faces, faces scored in range.",
        f"SELECT gender, count() AS faces, round(100 * faces / sum(faces) OVER (), 1) AS pct FROM ({_FACES})"  # noqa: S608
        " GROUP BY gender ORDER BY gender",
        RangeParams,
    ),
    NamedQuery(
        "attractiveness_by_group",
        "Attractiveness by gender and age band (faces scored in range): faces, faces with a score (withheld for"
        " minors), mean, median and p90 (interpolated, like the KPIs' and latencies').",
        f"SELECT gender, {_AGE_BAND} AS age_band, count() AS faces, count(attractiveness) AS scored,"  # noqa: S608
        " if(scored = 0, NULL, round(avg(attractiveness), 2)) AS mean,"
        " if(scored = 0, NULL, round(quantilesExactInclusive(0.5, 0.9)(attractiveness)[1], 2)) AS median,"
        " if(scored = 0, NULL, round(quantilesExactInclusive(0.5, 0.9)(attractiveness)[2], 2)) AS p90"
        f" FROM ({_FACES}) GROUP BY gender, age_band ORDER BY gender, age_band",
        RangeParams,
    ),
    NamedQuery(
        "hot_ratings_by_gender",
        f"Ratings in range by rater's and rated face's gender: ratings, 'hot' ones (hot_or_not = 1, or ≥"
        f" {HOT_RATING_1TO10:g} of 10) and their percent. The rater's gender is that of face 0 of their own latest"
        " scored photo when they rated, as the website told us ('unknown' when they had none); the rated face's is"
        " the one the rater was shown.",
        _HOT_RATINGS_SQL,
        RangeParams,
    ),
    NamedQuery(
        "traffic_sources",
        "Photos uploaded in range per referrer domain ('share link' when via a share, 'direct' without referrer) and"
        " per utm_source, with percent within each dimension.",
        _TRAFFIC_SOURCES_SQL,
        RangeParams,
    ),
)


def _with_lineage(query: NamedQuery) -> NamedQuery:
    """Prefix a comment naming the raw table every rollup derives from: readable in system.query_log, and every
    registered query keeps naming ``{db}.events`` (the registry's own tests check that each query reads our data)."""
    sql = f"/* derived from {{db}}.events by the MVs of infra/clickhouse/002–008 */\n{query.sql.strip()}"
    return NamedQuery(query.name, query.description, sql, query.params)


QUERIES.update({q.name: _with_lineage(q) for q in _VIRALITY_QUERIES})
