data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  tags = merge({ "stele:stack" = var.name }, var.tags)

  create_kms_key = var.kms_key_arn == null
  kms_key_arn    = local.create_kms_key ? aws_kms_key.this[0].arn : var.kms_key_arn

  create_db = var.database_mode == "aurora"
  # Each data-path function's own secret: JSON {host, port, username, password, dbname} of a
  # login user in its database role (migration 0006_roles.sql; database.tf).
  db_writer_secret_arn       = local.create_db ? aws_secretsmanager_secret.db_login["writer"].arn : (var.existing_db_writer_secret_arn != null ? var.existing_db_writer_secret_arn : var.existing_db_secret_arn)
  db_archiver_secret_arn     = local.create_db ? aws_secretsmanager_secret.db_login["archiver"].arn : (var.existing_db_archiver_secret_arn != null ? var.existing_db_archiver_secret_arn : var.existing_db_secret_arn)
  db_checkpointer_secret_arn = local.create_db ? aws_secretsmanager_secret.db_login["checkpointer"].arn : (var.existing_db_checkpointer_secret_arn != null ? var.existing_db_checkpointer_secret_arn : var.existing_db_secret_arn)
  db_query_secret_arn        = local.create_db ? aws_secretsmanager_secret.db_login["query"].arn : (var.existing_db_query_secret_arn != null ? var.existing_db_query_secret_arn : var.existing_db_secret_arn)
  # KMS keys that can decrypt those secrets (deduplicated; the stack key is always there).
  db_secret_kms_key_arns = distinct(compact([local.kms_key_arn, var.existing_db_secret_kms_key_arn]))
  db_tls                 = coalesce(var.db_tls, local.create_db ? "verify-full" : "require")

  archive_bucket_name = coalesce(var.archive_bucket_name, "${var.name}-archive-${local.account_id}-${local.region}")
  results_bucket_name = "${var.name}-athena-${local.account_id}-${local.region}"
  failed_bucket_name  = "${var.name}-failed-batches-${local.account_id}-${local.region}"

  function_names = {
    ingest        = "${var.name}-ingest"
    batch_writer  = "${var.name}-batch-writer"
    archiver      = "${var.name}-archiver"
    checkpointer  = "${var.name}-checkpointer"
    query         = "${var.name}-query"
    export_worker = "${var.name}-export-worker"
  }

  # The deployment's log origin: the first line of every checkpoint (per tenant:
  # <origin>/tenant/<tenant>) and the log key's note name.
  log_origin = coalesce(var.log_origin, "${var.name}.${local.account_id}.${local.region}/stele")
}

check "inputs" {
  assert {
    condition     = var.database_mode == "aurora" || var.existing_db_secret_arn != null
    error_message = "database_mode = existing needs existing_db_secret_arn."
  }

  assert {
    condition     = !var.object_lock_enabled || var.archive_expiration_days == null || var.object_lock_retention_days >= coalesce(var.archive_expiration_days, 0)
    error_message = "object_lock_retention_days must be at least archive_expiration_days, or archived objects lose their lock before the archive expires them."
  }

  assert {
    condition     = var.esm_maximum_record_age_secs == -1 || var.esm_maximum_record_age_secs < var.kinesis_retention_hours * 3600
    error_message = "esm_maximum_record_age_secs must be -1 or shorter than the stream's retention, or records expire from the stream before the mapping gives up on them."
  }
}
