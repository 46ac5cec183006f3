-- Accepted events whose day is already archived (or being archived): the day has no
-- partition to take them, so the batch-writer stores them here, in the same transaction
-- as the rest of its batch, and the archiver writes them to S3 as a supplement of that
-- day (an extra Parquet file per tenant and a new manifest version), then deletes them.
-- `archive_claimed` marks the rows a supplement covers: rows that land while one is
-- being written wait for the next, so the archiver deletes exactly what it verified.
CREATE TABLE late_events (
    LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    archive_claimed boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, event_id, occurred_at)
);

CREATE INDEX late_events_occurred_at ON late_events (occurred_at);
