resource "aws_kinesis_stream" "events" {
  name             = "${var.name}-events"
  shard_count      = var.kinesis_stream_mode == "PROVISIONED" ? var.kinesis_shard_count : null
  retention_period = var.kinesis_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = local.kms_key_arn

  stream_mode_details {
    stream_mode = var.kinesis_stream_mode
  }

  tags = local.tags
}

# Records the batch-writer could not decode or store one by one (poison records): the
# batch-writer sends each one here with its bytes (STELE_DLQ_URL). See docs/OPERATIONS.md.
resource "aws_sqs_queue" "dlq" {
  name                              = "${var.name}-batch-writer-dlq"
  message_retention_seconds         = var.dlq_retention_secs
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = local.tags
}

resource "aws_lambda_event_source_mapping" "batch_writer" {
  function_name     = aws_lambda_function.batch_writer.arn
  event_source_arn  = aws_kinesis_stream.events.arn
  starting_position = var.esm_starting_position

  batch_size                         = var.esm_batch_size
  maximum_batching_window_in_seconds = var.esm_batching_window_secs
  parallelization_factor             = var.esm_parallelization_factor

  # The handler answers with the sequence numbers it could not store; a throwing batch is split
  # in two until the bad record is isolated. Poison records are dead-lettered by the handler
  # itself, so a batch only fails on infrastructure errors (Postgres down): by default (-1, -1)
  # the mapping retries it until it succeeds and never discards an accepted event. With finite
  # limits a batch still failing goes to the failed-batches bucket, records included (an SQS
  # destination would only get the shard and sequence numbers, and the records would be gone
  # when the stream's retention ends).
  function_response_types        = ["ReportBatchItemFailures"]
  bisect_batch_on_function_error = true
  maximum_retry_attempts         = var.esm_maximum_retry_attempts
  maximum_record_age_in_seconds  = var.esm_maximum_record_age_secs

  destination_config {
    on_failure {
      destination_arn = aws_s3_bucket.failed_batches.arn
    }
  }

  depends_on = [aws_iam_role_policy.batch_writer]
}

# --- On-failure destination of the mapping ---------------------------------------------------
# Empty unless an operator sets finite esm_maximum_retry_attempts / esm_maximum_record_age_secs:
# then each discarded batch arrives as one object holding the invocation record and the batch's
# records. Kept (no expiry) until an operator replays and deletes them.

# Justification of the ignore below: as for the archive, server access logs go to
# access_log_bucket when it is set (aws_s3_bucket_logging.this in archive.tf), none by default.
#trivy:ignore:AVD-AWS-0089
resource "aws_s3_bucket" "failed_batches" {
  #checkov:skip=CKV_AWS_18:server access logs are optional: aws_s3_bucket_logging.this sends them to var.access_log_bucket when set; none by default
  #checkov:skip=CKV_AWS_144:cross-region replication is a disaster-recovery choice with its own bucket, key and role; out of scope of this module
  #checkov:skip=CKV2_AWS_62:objects arrive only when an operator chose finite retry limits; the iterator-age alarm fires before a batch is given up
  bucket        = local.failed_bucket_name
  force_destroy = var.force_destroy
  tags          = local.tags
}

resource "aws_s3_bucket_ownership_controls" "failed_batches" {
  bucket = aws_s3_bucket.failed_batches.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "failed_batches" {
  bucket                  = aws_s3_bucket.failed_batches.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "failed_batches" {
  bucket = aws_s3_bucket.failed_batches.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "failed_batches" {
  bucket = aws_s3_bucket.failed_batches.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

data "aws_iam_policy_document" "failed_batches_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.failed_batches.arn, "${aws_s3_bucket.failed_batches.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "failed_batches" {
  bucket = aws_s3_bucket.failed_batches.id
  policy = data.aws_iam_policy_document.failed_batches_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.failed_batches]
}

resource "aws_s3_bucket_lifecycle_configuration" "failed_batches" {
  bucket = aws_s3_bucket.failed_batches.id

  # No expiration of current objects: a failed batch stays until an operator has replayed it.
  rule {
    id     = "clean-up-after-replay"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.failed_batches]
}
