"""Kinesis, the event source mapping, the DLQ and the three functions."""
from conftest import REPO, as_list, block, blocks, is_ref, refs

FUNCTIONS = ("ingest", "batch_writer", "archiver", "checkpointer", "query", "export_worker")
PACKAGES = {"ingest": "stele-ingest", "batch_writer": "stele-batch-writer", "archiver": "stele-archiver",
            "checkpointer": "stele-checkpointer", "query": "stele-query", "export_worker": "stele-query"}
# The export worker is the query function's zip started with another handler (functions/query/src/main.rs).
ZIP = {fn: fn for fn in FUNCTIONS} | {"export_worker": "query"}
HANDLER = {fn: "bootstrap" for fn in FUNCTIONS} | {"export_worker": "export-worker"}

# The environment contract of each function (docs/ARCHITECTURE.md, the functions' config).
ENV = {
    "ingest": {
        "STELE_STREAM_NAME",
        "STELE_TENANT_CLAIM",
        "STELE_MAX_LATENESS_SECS",
        "STELE_MAX_SKEW_SECS",
        "STELE_PUT_DEADLINE_MS",
        "RUST_LOG",
        "STELE_TENANT_QUOTA_EVENTS_PER_SEC",
        "STELE_TENANT_QUOTA_BURST",
        "STELE_TENANT_QUOTA_TABLE",
    },
    "batch_writer": {
        "STELE_DB_SECRET_ARN",
        "STELE_DB_TLS",
        "STELE_DLQ_URL",
        "STELE_PARTITION_DAYS_AHEAD",
        "RUST_LOG",
    },
    "archiver": {
        "STELE_DB_SECRET_ARN",
        "STELE_DB_TLS",
        "STELE_ARCHIVE_BUCKET",
        "STELE_ARCHIVE_PREFIX",
        "STELE_RETENTION_DAYS",
        "STELE_MAX_LATENESS_SECS",
        "STELE_DROP_AFTER_ARCHIVE",
        "STELE_DEDUP_WINDOW_HOURS",
        "STELE_STREAM_NAME",
        "RUST_LOG",
    },
    "checkpointer": {
        "STELE_DB_SECRET_ARN",
        "STELE_DB_TLS",
        "STELE_ARCHIVE_BUCKET",
        "STELE_ARCHIVE_PREFIX",
        "STELE_LOG_ORIGIN",
        "STELE_LOG_KMS_KEY_ID",
        "RUST_LOG",
    },
    "query": {
        "STELE_DB_SECRET_ARN",
        "STELE_DB_TLS",
        "STELE_TENANT_CLAIM",
        "STELE_PROOF_RETRY_AFTER_SECS",
        "STELE_CURSOR_KEY_SECRET_ARN",
        "STELE_ARCHIVE_BUCKET",
        "STELE_ARCHIVE_PREFIX",
        "STELE_EXPORT_LOCK_MODE",
        "STELE_EXPORT_QUEUE_URL",
        "RUST_LOG",
    },
    "export_worker": {
        "STELE_DB_SECRET_ARN",
        "STELE_DB_TLS",
        "STELE_ARCHIVE_BUCKET",
        "STELE_ARCHIVE_PREFIX",
        "STELE_EXPORT_LOCK_MODE",
        "STELE_EXPORT_MAX_ATTEMPTS",
        "RUST_LOG",
    },
}


def env_of(module, fn):
    """Environment variable names of a function, following merge(local.db_environment, {...})."""
    variables = block(module.resource("aws_lambda_function", fn), "environment")["variables"]
    if isinstance(variables, dict):
        return set(variables), variables
    text = str(variables)
    assert text.startswith("${merge(local.db_environment"), f"{fn}: unexpected environment {text}"
    names = set(module.locals["db_environment"])
    values = dict(module.locals["db_environment"])
    # merge(local.db_environment, { A = x\n B = y }) -> the object's keys
    import re

    for name, value in re.findall(r"\b([A-Z][A-Z0-9_]+)\s*=\s*([^\n,}]+)", text):
        names.add(name)
        values[name] = value.strip()
    return names, values


def test_stream_is_kms_encrypted_and_on_demand_by_default(module):
    stream = module.resource("aws_kinesis_stream", "events")
    assert stream["encryption_type"] == "KMS"
    assert is_ref(stream["kms_key_id"], "local.kms_key_arn")
    assert is_ref(block(stream, "stream_mode_details")["stream_mode"], "var.kinesis_stream_mode")
    assert module.default("kinesis_stream_mode") == "ON_DEMAND"
    assert "var.kinesis_shard_count" in refs(stream["shard_count"])


def test_event_source_mapping_reports_item_failures_bisects_and_dead_letters(module):
    esm = module.resource("aws_lambda_event_source_mapping", "batch_writer")
    assert is_ref(esm["event_source_arn"], "aws_kinesis_stream.events.arn")
    assert is_ref(esm["function_name"], "aws_lambda_function.batch_writer.arn")
    assert as_list(esm["function_response_types"]) == ["ReportBatchItemFailures"]
    assert esm["bisect_batch_on_function_error"] is True
    on_failure = block(block(esm, "destination_config"), "on_failure")
    # An S3 destination keeps the records themselves; SQS would get only their coordinates.
    assert is_ref(on_failure["destination_arn"], "aws_s3_bucket.failed_batches.arn")
    for attr, var in {
        "batch_size": "esm_batch_size",
        "maximum_batching_window_in_seconds": "esm_batching_window_secs",
        "parallelization_factor": "esm_parallelization_factor",
        "maximum_retry_attempts": "esm_maximum_retry_attempts",
        "maximum_record_age_in_seconds": "esm_maximum_record_age_secs",
    }.items():
        assert is_ref(esm.get(attr), f"var.{var}"), f"{attr} must come from var.{var}"
    assert 1 <= module.default("esm_batch_size") <= 10000
    assert 0 <= module.default("esm_batching_window_secs") <= 300
    assert 1 <= module.default("esm_parallelization_factor") <= 10
    assert module.default("esm_starting_position") == "TRIM_HORIZON"


def test_event_source_mapping_never_discards_a_batch_by_default(module):
    # Poison records are dead-lettered one by one by the batch-writer, so a batch fails only on
    # infrastructure errors; giving up on it would lose accepted events.
    assert module.default("esm_maximum_retry_attempts") == -1
    assert module.default("esm_maximum_record_age_secs") == -1
    # Finite values stay possible, within AWS's bounds.
    retry = block(module.variables["esm_maximum_retry_attempts"], "validation")["condition"]
    assert "== -1" in retry and "10000" in retry
    age = block(module.variables["esm_maximum_record_age_secs"], "validation")["condition"]
    assert "== -1" in age and "604800" in age


def test_failed_batches_bucket_keeps_discarded_records_privately(module):
    bucket = module.resource("aws_s3_bucket", "failed_batches")
    assert is_ref(bucket["bucket"], "local.failed_bucket_name")
    lc = module.resource("aws_s3_bucket_lifecycle_configuration", "failed_batches")
    for rule in blocks(lc, "rule"):
        assert not blocks(rule, "expiration"), "failed batches stay until an operator replays them"
    # The mapping writes with the batch-writer's role: PutObject on this bucket, nothing else.
    sts = {st["sid"]: st for st in blocks(module.datasource("aws_iam_policy_document", "batch_writer"), "statement")}
    assert as_list(sts["FailedBatches"]["actions"]) == ["s3:PutObject"]
    assert as_list(sts["FailedBatches"]["resources"]) == ["${aws_s3_bucket.failed_batches.arn}/*"]
    assert as_list(sts["ListFailedBatches"]["resources"]) == ["${aws_s3_bucket.failed_batches.arn}"]


def test_stream_retention_outlasts_what_the_alarms_let_pass(module):
    """docs/OPERATIONS.md: the iterator-age alarm must fire long before the stream's retention
    ends, since with the -1 defaults that retention is the only limit on an outage."""
    retention_ms = module.default("kinesis_retention_hours") * 3600 * 1000
    assert module.default("kinesis_retention_hours") == 168
    alarm = module.resource("aws_cloudwatch_metric_alarm", "iterator_age")
    assert is_ref(alarm["threshold"], "var.alarm_iterator_age_ms")
    # Worst case from the first stuck record to the alarm: threshold + evaluation window.
    alarm_after_ms = module.default("alarm_iterator_age_ms") + alarm["evaluation_periods"] * alarm["period"] * 1000
    assert alarm_after_ms <= 15 * 60 * 1000
    # An operator has (retention - alarm delay) to fix an outage; at least six days.
    assert retention_ms - alarm_after_ms >= 6 * 24 * 3600 * 1000
    checks = str(module.resources.get(("check", "inputs"), "")) + open(module.directory / "main.tf").read()
    assert "var.esm_maximum_record_age_secs < var.kinesis_retention_hours * 3600" in checks


def test_dead_letter_queues_are_kms_encrypted(module):
    queues = module.of_type("aws_sqs_queue")
    assert {"dlq", "archiver_dlq"} <= set(queues)
    for name, queue in queues.items():
        assert is_ref(queue.get("kms_master_key_id"), "local.kms_key_arn"), name


def test_functions_are_al2023_arm64_bootstrap_zips_with_own_role_and_log_group(module):
    roles = set()
    for fn in FUNCTIONS:
        f = module.resource("aws_lambda_function", fn)
        assert f["runtime"] == "provided.al2023", fn
        assert as_list(f["architectures"]) == ["arm64"], fn
        assert f["handler"] == HANDLER[fn], fn
        zip_var = "var.%s_zip" % ZIP[fn]
        assert is_ref(f["filename"], zip_var), fn
        assert is_ref(f["source_code_hash"], "filebase64sha256(%s)" % zip_var), fn
        assert is_ref(f["role"], f"aws_iam_role.{fn}.arn"), f"{fn} must use its own role"
        roles.add(f["role"])
        assert is_ref(f["kms_key_arn"], "local.kms_key_arn"), fn
        assert block(f, "tracing_config")["mode"] == "Active", fn
        vpc = block(f, "vpc_config")
        assert is_ref(vpc["subnet_ids"], "var.private_subnet_ids"), fn
        assert is_ref(block(f, "logging_config")["log_group"], f"aws_cloudwatch_log_group.{fn}.name"), fn
        group = module.resource("aws_cloudwatch_log_group", fn)
        assert group["name"] == "/aws/lambda/${local.function_names.%s}" % fn
        assert is_ref(group["retention_in_days"], "var.log_retention_days"), fn
        assert is_ref(group["kms_key_id"], "local.kms_key_arn"), fn
        assert "reserved_concurrent_executions" in f, fn
    assert len(roles) == len(FUNCTIONS)
    assert module.locals["function_names"] == {
        "ingest": "${var.name}-ingest",
        "batch_writer": "${var.name}-batch-writer",
        "archiver": "${var.name}-archiver",
        "checkpointer": "${var.name}-checkpointer",
        "query": "${var.name}-query",
        "export_worker": "${var.name}-export-worker",
    }
    assert module.default("log_retention_days") > 0


def test_function_environments_follow_the_contract(module):
    for fn in FUNCTIONS:
        names, _ = env_of(module, fn)
        assert names == ENV[fn], f"{fn}: extra {names - ENV[fn]}, missing {ENV[fn] - names}"
    _, ingest = env_of(module, "ingest")
    assert is_ref(ingest["STELE_STREAM_NAME"], "aws_kinesis_stream.events.name")
    assert is_ref(ingest["STELE_TENANT_CLAIM"], "var.tenant_claim")
    assert is_ref(ingest["STELE_TENANT_QUOTA_TABLE"], "aws_dynamodb_table.tenant_quotas.name")
    assert "var.tenant_quota_events_per_sec" in refs(ingest["STELE_TENANT_QUOTA_EVENTS_PER_SEC"])
    _, writer = env_of(module, "batch_writer")
    assert "aws_sqs_queue.dlq.url" in writer["STELE_DLQ_URL"]
    _, archiver = env_of(module, "archiver")
    assert "aws_s3_bucket.archive.id" in archiver["STELE_ARCHIVE_BUCKET"]
    assert "var.archive_prefix" in archiver["STELE_ARCHIVE_PREFIX"]
    assert "aws_kinesis_stream.events.name" in archiver["STELE_STREAM_NAME"]
    # Event ids stay claimed for as long as a record can wait in the stream plus the lateness.
    window = archiver["STELE_DEDUP_WINDOW_HOURS"]
    assert "local.dedup_window_hours" in window, window
    rule = module.locals["dedup_window_hours"]
    assert all(v in rule for v in ("var.kinesis_retention_hours", "var.max_lateness_secs", "var.dlq_retention_secs")), rule
    # Each data-path function connects as its own login user (migration 0006_roles.sql).
    assert "STELE_DB_SECRET_ARN" not in module.locals["db_environment"]
    assert "local.db_writer_secret_arn" in writer["STELE_DB_SECRET_ARN"]
    assert "local.db_archiver_secret_arn" in archiver["STELE_DB_SECRET_ARN"]
    _, query = env_of(module, "query")
    assert "local.db_query_secret_arn" in query["STELE_DB_SECRET_ARN"]
    # The query function reads the tenant from the same claim ingest files it under.
    assert "var.tenant_claim" in query["STELE_TENANT_CLAIM"]
    assert "var.query_proof_retry_after_secs" in query["STELE_PROOF_RETRY_AFTER_SECS"]
    assert "aws_sqs_queue.export_jobs.url" in query["STELE_EXPORT_QUEUE_URL"]
    # The export worker reads as the query function does, and gives up when the queue does.
    _, worker = env_of(module, "export_worker")
    assert "local.db_query_secret_arn" in worker["STELE_DB_SECRET_ARN"]
    assert worker["STELE_EXPORT_LOCK_MODE"] == query["STELE_EXPORT_LOCK_MODE"]
    assert "var.export_max_attempts" in worker["STELE_EXPORT_MAX_ATTEMPTS"]
    assert is_ref(module.locals["db_environment"]["STELE_DB_TLS"], "local.db_tls")
    # Contract defaults.
    assert module.default("tenant_claim") == "tenant_id"
    assert module.default("max_lateness_secs") == 259200
    assert module.default("max_skew_secs") == 300
    assert module.default("archive_prefix") == "audit"
    assert module.default("retention_days") == 30


def test_export_jobs_are_drained_one_at_a_time_with_retries_then_a_dead_letter_queue(module):
    queue = module.resource("aws_sqs_queue", "export_jobs")
    redrive = str(queue["redrive_policy"])
    assert "aws_sqs_queue.export_jobs_dlq.arn" in redrive and "var.export_max_attempts" in redrive
    # A job in flight stays hidden for longer than the worker can run.
    worker = module.resource("aws_lambda_function", "export_worker")
    assert is_ref(worker["timeout"], "local.export_worker_timeout_secs")
    assert module.locals["export_worker_timeout_secs"] == 900
    assert "local.export_worker_timeout_secs" in str(queue["visibility_timeout_seconds"])
    esm = module.resource("aws_lambda_event_source_mapping", "export_worker")
    assert is_ref(esm["event_source_arn"], "aws_sqs_queue.export_jobs.arn")
    assert is_ref(esm["function_name"], "aws_lambda_function.export_worker.arn")
    assert esm["batch_size"] == 1 and as_list(esm["function_response_types"]) == ["ReportBatchItemFailures"]
    # The mapping never invokes more workers than are reserved (no throttled jobs).
    assert is_ref(block(esm, "scaling_config")["maximum_concurrency"], "var.export_worker_concurrency")
    assert is_ref(worker["reserved_concurrent_executions"], "var.export_worker_concurrency")


def test_archiver_runs_one_at_a_time_with_failure_destination(module):
    f = module.resource("aws_lambda_function", "archiver")
    assert f["reserved_concurrent_executions"] == 1
    assert is_ref(block(f, "dead_letter_config")["target_arn"], "aws_sqs_queue.archiver_dlq.arn")


def test_scheduler_invokes_the_archiver_with_its_own_role(module):
    schedule = module.resource("aws_scheduler_schedule", "archiver")
    target = block(schedule, "target")
    assert is_ref(target["arn"], "aws_lambda_function.archiver.arn")
    assert is_ref(target["role_arn"], "aws_iam_role.scheduler.arn")
    assert is_ref(schedule["schedule_expression"], "var.archive_schedule_expression")
    assert str(module.default("archive_schedule_expression")).startswith(("cron(", "rate("))
    assert blocks(target, "retry_policy")


def test_example_uses_the_module_with_cargo_lambda_zips(example):
    stele = example.modules["stele"]
    assert stele["source"] == "../../modules/stele"
    for fn, package in ((fn, p) for fn, p in PACKAGES.items() if ZIP[fn] == fn):
        assert stele[f"{fn}_zip"] == "${var.lambda_dir}/%s/bootstrap.zip" % package
    assert example.default("lambda_dir") == "../../../../target/lambda"
    # lambda_dir resolves to <repo>/target/lambda from examples/complete.
    assert (example.directory / example.default("lambda_dir")).resolve() == (REPO / "target" / "lambda")
