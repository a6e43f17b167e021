-- The virality dashboard's model: rollups and narrow fact tables fed by materialized views over {db}.events.
--
-- Why three shapes, and how each stays exact although MVs see every inserted row (duplicates included: a re-published
-- event gets new offsets, so the insert dedup token does not catch it, and ReplacingMergeTree merges only later):
-- 1. minute_rollup (AggregatingMergeTree): per minute and event type, uniqExact states of event ids and visitor ids.
--    A duplicate adds the same id to the same set, so merged figures are exact at any time, before or after merges.
--    Evaluations (faces scored) are rows of the pseudo-type 'face.scored' whose id is a deterministic UUID of
--    (event_id, face index): duplicates of a scored event hash to the same ids.
-- 2. photo_timeline (AggregatingMergeTree, SimpleAggregateFunction min/max): one row per photo with the first time
--    it reached each stage plus its uploader and attribution. min and max are idempotent, so duplicates are harmless.
--    Stage latencies, time to result, the funnel and spike attribution read it instead of parsing JSON payloads.
-- 3. scored_faces (ReplacingMergeTree): one row per scored face (age, gender, attractiveness) for the distributions.
--    Duplicates share the sorting key, so queries read it with FINAL (cheap: a narrow table, no JSON).
-- Each MV is backfilled with its own SELECT over the events stored before it existed (the migration runner does it:
-- libs.common.analytics_store.backfill_statement); re-running it (an interrupted migration)
-- is harmless for the same reasons. (The faces MV filters in a subquery: its `'face.scored' AS type` alias would
-- otherwise shadow the column in WHERE.) Plain ClickHouse SQL: runs on chDB and on a ClickHouse server.

CREATE TABLE IF NOT EXISTS {db}.minute_rollup
(
    minute   DateTime('UTC'),
    type     LowCardinality(String),
    events   AggregateFunction(uniqExact, UUID),
    visitors AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (type, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.minute_rollup_events_mv TO {db}.minute_rollup AS
SELECT toStartOfMinute(occurred_at) AS minute, type,
       uniqExactState(event_id) AS events,
       uniqExactStateIf(visitor_id, visitor_id != '') AS visitors
FROM {db}.events
GROUP BY minute, type;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.minute_rollup_faces_mv TO {db}.minute_rollup AS
SELECT toStartOfMinute(occurred_at) AS minute, 'face.scored' AS type,
       uniqExactState(reinterpretAsUUID(MD5(concat(toString(event_id), ':', toString(face))))) AS events,
       uniqExactStateIf(visitor_id, 0) AS visitors
FROM (SELECT event_id, occurred_at, payload, visitor_id FROM {db}.events WHERE type = 'photo.scored')
ARRAY JOIN range(JSONLength(payload, 'faces')) AS face
GROUP BY minute;

CREATE TABLE IF NOT EXISTS {db}.photo_timeline
(
    photo_id      String,
    uploaded_at   SimpleAggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    detected_at   SimpleAggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    scored_at     SimpleAggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    carded_at     SimpleAggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    shared_at     SimpleAggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    share_viewed_at SimpleAggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    failed_at     SimpleAggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    faces_found   SimpleAggregateFunction(max, UInt16),
    uploader      SimpleAggregateFunction(max, String),
    via_share     SimpleAggregateFunction(max, String),
    referrer      SimpleAggregateFunction(max, String),
    utm_source    SimpleAggregateFunction(max, String)
)
ENGINE = AggregatingMergeTree
ORDER BY photo_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.photo_timeline_mv TO {db}.photo_timeline AS
SELECT photo_id,
       if(type = 'photo.uploaded', occurred_at, NULL) AS uploaded_at,
       if(type = 'faces.detected', occurred_at, NULL) AS detected_at,
       if(type = 'photo.scored', occurred_at, NULL) AS scored_at,
       if(type = 'card.rendered', occurred_at, NULL) AS carded_at,
       if(type = 'photo.shared', occurred_at, NULL) AS shared_at,
       if(type = 'share.viewed', occurred_at, NULL) AS share_viewed_at,
       if(type = 'photo.failed', occurred_at, NULL) AS failed_at,
       toUInt16(if(type = 'faces.detected', JSONLength(payload, 'faces'), 0)) AS faces_found,
       if(type = 'photo.uploaded', visitor_id, '') AS uploader,
       if(type = 'photo.uploaded', share_id, '') AS via_share,
       if(type = 'photo.uploaded', domainWithoutWWW(JSONExtractString(payload, 'attribution', 'referrer')), '')
           AS referrer,
       if(type = 'photo.uploaded', JSONExtractString(payload, 'attribution', 'utm_source'), '') AS utm_source
FROM {db}.events
WHERE photo_id != '' AND type IN ('photo.uploaded', 'faces.detected', 'photo.scored', 'card.rendered',
                                  'photo.shared', 'share.viewed', 'photo.failed');

CREATE TABLE IF NOT EXISTS {db}.scored_faces
(
    event_id       UUID,
    face_index     UInt8,
    occurred_at    DateTime64(3, 'UTC'),
    photo_id       String,
    age            Float32,
    gender         LowCardinality(String),
    attractiveness Nullable(Float32)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toDate(occurred_at), event_id, face_index);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.scored_faces_mv TO {db}.scored_faces AS
SELECT event_id, toUInt8(JSONExtractUInt(face, 'index')) AS face_index, occurred_at, photo_id,
       toFloat32(JSONExtractFloat(face, 'age')) AS age, JSONExtractString(face, 'gender') AS gender,
       JSONExtract(face, 'attractiveness', 'Nullable(Float32)') AS attractiveness
FROM {db}.events
ARRAY JOIN JSONExtractArrayRaw(payload, 'faces') AS face
WHERE type = 'photo.scored';
