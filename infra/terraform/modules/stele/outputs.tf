output "api_endpoint" {
  description = "Base URL of the HTTP API."
  value       = aws_apigatewayv2_stage.default.invoke_url
}

output "events_url" {
  description = "URL to POST events to."
  value       = "${trimsuffix(aws_apigatewayv2_stage.default.invoke_url, "/")}/v1/events"
}

output "health_url" {
  description = "Unauthenticated health check URL."
  value       = "${trimsuffix(aws_apigatewayv2_stage.default.invoke_url, "/")}/v1/health"
}

output "checkpoint_url" {
  description = "URL of the caller's tenant's latest signed checkpoint (GET, a token with a read scope)."
  value       = "${trimsuffix(aws_apigatewayv2_stage.default.invoke_url, "/")}/v1/log/checkpoint"
}

output "stream_name" {
  description = "Kinesis stream name."
  value       = aws_kinesis_stream.events.name
}

output "stream_arn" {
  description = "Kinesis stream ARN."
  value       = aws_kinesis_stream.events.arn
}

output "dlq_url" {
  description = "SQS dead-letter queue of the batch-writer."
  value       = aws_sqs_queue.dlq.url
}

output "failed_batches_bucket" {
  description = "On-failure destination of the event source mapping (empty unless finite esm_maximum_* limits are set)."
  value       = aws_s3_bucket.failed_batches.id
}

output "archive_bucket" {
  description = "Archive bucket name."
  value       = aws_s3_bucket.archive.id
}

output "archive_prefix" {
  description = "Key prefix of the archive."
  value       = var.archive_prefix
}

output "glue_database" {
  description = "Glue database name."
  value       = aws_glue_catalog_database.this.name
}

output "glue_table" {
  description = "Glue table name."
  value       = aws_glue_catalog_table.audit_events.name
}

output "athena_workgroup" {
  description = "Athena workgroup name."
  value       = aws_athena_workgroup.this.name
}

output "kms_key_arn" {
  description = "KMS key that encrypts the stack's data (Athena users need kms:Decrypt on it)."
  value       = local.kms_key_arn
}

output "db_secret_arns" {
  description = "Each function's database secret (writer, archiver, checkpointer, query; reader, a read-only login for operators, in aurora mode). In aurora mode run `stele db create-login` once per secret (README, Deployment)."
  value = {
    writer       = local.db_writer_secret_arn
    archiver     = local.db_archiver_secret_arn
    checkpointer = local.db_checkpointer_secret_arn
    query        = local.db_query_secret_arn
    reader       = local.create_db ? aws_secretsmanager_secret.db_login["reader"].arn : null
  }
}

output "db_master_secret_arn" {
  description = "aurora mode: the master user's secret, managed and rotated by RDS (username and password only): for `stele db migrate` and `stele db create-login`."
  value       = local.create_db ? aws_rds_cluster.this[0].master_user_secret[0].secret_arn : null
}

output "db_proxy_endpoint" {
  description = "RDS Proxy endpoint (aurora mode), null otherwise."
  value       = local.create_db ? aws_db_proxy.this[0].endpoint : null
}

output "function_names" {
  description = "Names of the functions."
  value = {
    ingest       = aws_lambda_function.ingest.function_name
    batch_writer = aws_lambda_function.batch_writer.function_name
    archiver     = aws_lambda_function.archiver.function_name
    checkpointer = aws_lambda_function.checkpointer.function_name
    query        = aws_lambda_function.query.function_name
  }
}

output "jwt_write_scopes" {
  description = "Scopes a token needs for POST /v1/events (grant them to the clients that write audit events only)."
  value       = var.jwt_authorization_scopes
}

output "jwt_read_scopes" {
  description = "Scopes a token needs for the read API (GET /v1/events/{event_id}/proof, /v1/log/checkpoint, /v1/log/consistency)."
  value       = var.jwt_read_scopes
}

output "log_origin" {
  description = "The deployment's log origin (STELE_LOG_ORIGIN); tenant logs are <origin>/tenant/<tenant>."
  value       = local.log_origin
}

output "log_key_arn" {
  description = "ARN of the KMS key (ECC_NIST_EDWARDS25519) that signs the log's checkpoints."
  value       = aws_kms_key.log.arn
}

output "log_public_key" {
  description = "The log key's public key (PEM, SubjectPublicKeyInfo); the note vkey built from it is published as <archive_prefix>/_log/log.vkey."
  value       = data.aws_kms_public_key.log.public_key_pem
}
