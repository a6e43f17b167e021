-- Shares counted as share actions, not as photo.shared events.
--
-- The upload service publishes photo.shared on every POST /api/v1/photos/{id}/share (services/upload/handlers.py
-- share_photo): the channel-less one of the "Share" button, which makes the page public, and one per press of a
-- channel (x, whatsapp, copy…). The result page asks for the channel-less one once per page load only, so a visitor
-- who reloads the page and presses "Share" again published a second one, and the 'shares' KPI (the sum of per-minute
-- photo.shared event sets) counted it as another share. The upload service must keep publishing it (a retry after a
-- broker outage finds the page already public and has to re-publish), so analytics collapses it.
-- * minute_counts gets rows of the pseudo-type 'share.action' (like 'face.scored' in 002/004): per minute, uniqExact
--   states of 64-bit ids of share actions. A channel press is its own action (id: the event id's hash, so
--   redeliveries collapse as in minute_counts); making a share public is one action per share and visitor (id: the
--   hash of share id, visitor id and ''), however often it is repeated. The KPI merges the states of its whole range
--   (services/analytics/queries.py), so a repeat in a later minute adds nothing; the per-minute series merges per
--   minute, where a repeat in another minute shows as that minute's action.
-- * An anonymous rollup (64-bit hashes, no photo or visitor id), like minute_counts itself: forgetting a deleted photo
--   (services/analytics/forget.py) leaves it alone, so the shares KPI stays put, as the sharers do.
-- The view is backfilled by the migration runner with its own SELECT (uniqExact states absorb a re-run). Plain
-- ClickHouse SQL: runs on chDB and on a ClickHouse server.

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.minute_counts_share_actions_mv TO {db}.minute_counts AS
SELECT toStartOfMinute(occurred_at) AS minute, 'share.action' AS type,
       uniqExactState(if(JSONExtractString(payload, 'channel') = '', cityHash64(share_id, visitor_id, ''),
                         cityHash64(event_id))) AS events
FROM (SELECT event_id, occurred_at, share_id, visitor_id, payload FROM {db}.events WHERE type = 'photo.shared')
GROUP BY minute;
