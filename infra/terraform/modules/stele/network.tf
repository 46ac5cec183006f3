# The functions run in private subnets with no route to the internet: every AWS API they call is
# reached through a VPC endpoint (ingest: Kinesis; batch-writer: Secrets Manager, SQS; archiver:
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

resource "aws_vpc_endpoint" "interface" {
  for_each = var.create_vpc_endpoints ? toset(["kinesis-streams", "secretsmanager", "sqs"]) : toset([])

  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.private_subnet_ids
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = true
  tags                = merge(local.tags, { Name = "${var.name}-${each.key}" })
}

resource "aws_vpc_endpoint" "s3" {
  count = var.create_vpc_endpoints ? 1 : 0

  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.private_route_table_ids
  tags              = merge(local.tags, { Name = "${var.name}-s3" })
}
