-- The hot store: one row per accepted event, partitioned by UTC day of occurred_at.
-- The partition key is part of the primary key (Postgres requires it of every unique
-- key on a partitioned table); (tenant_id, event_id) is the idempotency key proper.
CREATE TABLE audit_events (
    tenant_id        text        NOT NULL,
    event_id         uuid        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    received_at      timestamptz NOT NULL,
    category         text        NOT NULL CHECK (category IN ('audit', 'security', 'application')),
    action           text        NOT NULL,
    outcome          text        NOT NULL CHECK (outcome IN ('success', 'failure', 'denied', 'error', 'unknown')),
    actor_id         text        NOT NULL,
    actor_type       text        NOT NULL CHECK (actor_type IN ('user', 'service', 'system', 'api_key')),
    actor_display    text,
    actor_ip         text,
    actor_user_agent text,
    resource_type    text,
    resource_id      text,
    resource_display text,
    changes          jsonb,
    metadata         jsonb,
    correlation_id   text,
    causation_id     text,
    trace_parent     text,
    trace_state      text,
    source_service   text        NOT NULL,
    source_version   text,
    source_host      text,
    source_region    text,
    schema_version   smallint    NOT NULL,
    event_hash       bytea       NOT NULL CHECK (octet_length(event_hash) = 32),
    kinesis_shard    text,
    kinesis_seq      text,
    PRIMARY KEY (tenant_id, event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);

-- No DEFAULT partition: it would block DETACH PARTITION ... CONCURRENTLY.

CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, occurred_at DESC);
CREATE INDEX audit_events_tenant_actor ON audit_events (tenant_id, actor_id, occurred_at);
CREATE INDEX audit_events_tenant_resource ON audit_events (tenant_id, resource_type, resource_id, occurred_at);

-- One row per day partition that the archiver has started on; makes it resumable.
-- A day with a row here is closed to new partitions (see partitions::ensure_days).
CREATE TABLE archive_jobs (
    partition_name  text        PRIMARY KEY,
    day             date        NOT NULL UNIQUE,
    state           text        NOT NULL,
    rows            bigint,
    files           integer,
    bytes           bigint,
    manifest_key    text,
    manifest_sha256 text,
    error           text,
    attempts        integer     NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
