# PostgreSQL. database_mode = "existing": nothing here is created; the functions read
# var.existing_db_secret_arn. database_mode = "aurora": Aurora PostgreSQL Serverless v2 in the
# private subnets, TLS forced, reached only through RDS Proxy (TLS required), one secret per
# function shaped as the functions expect: {host, port, username, password, dbname}.

# The master user's password is Aurora's (manage_master_user_password: a secret RDS creates
# and rotates, never in Terraform state); migrations run as that user (`stele db migrate`).
# Each function connects as its own login user, a member of one database role that migration
# 0006_roles.sql makes (stele_writer, stele_archiver, stele_checkpointer; the query function's
# in stele_reader, read-only), with its own secret. The
# secrets start with an empty password: `stele db create-login` (run once by the operator, as
# the master user) creates the login user with a fresh password and writes it into the secret,
# so no password ever passes through Terraform. See README, Deployment.

locals {
  # Function (secret key) -> (database role, login user).
  db_logins = {
    writer       = { role = "stele_writer", user = "stele_writer_login" }
    archiver     = { role = "stele_archiver", user = "stele_archiver_login" }
    checkpointer = { role = "stele_checkpointer", user = "stele_checkpointer_login" }
    query        = { role = "stele_reader", user = "stele_query_login" }
    # Not a function's: a read-only login for operators and tools (psql, reports).
    reader = { role = "stele_reader", user = "stele_reader_login" }
  }
}

resource "aws_secretsmanager_secret" "db_login" {
  #checkov:skip=CKV2_AWS_57:not rotated by Secrets Manager: the password is set by `stele db create-login` (re-run it to rotate), and the functions read the secret once per execution environment (README, Operating notes)
  for_each = local.create_db ? local.db_logins : {}

  name_prefix             = "${var.name}/database-${each.key}-"
  description             = "stele PostgreSQL login ${each.value.user} (role ${each.value.role}); host is the RDS Proxy endpoint"
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = 7
  tags                    = local.tags
}

# Everything but the password, which `stele db create-login` fills in (and Terraform then
# leaves alone).
resource "aws_secretsmanager_secret_version" "db_login" {
  for_each = local.create_db ? local.db_logins : {}

  secret_id = aws_secretsmanager_secret.db_login[each.key].id
  secret_string = jsonencode({
    engine   = "postgres"
    host     = aws_db_proxy.this[0].endpoint
    port     = 5432
    username = each.value.user
    password = ""
    dbname   = var.aurora_database_name
  })

  lifecycle {
    ignore_changes = [secret_string]
  }
}

resource "aws_db_subnet_group" "this" {
  count = local.create_db ? 1 : 0

  name       = "${var.name}-db"
  subnet_ids = var.private_subnet_ids
  tags       = local.tags
}

resource "aws_security_group" "db" {
  count = local.create_db ? 1 : 0

  name        = "${var.name}-db"
  description = "stele Aurora cluster: PostgreSQL from RDS Proxy only"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "db_from_proxy" {
  count = local.create_db ? 1 : 0

  security_group_id            = aws_security_group.db[0].id
  description                  = "PostgreSQL from RDS Proxy"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.proxy[0].id
}

resource "aws_security_group" "proxy" {
  #checkov:skip=CKV2_AWS_5:attached to aws_db_proxy.this[0] (vpc_security_group_ids); checkov's graph does not follow the counted reference
  count = local.create_db ? 1 : 0

  name        = "${var.name}-db-proxy"
  description = "stele RDS Proxy: PostgreSQL from the functions, to the cluster"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "proxy_from_lambda" {
  count = local.create_db ? 1 : 0

  security_group_id            = aws_security_group.proxy[0].id
  description                  = "PostgreSQL from the stele functions"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.lambda.id
}

resource "aws_vpc_security_group_egress_rule" "proxy_to_db" {
  count = local.create_db ? 1 : 0

  security_group_id            = aws_security_group.proxy[0].id
  description                  = "PostgreSQL to the Aurora cluster"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db[0].id
}

resource "aws_rds_cluster_parameter_group" "this" {
  count = local.create_db ? 1 : 0

  name_prefix = "${var.name}-"
  family      = "aurora-postgresql${split(".", var.aurora_engine_version)[0]}"
  description = "stele: TLS required, statement and connection logging"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  parameter {
    name  = "log_disconnections"
    value = "1"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  lifecycle {
    create_before_destroy = true
  }

  tags = local.tags
}

resource "aws_rds_cluster" "this" {
  #checkov:skip=CKV2_AWS_8:automated backups (backup_retention_period) cover point-in-time recovery; an AWS Backup plan is an account-level choice
  count = local.create_db ? 1 : 0

  cluster_identifier              = var.name
  engine                          = "aurora-postgresql"
  engine_mode                     = "provisioned"
  engine_version                  = var.aurora_engine_version
  database_name                   = var.aurora_database_name
  master_username                 = var.aurora_master_username
  manage_master_user_password     = true
  master_user_secret_kms_key_id   = local.kms_key_arn
  db_subnet_group_name            = aws_db_subnet_group.this[0].name
  vpc_security_group_ids          = [aws_security_group.db[0].id]
  db_cluster_parameter_group_name = aws_rds_cluster_parameter_group.this[0].name
  port                            = 5432

  storage_encrypted                   = true
  kms_key_id                          = local.kms_key_arn
  iam_database_authentication_enabled = true
  deletion_protection                 = var.deletion_protection
  backup_retention_period             = var.aurora_backup_retention_days
  preferred_backup_window             = "01:00-02:00"
  copy_tags_to_snapshot               = true
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${var.name}-final"
  enabled_cloudwatch_logs_exports     = ["postgresql"]

  serverlessv2_scaling_configuration {
    min_capacity = var.aurora_min_acu
    max_capacity = var.aurora_max_acu
  }

  lifecycle {
    ignore_changes = [final_snapshot_identifier]
  }

  tags = local.tags
}

resource "aws_rds_cluster_instance" "this" {
  count = local.create_db ? var.aurora_instance_count : 0

  identifier                            = "${var.name}-${count.index}"
  cluster_identifier                    = aws_rds_cluster.this[0].id
  engine                                = aws_rds_cluster.this[0].engine
  engine_version                        = aws_rds_cluster.this[0].engine_version
  instance_class                        = "db.serverless"
  db_subnet_group_name                  = aws_db_subnet_group.this[0].name
  publicly_accessible                   = false
  auto_minor_version_upgrade            = true
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = local.kms_key_arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.rds_monitoring[0].arn
  tags                                  = local.tags
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  count = local.create_db ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  count = local.create_db ? 1 : 0

  name               = "${var.name}-rds-monitoring-role"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume[0].json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  count = local.create_db ? 1 : 0

  role       = aws_iam_role.rds_monitoring[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_proxy" "this" {
  count = local.create_db ? 1 : 0

  name                   = var.name
  engine_family          = "POSTGRESQL"
  role_arn               = aws_iam_role.rds_proxy[0].arn
  vpc_subnet_ids         = var.private_subnet_ids
  vpc_security_group_ids = [aws_security_group.proxy[0].id]
  require_tls            = true
  idle_client_timeout    = 1800
  debug_logging          = false

  # One login per function, and the master user for the operator's `stele db migrate` and
  # `stele db create-login` (run from inside the VPC).
  dynamic "auth" {
    for_each = aws_secretsmanager_secret.db_login
    content {
      auth_scheme = "SECRETS"
      description = "stele ${auth.key}"
      iam_auth    = "DISABLED"
      secret_arn  = auth.value.arn
    }
  }

  auth {
    auth_scheme = "SECRETS"
    description = "stele master user (migrations, logins)"
    iam_auth    = "DISABLED"
    secret_arn  = aws_rds_cluster.this[0].master_user_secret[0].secret_arn
  }

  tags = local.tags
}

resource "aws_db_proxy_default_target_group" "this" {
  count = local.create_db ? 1 : 0

  db_proxy_name = aws_db_proxy.this[0].name

  connection_pool_config {
    max_connections_percent      = 90
    max_idle_connections_percent = 50
    connection_borrow_timeout    = 120
  }
}

resource "aws_db_proxy_target" "this" {
  count = local.create_db ? 1 : 0

  db_proxy_name         = aws_db_proxy.this[0].name
  target_group_name     = aws_db_proxy_default_target_group.this[0].name
  db_cluster_identifier = aws_rds_cluster.this[0].id
}
