-- The raw event log: one row per event the analytics service consumed, from every topic.
--
-- Replays must not create duplicates, at two levels:
-- 1. Each insert carries insert_deduplication_token = "<topic>:<partition>:<first>-<last>:<digest of event ids>";
--    non_replicated_deduplication_window keeps the last 1000 tokens, so a batch re-inserted after a crash between
--    "write" and "commit offsets" (or re-read after an offset reset) is dropped by ClickHouse itself.
-- 2. ReplacingMergeTree with event_id in the sorting key collapses what slips through (a re-published event gets new
--    offsets, hence a new token; a replayed batch may be cut at other offsets). Duplicates share type and occurred_at,
--    so they share the sorting key. Exact queries use FINAL, uniqExact(event_id) or LIMIT 1 BY event_id.
-- Plain ClickHouse SQL: the same file runs on chDB and on a ClickHouse server.
CREATE TABLE IF NOT EXISTS {db}.events
(
    event_id    UUID,
    type        LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    photo_id    String,
    visitor_id  String,
    share_id    String,
    payload     String CODEC(ZSTD(3)),
    topic       LowCardinality(String),
    partition   UInt16,
    offset      UInt64,
    ingested_at DateTime64(3, 'UTC'),
    INDEX idx_photo_id photo_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_visitor_id visitor_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_share_id share_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (type, toDate(occurred_at), event_id)
SETTINGS non_replicated_deduplication_window = 1000;
