output "api_endpoint" {
  description = "Base URL of the HTTP API."
  value       = module.stele.api_endpoint
}

output "events_url" {
  description = "POST events here with a bearer JWT."
  value       = module.stele.events_url
}

output "stream_name" {
  description = "Kinesis stream."
  value       = module.stele.stream_name
}

output "archive_bucket" {
  description = "Archive bucket."
  value       = module.stele.archive_bucket
}

output "glue_database" {
  description = "Glue database."
  value       = module.stele.glue_database
}

output "glue_table" {
  description = "Glue table."
  value       = module.stele.glue_table
}

output "athena_workgroup" {
  description = "Athena workgroup."
  value       = module.stele.athena_workgroup
}

output "dlq_url" {
  description = "Dead-letter queue of the batch-writer."
  value       = module.stele.dlq_url
}

output "user_pool_id" {
  description = "Cognito user pool (null with your own jwt_issuer). Create each writer's user with custom:tenant_id set: it cannot be changed later."
  value       = local.create_user_pool ? aws_cognito_user_pool.this[0].id : null
}

output "writer_client_id" {
  description = "App client the writers get tokens from (the API's audience)."
  value       = local.create_user_pool ? aws_cognito_user_pool_client.writer[0].id : null
}

output "token_endpoint" {
  description = "OAuth 2.0 token endpoint of the user pool."
  value       = local.create_user_pool ? "https://${aws_cognito_user_pool_domain.this[0].domain}.auth.${var.region}.amazoncognito.com/oauth2/token" : null
}

output "jwt_write_scopes" {
  description = "Scopes a token needs to POST events."
  value       = module.stele.jwt_write_scopes
}
