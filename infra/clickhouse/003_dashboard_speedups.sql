-- Narrow tables that keep the dashboard's heaviest panels fast at millions of events (measured in
-- benchmarks/results/dashboard_queries.md): every query of 002 that parsed JSON or merged huge exact sets at read
-- time now reads a small, pre-shaped table instead. Same duplicate rules as 002:
-- * minute_visitors: uniq (not uniqExact) states of visitor ids per minute and type. Duplicates cannot inflate it.
--   uniq is exact up to 65,536 distinct values per state and ~1 % off beyond (32-bit hashes, adaptive sampling):
--   per-minute figures stay exact at the seed's scale; a range total of millions of visitors is an estimate. Exact
--   distinct visitors over millions would cost seconds per refresh (one global hash set), which a dashboard can't pay.
-- * ratings (ReplacingMergeTree, read with FINAL): one row per rating with its fields extracted once at ingest.
-- * shares (AggregatingMergeTree, min/max): share id → photo, sharer and first time shared; idempotent.
-- Each MV is backfilled by the migration runner with its own SELECT, idempotently (uniq states and FINAL-deduplicated tables absorb a re-run).

CREATE TABLE IF NOT EXISTS {db}.minute_visitors
(
    minute   DateTime('UTC'),
    type     LowCardinality(String),
    visitors AggregateFunction(uniq, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (type, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.minute_visitors_mv TO {db}.minute_visitors AS
SELECT toStartOfMinute(occurred_at) AS minute, type, uniqState(visitor_id) AS visitors
FROM {db}.events
WHERE visitor_id != ''
GROUP BY minute, type;

CREATE TABLE IF NOT EXISTS {db}.ratings
(
    event_id    UUID,
    occurred_at DateTime64(3, 'UTC'),
    rater       String,
    photo_id    String,
    face_index  UInt8,
    scale       LowCardinality(String),
    rating      Float32
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toDate(occurred_at), event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.ratings_mv TO {db}.ratings AS
SELECT event_id, occurred_at, visitor_id AS rater, photo_id,
       toUInt8(JSONExtractUInt(payload, 'face_index')) AS face_index,
       JSONExtractString(payload, 'scale') AS scale, toFloat32(JSONExtractFloat(payload, 'rating')) AS rating
FROM {db}.events
WHERE type = 'rating.submitted';

CREATE TABLE IF NOT EXISTS {db}.shares
(
    share_id  String,
    photo_id  SimpleAggregateFunction(max, String),
    sharer    SimpleAggregateFunction(max, String),
    shared_at SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY share_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.shares_mv TO {db}.shares AS
SELECT share_id, photo_id, visitor_id AS sharer, occurred_at AS shared_at
FROM {db}.events
WHERE type = 'photo.shared';
