# The query function (functions/query): the read API. Tenant-scoped from the JWT claim like
# ingest, it answers GET /v1/events/{event_id}/proof, /v1/log/checkpoint and
# /v1/log/consistency from PostgreSQL (api.tf routes them). It connects as its own login user
# in the read-only stele_reader role (database.tf) and holds no AWS permission besides its log
# group and its database secret (iam.tf): no S3, no Kinesis, no KMS signing.

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
