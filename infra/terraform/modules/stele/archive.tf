# The archive bucket: versioned, SSE-KMS with a bucket key, no public access, TLS only,
# lifecycle to cheaper classes (GLACIER_IR stays queryable by Athena) then expiry, and S3 Object
# Lock by default (GOVERNANCE, or COMPLIANCE) so no archived file or manifest can be altered or
# destroyed before its retention ends. Athena's query results go to a second bucket.

# Justification of the ignore below: server access logs go to a log bucket the operator owns,
# outside this stack: aws_s3_bucket_logging.this writes them there when access_log_bucket is
# set, and nothing is logged while it is null (the default).
#trivy:ignore:AVD-AWS-0089
resource "aws_s3_bucket" "archive" {
  #checkov:skip=CKV_AWS_18:server access logs are optional: aws_s3_bucket_logging.this sends them to var.access_log_bucket (a log bucket the operator owns) when set; none by default
  #checkov:skip=CKV_AWS_144:cross-region replication is a disaster-recovery choice with its own bucket, key and role; out of scope of this module
  #checkov:skip=CKV2_AWS_62:no consumer of object events; the archiver writes a manifest per partition instead
  bucket              = local.archive_bucket_name
  force_destroy       = var.force_destroy
  object_lock_enabled = var.object_lock_enabled
  tags                = local.tags
}

resource "aws_s3_bucket_ownership_controls" "archive" {
  bucket = aws_s3_bucket.archive.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "archive" {
  bucket                  = aws_s3_bucket.archive.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "archive" {
  bucket = aws_s3_bucket.archive.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

data "aws_iam_policy_document" "archive_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.archive.arn, "${aws_s3_bucket.archive.arn}/*"]
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

  statement {
    sid       = "DenyOldTls"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.archive.arn, "${aws_s3_bucket.archive.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}

resource "aws_s3_bucket_policy" "archive" {
  bucket = aws_s3_bucket.archive.id
  policy = data.aws_iam_policy_document.archive_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.archive]
}

resource "aws_s3_bucket_lifecycle_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    id     = "archive-tiering"
    status = "Enabled"

    filter {
      prefix = "${var.archive_prefix}/"
    }

    dynamic "transition" {
      for_each = var.archive_transition_ia_days == null ? [] : [var.archive_transition_ia_days]
      content {
        days          = transition.value
        storage_class = "STANDARD_IA"
      }
    }

    dynamic "transition" {
      for_each = var.archive_transition_glacier_ir_days == null ? [] : [var.archive_transition_glacier_ir_days]
      content {
        days          = transition.value
        storage_class = "GLACIER_IR"
      }
    }

    dynamic "expiration" {
      for_each = var.archive_expiration_days == null ? [] : [var.archive_expiration_days]
      content {
        days = expiration.value
      }
    }

    # A version becomes noncurrent when the archiver re-exports a day after a crash or the
    # expiry above hides it. Under Object Lock it stays locked for up to the retention after
    # that, so it only expires once no lock can remain (noncurrent days count from then).
    noncurrent_version_expiration {
      noncurrent_days = local.archive_noncurrent_days
    }
  }

  # The query function's exports (GET /v1/events/export): a download, not a record. Each
  # carries a one-day Object Lock retention of its own, so it can go after a day.
  rule {
    id     = "expire-exports"
    status = "Enabled"

    filter {
      prefix = "${local.export_prefix}/"
    }

    expiration {
      days = 1
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.archive]
}

locals {
  # Where the query function writes exports (functions/query/src/export/spool.rs, EXPORT_PREFIX).
  export_prefix           = "_exports"
  archive_noncurrent_days = var.object_lock_enabled ? max(30, var.object_lock_retention_days) : 30
}

resource "aws_s3_bucket_object_lock_configuration" "archive" {
  count = var.object_lock_enabled ? 1 : 0

  bucket = aws_s3_bucket.archive.id

  rule {
    default_retention {
      mode = var.object_lock_mode
      days = var.object_lock_retention_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.archive]
}

# --- Athena query results -------------------------------------------------------------------

# Justification of the ignore below: as for the archive, server access logs go to
# access_log_bucket when it is set (aws_s3_bucket_logging.this), none by default.
#trivy:ignore:AVD-AWS-0089
resource "aws_s3_bucket" "athena_results" {
  #checkov:skip=CKV_AWS_18:server access logs are optional: aws_s3_bucket_logging.this sends them to var.access_log_bucket when set; none by default
  #checkov:skip=CKV_AWS_144:query results are transient; no replication
  #checkov:skip=CKV2_AWS_62:no consumer of object events for query results
  bucket        = local.results_bucket_name
  force_destroy = var.athena_results_force_destroy
  tags          = local.tags
}

resource "aws_s3_bucket_ownership_controls" "athena_results" {
  bucket = aws_s3_bucket.athena_results.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "athena_results" {
  bucket                  = aws_s3_bucket.athena_results.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "athena_results" {
  bucket = aws_s3_bucket.athena_results.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "athena_results" {
  bucket = aws_s3_bucket.athena_results.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

data "aws_iam_policy_document" "athena_results_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.athena_results.arn, "${aws_s3_bucket.athena_results.arn}/*"]
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

resource "aws_s3_bucket_policy" "athena_results" {
  bucket = aws_s3_bucket.athena_results.id
  policy = data.aws_iam_policy_document.athena_results_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.athena_results]
}

resource "aws_s3_bucket_lifecycle_configuration" "athena_results" {
  bucket = aws_s3_bucket.athena_results.id

  rule {
    id     = "expire-query-results"
    status = "Enabled"

    filter {}

    expiration {
      days = var.athena_results_expiration_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.athena_results]
}

# --- Server access logs (optional) ------------------------------------------------------------
# The stack's three buckets log to a bucket the operator owns (its policy must let
# logging.s3.amazonaws.com write under the prefix), each under <prefix><bucket>/.

resource "aws_s3_bucket_logging" "this" {
  for_each = var.access_log_bucket == null ? {} : {
    archive        = aws_s3_bucket.archive.id
    failed_batches = aws_s3_bucket.failed_batches.id
    athena_results = aws_s3_bucket.athena_results.id
  }

  bucket        = each.value
  target_bucket = var.access_log_bucket
  target_prefix = "${var.access_log_prefix}${each.value}/"
}
