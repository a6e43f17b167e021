-- The funnel in visitors: photo_stages gets its photo's owner back, as a 64-bit key.
--
-- The funnel counted visitors at its first step but photos at the next ones and uploads at the last, so a visitor
-- with three photos read 300 % of the step before. Counting distinct visitors per step needs each photo's uploader
-- next to its stage times. 007 dropped photo_stages' owner_key because no query read it; the funnel does now.
-- photo_timeline (002) keeps the uploader too, but reading it with FINAL (String key, Nullable columns, no forced
-- merges) costs 150–300 ms at 1.25M photos by itself, the whole panel's budget (benchmarks/results/dashboard_queries.md).
-- * owner_key: cityHash64 of the uploader's visitor id (0: uploaded without one), set by the photo.uploaded row only,
--   max-merged like via_key. Two of 1M visitors collide with odds ~3e-8, as photo keys do (004).
-- * Forgetting a deleted photo (services/analytics/forget.py) already deletes its photo_stages row, owner included.
-- As in 007, the view's SELECT cannot be altered portably: it is dropped and created again with the new column, and
-- the migration runner backfills it from the stored events (min/max columns: rows already there absorb the re-run,
-- and rows written before this migration get their owner from the backfill's max). Events inserted between the DROP
-- and the CREATE are covered by that backfill. Plain ClickHouse SQL: runs on chDB and on a ClickHouse server.

ALTER TABLE {db}.photo_stages ADD COLUMN IF NOT EXISTS owner_key SimpleAggregateFunction(max, UInt64);

DROP VIEW IF EXISTS {db}.photo_stages_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.photo_stages_mv TO {db}.photo_stages AS
SELECT cityHash64(photo_id) AS photo_key,
       if(type = 'photo.uploaded', toUnixTimestamp64Milli(occurred_at), 9223372036854775807) AS uploaded_ms,
       if(type = 'faces.detected', toUnixTimestamp64Milli(occurred_at), 9223372036854775807) AS detected_ms,
       if(type = 'photo.scored', toUnixTimestamp64Milli(occurred_at), 9223372036854775807) AS scored_ms,
       if(type = 'card.rendered', toUnixTimestamp64Milli(occurred_at), 9223372036854775807) AS carded_ms,
       if(type = 'photo.shared', toUnixTimestamp64Milli(occurred_at), 9223372036854775807) AS shared_ms,
       if(type = 'share.viewed', toUnixTimestamp64Milli(occurred_at), 9223372036854775807) AS viewed_ms,
       toUInt16(if(type = 'faces.detected', JSONLength(payload, 'faces'), 0)) AS faces_found,
       toUInt16(if(type = 'photo.scored', JSONLength(payload, 'faces'), 0)) AS faces_scored,
       if(type = 'photo.uploaded' AND share_id != '', cityHash64(share_id), 0) AS via_key,
       if(type = 'photo.uploaded' AND visitor_id != '', cityHash64(visitor_id), 0) AS owner_key
FROM {db}.events
WHERE photo_id != '' AND type IN ('photo.uploaded', 'faces.detected', 'photo.scored', 'card.rendered',
                                  'photo.shared', 'share.viewed');
