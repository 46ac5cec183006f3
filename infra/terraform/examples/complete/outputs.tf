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
