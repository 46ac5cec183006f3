# Per-tenant quotas of the ingest function (docs/ARCHITECTURE.md, "Per-tenant quotas"): one
# counter item per (tenant, window) that every ingest instance updates with a conditional
# UpdateItem, expired by TTL, and optional per-tenant overrides (pk = "tenant#<tenant>").
# Counters live seconds and overrides are a few operator-written items: no point-in-time recovery.
#
# Encrypted with the AWS owned key rather than the stack key: the table holds tenant ids and
# counts, no audit data, and a customer managed key would give the ingest role kms:Decrypt
# (DynamoDB decrypts with the caller's permissions), which it otherwise does without.
#trivy:ignore:AVD-AWS-0024
#trivy:ignore:AVD-AWS-0025
resource "aws_dynamodb_table" "tenant_quotas" {
  #checkov:skip=CKV_AWS_28:counters expire within minutes and overrides are operator-written settings; nothing to recover to a point in time
  #checkov:skip=CKV_AWS_119:holds tenant ids and request counts only; a customer managed key would give the ingest role kms:Decrypt (see the comment above)
  #checkov:skip=CKV2_AWS_16:on-demand (PAY_PER_REQUEST) capacity scales by itself; auto scaling applies to provisioned tables only
  name         = "${var.name}-tenant-quotas"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"

  attribute {
    name = "pk"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  server_side_encryption {
    enabled = false # AWS owned key (DynamoDB always encrypts at rest)
  }

  point_in_time_recovery {
    enabled = false
  }

  tags = local.tags
}
