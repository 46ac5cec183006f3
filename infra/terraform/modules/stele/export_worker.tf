# Asynchronous exports (POST /v1/exports), for ranges a 30 s API request cannot export. The
# query function records the job's status under the archive bucket's _exports/ prefix and sends
# the job to the export queue; the export worker (the query function's own zip, handler
# "export-worker": functions/query/src/main.rs) drains the queue through an event source mapping
# and writes the file for up to 15 minutes; GET /v1/exports/{export_id} serves the status and a
# presigned URL. A job whose attempt fails (the database or S3) is delivered again, up to
# export_max_attempts times; after the last its status says failed and the message moves to
# the export dead-letter queue (alarmed in alarms.tf).

locals {
  # Lambda's longest run: a job is one invocation.
  export_worker_timeout_secs = 900
}

resource "aws_sqs_queue" "export_jobs_dlq" {
  name                              = "${var.name}-export-jobs-dlq"
  message_retention_seconds         = var.dlq_retention_secs
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = local.tags
}

resource "aws_sqs_queue" "export_jobs" {
  name = "${var.name}-export-jobs"
  # A job in flight stays hidden while its invocation can run; a failed attempt is retried
  # once this has passed. The mapping's concurrency equals the function's reserved
  # concurrency, so there are no throttled invocations to wait out (AWS's 6x advice).
  visibility_timeout_seconds        = local.export_worker_timeout_secs + 60
  message_retention_seconds         = 86400 # a job's status expires with _exports/ after a day
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.export_jobs_dlq.arn
    maxReceiveCount     = var.export_max_attempts
  })
  tags = local.tags
}

resource "aws_cloudwatch_log_group" "export_worker" {
  name              = "/aws/lambda/${local.function_names.export_worker}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_lambda_function" "export_worker" {
  #checkov:skip=CKV_AWS_116:invoked by the export queue's event source mapping: a job that fails every attempt moves to the queue's own dead-letter queue (redrive policy), not an async-invoke DLQ
  #checkov:skip=CKV_AWS_272:code signing is optional: code_signing_config_arn = var.code_signing_config_arn (a Signer profile the operator owns); off by default
  function_name = local.function_names.export_worker
  description   = "stele: asynchronous exports of a tenant's events to the archive bucket"
  role          = aws_iam_role.export_worker.arn
  runtime       = "provided.al2023"
  architectures = ["arm64"]
  # The query function's binary, started as the worker (Lambda passes this as _HANDLER).
  handler                        = "export-worker"
  filename                       = var.query_zip
  source_code_hash               = filebase64sha256(var.query_zip)
  reserved_concurrent_executions = var.export_worker_concurrency
  memory_size                    = var.export_worker_memory_mb
  timeout                        = local.export_worker_timeout_secs
  kms_key_arn                    = local.kms_key_arn
  code_signing_config_arn        = var.code_signing_config_arn

  environment {
    variables = merge(local.db_environment, {
      STELE_DB_SECRET_ARN       = local.db_query_secret_arn
      STELE_ARCHIVE_BUCKET      = aws_s3_bucket.archive.id
      STELE_ARCHIVE_PREFIX      = var.archive_prefix
      STELE_EXPORT_LOCK_MODE    = var.object_lock_enabled ? var.object_lock_mode : ""
      STELE_EXPORT_MAX_ATTEMPTS = tostring(var.export_max_attempts)
      RUST_LOG                  = var.rust_log
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
    log_group  = aws_cloudwatch_log_group.export_worker.name
  }

  tags = local.tags

  depends_on = [aws_iam_role_policy.export_worker, aws_iam_role_policy_attachment.export_worker]
}

resource "aws_lambda_event_source_mapping" "export_worker" {
  function_name    = aws_lambda_function.export_worker.arn
  event_source_arn = aws_sqs_queue.export_jobs.arn
  # One job per invocation: each gets the whole 15 minutes.
  batch_size              = 1
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.export_worker_concurrency
  }
}
