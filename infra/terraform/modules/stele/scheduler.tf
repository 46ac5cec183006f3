# Runs the archiver daily. The archiver finds eligible partitions itself and is idempotent, so a
# missed or repeated run is harmless; retries are left to the scheduler and Lambda's async retry.

resource "aws_scheduler_schedule" "archiver" {
  name                         = "${var.name}-archiver"
  description                  = "stele: archive Postgres partitions older than the retention to S3"
  schedule_expression          = var.archive_schedule_expression
  schedule_expression_timezone = var.archive_schedule_timezone
  kms_key_arn                  = local.kms_key_arn
  state                        = "ENABLED"

  flexible_time_window {
    mode                      = "FLEXIBLE"
    maximum_window_in_minutes = 15
  }

  target {
    arn      = aws_lambda_function.archiver.arn
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode({ source = "stele.scheduler" })

    retry_policy {
      maximum_retry_attempts       = 3
      maximum_event_age_in_seconds = 3600
    }

    dead_letter_config {
      arn = aws_sqs_queue.archiver_dlq.arn
    }
  }
}
