resource "aws_kinesis_stream" "events" {
  name             = "${var.name}-events"
  shard_count      = var.kinesis_stream_mode == "PROVISIONED" ? var.kinesis_shard_count : null
  retention_period = var.kinesis_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = local.kms_key_arn

  stream_mode_details {
    stream_mode = var.kinesis_stream_mode
  }

  tags = local.tags
}

# Records the batch-writer could not store after bisecting and retrying: the event source
# mapping sends their metadata (shard, sequence numbers) here; the records stay readable in the
# stream for its retention. The batch-writer also sends undecodable records here (STELE_DLQ_URL).
resource "aws_sqs_queue" "dlq" {
  name                              = "${var.name}-batch-writer-dlq"
  message_retention_seconds         = var.dlq_retention_secs
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = local.tags
}

resource "aws_lambda_event_source_mapping" "batch_writer" {
  function_name     = aws_lambda_function.batch_writer.arn
  event_source_arn  = aws_kinesis_stream.events.arn
  starting_position = var.esm_starting_position

  batch_size                         = var.esm_batch_size
  maximum_batching_window_in_seconds = var.esm_batching_window_secs
  parallelization_factor             = var.esm_parallelization_factor

  # The handler answers with the sequence numbers it could not store; a throwing batch is split
  # in two until the bad record is isolated; after the retries or the age limit the record's
  # coordinates go to the DLQ and the shard moves on.
  function_response_types        = ["ReportBatchItemFailures"]
  bisect_batch_on_function_error = true
  maximum_retry_attempts         = var.esm_maximum_retry_attempts
  maximum_record_age_in_seconds  = var.esm_maximum_record_age_secs

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.dlq.arn
    }
  }

  depends_on = [aws_iam_role_policy.batch_writer]
}
