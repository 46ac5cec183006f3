# Glue table over the archive, with partition projection: no crawler, no MSCK REPAIR, no
# partitions to register. tenant_id is "injected" (every query names its tenant, which keeps
# scans per tenant) and dt is a date range. The columns mirror the archiver's Parquet schema
# (functions/archiver/src/schema.rs; `stele archive-schema` prints it and
# tests/terraform/test_glue.py compares the two). The Parquet files do not hold tenant_id or dt:
# they come from the object key.

locals {
  archive_location = "s3://${aws_s3_bucket.archive.id}/${var.archive_prefix}/"
  glue_table_name  = "audit_events"
}

resource "aws_glue_catalog_database" "this" {
  name        = replace("${var.name}_audit", "-", "_")
  description = "stele audit events archived from PostgreSQL"
}

resource "aws_glue_catalog_table" "audit_events" {
  name          = local.glue_table_name
  database_name = aws_glue_catalog_database.this.name
  description   = "Archived audit events (Parquet, zstd), one prefix per tenant and UTC day"
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    "EXTERNAL"                    = "TRUE"
    "classification"              = "parquet"
    "parquet.compression"         = "ZSTD"
    "projection.enabled"          = "true"
    "projection.tenant_id.type"   = "injected"
    "projection.dt.type"          = "date"
    "projection.dt.format"        = "yyyy-MM-dd"
    "projection.dt.range"         = "2020-01-01,NOW"
    "projection.dt.interval"      = "1"
    "projection.dt.interval.unit" = "DAYS"
    "storage.location.template"   = "${local.archive_location}tenant_id=$${tenant_id}/dt=$${dt}"
  }

  partition_keys {
    name    = "tenant_id"
    type    = "string"
    comment = "from the authorizer at ingest; path segment tenant_id=<t>"
  }

  partition_keys {
    name    = "dt"
    type    = "string"
    comment = "UTC day of occurred_at, yyyy-MM-dd; path segment dt=<d>"
  }

  storage_descriptor {
    location      = local.archive_location
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      name                  = "parquet"
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
      parameters = {
        "serialization.format" = "1"
      }
    }

    columns {
      name = "event_id"
      type = "string"
    }
    columns {
      name = "occurred_at"
      type = "timestamp"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "category"
      type = "string"
    }
    columns {
      name = "action"
      type = "string"
    }
    columns {
      name = "outcome"
      type = "string"
    }
    columns {
      name = "actor_id"
      type = "string"
    }
    columns {
      name = "actor_type"
      type = "string"
    }
    columns {
      name = "actor_display"
      type = "string"
    }
    columns {
      name = "actor_ip"
      type = "string"
    }
    columns {
      name = "actor_user_agent"
      type = "string"
    }
    columns {
      name = "resource_type"
      type = "string"
    }
    columns {
      name = "resource_id"
      type = "string"
    }
    columns {
      name = "resource_display"
      type = "string"
    }
    columns {
      name    = "changes"
      type    = "string"
      comment = "JSON text {before, after}"
    }
    columns {
      name    = "metadata"
      type    = "string"
      comment = "JSON text"
    }
    columns {
      name = "correlation_id"
      type = "string"
    }
    columns {
      name = "causation_id"
      type = "string"
    }
    columns {
      name = "trace_parent"
      type = "string"
    }
    columns {
      name = "trace_state"
      type = "string"
    }
    columns {
      name = "source_service"
      type = "string"
    }
    columns {
      name = "source_version"
      type = "string"
    }
    columns {
      name = "source_host"
      type = "string"
    }
    columns {
      name = "source_region"
      type = "string"
    }
    columns {
      name = "schema_version"
      type = "int"
    }
    columns {
      name    = "event_hash"
      type    = "string"
      comment = "hex SHA-256 of the RFC 8785 canonical event"
    }
    columns {
      name = "kinesis_shard"
      type = "string"
    }
    columns {
      name = "kinesis_seq"
      type = "string"
    }
    columns {
      name    = "leaf_index"
      type    = "bigint"
      comment = "the event's leaf in its tenant's verifiable log (stele verify); null before the log"
    }
  }
}

resource "aws_athena_workgroup" "this" {
  name          = var.name
  description   = "stele: queries over the audit archive"
  state         = "ENABLED"
  force_destroy = true

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location = "s3://${aws_s3_bucket.athena_results.id}/results/"

      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = local.kms_key_arn
      }
    }
  }

  tags = local.tags
}
