# ---------------------------------------------------------------------------------------------
# Naming
# ---------------------------------------------------------------------------------------------

variable "name" {
  description = "Prefix of every resource name (lower case, digits and dashes)."
  type        = string
  default     = "stele"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 characters of [a-z0-9-], starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}

variable "kms_key_arn" {
  description = "ARN of an existing customer managed KMS key for every encrypted resource. Null creates one key (rotation on) for the stack."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------------------------
# Lambda artifacts: `cargo lambda build --release --arm64 --output-format zip`
# ---------------------------------------------------------------------------------------------

variable "ingest_zip" {
  description = "Path of the ingest bootstrap.zip (target/lambda/stele-ingest/bootstrap.zip)."
  type        = string
}

variable "batch_writer_zip" {
  description = "Path of the batch-writer bootstrap.zip (target/lambda/stele-batch-writer/bootstrap.zip)."
  type        = string
}

variable "archiver_zip" {
  description = "Path of the archiver bootstrap.zip (target/lambda/stele-archiver/bootstrap.zip)."
  type        = string
}

variable "checkpointer_zip" {
  description = "Path of the checkpointer bootstrap.zip (target/lambda/stele-checkpointer/bootstrap.zip)."
  type        = string
}

variable "query_zip" {
  description = "Path of the query function's bootstrap.zip (target/lambda/stele-query/bootstrap.zip)."
  type        = string
}

variable "log_origin" {
  description = "STELE_LOG_ORIGIN: the log origin of this deployment (e.g. audit.example.com/prod), unique among the deployments a verifier trusts; no spaces or '+'. Null: <name>.<account>.<region>/stele."
  type        = string
  default     = null
  validation {
    condition     = var.log_origin == null || can(regex("^[^\\s+]+$", var.log_origin))
    error_message = "log_origin must be non-empty, without spaces or '+'."
  }
}

variable "checkpoint_schedule_expression" {
  description = "EventBridge Scheduler expression of the checkpointer: how often grown logs get a signed, published checkpoint."
  type        = string
  default     = "rate(1 minute)"
}

variable "rust_log" {
  description = "RUST_LOG of the functions."
  type        = string
  default     = "info"
}

variable "log_retention_days" {
  description = "Retention of the functions' and the API's CloudWatch log groups."
  type        = number
  default     = 365
}

variable "ingest_memory_mb" {
  description = "Memory of the ingest function."
  type        = number
  default     = 256
}

variable "batch_writer_memory_mb" {
  description = "Memory of the batch-writer function."
  type        = number
  default     = 512
}

variable "archiver_memory_mb" {
  description = "Memory of the archiver function (Arrow batches and Parquet row groups are buffered)."
  type        = number
  default     = 2048
}

variable "batch_writer_timeout_secs" {
  description = "Timeout of the batch-writer function."
  type        = number
  default     = 120
}

variable "archiver_timeout_secs" {
  description = "Timeout of the archiver function (a run that times out is resumed by the next one)."
  type        = number
  default     = 900
}

variable "ingest_reserved_concurrency" {
  description = "Reserved concurrency of the ingest function (-1: unreserved)."
  type        = number
  default     = 100
}

variable "batch_writer_reserved_concurrency" {
  description = "Reserved concurrency of the batch-writer (caps connections to Postgres). Must be at least shards x parallelization factor."
  type        = number
  default     = 20
}

variable "query_memory_mb" {
  description = "Memory of the query function (proofs read at most a few dozen tiles)."
  type        = number
  default     = 256
}

variable "export_worker_memory_mb" {
  description = "Memory of the export worker (asynchronous exports: a 256 MiB cache of archived files and an 8 MiB upload part)."
  type        = number
  default     = 1024
}

variable "export_worker_concurrency" {
  description = "Exports run at once (the worker's reserved concurrency and its queue mapping's maximum concurrency; each holds one database connection). At least 2."
  type        = number
  default     = 2
  validation {
    condition     = var.export_worker_concurrency >= 2 && var.export_worker_concurrency <= 1000
    error_message = "export_worker_concurrency must be 2..1000 (an SQS mapping's maximum concurrency starts at 2)."
  }
}

variable "export_max_attempts" {
  description = "Attempts at an asynchronous export before it fails for good (the export queue's maxReceiveCount)."
  type        = number
  default     = 3
  validation {
    condition     = var.export_max_attempts >= 1 && var.export_max_attempts <= 10
    error_message = "export_max_attempts must be 1..10."
  }
}

variable "query_reserved_concurrency" {
  description = "Reserved concurrency of the query function (caps the read path's connections to Postgres; -1: unreserved)."
  type        = number
  default     = 20
}

variable "query_proof_retry_after_secs" {
  description = "STELE_PROOF_RETRY_AFTER_SECS: Retry-After of the query function's 409 for an event no signed checkpoint covers yet; about the checkpointer's interval (checkpoint_schedule_expression)."
  type        = number
  default     = 60

  validation {
    condition     = var.query_proof_retry_after_secs >= 1 && var.query_proof_retry_after_secs <= 3600
    error_message = "query_proof_retry_after_secs must be from 1 to 3600."
  }
}

# ---------------------------------------------------------------------------------------------
# Ingest and API
# ---------------------------------------------------------------------------------------------

variable "jwt_issuer" {
  description = "Issuer (iss) of the JWTs the API accepts, e.g. https://cognito-idp.<region>.amazonaws.com/<pool-id> or https://<tenant>.auth0.com/."
  type        = string
}

variable "jwt_audience" {
  description = "Accepted audiences (aud, or client_id for Cognito access tokens)."
  type        = list(string)
}

variable "tenant_claim" {
  description = "JWT claim holding the tenant id (STELE_TENANT_CLAIM)."
  type        = string
  default     = "tenant_id"
}

variable "jwt_authorization_scopes" {
  description = "Scopes a token needs for POST /v1/events (any one of them). Keep a write scope that only the clients meant to write audit events are granted: without one, every token of the issuer with an accepted audience can write, an end user's included. Empty only together with jwt_allow_unscoped_tokens = true."
  type        = list(string)
  default     = ["stele/events.write"]
}

variable "jwt_allow_unscoped_tokens" {
  description = "Opt out of the write scope: with true and jwt_authorization_scopes = [], any valid token with an accepted audience may write events (only for an issuer that mints tokens for writers alone)."
  type        = bool
  default     = false
}

variable "jwt_read_scopes" {
  description = "Scopes a token needs for the read API (GET /v1/events/{event_id}/proof, /v1/log/checkpoint, /v1/log/consistency): grant them to the clients and auditors that read a tenant's log."
  type        = list(string)
  default     = ["stele/events.read"]

  validation {
    condition     = length(var.jwt_read_scopes) > 0
    error_message = "jwt_read_scopes must name at least one scope."
  }
}

variable "api_throttling_rate_limit" {
  description = "Steady-state requests per second of the API stage."
  type        = number
  default     = 500
}

variable "api_throttling_burst_limit" {
  description = "Burst of the API stage."
  type        = number
  default     = 1000
}

variable "tenant_quota_events_per_sec" {
  description = "Per-tenant quota of the ingest function in events per second (STELE_TENANT_QUOTA_EVENTS_PER_SEC; a batch counts its events); 0 turns quotas off. A tenant over it gets 429 with Retry-After. Per-tenant overrides are items in the quota table (docs/OPERATIONS.md)."
  type        = number
  default     = 1000
  validation {
    condition     = var.tenant_quota_events_per_sec >= 0 && var.tenant_quota_events_per_sec <= 10000000 && floor(var.tenant_quota_events_per_sec) == var.tenant_quota_events_per_sec
    error_message = "tenant_quota_events_per_sec must be a whole number between 0 (off) and 10000000."
  }
}

variable "tenant_quota_burst" {
  description = "Burst of the per-tenant quota in events (STELE_TENANT_QUOTA_BURST, raised to the rate if below it): quotas are counted in windows of ceil(burst / rate) seconds, so the default (2000 at 1000 events/s) gives two-second windows. null: the rate (one-second windows)."
  type        = number
  default     = 2000
  validation {
    condition     = var.tenant_quota_burst == null || try(var.tenant_quota_burst >= 1 && floor(var.tenant_quota_burst) == var.tenant_quota_burst, false)
    error_message = "tenant_quota_burst must be null or a whole number of events (at least tenant_quota_events_per_sec)."
  }
}

variable "cors_allow_origins" {
  description = "Origins allowed by CORS (empty: CORS off; the API is meant for services)."
  type        = list(string)
  default     = []
}

variable "max_lateness_secs" {
  description = "STELE_MAX_LATENESS_SECS: how old an event's occurred_at may be (ingest) and how long a day stays open (archiver)."
  type        = number
  default     = 259200
}

variable "max_skew_secs" {
  description = "STELE_MAX_SKEW_SECS: how far in the future occurred_at may be."
  type        = number
  default     = 300
}

variable "put_deadline_ms" {
  description = "STELE_PUT_DEADLINE_MS: time budget of ingest's PutRecords retries before it answers 503."
  type        = number
  default     = 5000
}

# ---------------------------------------------------------------------------------------------
# Kinesis and the event source mapping
# ---------------------------------------------------------------------------------------------

variable "kinesis_stream_mode" {
  description = "ON_DEMAND or PROVISIONED."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "PROVISIONED"], var.kinesis_stream_mode)
    error_message = "kinesis_stream_mode must be ON_DEMAND or PROVISIONED."
  }
}

variable "kinesis_shard_count" {
  description = "Shards when kinesis_stream_mode is PROVISIONED."
  type        = number
  default     = 2
}

variable "kinesis_retention_hours" {
  description = "Retention of the stream (24-8760 h): the longest outage of the batch-writer or Postgres the pipeline rides out without losing an accepted event. docs/OPERATIONS.md sets it against the alarms."
  type        = number
  default     = 168

  validation {
    condition     = var.kinesis_retention_hours >= 24 && var.kinesis_retention_hours <= 8760
    error_message = "kinesis_retention_hours must be 24-8760."
  }
}

variable "esm_batch_size" {
  description = "Records per batch-writer invocation (<= 10000)."
  type        = number
  default     = 1000

  validation {
    condition     = var.esm_batch_size >= 1 && var.esm_batch_size <= 10000
    error_message = "esm_batch_size must be 1-10000."
  }
}

variable "esm_batching_window_secs" {
  description = "Maximum batching window (0-300 s)."
  type        = number
  default     = 5

  validation {
    condition     = var.esm_batching_window_secs >= 0 && var.esm_batching_window_secs <= 300
    error_message = "esm_batching_window_secs must be 0-300."
  }
}

variable "esm_parallelization_factor" {
  description = "Concurrent batches per shard (1-10); order is kept per partition key (tenant)."
  type        = number
  default     = 2

  validation {
    condition     = var.esm_parallelization_factor >= 1 && var.esm_parallelization_factor <= 10
    error_message = "esm_parallelization_factor must be 1-10."
  }
}

variable "esm_maximum_retry_attempts" {
  description = "Retries of a failing batch. -1 (default): retry until it succeeds, so the mapping never discards an accepted event (the iterator-age alarm reports the stall). A finite value (0-10000) sends a batch that is still failing to the failed-batches bucket, records included."
  type        = number
  default     = -1

  validation {
    condition     = var.esm_maximum_retry_attempts == -1 || (var.esm_maximum_retry_attempts >= 0 && var.esm_maximum_retry_attempts <= 10000)
    error_message = "esm_maximum_retry_attempts must be -1 (no limit) or 0-10000."
  }
}

variable "esm_maximum_record_age_secs" {
  description = "Oldest record the mapping still delivers. -1 (default): no limit, records are retried until they succeed or the stream's retention ends (kinesis_retention_hours). A finite value (60-604800) sends older records to the failed-batches bucket, records included."
  type        = number
  default     = -1

  validation {
    condition     = var.esm_maximum_record_age_secs == -1 || (var.esm_maximum_record_age_secs >= 60 && var.esm_maximum_record_age_secs <= 604800)
    error_message = "esm_maximum_record_age_secs must be -1 (no limit) or 60-604800."
  }
}

variable "esm_starting_position" {
  description = "TRIM_HORIZON (nothing accepted is skipped) or LATEST."
  type        = string
  default     = "TRIM_HORIZON"
}

variable "dlq_retention_secs" {
  description = "Message retention of the SQS dead-letter queues (max 14 days)."
  type        = number
  default     = 1209600
}

variable "partition_days_ahead" {
  description = "STELE_PARTITION_DAYS_AHEAD: daily Postgres partitions created ahead of today."
  type        = number
  default     = 7
}

# ---------------------------------------------------------------------------------------------
# Network and PostgreSQL
# ---------------------------------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC of the functions, the VPC endpoints and (if created) the database."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (two or more AZs) of the functions, the endpoints and the database."
  type        = list(string)
}

variable "private_route_table_ids" {
  description = "Route tables of the private subnets (for the S3 gateway endpoint)."
  type        = list(string)
  default     = []
}

variable "create_vpc_endpoints" {
  description = "Create the VPC endpoints the functions need (Kinesis, Secrets Manager, SQS interface endpoints; S3 gateway). Set false when the VPC already has them or a NAT."
  type        = bool
  default     = true
}

variable "database_mode" {
  description = "aurora: create Aurora PostgreSQL Serverless v2 behind RDS Proxy. existing: use existing_db_secret_arn."
  type        = string
  default     = "aurora"

  validation {
    condition     = contains(["aurora", "existing"], var.database_mode)
    error_message = "database_mode must be aurora or existing."
  }
}

variable "existing_db_secret_arn" {
  description = "existing mode: Secrets Manager secret, JSON {host, port, username, password, dbname}."
  type        = string
  default     = null
}

variable "existing_db_writer_secret_arn" {
  description = "existing mode: the batch-writer's secret (a login user in the stele_writer role); null: existing_db_secret_arn."
  type        = string
  default     = null
}

variable "existing_db_archiver_secret_arn" {
  description = "existing mode: the archiver's secret (a login user in the stele_archiver role); null: existing_db_secret_arn."
  type        = string
  default     = null
}

variable "existing_db_checkpointer_secret_arn" {
  description = "existing mode: the checkpointer's secret (a login user in the stele_checkpointer role); null: existing_db_secret_arn."
  type        = string
  default     = null
}

variable "existing_db_query_secret_arn" {
  description = "existing mode: the query function's secret (a login user in the read-only stele_reader role); null: existing_db_secret_arn."
  type        = string
  default     = null
}

variable "existing_db_secret_kms_key_arn" {
  description = "existing mode: KMS key of those secrets, when it is a customer managed key."
  type        = string
  default     = null
}

variable "existing_db_cidr_blocks" {
  description = "existing mode: CIDR blocks of the database the functions may reach."
  type        = list(string)
  default     = []
}

variable "existing_db_port" {
  description = "existing mode: port of the database."
  type        = number
  default     = 5432
}

variable "db_tls" {
  description = "STELE_DB_TLS (disable|require|verify-full). Null: verify-full for the RDS Proxy (its certificate chains to a public Amazon root), require otherwise."
  type        = string
  default     = null

  validation {
    condition     = var.db_tls == null || contains(["require", "verify-full"], coalesce(var.db_tls, "require"))
    error_message = "db_tls must be require or verify-full: TLS is not optional in AWS."
  }
}

variable "aurora_engine_version" {
  description = "Aurora PostgreSQL version (Serverless v2 and DETACH PARTITION CONCURRENTLY need >= 14)."
  type        = string
  default     = "16.6"
}

variable "aurora_min_acu" {
  description = "Serverless v2 minimum capacity (0 pauses when idle on supported versions)."
  type        = number
  default     = 0.5
}

variable "aurora_max_acu" {
  description = "Serverless v2 maximum capacity."
  type        = number
  default     = 8
}

variable "aurora_instance_count" {
  description = "Aurora instances (1 writer + readers in other AZs for failover)."
  type        = number
  default     = 2
}

variable "aurora_database_name" {
  description = "Database created in the cluster."
  type        = string
  default     = "stele"
}

variable "aurora_master_username" {
  description = "Master user of the cluster (the functions use it through RDS Proxy)."
  type        = string
  default     = "stele"
}

variable "aurora_backup_retention_days" {
  description = "Automated backup retention of the cluster."
  type        = number
  default     = 14
}

variable "deletion_protection" {
  description = "Deletion protection of the Aurora cluster."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# Archive, Glue and Athena
# ---------------------------------------------------------------------------------------------

variable "archive_bucket_name" {
  description = "Name of the archive bucket (null: <name>-archive-<account>-<region>)."
  type        = string
  default     = null
}

variable "archive_prefix" {
  description = "STELE_ARCHIVE_PREFIX: key prefix of the Parquet files and manifests."
  type        = string
  default     = "audit"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", var.archive_prefix))
    error_message = "archive_prefix must be a key prefix without leading or trailing slash."
  }
}

variable "retention_days" {
  description = "STELE_RETENTION_DAYS: days a partition stays in Postgres before it is archived. At least max_lateness_secs plus kinesis_retention_hours (a precondition on the archiver asserts it), so no day is archived while an event that belongs to it can still be accepted or still wait in the stream."
  type        = number
  default     = 30

  validation {
    condition     = var.retention_days >= 1
    error_message = "retention_days must be at least 1."
  }
}

variable "drop_after_archive" {
  description = "STELE_DROP_AFTER_ARCHIVE: drop a partition once archived and verified (false: detach only)."
  type        = bool
  default     = true
}

variable "archive_schedule_expression" {
  description = "EventBridge Scheduler expression of the archiver."
  type        = string
  default     = "cron(15 3 * * ? *)"
}

variable "archive_schedule_timezone" {
  description = "Time zone of the archiver schedule."
  type        = string
  default     = "UTC"
}

variable "archive_transition_ia_days" {
  description = "Days after which archived objects move to STANDARD_IA (null: never)."
  type        = number
  default     = 30
}

variable "archive_transition_glacier_ir_days" {
  description = "Days after which archived objects move to GLACIER_IR, still queryable by Athena (null: never)."
  type        = number
  default     = 90
}

variable "archive_expiration_days" {
  description = "Days after which archived objects expire (null: kept forever). With Object Lock, object_lock_retention_days must be at least this."
  type        = number
  default     = 2557
}

variable "object_lock_enabled" {
  description = "Create the archive bucket with S3 Object Lock and a default retention on every object (object_lock_mode, object_lock_retention_days), so no archived file or manifest can be overwritten or deleted before its retention ends. Only settable when the bucket is created: a stack created with false keeps false (see README)."
  type        = bool
  default     = true
}

variable "object_lock_mode" {
  description = "GOVERNANCE (default): only a principal granted s3:BypassGovernanceRetention (none in this module) can delete a locked version early. COMPLIANCE: nobody can, root included, and the retention cannot be shortened."
  type        = string
  default     = "GOVERNANCE"

  validation {
    condition     = contains(["GOVERNANCE", "COMPLIANCE"], var.object_lock_mode)
    error_message = "object_lock_mode must be GOVERNANCE or COMPLIANCE."
  }
}

variable "object_lock_retention_days" {
  description = "Default Object Lock retention of each archived object, days. At least archive_expiration_days, so an object is locked for as long as the archive keeps it."
  type        = number
  default     = 2557

  validation {
    condition     = var.object_lock_retention_days >= 1 && var.object_lock_retention_days <= 36500
    error_message = "object_lock_retention_days must be 1-36500."
  }
}

variable "force_destroy" {
  description = "Let terraform destroy non-empty buckets (never with Object Lock objects under retention)."
  type        = bool
  default     = false
}

variable "athena_results_force_destroy" {
  description = "Let terraform destroy the Athena results bucket while it holds query results (false: destroy stops at a non-empty bucket, so results of queries over the audit archive are not deleted by accident)."
  type        = bool
  default     = false
}

variable "access_log_bucket" {
  description = "Name of an existing bucket (yours, outside this stack) for S3 server access logs of the archive, failed-batches and Athena results buckets, under access_log_prefix. Null: no server access logs (use CloudTrail S3 data events instead, which this module does not create)."
  type        = string
  default     = null
}

variable "access_log_prefix" {
  description = "Key prefix of the server access logs in access_log_bucket; each bucket's logs go under <prefix><bucket name>/."
  type        = string
  default     = "s3-access/"
}

variable "code_signing_config_arn" {
  description = "ARN of a Lambda code signing config (AWS Signer profile) for the three functions. Null: no code signing, Lambda runs whatever zip the deployer uploads. With one, the zips must be signed by an allowed profile (Signer signs objects in S3, so upload signed zips and adapt the functions' code source)."
  type        = string
  default     = null
}

variable "athena_bytes_scanned_cutoff" {
  description = "Per-query scan limit of the Athena workgroup, bytes (null: none)."
  type        = number
  default     = 107374182400
}

variable "athena_results_expiration_days" {
  description = "Days the Athena query results are kept."
  type        = number
  default     = 30
}

# ---------------------------------------------------------------------------------------------
# Alarms
# ---------------------------------------------------------------------------------------------

variable "alarm_actions" {
  description = "ARNs notified when an alarm fires or recovers (e.g. an SNS topic)."
  type        = list(string)
  default     = []
}

variable "alarm_iterator_age_ms" {
  description = "Alarm when the batch-writer's iterator age exceeds this (ms)."
  type        = number
  default     = 300000
}

variable "alarm_function_errors" {
  description = "Alarm when a function reports more errors than this in 5 minutes."
  type        = number
  default     = 0
}

variable "alarm_archiver_silence_hours" {
  description = "Alarm when no scheduled archiver run has finished without error for this many hours (1-168). Above the schedule's interval (daily by default) plus its flexible window and retries."
  type        = number
  default     = 26

  validation {
    condition     = var.alarm_archiver_silence_hours >= 1 && var.alarm_archiver_silence_hours <= 168 && floor(var.alarm_archiver_silence_hours) == var.alarm_archiver_silence_hours
    error_message = "alarm_archiver_silence_hours must be a whole number of hours, 1-168 (CloudWatch evaluates at most 7 days)."
  }
}

variable "alarm_api_5xx" {
  description = "Alarm when the API answers more 5xx than this in 5 minutes."
  type        = number
  default     = 5
}
