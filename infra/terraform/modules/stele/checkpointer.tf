# The checkpointer (functions/checkpointer): every minute, signs each tenant's grown log head
# as a C2SP tlog-checkpoint with the log key below and publishes it with the new tiles to the
# archive bucket under <archive_prefix>/_log/ (Object Lock keeps every version). It checks each
# head against the tiles and the last signed checkpoint first and refuses (fails, alarms) a
# rewritten, rolled-back or forked log instead of signing it.

# The log's signing key: Ed25519 in KMS (the private key never leaves it). Its public key is
# an output and published as <archive_prefix>/_log/log.vkey; verifiers pin it.
data "aws_iam_policy_document" "log_key" {
  #checkov:skip=CKV_AWS_109:a key policy: "*" is this key, and the account administers it (IAM policies grant use; the checkpointer's names only Sign and GetPublicKey)
  #checkov:skip=CKV_AWS_111:a key policy: "*" is this key, and the account administers it
  #checkov:skip=CKV_AWS_356:a key policy: "*" is this key
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy "*" means this key
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "log" {
  #checkov:skip=CKV_AWS_7:KMS rotates only symmetric keys; an asymmetric signing key is rotated by a new key (and a new vkey verifiers add)
  description              = "${var.name}: signs the verifiable log's checkpoints (Ed25519)"
  customer_master_key_spec = "ECC_NIST_EDWARDS25519"
  key_usage                = "SIGN_VERIFY"
  deletion_window_in_days  = 30
  policy                   = data.aws_iam_policy_document.log_key.json
  tags                     = local.tags
}

resource "aws_kms_alias" "log" {
  name          = "alias/${var.name}-log"
  target_key_id = aws_kms_key.log.key_id
}

data "aws_kms_public_key" "log" {
  key_id = aws_kms_key.log.arn
}

resource "aws_cloudwatch_log_group" "checkpointer" {
  name              = "/aws/lambda/${local.function_names.checkpointer}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_lambda_function" "checkpointer" {
  #checkov:skip=CKV_AWS_272:code signing is optional: code_signing_config_arn = var.code_signing_config_arn (a Signer profile the operator owns); off by default
  #checkov:skip=CKV_AWS_116:no dead-letter queue: a failed run is redone by the next one a minute later (what it did not publish is published then), and failures alarm
  function_name = local.function_names.checkpointer
  description   = "stele: sign and publish each tenant's log checkpoint"
  role          = aws_iam_role.checkpointer.arn
  runtime       = "provided.al2023"
  architectures = ["arm64"]
  handler       = "bootstrap"
  filename      = var.checkpointer_zip
  # One run at a time (the run also takes a database advisory lock).
  reserved_concurrent_executions = 1
  source_code_hash               = filebase64sha256(var.checkpointer_zip)
  memory_size                    = 256
  timeout                        = 50
  kms_key_arn                    = local.kms_key_arn
  code_signing_config_arn        = var.code_signing_config_arn

  environment {
    variables = merge(local.db_environment, {
      STELE_DB_SECRET_ARN  = local.db_checkpointer_secret_arn
      STELE_ARCHIVE_BUCKET = aws_s3_bucket.archive.id
      STELE_ARCHIVE_PREFIX = var.archive_prefix
      STELE_LOG_ORIGIN     = local.log_origin
      STELE_LOG_KMS_KEY_ID = aws_kms_key.log.arn
      RUST_LOG             = var.rust_log
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
    log_group  = aws_cloudwatch_log_group.checkpointer.name
  }

  tags = local.tags

  depends_on = [aws_iam_role_policy.checkpointer, aws_iam_role_policy_attachment.checkpointer]
}

resource "aws_lambda_function_event_invoke_config" "checkpointer" {
  function_name                = aws_lambda_function.checkpointer.function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 60
}

resource "aws_scheduler_schedule" "checkpointer" {
  name                         = "${var.name}-checkpointer"
  description                  = "stele: sign and publish the tenants' log checkpoints"
  schedule_expression          = var.checkpoint_schedule_expression
  schedule_expression_timezone = "UTC"
  kms_key_arn                  = local.kms_key_arn
  state                        = "ENABLED"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.checkpointer.arn
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode({ source = "stele.scheduler" })

    retry_policy {
      maximum_retry_attempts       = 0
      maximum_event_age_in_seconds = 60
    }
  }
}
