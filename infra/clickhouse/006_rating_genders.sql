-- Hot ratings by gender without read-time joins (measured in benchmarks/results/dashboard_queries.md): the panel joined
-- every rating in range (ratings FINAL, 1.25M at 10M events) with the raters' genders (photo_stages FINAL grouped by
-- owner) and the rated faces' genders (scored_faces): two hash joins of ~1.2M rows per refresh, p95 ~630 ms. Since
-- rating.submitted carries both genders itself (rated_gender: the rated face's, as shown to the rater; rater_gender:
-- face 0 of the rater's own latest scored photo, both as known when the rating was made; libs/common/events/web.py),
-- a per-minute rollup answers the panel from a few rows per minute.
-- * rating_genders: per minute × rater gender × rated gender × hot, uniqExact states of 64-bit hashes of the rating
--   event ids. Duplicates of an event (at-least-once delivery) carry the same minute, genders and id, so they add the
--   same hash to the same set: exact, like minute_counts (004; odds of two ids of one minute colliding in 64 bits
--   ~3e-10 at 100k per minute). '' = unknown (events published before the fields existed, raters without a photo).
--   hot follows the panel's rule (services/analytics/queries.py HOT_RATING_1TO10, HOT_RATING_HOT_OR_NOT): 1to10 ≥ 7,
--   hot_or_not ≥ 0.5.
-- * Forgetting deleted photos (005, services/analytics/forget.py) leaves this table alone, like the other per-minute
--   rollups: it holds no photo or visitor id, only counts per minute and gender pair, so a deleted photo's ratings
--   keep counting here (they happened) while its per-photo detail (events, ratings) goes.
-- The view is backfilled by the migration runner with its own SELECT (uniqExact states absorb a re-run); events
-- ingested before rating.submitted had the genders count as 'unknown'. Plain ClickHouse SQL: runs on chDB and on a
-- ClickHouse server.

CREATE TABLE IF NOT EXISTS {db}.rating_genders
(
    minute       DateTime('UTC'),
    rater_gender LowCardinality(String),
    rated_gender LowCardinality(String),
    hot          UInt8,
    ratings      AggregateFunction(uniqExact, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, rater_gender, rated_gender, hot)
SETTINGS min_age_to_force_merge_seconds = 120;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rating_genders_mv TO {db}.rating_genders AS
SELECT toStartOfMinute(occurred_at) AS minute,
       JSONExtractString(payload, 'rater_gender') AS rater_gender,
       JSONExtractString(payload, 'rated_gender') AS rated_gender,
       toUInt8(if(JSONExtractString(payload, 'scale') = '1to10', JSONExtractFloat(payload, 'rating') >= 7,
                  JSONExtractFloat(payload, 'rating') >= 0.5)) AS hot,
       uniqExactState(cityHash64(event_id)) AS ratings
FROM {db}.events
WHERE type = 'rating.submitted'
GROUP BY minute, rater_gender, rated_gender, hot;
