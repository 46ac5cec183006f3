-- stele archive in Athena (engine v3): the Glue table over
--   s3://<bucket>/<prefix>/tenant_id=<t>/dt=<YYYY-MM-DD>/part-<nnnnn>.parquet
-- written by functions/archiver. Columns come from functions/archiver/src/schema.rs
-- (`stele archive-schema` prints them; infra/terraform makes the same table with
-- aws_glue_catalog_table). The Parquet files hold neither tenant_id nor dt: both
-- come from the object key (Hive partition keys).
--
-- Partition projection: no crawler, no MSCK REPAIR TABLE, nothing to register
-- when a day is archived. tenant_id is "injected": every query must name its
-- tenant(s) with `tenant_id = '…'` or `tenant_id IN (…)`, which keeps each scan
-- inside one tenant's prefixes. dt is a date range of yyyy-MM-dd strings.
--
-- Tenant ids with characters Hive escapes (/ = : % # ? * ' " \ { [ ] ^, control
-- characters) are stored %XX-escaped in the key; inject the escaped form.

CREATE DATABASE IF NOT EXISTS stele_audit;

CREATE EXTERNAL TABLE IF NOT EXISTS stele_audit.audit_events (
  event_id          string,
  occurred_at       timestamp,   -- UTC instant, microseconds (Parquet isAdjustedToUTC)
  received_at       timestamp,
  category          string,      -- audit | security | application
  action            string,      -- noun.verb
  outcome           string,      -- success | failure | denied | error | unknown
  actor_id          string,
  actor_type        string,      -- user | service | system | api_key
  actor_display     string,
  actor_ip          string,
  actor_user_agent  string,
  resource_type     string,
  resource_id       string,
  resource_display  string,
  changes           string,      -- JSON text: {"before": …, "after": …}
  metadata          string,      -- JSON text
  correlation_id    string,
  causation_id      string,
  trace_parent      string,
  trace_state       string,
  source_service    string,
  source_version    string,
  source_host       string,
  source_region     string,
  schema_version    int,
  event_hash        string,      -- hex SHA-256 of the RFC 8785 canonical event
  kinesis_shard     string,
  kinesis_seq       string,
  leaf_index        bigint       -- the event's leaf in its tenant's verifiable log (stele verify)
)
PARTITIONED BY (tenant_id string, dt string)
STORED AS PARQUET
LOCATION 's3://BUCKET/audit/'
TBLPROPERTIES (
  'classification'              = 'parquet',
  'parquet.compression'         = 'ZSTD',
  'projection.enabled'          = 'true',
  'projection.tenant_id.type'   = 'injected',
  'projection.dt.type'          = 'date',
  'projection.dt.format'        = 'yyyy-MM-dd',
  'projection.dt.range'         = '2020-01-01,NOW',
  'projection.dt.interval'      = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template'   = 's3://BUCKET/audit/tenant_id=${tenant_id}/dt=${dt}'
);

-- Example queries. Always name the tenant; bound dt so only those days are read.

-- 1. One tenant's failed and denied logins in a week, newest first.
SELECT occurred_at, actor_id, actor_ip, outcome, json_extract_scalar(metadata, '$.request_id') AS request_id
  FROM stele_audit.audit_events
 WHERE tenant_id = 'acme'
   AND dt BETWEEN '2026-10-01' AND '2026-10-07'
   AND action = 'user.login'
   AND outcome IN ('failure', 'denied')
 ORDER BY occurred_at DESC
 LIMIT 100;

-- 2. Everything one actor did to one resource (the row groups' min/max
--    statistics on occurred_at prune most of each file).
SELECT occurred_at, action, outcome, changes
  FROM stele_audit.audit_events
 WHERE tenant_id = 'acme'
   AND dt BETWEEN '2026-09-01' AND '2026-09-30'
   AND actor_id = 'user-42'
   AND resource_type = 'document' AND resource_id = 'doc-7'
 ORDER BY occurred_at;

-- 3. Daily counts per tenant: compare with the manifests
--    (s3://BUCKET/audit/_manifests/dt=<d>.json → tenants[].rows).
SELECT tenant_id, dt, count(*) AS events
  FROM stele_audit.audit_events
 WHERE tenant_id IN ('acme', 'globex')
   AND dt BETWEEN '2026-10-01' AND '2026-10-31'
 GROUP BY tenant_id, dt
 ORDER BY tenant_id, dt;

-- 4. Look one event up by id (the client's idempotency key).
SELECT *
  FROM stele_audit.audit_events
 WHERE tenant_id = 'acme'
   AND dt = '2026-10-03'
   AND event_id = '0192f3a4-7c1e-7b3d-9a55-1f2e3d4c5b6a';

-- 5. The event hashes of one tenant and day in Merkle leaf order, to recompute
--    the manifest's merkle_root (RFC 6962, SHA-256) outside Athena.
SELECT event_hash
  FROM stele_audit.audit_events
 WHERE tenant_id = 'acme' AND dt = '2026-10-03'
 ORDER BY occurred_at, event_id;
