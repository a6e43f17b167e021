-- Pre-shaped tables that take the dashboard's heaviest reads off the raw facts (measured in
-- benchmarks/results/dashboard_queries.md, section "Round 2"). What 002/003 still paid at read time, and what
-- replaces it here:
-- * photo_stages: photo_timeline read with FINAL merged ~2M rows of Nullable columns on a String key. This table holds
--   the same first-time-per-stage facts on a 64-bit key with plain Int64 milliseconds (NEVER_MS = not reached), read
--   with FINAL too (exact in any merge state), at a fraction of the cost: ~15 ms for 1.25M photos once merged, while
--   several unmerged parts still cost a merge of all their rows (random keys: every part overlaps every other). It
--   also carries what the KPIs and the hot-ratings panel need from a photo: the faces scored (photos and evaluations
--   are counted in the same pass instead of merging 2.4M ids), its owner and the gender of its face 0 (no join of
--   photo_timeline with scored_faces). Keys are cityHash64 of the ids: two of 1M photos collide with odds ~3e-8
--   (~3e-4 at 100M), acceptable for a dashboard; the raw tables keep the ids for what must be exact to the photo.
-- * upload_sources: per minute × referrer class × utm_source, uniqExact states of upload event ids. Spike attribution
--   and traffic sources read the minutes they need instead of every photo (an upload event carries its own
--   attribution, so no join with later stages is needed). Duplicates add the same id to the same set: exact.
-- * hour_visitors: uniq states of visitor ids per hour and type, plus type '*' (any type). Merging 720 per-minute
--   states per type for a 12-hour range cost ~350 ms at 2M visitors; whole hours come from here and only the partial
--   hours at a range's edges from minute_visitors (003). Same precision as 003: exact to 65,536 distinct visitors per
--   state, ~1 % off beyond.
-- * minute_counts: minute_rollup (002) again, but with uniqExact states of 64-bit hashes of the ids instead of the
--   UUIDs: the sets are half the size and merge about twice as fast, which the KPIs (shares, share views, ratings:
--   2.6M ids at 10M events) and the spike series (1.2M evaluations) pay on every refresh. Exact unless two ids of the same type and minute collide in 64 bits: odds ~3e-10
--   for a minute of 100k events. Evaluations are (scored event, face index) pairs as in 002.
-- * min_age_to_force_merge_seconds = 120 on these tables and on the ones 002/003 made that panels read with FINAL or
--   by merging states (ratings, scored_faces, shares): ClickHouse's merge selector leaves ~6 overlapping parts at
--   rest, and FINAL (or a state merge) over random keys then merges every row of every part at read time: 300+ ms
--   for 1.25M photos instead of ~40 ms once merged. Forcing parts older than two minutes into one bounds what a read
--   merges to the last two minutes of inserts, at the price of rewriting each table about every two minutes while
--   ingesting (~0.5 s of CPU per 1M photos).
-- Each MV is backfilled by the migration runner with its own SELECT, idempotently (min/max and uniq states absorb a re-run). Plain ClickHouse SQL: runs
-- on chDB and on a ClickHouse server. NEVER_MS is Int64's maximum (9223372036854775807), the neutral value of min.

CREATE TABLE IF NOT EXISTS {db}.photo_stages
(
    photo_key    UInt64,
    uploaded_ms  SimpleAggregateFunction(min, Int64),
    detected_ms  SimpleAggregateFunction(min, Int64),
    scored_ms    SimpleAggregateFunction(min, Int64),
    carded_ms    SimpleAggregateFunction(min, Int64),
    shared_ms    SimpleAggregateFunction(min, Int64),
    viewed_ms    SimpleAggregateFunction(min, Int64),
    faces_found  SimpleAggregateFunction(max, UInt16),
    faces_scored SimpleAggregateFunction(max, UInt16),
    owner_key    SimpleAggregateFunction(max, UInt64),
    via_key      SimpleAggregateFunction(max, UInt64),
    face0_gender SimpleAggregateFunction(max, String)
)
ENGINE = AggregatingMergeTree
ORDER BY photo_key
SETTINGS min_age_to_force_merge_seconds = 120;

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
       if(type = 'photo.uploaded' AND visitor_id != '', cityHash64(visitor_id), 0) AS owner_key,
       if(type = 'photo.uploaded' AND share_id != '', cityHash64(share_id), 0) AS via_key,
       if(type = 'photo.scored',
          JSONExtractString(arrayFirst(f -> JSONExtractUInt(f, 'index') = 0, JSONExtractArrayRaw(payload, 'faces')),
                            'gender'),
          '') AS face0_gender
FROM {db}.events
WHERE photo_id != '' AND type IN ('photo.uploaded', 'faces.detected', 'photo.scored', 'card.rendered',
                                  'photo.shared', 'share.viewed');

CREATE TABLE IF NOT EXISTS {db}.upload_sources
(
    minute     DateTime('UTC'),
    referrer   LowCardinality(String),
    utm_source LowCardinality(String),
    uploads    AggregateFunction(uniqExact, UUID)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, referrer, utm_source)
SETTINGS min_age_to_force_merge_seconds = 120;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.upload_sources_mv TO {db}.upload_sources AS
SELECT toStartOfMinute(occurred_at) AS minute,
       if(share_id != '', 'share link',
          if(domainWithoutWWW(JSONExtractString(payload, 'attribution', 'referrer')) != '',
             domainWithoutWWW(JSONExtractString(payload, 'attribution', 'referrer')), 'direct')) AS referrer,
       if(JSONExtractString(payload, 'attribution', 'utm_source') != '',
          JSONExtractString(payload, 'attribution', 'utm_source'), '(none)') AS utm_source,
       uniqExactState(event_id) AS uploads
FROM {db}.events
WHERE type = 'photo.uploaded'
GROUP BY minute, referrer, utm_source;

CREATE TABLE IF NOT EXISTS {db}.hour_visitors
(
    hour     DateTime('UTC'),
    type     LowCardinality(String),
    visitors AggregateFunction(uniq, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (type, hour)
SETTINGS min_age_to_force_merge_seconds = 120;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.hour_visitors_mv TO {db}.hour_visitors AS
SELECT hour, kind AS type, uniqState(visitor_id) AS visitors
FROM (SELECT toStartOfHour(occurred_at) AS hour, type AS event_type, visitor_id FROM {db}.events
      WHERE visitor_id != '')
ARRAY JOIN [event_type, '*'] AS kind
GROUP BY hour, kind;

CREATE TABLE IF NOT EXISTS {db}.minute_counts
(
    minute DateTime('UTC'),
    type   LowCardinality(String),
    events AggregateFunction(uniqExact, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (type, minute)
SETTINGS min_age_to_force_merge_seconds = 120;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.minute_counts_events_mv TO {db}.minute_counts AS
SELECT toStartOfMinute(occurred_at) AS minute, type, uniqExactState(cityHash64(event_id)) AS events
FROM {db}.events
GROUP BY minute, type;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.minute_counts_faces_mv TO {db}.minute_counts AS
SELECT toStartOfMinute(occurred_at) AS minute, 'face.scored' AS type,
       uniqExactState(cityHash64(event_id, face)) AS events
FROM (SELECT event_id, occurred_at, payload FROM {db}.events WHERE type = 'photo.scored')
ARRAY JOIN range(JSONLength(payload, 'faces')) AS face
GROUP BY minute;

ALTER TABLE {db}.ratings MODIFY SETTING min_age_to_force_merge_seconds = 120;

ALTER TABLE {db}.scored_faces MODIFY SETTING min_age_to_force_merge_seconds = 120;

ALTER TABLE {db}.shares MODIFY SETTING min_age_to_force_merge_seconds = 120;
