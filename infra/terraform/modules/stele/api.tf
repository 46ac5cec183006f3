# HTTP API: POST /v1/events (ingest) and the read routes (query) behind a JWT authorizer (the
# tenant comes from a token claim, never from the body or path; writing and reading need
# different scopes), GET /v1/health open, access logs in JSON, stage-wide throttling.

resource "aws_apigatewayv2_api" "this" {
  name          = var.name
  description   = "stele audit-event ingest and log queries"
  protocol_type = "HTTP"

  dynamic "cors_configuration" {
    for_each = length(var.cors_allow_origins) > 0 ? [1] : []
    content {
      allow_origins = var.cors_allow_origins
      allow_methods = ["POST", "GET", "OPTIONS"]
      allow_headers = ["authorization", "content-type"]
      max_age       = 3600
    }
  }

  tags = local.tags
}

resource "aws_apigatewayv2_authorizer" "jwt" {
  api_id           = aws_apigatewayv2_api.this.id
  name             = "${var.name}-jwt"
  authorizer_type  = "JWT"
  identity_sources = ["$request.header.Authorization"]

  jwt_configuration {
    issuer   = var.jwt_issuer
    audience = var.jwt_audience
  }
}

resource "aws_apigatewayv2_integration" "ingest" {
  api_id                 = aws_apigatewayv2_api.this.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_function.ingest.invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 29000
}

resource "aws_apigatewayv2_route" "post_events" {
  api_id             = aws_apigatewayv2_api.this.id
  route_key          = "POST /v1/events"
  target             = "integrations/${aws_apigatewayv2_integration.ingest.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
  # A token must carry one of these scopes (API Gateway reads its scope or scp claim): only the
  # clients granted the write scope can write, not every token with an accepted audience.
  authorization_scopes = length(var.jwt_authorization_scopes) > 0 ? var.jwt_authorization_scopes : null

  lifecycle {
    precondition {
      condition     = length(var.jwt_authorization_scopes) > 0 || var.jwt_allow_unscoped_tokens
      error_message = "jwt_authorization_scopes is empty: any token with an accepted audience, an end user's included, could write audit events. Name a write scope, or set jwt_allow_unscoped_tokens = true to accept that."
    }
  }
}

# The read API, served by the query function: a token needs a read scope (a writer's token is
# not enough, and a reader's cannot write). A new read route is one line here.
locals {
  query_routes = [
    "GET /v1/events",
    "GET /v1/events/export",
    "GET /v1/events/{event_id}/proof",
    "GET /v1/log/checkpoint",
    "GET /v1/log/consistency",
    "POST /v1/exports",
    "GET /v1/exports/{export_id}",
  ]
}

resource "aws_apigatewayv2_integration" "query" {
  api_id                 = aws_apigatewayv2_api.this.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_function.query.invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 29000
}

resource "aws_apigatewayv2_route" "query" {
  for_each = toset(local.query_routes)

  api_id               = aws_apigatewayv2_api.this.id
  route_key            = each.value
  target               = "integrations/${aws_apigatewayv2_integration.query.id}"
  authorization_type   = "JWT"
  authorizer_id        = aws_apigatewayv2_authorizer.jwt.id
  authorization_scopes = var.jwt_read_scopes
}

resource "aws_apigatewayv2_route" "get_health" {
  #checkov:skip=CKV_AWS_309:liveness probe for load balancers and uptime checks; returns no data and touches no tenant
  api_id             = aws_apigatewayv2_api.this.id
  route_key          = "GET /v1/health"
  target             = "integrations/${aws_apigatewayv2_integration.ingest.id}"
  authorization_type = "NONE"
}

resource "aws_cloudwatch_log_group" "api_access" {
  name              = "/aws/apigateway/${var.name}/access"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.this.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit    = var.api_throttling_rate_limit
    throttling_burst_limit   = var.api_throttling_burst_limit
    detailed_metrics_enabled = true
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      requestTime        = "$context.requestTime"
      ip                 = "$context.identity.sourceIp"
      userAgent          = "$context.identity.userAgent"
      routeKey           = "$context.routeKey"
      status             = "$context.status"
      protocol           = "$context.protocol"
      responseLength     = "$context.responseLength"
      latencyMs          = "$context.responseLatency"
      integrationLatency = "$context.integration.latency"
      integrationStatus  = "$context.integration.status"
      integrationError   = "$context.integrationErrorMessage"
      authorizerError    = "$context.authorizer.error"
      subject            = "$context.authorizer.claims.sub"
      tenant             = "$context.authorizer.claims.${var.tenant_claim}"
    })
  }

  tags = local.tags
}

resource "aws_lambda_permission" "query" {
  statement_id  = "AllowHttpApiReads"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.query.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.this.execution_arn}/*/GET/v1/*"
}

# The one write the read API takes: starting an asynchronous export.
resource "aws_lambda_permission" "query_start_export" {
  statement_id  = "AllowHttpApiExportJobs"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.query.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.this.execution_arn}/*/POST/v1/exports"
}

resource "aws_lambda_permission" "api" {
  statement_id  = "AllowHttpApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.ingest.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.this.execution_arn}/*/*/v1/*"
}
