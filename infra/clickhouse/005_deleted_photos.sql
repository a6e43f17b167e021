-- Forgetting deleted photos: when a photo is deleted (photo.deleted with reason owner or retention), analytics drops
-- its per-photo detail and keeps only the anonymous aggregates (the per-minute/hour rollups of 002-004).
--
-- * deleted_photos: one row per forgotten photo, filled by a view from the photo.deleted events themselves, so the
--   mark lands in the same insert as the event. The ingestion (services/analytics/forget.py) looks up every photo id
--   of a batch here after inserting it and deletes the detail of the ones it finds: the deletion itself, a
--   redelivered deletion (deletes nothing the second time) and a late event of a deleted photo (a card rendered or a
--   rating submitted after the deletion) all end with no detail left. reason 'ephemeral' ("don't store my photo":
--   the image is discarded, the scores are kept on purpose) is not a mark; any other reason is, so a future reason
--   forgets by default. ReplacingMergeTree: duplicates of a deletion collapse; lookups read DISTINCT.
-- * The view's backfill (the migration runner runs its SELECT over the stored events) marks deletions ingested before this migration, then the statements after it forget those photos'
--   detail once (idempotent: a re-run deletes nothing more). The UPDATE gives result page views (/p/{photo_id})
--   ingested before ingest.photo_id_of existed the photo id the ingestion now stores for them.
-- Deletes are lightweight (DELETE FROM: rows are masked once the delete is applied, and their bytes leave the disk at
-- the parts' next merge). These run synchronously; the ingestion registers its own without waiting (see forget.py).
-- Plain ClickHouse SQL: runs on chDB and on a ClickHouse server (>= 23.3 for lightweight deletes).

CREATE TABLE IF NOT EXISTS {db}.deleted_photos
(
    photo_id   String,
    deleted_at DateTime64(3, 'UTC'),
    reason     LowCardinality(String)
)
ENGINE = ReplacingMergeTree
ORDER BY photo_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.deleted_photos_mv TO {db}.deleted_photos AS
SELECT photo_id, occurred_at AS deleted_at, JSONExtractString(payload, 'reason') AS reason
FROM {db}.events
WHERE type = 'photo.deleted' AND photo_id != '' AND JSONExtractString(payload, 'reason') != 'ephemeral';

ALTER TABLE {db}.events UPDATE photo_id = substring(JSONExtractString(payload, 'path'), 4)
WHERE type = 'page.viewed' AND photo_id = ''
  AND match(JSONExtractString(payload, 'path'), '^/p/[A-Za-z0-9_-]{16,64}$')
SETTINGS mutations_sync = 2;

DELETE FROM {db}.events
WHERE photo_id IN (SELECT photo_id FROM {db}.deleted_photos) AND type != 'photo.deleted';

DELETE FROM {db}.photo_timeline WHERE photo_id IN (SELECT photo_id FROM {db}.deleted_photos);

DELETE FROM {db}.scored_faces WHERE photo_id IN (SELECT photo_id FROM {db}.deleted_photos);

DELETE FROM {db}.ratings WHERE photo_id IN (SELECT photo_id FROM {db}.deleted_photos);

DELETE FROM {db}.shares WHERE photo_id IN (SELECT photo_id FROM {db}.deleted_photos);

DELETE FROM {db}.photo_stages WHERE photo_key IN (SELECT cityHash64(photo_id) FROM {db}.deleted_photos);
