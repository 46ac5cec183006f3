-- How far the batch-writer has consumed each Kinesis shard, committed in the same
-- transaction as the rows: the last sequence number stored and the newest
-- received_at among them. The archiver asks the stream what lies after that
-- position; the arrival time of the oldest record not yet consumed is the low-water
-- mark below which every accepted event is in PostgreSQL, and no day is archived
-- before the mark has passed its end plus the lateness (a backlog in the stream
-- waits for its records instead of becoming late rows).
CREATE TABLE stream_progress (
    shard_id        text        PRIMARY KEY,
    sequence_number text        NOT NULL,
    received_at     timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
