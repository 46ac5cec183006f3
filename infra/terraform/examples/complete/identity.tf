# Identity: a Cognito user pool whose users each belong to one tenant, unless jwt_issuer is set
# (bring your own OpenID Connect issuer; then configure the same four things there: issuer,
# audience, write scope, tenant claim).
#
# Why this shape. Ingest files an event under whatever tenant the token's claim names, so the
# claim must be something no user can change:
# - the tenant is the custom attribute custom:tenant_id, immutable (mutable = false: it is set
#   once, when an administrator creates the user, and nobody can change it afterwards, not even
#   an administrator), and no app client may write it (write_attributes leaves it out), and users
#   cannot sign themselves up (allow_admin_create_user_only) and pick a tenant at sign-up;
# - writing needs the scope stele/events.write, which only the writer app client is granted;
#   API Gateway reads scopes from access tokens, and Cognito puts no custom attribute in an
#   access token, so the pre token generation trigger (V2_0, Essentials feature plan) copies the
#   immutable attribute into the access token's tenant_id claim (tenant_claim). It reads the
#   attribute from Cognito's own request and ignores client metadata, so a client cannot
#   choose the value.

locals {
  create_user_pool = var.jwt_issuer == null
  write_scope      = "stele/events.write"
  read_scope       = "stele/events.read"
  jwt_issuer       = local.create_user_pool ? "https://cognito-idp.${var.region}.amazonaws.com/${aws_cognito_user_pool.this[0].id}" : var.jwt_issuer
  jwt_audience     = local.create_user_pool ? [aws_cognito_user_pool_client.writer[0].id] : var.jwt_audience
}

resource "aws_cognito_user_pool" "this" {
  count = local.create_user_pool ? 1 : 0

  name                = var.name
  user_pool_tier      = "ESSENTIALS" # access token customisation by the V2_0 trigger
  deletion_protection = var.deletion_protection ? "ACTIVE" : "INACTIVE"
  mfa_configuration   = "OPTIONAL"

  software_token_mfa_configuration {
    enabled = true
  }

  admin_create_user_config {
    allow_admin_create_user_only = true
  }

  password_policy {
    minimum_length    = 14
    require_lowercase = true
    require_uppercase = true
    require_numbers   = true
    require_symbols   = true
  }

  # The tenant: set by an administrator when the user is created, never changed afterwards.
  schema {
    name                     = "tenant_id"
    attribute_data_type      = "String"
    mutable                  = false
    developer_only_attribute = false
    required                 = false

    string_attribute_constraints {
      min_length = 1
      max_length = 200 # ingest's longest tenant id
    }
  }

  lambda_config {
    pre_token_generation_config {
      lambda_arn     = aws_lambda_function.pre_token[0].arn
      lambda_version = "V2_0"
    }
  }
}

resource "aws_cognito_resource_server" "stele" {
  count = local.create_user_pool ? 1 : 0

  user_pool_id = aws_cognito_user_pool.this[0].id
  identifier   = "stele"
  name         = "stele audit events"

  scope {
    scope_name        = "events.write"
    scope_description = "Write audit events (POST /v1/events)"
  }

  scope {
    scope_name        = "events.read"
    scope_description = "Read audit events (the read API)"
  }
}

resource "aws_cognito_user_pool_domain" "this" {
  count = local.create_user_pool ? 1 : 0

  domain       = var.cognito_domain_prefix
  user_pool_id = aws_cognito_user_pool.this[0].id
}

# The services that write audit events sign in a user of their tenant through this client
# (authorization code flow) and get an access token with the write scope.
resource "aws_cognito_user_pool_client" "writer" {
  count = local.create_user_pool ? 1 : 0

  name                                 = "${var.name}-writer"
  user_pool_id                         = aws_cognito_user_pool.this[0].id
  generate_secret                      = true
  allowed_oauth_flows_user_pool_client = true
  allowed_oauth_flows                  = ["code"]
  allowed_oauth_scopes                 = ["openid", local.write_scope]
  callback_urls                        = var.writer_callback_urls
  supported_identity_providers         = ["COGNITO"]
  explicit_auth_flows                  = ["ALLOW_REFRESH_TOKEN_AUTH"]
  prevent_user_existence_errors        = "ENABLED"
  enable_token_revocation              = true
  read_attributes                      = ["email", "custom:tenant_id"]
  write_attributes                     = ["email"] # never custom:tenant_id
  access_token_validity                = 60
  id_token_validity                    = 60
  refresh_token_validity               = 30

  token_validity_units {
    access_token  = "minutes"
    id_token      = "minutes"
    refresh_token = "days"
  }

  depends_on = [aws_cognito_resource_server.stele]
}

# --- pre token generation trigger --------------------------------------------------------------

data "archive_file" "pre_token" {
  count = local.create_user_pool ? 1 : 0

  type                    = "zip"
  output_path             = "${path.module}/.build/pre-token.zip"
  source_content_filename = "index.py"
  source_content          = <<-PY
    # Copies the user's immutable custom:tenant_id into the access token as tenant_id. The value
    # comes from Cognito's user record in the request, never from client metadata.
    def handler(event, context):
        tenant = event["request"]["userAttributes"].get("custom:tenant_id")
        if not tenant:
            raise Exception("user has no custom:tenant_id: no token")
        event["response"]["claimsAndScopeOverrideDetails"] = {
            "accessTokenGeneration": {"claimsToAddOrOverride": {"tenant_id": tenant}},
        }
        return event
  PY
}

resource "aws_cloudwatch_log_group" "pre_token" {
  count = local.create_user_pool ? 1 : 0

  name              = "/aws/lambda/${var.name}-pre-token"
  retention_in_days = 365
  kms_key_id        = module.stele.kms_key_arn # its key policy lets CloudWatch Logs use it for "*${var.name}*" groups
}

resource "aws_iam_role" "pre_token" {
  count = local.create_user_pool ? 1 : 0

  name               = "${var.name}-pre-token-role"
  assume_role_policy = data.aws_iam_policy_document.pre_token_assume.json
}

data "aws_iam_policy_document" "pre_token_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "pre_token" {
  count = local.create_user_pool ? 1 : 0

  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.pre_token[0].arn}:*"]
  }
}

resource "aws_iam_role_policy" "pre_token" {
  count = local.create_user_pool ? 1 : 0

  name   = "write-logs"
  role   = aws_iam_role.pre_token[0].id
  policy = data.aws_iam_policy_document.pre_token[0].json
}

resource "aws_iam_role_policy_attachment" "pre_token_xray" {
  count = local.create_user_pool ? 1 : 0

  role       = aws_iam_role.pre_token[0].name
  policy_arn = "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"
}

resource "aws_lambda_function" "pre_token" {
  #checkov:skip=CKV_AWS_116:invoked synchronously by Cognito during sign-in; a failure fails the sign-in, there is no async event to dead-letter
  #checkov:skip=CKV_AWS_117:calls no AWS API and reaches nothing: it only reshapes Cognito's request, so it needs no VPC
  #checkov:skip=CKV_AWS_272:a dozen lines of inline source in this file, reviewed with it; no Signer profile in the example
  #checkov:skip=CKV_AWS_173:no environment variables to encrypt
  count = local.create_user_pool ? 1 : 0

  function_name                  = "${var.name}-pre-token"
  description                    = "stele: copy the immutable custom:tenant_id into the access token"
  role                           = aws_iam_role.pre_token[0].arn
  runtime                        = "python3.12"
  handler                        = "index.handler"
  filename                       = data.archive_file.pre_token[0].output_path
  source_code_hash               = data.archive_file.pre_token[0].output_base64sha256
  timeout                        = 5
  memory_size                    = 128
  reserved_concurrent_executions = var.pre_token_reserved_concurrency

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.pre_token[0].name
  }

  depends_on = [aws_iam_role_policy.pre_token]
}

resource "aws_lambda_permission" "pre_token" {
  count = local.create_user_pool ? 1 : 0

  statement_id  = "AllowCognito"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.pre_token[0].function_name
  principal     = "cognito-idp.amazonaws.com"
  source_arn    = aws_cognito_user_pool.this[0].arn
}
