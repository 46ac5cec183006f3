-- Database roles: each function connects as a login user in one of these group roles
-- (NOLOGIN; the login users and their passwords are made by `stele db create-login`, never
-- by a migration), and each group holds exactly what its function's statements need.
--
--   stele_writer        the batch-writer: inserts events, claims ids, moves stream_progress,
--                       appends to the verifiable log, creates day partitions (through
--                       stele_create_day_partition only). Cannot delete, detach or drop.
--   stele_archiver      the archiver: reads everything, keeps archive_jobs, claims and
--                       deletes late rows, prunes event_ids, detaches and drops day
--                       partitions, writes tlog_checkpoints. Cannot insert events.
--   stele_checkpointer  signs checkpoints: reads the log, writes tlog_checkpoints.
--   stele_reader        the read path: SELECT only.
--
-- PostgreSQL ties CREATE TABLE ... PARTITION OF, DETACH PARTITION and DROP TABLE to
-- ownership (of the parent, and of the partition to drop), not to a grantable privilege. So:
--   stele_partition_owner  (NOLOGIN) owns audit_events and every day partition, and has
--                          revoked its own INSERT/UPDATE/DELETE/TRUNCATE on them;
--   the archiver is a member (it must detach and drop), the writer is not: it creates
--   partitions through stele_create_day_partition(date), a SECURITY DEFINER function owned
--   by stele_partition_owner, so every partition, whoever asked for it, has the same owner
--   and stays detachable and droppable by the archiver and readable by all through the parent.
--
-- Roles are cluster-wide: several databases of one cluster (the tests' per-test databases)
-- may run this at once, so every CREATE ROLE and GRANT of a role tolerates the other's.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['stele_partition_owner', 'stele_writer', 'stele_archiver',
                             'stele_checkpointer', 'stele_reader']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- made meanwhile by a migration of another database
            END;
        END IF;
    END LOOP;
END
$$;

-- Memberships: the archiver acts as the partitions' owner; whoever runs the migrations
-- (the master user) must be a member to hand tables to it (ALTER ... OWNER TO).
DO $$
BEGIN
    IF NOT pg_has_role('stele_archiver', 'stele_partition_owner', 'MEMBER') THEN
        BEGIN
            GRANT stele_partition_owner TO stele_archiver;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    IF NOT pg_has_role(current_user, 'stele_partition_owner', 'MEMBER') THEN
        BEGIN
            GRANT stele_partition_owner TO CURRENT_USER;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;

-- Per database: reach the schema, the database's temporary tables (the batch-writer's
-- COPY staging table), and the schema version (a function's start-up checks it).
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO stele_writer, stele_archiver, stele_checkpointer, stele_reader',
                   current_schema());
    EXECUTE format('GRANT CREATE ON SCHEMA %I TO stele_partition_owner', current_schema());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO stele_writer, stele_archiver, stele_checkpointer, stele_reader',
                   current_database());
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO stele_writer', current_database());
END
$$;

GRANT SELECT ON stele_migrations TO stele_writer, stele_archiver, stele_checkpointer, stele_reader;

-- audit_events and its day partitions (attached, or detached and kept) go to
-- stele_partition_owner, which keeps SELECT and none of the row-writing privileges.
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN
        SELECT c.relname::text FROM pg_class c
         WHERE c.relnamespace = current_schema()::regnamespace
           AND (c.relname = 'audit_events'
                OR (c.relkind = 'r' AND c.relname ~ '^audit_events_p[0-9]{8}$'))
    LOOP
        EXECUTE format('ALTER TABLE %I OWNER TO stele_partition_owner', t);
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON %I FROM stele_partition_owner', t);
    END LOOP;
END
$$;

-- The one way to create a day partition without owning audit_events. The name and bounds
-- come from the date alone (as crate::partitions makes them); a day the archiver has taken
-- (a row in archive_jobs) gets none. Returns whether it created the partition.
GRANT SELECT ON archive_jobs TO stele_partition_owner;

DO $$
BEGIN
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION stele_create_day_partition(p_day date) RETURNS boolean
        LANGUAGE plpgsql SECURITY DEFINER
        SET search_path = %I, pg_temp
        AS $body$
        DECLARE
            part text := 'audit_events_p' || to_char(p_day, 'YYYYMMDD');
        BEGIN
            IF p_day IS NULL THEN
                RAISE EXCEPTION 'stele_create_day_partition: the day is null';
            END IF;
            IF EXISTS (SELECT 1 FROM archive_jobs j WHERE j.day = p_day)
               OR to_regclass(part) IS NOT NULL THEN
                RETURN false;
            END IF;
            EXECUTE format('CREATE TABLE %%I PARTITION OF audit_events FOR VALUES FROM (%%L) TO (%%L)',
                           part,
                           to_char(p_day, 'YYYY-MM-DD') || ' 00:00:00+00',
                           to_char(p_day + 1, 'YYYY-MM-DD') || ' 00:00:00+00');
            EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON %%I FROM stele_partition_owner',
                           part);
            RETURN true;
        END
        $body$
    $f$, current_schema());
END
$$;

ALTER FUNCTION stele_create_day_partition(date) OWNER TO stele_partition_owner;
REVOKE ALL ON FUNCTION stele_create_day_partition(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION stele_create_day_partition(date) TO stele_writer, stele_archiver;

-- The batch-writer: one insert statement (event_ids, audit_events or late_events,
-- stream_progress; the staging table is LIKE audit_events, which needs SELECT on it),
-- closed days from archive_jobs, and the log's heads and tiles, locked and updated in
-- the same transaction.
GRANT SELECT, INSERT ON audit_events, late_events, event_ids TO stele_writer;
GRANT SELECT, INSERT, UPDATE ON stream_progress TO stele_writer;
GRANT SELECT ON archive_jobs TO stele_writer;
GRANT SELECT, INSERT, UPDATE ON tlog_heads, tlog_tiles TO stele_writer;

-- The archiver: audit_events and its partitions as their owner (stele_partition_owner),
-- job state, late rows (claim = UPDATE of archive_claimed only; delete once archived),
-- the dedup window's prune, the stream's consumed positions, and the log.
GRANT SELECT, INSERT, UPDATE ON archive_jobs TO stele_archiver;
GRANT SELECT, DELETE ON late_events, event_ids TO stele_archiver;
GRANT UPDATE (archive_claimed) ON late_events TO stele_archiver;
GRANT SELECT ON stream_progress TO stele_archiver;
GRANT SELECT ON tlog_heads, tlog_tiles, tlog_checkpoints TO stele_archiver;
GRANT INSERT, UPDATE ON tlog_checkpoints TO stele_archiver;

-- The checkpointer: reads the log, records signed checkpoints.
GRANT SELECT ON tlog_heads, tlog_tiles, tlog_checkpoints TO stele_checkpointer;
GRANT INSERT, UPDATE ON tlog_checkpoints TO stele_checkpointer;

-- The reader: SELECT, nothing else.
GRANT SELECT ON audit_events, late_events, event_ids, stream_progress, archive_jobs,
                tlog_heads, tlog_tiles, tlog_checkpoints TO stele_reader;
