# The query function (functions/query): the read API. Tenant-scoped from the JWT claim like
# ingest, it answers GET /v1/events (a tenant's events: hot days from PostgreSQL, archived
# days from the archive's Parquet files), GET /v1/events/export (the same as one NDJSON or CSV
# file: inline, or written under the bucket's _exports/ prefix and handed out as a presigned URL;
# archive.tf expires that prefix after a day), POST /v1/exports and GET /v1/exports/{export_id}
# (the same file written by the export worker: export_worker.tf), GET /v1/events/{event_id}/proof,
# /v1/log/checkpoint and /v1/log/consistency (api.tf routes them). It connects as its own login
# user in the read-only stele_reader role (database.tf); in AWS it may read its secrets and the
# archive's tenant directories, write only under _exports/ (iam.tf), and nothing else: no
# Kinesis, no KMS signing.

# The secret page cursors are signed with (HMAC-SHA256 over tenant, query and position):
# one value shared by every instance, generated once when the stack is created. Replacing
# it invalidates open cursors, nothing else.
data "aws_secretsmanager_random_password" "cursor_key" {
  password_length     = 64
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "cursor_key" {
  #checkov:skip=CKV2_AWS_57:not rotated: rotating only invalidates cursors in flight; replace it by tainting the version
  name_prefix             = "${var.name}/query-cursor-key-"
  description             = "stele query: the key page cursors of GET /v1/events are signed with"
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = 7
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "cursor_key" {
  secret_id     = aws_secretsmanager_secret.cursor_key.id
  secret_string = data.aws_secretsmanager_random_password.cursor_key.random_password
  lifecycle {
    # The data source draws a new value on every plan: keep the first one.
    ignore_changes = [secret_string]
  }
}

resource "aws_cloudwatch_log_group" "query" {
  name              = "/aws/lambda/${local.function_names.query}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_lambda_function" "query" {
  #checkov:skip=CKV_AWS_116:invoked synchronously by API Gateway; the client gets the error, there is no async event to dead-letter
  #checkov:skip=CKV_AWS_272:code signing is optional: code_signing_config_arn = var.code_signing_config_arn (a Signer profile the operator owns); off by default
  function_name = local.function_names.query
  description   = "stele: inclusion and consistency proofs and signed checkpoints of a tenant's log"
  role          = aws_iam_role.query.arn
  runtime       = "provided.al2023"
  architectures = ["arm64"]
  handler       = "bootstrap"
  filename      = var.query_zip
  # Caps the read path's connections to Postgres, beside the batch-writer's.
  reserved_concurrent_executions = var.query_reserved_concurrency
  source_code_hash               = filebase64sha256(var.query_zip)
  memory_size                    = var.query_memory_mb
  timeout                        = 29
  kms_key_arn                    = local.kms_key_arn
  code_signing_config_arn        = var.code_signing_config_arn

  environment {
    variables = merge(local.db_environment, {
      STELE_DB_SECRET_ARN          = local.db_query_secret_arn
      STELE_TENANT_CLAIM           = var.tenant_claim
      STELE_PROOF_RETRY_AFTER_SECS = tostring(var.query_proof_retry_after_secs)
      STELE_CURSOR_KEY_SECRET_ARN  = aws_secretsmanager_secret.cursor_key.arn
      STELE_ARCHIVE_BUCKET         = aws_s3_bucket.archive.id
      STELE_ARCHIVE_PREFIX         = var.archive_prefix
      STELE_EXPORT_LOCK_MODE       = var.object_lock_enabled ? var.object_lock_mode : ""
      STELE_EXPORT_QUEUE_URL       = aws_sqs_queue.export_jobs.url
      RUST_LOG                     = var.rust_log
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
    log_group  = aws_cloudwatch_log_group.query.name
  }

  tags = local.tags

  depends_on = [aws_iam_role_policy.query, aws_iam_role_policy_attachment.query]
}
