-- One event id, one row. The primary keys of audit_events and late_events include
-- occurred_at (the partition key), so on their own they let the same event id be
-- stored twice with two timestamps, and cannot tell a redelivery (same content)
-- from a re-sent id with other content. This table is the idempotency key proper:
-- the batch-writer claims (tenant_id, event_id) here, in the same transaction as
-- the row, and stores the row only if the claim is new; a claimed id whose hash
-- differs is a conflict (dead-lettered with both hashes, never silently dropped).
--
-- Ids are kept for a deduplication window (STELE_DEDUP_WINDOW_HOURS, at least the
-- stream's retention plus ingest's maximum lateness), then pruned by the archiver.
-- BRIN on received_at: rows arrive in received_at order, so the prune finds them
-- cheaply without a second B-tree on every insert.
CREATE TABLE event_ids (
    tenant_id   text        NOT NULL,
    event_id    uuid        NOT NULL,
    event_hash  bytea       NOT NULL CHECK (octet_length(event_hash) = 32),
    received_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);

CREATE INDEX event_ids_received_at ON event_ids USING brin (received_at);

-- Ids already stored claim their place (the first received wins, as it would have),
-- for the default window only (10 days: the rest of a 30-day hot store cannot be
-- re-sent any more), written in received_at order so the BRIN index serves the prune.
INSERT INTO event_ids (tenant_id, event_id, event_hash, received_at)
SELECT * FROM (
    SELECT DISTINCT ON (tenant_id, event_id) tenant_id, event_id, event_hash, received_at
      FROM (SELECT tenant_id, event_id, event_hash, received_at FROM audit_events
             WHERE received_at > now() - interval '240 hours'
            UNION ALL
            SELECT tenant_id, event_id, event_hash, received_at FROM late_events
             WHERE received_at > now() - interval '240 hours') AS stored
     ORDER BY tenant_id, event_id, received_at) AS first_received
 ORDER BY received_at;
