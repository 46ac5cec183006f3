# The functions run in private subnets with no route to the internet: every AWS API they call is
# reached through a VPC endpoint (ingest: Kinesis, DynamoDB; batch-writer: Secrets Manager, SQS; archiver:
# Secrets Manager, S3), and Postgres through RDS Proxy (or the existing database's CIDR blocks).

resource "aws_security_group" "lambda" {
  name        = "${var.name}-functions"
  description = "stele functions: egress to the VPC endpoints, S3 and Postgres only"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_egress_rule" "lambda_https_endpoints" {
  security_group_id            = aws_security_group.lambda.id
  description                  = "HTTPS to the interface VPC endpoints"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.endpoints.id
}

resource "aws_vpc_security_group_egress_rule" "lambda_https_s3" {
  count = var.create_vpc_endpoints ? 1 : 0

  security_group_id = aws_security_group.lambda.id
  description       = "HTTPS to S3 through the gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.s3[0].prefix_list_id
}

resource "aws_vpc_security_group_egress_rule" "lambda_postgres_proxy" {
  count = local.create_db ? 1 : 0

  security_group_id            = aws_security_group.lambda.id
  description                  = "PostgreSQL to RDS Proxy"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.proxy[0].id
}

resource "aws_vpc_security_group_egress_rule" "lambda_postgres_existing" {
  for_each = local.create_db ? toset([]) : toset(var.existing_db_cidr_blocks)

  security_group_id = aws_security_group.lambda.id
  description       = "PostgreSQL to the existing database"
  ip_protocol       = "tcp"
  from_port         = var.existing_db_port
  to_port           = var.existing_db_port
  cidr_ipv4         = each.value
}

resource "aws_security_group" "endpoints" {
  name        = "${var.name}-endpoints"
  description = "stele interface VPC endpoints: HTTPS from the functions"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_https" {
  security_group_id            = aws_security_group.endpoints.id
  description                  = "HTTPS from the stele functions"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.lambda.id
}

# Endpoint policies: through these endpoints, principals of this account can do only what the
# functions do, on this stack's resources. With private DNS (and the S3 prefix list in the route
# tables) they carry every call to these services from the VPC, so other workloads in the same
# VPC reach only this stack's stream, secret, queues and buckets through them: give such a VPC
# its own endpoints (create_vpc_endpoints = false here) if that is too narrow.
locals {
  endpoint_access = {
    kinesis-streams = {
      actions = [
        "kinesis:PutRecord",
        "kinesis:PutRecords",
        "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary",
        "kinesis:GetRecords",
        "kinesis:GetShardIterator",
        "kinesis:ListShards",
      ]
      resources = [aws_kinesis_stream.events.arn]
    }
    secretsmanager = {
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [local.db_writer_secret_arn, local.db_archiver_secret_arn, local.db_checkpointer_secret_arn, local.db_query_secret_arn, aws_secretsmanager_secret.cursor_key.arn]
    }
    kms = {
      actions   = ["kms:Sign", "kms:GetPublicKey"]
      resources = [aws_kms_key.log.arn]
    }
    sqs = {
      actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
      resources = [aws_sqs_queue.dlq.arn, aws_sqs_queue.archiver_dlq.arn, aws_sqs_queue.export_jobs.arn]
    }
  }
}

data "aws_iam_policy_document" "endpoint" {
  for_each = local.endpoint_access

  statement {
    sid       = "ThisStackOnly"
    actions   = each.value.actions
    resources = each.value.resources
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_vpc_endpoint" "interface" {
  for_each = { for service, access in local.endpoint_access : service => access if var.create_vpc_endpoints }

  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.private_subnet_ids
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = true
  policy              = data.aws_iam_policy_document.endpoint[each.key].json
  tags                = merge(local.tags, { Name = "${var.name}-${each.key}" })
}

# The archiver's objects under the archive prefix, the query function's exports, and listing
# (the only S3 calls made from the VPC: the event source mapping and Athena reach S3 from
# outside it).
data "aws_iam_policy_document" "s3_endpoint" {
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
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [local.account_id]
    }
  }

  # Exports (GET /v1/events/export), with their own short retention: never under the archive
  # prefix.
  statement {
    sid       = "Exports"
    actions   = ["s3:PutObject", "s3:PutObjectRetention", "s3:GetObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.archive.arn}/${local.export_prefix}/*"]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "ListArchive"
    actions   = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.archive.arn]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_vpc_endpoint" "s3" {
  count = var.create_vpc_endpoints ? 1 : 0

  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.private_route_table_ids
  policy            = data.aws_iam_policy_document.s3_endpoint.json
  tags              = merge(local.tags, { Name = "${var.name}-s3" })
}

# DynamoDB (ingest's per-tenant quota table) through a gateway endpoint, like S3: only the quota
# table's two actions, for principals of this account.
data "aws_iam_policy_document" "dynamodb_endpoint" {
  statement {
    sid       = "TenantQuotas"
    actions   = ["dynamodb:UpdateItem", "dynamodb:GetItem"]
    resources = [aws_dynamodb_table.tenant_quotas.arn]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_vpc_endpoint" "dynamodb" {
  count = var.create_vpc_endpoints ? 1 : 0

  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${local.region}.dynamodb"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.private_route_table_ids
  policy            = data.aws_iam_policy_document.dynamodb_endpoint.json
  tags              = merge(local.tags, { Name = "${var.name}-dynamodb" })
}

resource "aws_vpc_security_group_egress_rule" "lambda_https_dynamodb" {
  count = var.create_vpc_endpoints ? 1 : 0

  security_group_id = aws_security_group.lambda.id
  description       = "HTTPS to DynamoDB (tenant quotas) through the gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.dynamodb[0].prefix_list_id
}
