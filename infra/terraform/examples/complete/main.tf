# A complete stele deployment: a private VPC (no NAT, no internet gateway: the functions reach
# AWS through VPC endpoints), the stele module with Aurora Serverless v2, and an SNS topic for
# the alarms, and (identity.tf) a Cognito user pool that issues the writers' tokens. Copy this
# directory, build the functions, apply (or set jwt_issuer, jwt_audience and tenant_claim for
# your own identity provider).

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:only the first two zone names (sorted) are used, so a zone added later does not change the result
  state = "available"
}

locals {
  azs = slice(data.aws_availability_zones.available.names, 0, 2)
}

resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = var.name }
}

# No rule at all: nothing may use the default security group.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
}

resource "aws_subnet" "private" {
  count = length(local.azs)

  vpc_id            = aws_vpc.this.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index)
  tags              = { Name = "${var.name}-private-${local.azs[count.index]}" }
}

resource "aws_route_table" "private" {
  vpc_id = aws_vpc.this.id
  tags   = { Name = "${var.name}-private" }
}

resource "aws_route_table_association" "private" {
  count = length(aws_subnet.private)

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

resource "aws_cloudwatch_log_group" "flow_logs" {
  name              = "/aws/vpc/${var.name}/flow-logs"
  retention_in_days = 365
  kms_key_id        = module.stele.kms_key_arn # its key policy lets CloudWatch Logs use it for "*${var.name}*" groups
}

data "aws_iam_policy_document" "flow_logs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "flow_logs" {
  name               = "${var.name}-vpc-flow-logs"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume.json
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow_logs.arn}:*"]
  }
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "write-flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs.json
}

resource "aws_flow_log" "this" {
  vpc_id          = aws_vpc.this.id
  traffic_type    = "ALL"
  log_destination = aws_cloudwatch_log_group.flow_logs.arn
  iam_role_arn    = aws_iam_role.flow_logs.arn
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = module.stele.kms_key_arn
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = var.alarm_email == null ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

module "stele" {
  source = "../../modules/stele"

  name = var.name

  ingest_zip       = "${var.lambda_dir}/stele-ingest/bootstrap.zip"
  batch_writer_zip = "${var.lambda_dir}/stele-batch-writer/bootstrap.zip"
  archiver_zip     = "${var.lambda_dir}/stele-archiver/bootstrap.zip"
  checkpointer_zip = "${var.lambda_dir}/stele-checkpointer/bootstrap.zip"
  query_zip        = "${var.lambda_dir}/stele-query/bootstrap.zip"

  jwt_issuer               = local.jwt_issuer
  jwt_audience             = local.jwt_audience
  jwt_authorization_scopes = [local.write_scope]
  jwt_read_scopes          = [local.read_scope]
  tenant_claim             = var.tenant_claim

  vpc_id                  = aws_vpc.this.id
  private_subnet_ids      = aws_subnet.private[*].id
  private_route_table_ids = [aws_route_table.private.id]

  database_mode       = "aurora"
  deletion_protection = var.deletion_protection

  object_lock_enabled = var.object_lock_enabled

  alarm_actions = [aws_sns_topic.alarms.arn]
}
