# One role per function, each naming only the resources that function touches. The two AWS
# managed policies attached besides are the ones that cannot be scoped to a resource: ENI
# management for functions in a VPC, and X-Ray segment upload for active tracing. Every use of a
# KMS key is allowed only through the services holding the encrypted data (kms:ViaService): the
# roles never encrypt or decrypt with the key directly.

locals {
  lambda_managed_policy_arns = [
    "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaENIManagementAccess",
    "arn:${local.partition}:iam::aws:policy/AWSXrayWriteOnlyAccess",
  ]

  # kms:ViaService values, "<service>.<region>.amazonaws.com".
  kms_via = { for s in ["kinesis", "secretsmanager", "sqs", "s3"] : s => "${s}.${local.region}.amazonaws.com" }
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# --- ingest: put records on the stream ------------------------------------------------------

resource "aws_iam_role" "ingest" {
  name               = "${local.function_names.ingest}-role"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "ingest" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.ingest.arn}:*"]
  }

  statement {
    sid       = "PutRecords"
    actions   = ["kinesis:PutRecords", "kinesis:PutRecord", "kinesis:DescribeStreamSummary"]
    resources = [aws_kinesis_stream.events.arn]
  }

  # The per-tenant quota: one conditional UpdateItem per request, GetItem for a tenant's override.
  statement {
    sid       = "TenantQuotas"
    actions   = ["dynamodb:UpdateItem", "dynamodb:GetItem"]
    resources = [aws_dynamodb_table.tenant_quotas.arn]
  }

  # A producer on a KMS-encrypted stream needs kms:GenerateDataKey only (Kinesis Data Streams
  # developer guide, "Permissions to use user-generated KMS keys"): no kms:Decrypt, so this role
  # cannot read the stream's records, nor anything else the stack key encrypts. Kinesis passes the
  # stream ARN as encryption context.
  statement {
    sid       = "EncryptRecords"
    actions   = ["kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via.kinesis]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:aws:kinesis:arn"
      values   = [aws_kinesis_stream.events.arn]
    }
  }
}

resource "aws_iam_role_policy" "ingest" {
  name   = "least-privilege"
  role   = aws_iam_role.ingest.id
  policy = data.aws_iam_policy_document.ingest.json
}

resource "aws_iam_role_policy_attachment" "ingest" {
  for_each = toset(local.lambda_managed_policy_arns)

  role       = aws_iam_role.ingest.name
  policy_arn = each.value
}

# --- batch-writer: read the stream (for its event source mapping), store in Postgres, DLQ ----

resource "aws_iam_role" "batch_writer" {
  name               = "${local.function_names.batch_writer}-role"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "batch_writer" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.batch_writer.arn}:*"]
  }

  statement {
    sid = "ReadStream"
    actions = [
      "kinesis:DescribeStream",
      "kinesis:DescribeStreamSummary",
      "kinesis:GetRecords",
      "kinesis:GetShardIterator",
      "kinesis:ListShards",
    ]
    resources = [aws_kinesis_stream.events.arn]
  }

  statement {
    sid       = "DeadLetters"
    actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.dlq.arn]
  }

  # The event source mapping writes a batch it gives up on (finite limits only) with the
  # function's role.
  statement {
    sid       = "FailedBatches"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.failed_batches.arn}/*"]
  }

  statement {
    sid       = "ListFailedBatches"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.failed_batches.arn]
  }

  statement {
    sid       = "OwnDatabaseSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.db_writer_secret_arn]
  }

  # Decrypt: the stream's records (read by its event source mapping with this role) and the
  # secret; GenerateDataKey (and Decrypt): messages to the KMS-encrypted DLQ and failed batches
  # to the SSE-KMS bucket. Only through those services.
  statement {
    sid       = "DecryptStreamQueueAndSecret"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = local.db_secret_kms_key_arns
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via.kinesis, local.kms_via.secretsmanager, local.kms_via.sqs, local.kms_via.s3]
    }
  }
}

resource "aws_iam_role_policy" "batch_writer" {
  name   = "least-privilege"
  role   = aws_iam_role.batch_writer.id
  policy = data.aws_iam_policy_document.batch_writer.json
}

resource "aws_iam_role_policy_attachment" "batch_writer" {
  for_each = toset(local.lambda_managed_policy_arns)

  role       = aws_iam_role.batch_writer.name
  policy_arn = each.value
}

# --- archiver: Postgres, then write (and verify) under the archive prefix only --------------

resource "aws_iam_role" "archiver" {
  name               = "${local.function_names.archiver}-role"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "archiver" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.archiver.arn}:*"]
  }

  # DeleteObject: a re-export after a crash removes part files the earlier,
  # unfinished attempt left (fewer parts the second time). In the versioned
  # bucket that only adds a delete marker; no version is ever destroyed
  # (no s3:DeleteObjectVersion), and Object Lock keeps the versions anyway.
  statement {
    sid = "ArchiveObjects"
    actions = [
      "s3:PutObject",
      "s3:GetObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.archive.arn}/${var.archive_prefix}/*"]
  }

  statement {
    sid       = "ListArchivePrefix"
    actions   = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.archive.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.archive_prefix}/*"]
    }
  }

  statement {
    sid       = "OwnDatabaseSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.db_archiver_secret_arn]
  }

  # The stream's backlog: one read per shard and run after the batch-writer's position, so no
  # day is archived while records that may belong to it still wait (functions/archiver/src/backlog.rs).
  # The stream's key is the stack key, already in EncryptArchiveDecryptSecret.
  statement {
    sid       = "ReadStreamBacklog"
    actions   = ["kinesis:ListShards", "kinesis:GetShardIterator", "kinesis:GetRecords"]
    resources = [aws_kinesis_stream.events.arn]
  }

  statement {
    sid       = "FailedInvocations"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.archiver_dlq.arn]
  }

  # Archive objects (SSE-KMS), the secret, the stream's backlog, and failed invocations to the
  # KMS-encrypted DLQ: only through those services.
  statement {
    sid       = "EncryptArchiveDecryptSecret"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = local.db_secret_kms_key_arns
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via.kinesis, local.kms_via.secretsmanager, local.kms_via.sqs, local.kms_via.s3]
    }
  }
}

resource "aws_iam_role_policy" "archiver" {
  name   = "least-privilege"
  role   = aws_iam_role.archiver.id
  policy = data.aws_iam_policy_document.archiver.json
}

resource "aws_iam_role_policy_attachment" "archiver" {
  for_each = toset(local.lambda_managed_policy_arns)

  role       = aws_iam_role.archiver.name
  policy_arn = each.value
}

# --- checkpointer: read the log, sign with the log key, write under <prefix>/_log/ only ------

resource "aws_iam_role" "checkpointer" {
  name               = "${local.function_names.checkpointer}-role"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "checkpointer" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.checkpointer.arn}:*"]
  }

  # Tiles, checkpoints and the vkey; never a delete (Object Lock keeps every version anyway).
  statement {
    sid       = "PublishLog"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.archive.arn}/${var.archive_prefix}/_log/*"]
  }

  # The published vkey is read once per start, to check it is this key's. Listing (under
  # _log/ only) makes a missing vkey a 404 rather than a 403.
  statement {
    sid       = "ReadPublishedKey"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.archive.arn}/${var.archive_prefix}/_log/log.vkey"]
  }

  statement {
    sid       = "ListLogPrefix"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.archive.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.archive_prefix}/_log/*"]
    }
  }

  statement {
    sid       = "SignWithTheLogKey"
    actions   = ["kms:Sign", "kms:GetPublicKey"]
    resources = [aws_kms_key.log.arn]
  }

  statement {
    sid       = "DatabaseSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.db_checkpointer_secret_arn]
  }

  # Log objects (SSE-KMS with the stack key) and the secret: only through those services.
  statement {
    sid       = "EncryptArchiveDecryptSecret"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = local.db_secret_kms_key_arns
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via.secretsmanager, local.kms_via.s3]
    }
  }
}

resource "aws_iam_role_policy" "checkpointer" {
  name   = "least-privilege"
  role   = aws_iam_role.checkpointer.id
  policy = data.aws_iam_policy_document.checkpointer.json
}

resource "aws_iam_role_policy_attachment" "checkpointer" {
  for_each = toset(local.lambda_managed_policy_arns)

  role       = aws_iam_role.checkpointer.name
  policy_arn = each.value
}

# --- query: read the log in Postgres (its login is in the read-only stele_reader role) ------

resource "aws_iam_role" "query" {
  name               = "${local.function_names.query}-role"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "query" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.query.arn}:*"]
  }

  statement {
    sid       = "Secrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.db_query_secret_arn, aws_secretsmanager_secret.cursor_key.arn]
  }

  # Archived days of a search: the tenants' Parquet files, read only.
  statement {
    sid       = "ReadArchivedEvents"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.archive.arn}/${var.archive_prefix}/tenant_id=*"]
  }

  statement {
    sid       = "ListArchivedDays"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.archive.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.archive_prefix}/tenant_id=*"]
    }
  }

  # Exports too large for a response: written under _exports/ (with their own one-day
  # Object Lock retention), then fetched by the tenant through a presigned GET.
  statement {
    sid = "WriteExports"
    actions = [
      "s3:PutObject",
      "s3:PutObjectRetention",
      "s3:GetObject",
      "s3:AbortMultipartUpload",
    ]
    resources = ["${aws_s3_bucket.archive.arn}/${local.export_prefix}/tenant_id=*"]
  }

  # POST /v1/exports: a job for the export worker (export_worker.tf), on the encrypted queue.
  statement {
    sid       = "QueueExportJobs"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.export_jobs.arn]
  }

  statement {
    sid       = "EncryptExportsAndJobs"
    actions   = ["kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via.s3, local.kms_via.sqs]
    }
  }

  # The secrets', archive's and queue's key, only through Secrets Manager, S3 and SQS:
  # nothing else the stack key encrypts.
  statement {
    sid       = "DecryptSecretsAndArchive"
    actions   = ["kms:Decrypt"]
    resources = local.db_secret_kms_key_arns
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via.secretsmanager, local.kms_via.s3, local.kms_via.sqs]
    }
  }
}

resource "aws_iam_role_policy" "query" {
  name   = "least-privilege"
  role   = aws_iam_role.query.id
  policy = data.aws_iam_policy_document.query.json
}

resource "aws_iam_role_policy_attachment" "query" {
  for_each = toset(local.lambda_managed_policy_arns)

  role       = aws_iam_role.query.name
  policy_arn = each.value
}

# --- export worker: the query function's reads and exports, fed by the export queue ---------
# The same database login as the query function (read-only stele_reader) and the same archive
# access; no cursor key (its pages' cursors never leave it), no API.

resource "aws_iam_role" "export_worker" {
  name               = "${local.function_names.export_worker}-role"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "export_worker" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.export_worker.arn}:*"]
  }

  statement {
    sid       = "Secrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.db_query_secret_arn]
  }

  # Its event source mapping reads the jobs with this role.
  statement {
    sid       = "ConsumeExportJobs"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.export_jobs.arn]
  }

  statement {
    sid       = "ReadArchivedEvents"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.archive.arn}/${var.archive_prefix}/tenant_id=*"]
  }

  statement {
    sid       = "ListArchivedDays"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.archive.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.archive_prefix}/tenant_id=*"]
    }
  }

  # The export file and the job's status, each with its own one-day Object Lock retention.
  statement {
    sid = "WriteExports"
    actions = [
      "s3:PutObject",
      "s3:PutObjectRetention",
      "s3:GetObject",
      "s3:AbortMultipartUpload",
    ]
    resources = ["${aws_s3_bucket.archive.arn}/${local.export_prefix}/tenant_id=*"]
  }

  statement {
    sid       = "EncryptExports"
    actions   = ["kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via.s3]
    }
  }

  statement {
    sid       = "DecryptSecretsArchiveAndJobs"
    actions   = ["kms:Decrypt"]
    resources = local.db_secret_kms_key_arns
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via.secretsmanager, local.kms_via.s3, local.kms_via.sqs]
    }
  }
}

resource "aws_iam_role_policy" "export_worker" {
  name   = "least-privilege"
  role   = aws_iam_role.export_worker.id
  policy = data.aws_iam_policy_document.export_worker.json
}

resource "aws_iam_role_policy_attachment" "export_worker" {
  for_each = toset(local.lambda_managed_policy_arns)

  role       = aws_iam_role.export_worker.name
  policy_arn = each.value
}

# --- EventBridge Scheduler: invoke the archiver and the checkpointer, nothing else --------------------------------

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${var.name}-archiver-scheduler-role"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "InvokeArchiverAndCheckpointer"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.archiver.arn, aws_lambda_function.checkpointer.arn]
  }

  statement {
    sid       = "DeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.archiver_dlq.arn]
  }

  statement {
    sid       = "QueueKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via.sqs]
    }
  }

  # The schedule's own payload is encrypted with the stack key (kms_key_arn on the schedule).
  # Not narrowed by kms:ViaService: the Scheduler documentation does not say through which
  # caller it decrypts, and a condition that does not hold would stop the archiver's schedule.
  # Decrypt only: this role encrypts nothing with it.
  statement {
    sid       = "SchedulePayload"
    actions   = ["kms:Decrypt"]
    resources = [local.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "least-privilege"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

# --- RDS Proxy: read the database secret ----------------------------------------------------

data "aws_iam_policy_document" "rds_proxy_assume" {
  count = local.create_db ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["rds.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "rds_proxy" {
  count = local.create_db ? 1 : 0

  name               = "${var.name}-rds-proxy-role"
  assume_role_policy = data.aws_iam_policy_document.rds_proxy_assume[0].json
  tags               = local.tags
}

data "aws_iam_policy_document" "rds_proxy" {
  count = local.create_db ? 1 : 0

  statement {
    sid       = "DatabaseSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = concat([for s in aws_secretsmanager_secret.db_login : s.arn], [aws_rds_cluster.this[0].master_user_secret[0].secret_arn])
  }

  statement {
    sid       = "DecryptSecret"
    actions   = ["kms:Decrypt"]
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "rds_proxy" {
  count = local.create_db ? 1 : 0

  name   = "least-privilege"
  role   = aws_iam_role.rds_proxy[0].id
  policy = data.aws_iam_policy_document.rds_proxy[0].json
}
