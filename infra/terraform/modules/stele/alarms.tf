# Alarms: the batch-writer falling behind (iterator age), records given up on (DLQ depth, for
# both queues), function errors, API 5xx, and no completed archiver run for a day and more.
# Notifications go to var.alarm_actions.

resource "aws_cloudwatch_metric_alarm" "iterator_age" {
  alarm_name          = "${var.name}-batch-writer-iterator-age"
  alarm_description   = "The batch-writer is behind the stream: events reach Postgres late and may reach the DLQ at the record age limit."
  namespace           = "AWS/Lambda"
  metric_name         = "IteratorAge"
  dimensions          = { FunctionName = aws_lambda_function.batch_writer.function_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  threshold           = var.alarm_iterator_age_ms
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  for_each = {
    batch-writer  = aws_sqs_queue.dlq.name
    archiver      = aws_sqs_queue.archiver_dlq.name
    export-worker = aws_sqs_queue.export_jobs_dlq.name
  }

  alarm_name          = "${var.name}-${each.key}-dlq-depth"
  alarm_description   = "Messages in ${each.value}: records or runs that failed after all retries need an operator."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

# The batch-writer's own metric (EMF, namespace "stele"): an event id re-sent with other
# content. The record is in the DLQ with both hashes; its sender holds a 202 for a hash
# that is stored nowhere, so every one needs an answer, even when the DLQ is drained.
resource "aws_cloudwatch_metric_alarm" "id_conflicts" {
  alarm_name          = "${var.name}-batch-writer-id-conflicts"
  alarm_description   = "An event id was re-sent with other content: not stored, dead-lettered with reason conflict (both hashes and the original bytes)."
  namespace           = "stele"
  metric_name         = "conflicts"
  dimensions          = { function = "batch-writer" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each = {
    ingest        = aws_lambda_function.ingest.function_name
    batch-writer  = aws_lambda_function.batch_writer.function_name
    archiver      = aws_lambda_function.archiver.function_name
    checkpointer  = aws_lambda_function.checkpointer.function_name
    query         = aws_lambda_function.query.function_name
    export-worker = aws_lambda_function.export_worker.function_name
  }

  alarm_name          = "${var.name}-${each.key}-errors"
  alarm_description   = "${each.value} reported invocation errors."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.alarm_function_errors
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "api_5xx" {
  alarm_name          = "${var.name}-api-5xx"
  alarm_description   = "The API answered 5xx (ingest: Kinesis throttling after retries; query: the database unreachable, a log that does not verify; function errors or timeouts)."
  namespace           = "AWS/ApiGateway"
  metric_name         = "5xx"
  dimensions          = { ApiId = aws_apigatewayv2_api.this.id, Stage = aws_apigatewayv2_stage.default.name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.alarm_api_5xx
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}

# The archiver not finishing: its errors alarm above only fires for runs that happen and fail.
# A run that never starts (schedule disabled, scheduler role broken, runs only dead-lettered) or
# a run that keeps timing out is caught here: each scheduled run logs one JSON line, message
# "archiver run finished" with its report (functions/archiver/src/handler.rs), whose "error" is
# null when the run completed. A metric filter counts those lines (no code change, and neither
# operator invocations nor dry runs count, as they would in Invocations minus Errors), and the
# alarm fires when none came for alarm_archiver_silence_hours (missing data is breaching).
resource "aws_cloudwatch_log_metric_filter" "archiver_runs_completed" {
  name           = "${var.name}-archiver-runs-completed"
  log_group_name = aws_cloudwatch_log_group.archiver.name
  pattern        = "{ ($.fields.message = \"archiver run finished\") && ($.fields.report = %error.:null%) }"

  metric_transformation {
    name      = "${var.name}-archiver-runs-completed"
    namespace = "stele"
    value     = "1"
    unit      = "Count"
  }
}

resource "aws_cloudwatch_metric_alarm" "archiver_silent" {
  alarm_name          = "${var.name}-archiver-no-completed-run"
  alarm_description   = "No archiver run has completed for ${var.alarm_archiver_silence_hours} hours: partitions are not archived or dropped and Postgres keeps growing; event ids are not pruned."
  namespace           = "stele"
  metric_name         = aws_cloudwatch_log_metric_filter.archiver_runs_completed.metric_transformation[0].name
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = var.alarm_archiver_silence_hours
  datapoints_to_alarm = var.alarm_archiver_silence_hours
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = local.tags
}
