# The three functions: provided.al2023 on arm64, code from `cargo lambda build --release --arm64
# --output-format zip`. Each has its own role (iam.tf), log group and environment.

locals {
  db_environment = {
    STELE_DB_TLS = local.db_tls
  }
  # An event id stays claimed as long as a record can wait in the stream plus as late as an
  # event may come, and as long as a dead letter can be replayed: a re-sent or replayed id is
  # caught for as long as it can arrive (the archiver prunes older claims).
  dedup_window_hours = max(var.kinesis_retention_hours + ceil(var.max_lateness_secs / 3600), ceil(var.dlq_retention_secs / 3600))
}

resource "aws_cloudwatch_log_group" "ingest" {
  name              = "/aws/lambda/${local.function_names.ingest}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_cloudwatch_log_group" "batch_writer" {
  name              = "/aws/lambda/${local.function_names.batch_writer}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_cloudwatch_log_group" "archiver" {
  name              = "/aws/lambda/${local.function_names.archiver}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_lambda_function" "ingest" {
  #checkov:skip=CKV_AWS_116:invoked synchronously by API Gateway; the client gets the error, there is no async event to dead-letter
  #checkov:skip=CKV_AWS_272:code signing is optional: code_signing_config_arn = var.code_signing_config_arn (a Signer profile the operator owns); off by default
  function_name                  = local.function_names.ingest
  description                    = "stele: validate, canonicalise, hash and put audit events on Kinesis"
  role                           = aws_iam_role.ingest.arn
  runtime                        = "provided.al2023"
  architectures                  = ["arm64"]
  handler                        = "bootstrap"
  filename                       = var.ingest_zip
  source_code_hash               = filebase64sha256(var.ingest_zip)
  memory_size                    = var.ingest_memory_mb
  timeout                        = 29
  reserved_concurrent_executions = var.ingest_reserved_concurrency
  kms_key_arn                    = local.kms_key_arn
  code_signing_config_arn        = var.code_signing_config_arn

  environment {
    variables = {
      STELE_STREAM_NAME       = aws_kinesis_stream.events.name
      STELE_TENANT_CLAIM      = var.tenant_claim
      STELE_MAX_LATENESS_SECS = tostring(var.max_lateness_secs)
      STELE_MAX_SKEW_SECS     = tostring(var.max_skew_secs)
      STELE_PUT_DEADLINE_MS   = tostring(var.put_deadline_ms)
      RUST_LOG                = var.rust_log

      STELE_TENANT_QUOTA_EVENTS_PER_SEC = tostring(var.tenant_quota_events_per_sec)
      STELE_TENANT_QUOTA_BURST          = tostring(max(coalesce(var.tenant_quota_burst, 0), var.tenant_quota_events_per_sec))
      STELE_TENANT_QUOTA_TABLE          = aws_dynamodb_table.tenant_quotas.name
    }
  }

  vpc_config {
    subnet_ids         = var.private_subnet_ids
    security_group_ids = [aws_security_group.lambda.id]
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.ingest.name
  }

  tags = local.tags

  depends_on = [aws_iam_role_policy.ingest, aws_iam_role_policy_attachment.ingest]
}

resource "aws_lambda_function" "batch_writer" {
  #checkov:skip=CKV_AWS_116:invoked synchronously by its Kinesis event source mapping, whose on-failure destination is the SQS DLQ
  #checkov:skip=CKV_AWS_272:code signing is optional: code_signing_config_arn = var.code_signing_config_arn (a Signer profile the operator owns); off by default
  function_name                  = local.function_names.batch_writer
  description                    = "stele: store Kinesis batches in partitioned PostgreSQL"
  role                           = aws_iam_role.batch_writer.arn
  runtime                        = "provided.al2023"
  architectures                  = ["arm64"]
  handler                        = "bootstrap"
  filename                       = var.batch_writer_zip
  source_code_hash               = filebase64sha256(var.batch_writer_zip)
  memory_size                    = var.batch_writer_memory_mb
  timeout                        = var.batch_writer_timeout_secs
  reserved_concurrent_executions = var.batch_writer_reserved_concurrency
  kms_key_arn                    = local.kms_key_arn
  code_signing_config_arn        = var.code_signing_config_arn

  environment {
    variables = merge(local.db_environment, {
      STELE_DB_SECRET_ARN        = local.db_writer_secret_arn
      STELE_DLQ_URL              = aws_sqs_queue.dlq.url
      STELE_PARTITION_DAYS_AHEAD = tostring(var.partition_days_ahead)
      RUST_LOG                   = var.rust_log
    })
  }

  vpc_config {
    subnet_ids         = var.private_subnet_ids
    security_group_ids = [aws_security_group.lambda.id]
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.batch_writer.name
  }

  tags = local.tags

  depends_on = [aws_iam_role_policy.batch_writer, aws_iam_role_policy_attachment.batch_writer]
}

# Failed asynchronous invocations of the archiver (from the scheduler) after Lambda's retries.
resource "aws_sqs_queue" "archiver_dlq" {
  name                              = "${var.name}-archiver-dlq"
  message_retention_seconds         = var.dlq_retention_secs
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = local.tags
}

resource "aws_lambda_function" "archiver" {
  #checkov:skip=CKV_AWS_272:code signing is optional: code_signing_config_arn = var.code_signing_config_arn (a Signer profile the operator owns); off by default
  function_name = local.function_names.archiver
  description   = "stele: archive old Postgres partitions to Parquet on S3, verify, detach"
  role          = aws_iam_role.archiver.arn
  runtime       = "provided.al2023"
  architectures = ["arm64"]
  handler       = "bootstrap"
  filename      = var.archiver_zip
  # One run at a time: the archive job table makes runs resumable, not concurrent.
  reserved_concurrent_executions = 1
  source_code_hash               = filebase64sha256(var.archiver_zip)
  memory_size                    = var.archiver_memory_mb
  timeout                        = var.archiver_timeout_secs
  kms_key_arn                    = local.kms_key_arn
  code_signing_config_arn        = var.code_signing_config_arn

  ephemeral_storage {
    size = 1024
  }

  environment {
    variables = merge(local.db_environment, {
      STELE_DB_SECRET_ARN      = local.db_archiver_secret_arn
      STELE_ARCHIVE_BUCKET     = aws_s3_bucket.archive.id
      STELE_ARCHIVE_PREFIX     = var.archive_prefix
      STELE_RETENTION_DAYS     = tostring(var.retention_days)
      STELE_MAX_LATENESS_SECS  = tostring(var.max_lateness_secs)
      STELE_DROP_AFTER_ARCHIVE = tostring(var.drop_after_archive)
      STELE_DEDUP_WINDOW_HOURS = tostring(local.dedup_window_hours)
      # Days wait while records that may belong to them are still in the stream.
      STELE_STREAM_NAME = aws_kinesis_stream.events.name
      RUST_LOG          = var.rust_log
    })
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.archiver_dlq.arn
  }

  vpc_config {
    subnet_ids         = var.private_subnet_ids
    security_group_ids = [aws_security_group.lambda.id]
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.archiver.name
  }

  tags = local.tags

  depends_on = [aws_iam_role_policy.archiver, aws_iam_role_policy_attachment.archiver]

  lifecycle {
    # An event is accepted up to max_lateness_secs after it occurred and may then wait in the
    # stream for kinesis_retention_hours: a day archived earlier than both could still get
    # rows, which would be dead-lettered as partition_archived or need a supplement.
    precondition {
      condition     = var.retention_days * 86400 >= var.max_lateness_secs + var.kinesis_retention_hours * 3600
      error_message = "retention_days must cover max_lateness_secs plus kinesis_retention_hours (the longest an event of a day can still arrive in Postgres)."
    }
  }
}

resource "aws_lambda_function_event_invoke_config" "archiver" {
  function_name                = aws_lambda_function.archiver.function_name
  maximum_retry_attempts       = 1
  maximum_event_age_in_seconds = 3600
}
