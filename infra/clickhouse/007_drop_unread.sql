-- What no dashboard query reads since 006, dropped so that ingestion stops paying for it:
-- * ratings (003) and its view: one row per rating, read only by the hot-ratings panel, which now reads the per-minute
--   rollup rating_genders (006). The forgetting of deleted photos no longer needs to clear it either
--   (services/analytics/forget.py PER_PHOTO_TABLES).
-- * photo_stages' owner_key and face0_gender (004): they fed the same panel's read-time join of raters with the gender
--   of their own photo's face 0. face0_gender cost a JSON walk over the faces of every photo.scored at insert.
-- A view's SELECT cannot be altered portably, so photo_stages_mv is dropped and created again without the two
-- columns; the migration runner then backfills it from the stored events like any new view (min/max columns: a re-run
-- adds nothing). Events inserted between the DROP and the CREATE are covered by that backfill.

DROP VIEW IF EXISTS {db}.ratings_mv;

DROP TABLE IF EXISTS {db}.ratings;

DROP VIEW IF EXISTS {db}.photo_stages_mv;

ALTER TABLE {db}.photo_stages DROP COLUMN IF EXISTS owner_key, DROP COLUMN IF EXISTS face0_gender;

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
       if(type = 'photo.uploaded' AND share_id != '', cityHash64(share_id), 0) AS via_key
FROM {db}.events
WHERE photo_id != '' AND type IN ('photo.uploaded', 'faces.detected', 'photo.scored', 'card.rendered',
                                  'photo.shared', 'share.viewed');
