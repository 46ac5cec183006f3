"""Security hardening (issue 18): the tenant claim, scopes, KMS conditions, endpoint policies,
the results bucket, the archiver's silence alarm, the retention bound, honest scanner skips."""
import re

from conftest import REPO, as_list, block, blocks, is_ref, refs


def statements(module, name):
    return blocks(module.datasource("aws_iam_policy_document", name), "statement")


def conditions(st):
    return {c["variable"]: c for c in blocks(st, "condition")}


# --- 1. the tenant claim ---------------------------------------------------------------------

def test_example_tenant_attribute_is_immutable_and_no_client_writes_it(example):
    pool = example.resource("aws_cognito_user_pool", "this")
    (attr,) = [s for s in blocks(pool, "schema") if s["name"] == "tenant_id"]
    assert attr["mutable"] is False and attr["developer_only_attribute"] is False
    assert block(pool, "admin_create_user_config")["allow_admin_create_user_only"] is True
    clients = example.of_type("aws_cognito_user_pool_client")
    assert clients
    for name, client in clients.items():
        assert "write_attributes" in client, f"{name}: without write_attributes a client may write every attribute"
        assert "custom:tenant_id" not in as_list(client["write_attributes"]), name


def test_example_trigger_copies_the_attribute_into_the_access_token_claim(example):
    pool = example.resource("aws_cognito_user_pool", "this")
    trigger = block(block(pool, "lambda_config"), "pre_token_generation_config")
    assert trigger["lambda_version"] == "V2_0" and "aws_lambda_function.pre_token" in refs(trigger["lambda_arn"])
    assert pool["user_pool_tier"] in ("ESSENTIALS", "PLUS")
    source = example.datasource("archive_file", "pre_token")["source_content"]
    claim = example.default("tenant_claim")
    assert 'userAttributes"].get("custom:tenant_id")' in source
    assert '"claimsToAddOrOverride": {"%s": tenant}' % claim in source
    assert "clientMetadata" not in source.replace("ignores client metadata", "")
    assert is_ref(example.modules["stele"]["tenant_claim"], "var.tenant_claim")


# --- 2. scopes -------------------------------------------------------------------------------

def test_a_write_scope_is_required_by_default(module):
    assert module.default("jwt_authorization_scopes") == ["stele/events.write"]
    assert module.default("jwt_allow_unscoped_tokens") is False
    assert module.default("jwt_read_scopes") == ["stele/events.read"]
    route = [r for r in module.of_type("aws_apigatewayv2_route").values() if r["route_key"] == "POST /v1/events"][0]
    assert "var.jwt_authorization_scopes" in refs(route["authorization_scopes"])
    (pre,) = blocks(block(route, "lifecycle"), "precondition")
    assert refs(pre["condition"]) == {"var.jwt_authorization_scopes", "var.jwt_allow_unscoped_tokens"}


def test_example_grants_the_write_scope_to_its_writer_client_only(example):
    server = example.resource("aws_cognito_resource_server", "stele")
    scopes = {"%s/%s" % (server["identifier"], s["scope_name"]) for s in blocks(server, "scope")}
    assert scopes == {"stele/events.write", "stele/events.read"}
    assert example.locals["write_scope"] == "stele/events.write"
    writer = example.resource("aws_cognito_user_pool_client", "writer")
    assert "${local.write_scope}" in as_list(writer["allowed_oauth_scopes"])
    assert as_list(example.modules["stele"]["jwt_authorization_scopes"]) == ["${local.write_scope}"]


# --- 9. KMS, endpoints, results bucket, alarm, retention ---------------------------------------

def test_ingest_only_generates_data_keys_through_kinesis_for_its_stream(module):
    (st,) = [s for s in statements(module, "ingest") if any(a.startswith("kms:") for a in as_list(s["actions"]))]
    assert as_list(st["actions"]) == ["kms:GenerateDataKey"]
    cond = conditions(st)
    assert as_list(cond["kms:ViaService"]["values"]) == ["${local.kms_via.kinesis}"]
    assert as_list(cond["kms:EncryptionContext:aws:kinesis:arn"]["values"]) == ["${aws_kinesis_stream.events.arn}"]


def test_every_kms_permission_of_a_role_goes_through_a_service(module):
    exempt = {("scheduler", "SchedulePayload")}  # see the comment in iam.tf
    for role in ("ingest", "batch_writer", "archiver", "scheduler", "rds_proxy"):
        for st in statements(module, role if role != "rds_proxy" else "rds_proxy"):
            if not any(a.startswith("kms:") for a in as_list(st["actions"])) or (role, st.get("sid")) in exempt:
                continue
            cond = conditions(st).get("kms:ViaService")
            assert cond and cond["test"] == "StringEquals", f"{role}: {st.get('sid')} has no kms:ViaService"
            for v in as_list(cond["values"]):
                assert re.fullmatch(r"\$\{local\.kms_via\.[a-z0-9]+\}|[a-z]+\.\$\{local\.region\}\.amazonaws\.com", v), (role, v)
    assert as_list(module.datasource("aws_iam_policy_document", "scheduler")["statement"][-1]["actions"]) == ["kms:Decrypt"]


def test_vpc_endpoints_have_policies_naming_only_this_stacks_resources(module):
    interface = module.resource("aws_vpc_endpoint", "interface")
    assert "data.aws_iam_policy_document.endpoint" in refs(interface["policy"])
    access = module.locals["endpoint_access"]
    assert set(access) == {"kinesis-streams", "kms", "secretsmanager", "sqs"}
    allowed = {"aws_kinesis_stream.events", "local.db_writer_secret_arn", "local.db_archiver_secret_arn",
               "local.db_checkpointer_secret_arn", "local.db_query_secret_arn", "aws_sqs_queue.dlq", "aws_sqs_queue.archiver_dlq", "aws_sqs_queue.export_jobs", "aws_kms_key.log",
               "aws_secretsmanager_secret.cursor_key"}
    for service, a in access.items():
        for r in as_list(a["resources"]):
            assert refs(r) and refs(r) <= allowed, (service, r)
        for action in as_list(a["actions"]):
            assert "*" not in action
    # Every function with a database secret can read it through the endpoint (a secret left
    # out there is a function that cannot start in a VPC without NAT).
    secrets = set().union(*(refs(r) for r in as_list(access["secretsmanager"]["resources"])))
    assert secrets == {f"local.db_{fn}_secret_arn" for fn in ("writer", "archiver", "checkpointer", "query")} | {
        "aws_secretsmanager_secret.cursor_key"}
    s3 = module.resource("aws_vpc_endpoint", "s3")
    assert "data.aws_iam_policy_document.s3_endpoint" in refs(s3["policy"])
    for doc in ("endpoint", "s3_endpoint"):
        for st in statements(module, doc):
            assert st.get("effect", "Allow") == "Allow"
            for r in as_list(st["resources"]):
                assert r.strip() != "*"
                assert refs(r) <= allowed | {"aws_s3_bucket.archive", "var.archive_prefix", "local.export_prefix", "each.value.resources"}, r
            cond = conditions(st)["aws:PrincipalAccount"]
            assert is_ref(as_list(cond["values"])[0], "local.account_id")


def test_athena_results_bucket_is_not_force_destroyed_by_default(module):
    assert is_ref(module.resource("aws_s3_bucket", "athena_results")["force_destroy"], "var.athena_results_force_destroy")
    assert module.default("athena_results_force_destroy") is False


def test_alarm_when_no_archiver_run_completed_for_a_day(module):
    f = module.resource("aws_cloudwatch_log_metric_filter", "archiver_runs_completed")
    assert is_ref(f["log_group_name"], "aws_cloudwatch_log_group.archiver.name")
    # The pattern matches the line the archiver logs per run (JSON tracing output).
    handler = (REPO / "functions/archiver/src/handler.rs").read_text()
    assert 'tracing::info!(report = %serde_json::to_string(&report)' in handler
    assert '"archiver run finished")' in handler
    assert ".json()" in (REPO / "functions/archiver/src/main.rs").read_text()
    runner = (REPO / "functions/archiver/src/runner/mod.rs").read_text()
    assert re.search(r"pub error: Option<String>,\n}", runner), "RunReport.error is serialised as null on success"
    assert '$.fields.message = "archiver run finished"' in f["pattern"] and "$.fields.report = %error.:null%" in f["pattern"]
    alarm = module.resource("aws_cloudwatch_metric_alarm", "archiver_silent")
    assert "aws_cloudwatch_log_metric_filter.archiver_runs_completed" in refs(alarm["metric_name"])
    assert alarm["period"] == 3600 and alarm["treat_missing_data"] == "breaching"
    assert is_ref(alarm["evaluation_periods"], "var.alarm_archiver_silence_hours")
    assert is_ref(alarm["datapoints_to_alarm"], "var.alarm_archiver_silence_hours")
    assert alarm["comparison_operator"] == "LessThanThreshold" and alarm["threshold"] == 1
    assert module.default("alarm_archiver_silence_hours") == 26


def test_retention_days_cover_lateness_and_stream_retention(module):
    archiver = module.resource("aws_lambda_function", "archiver")
    (pre,) = blocks(block(archiver, "lifecycle"), "precondition")
    assert refs(pre["condition"]) == {"var.retention_days", "var.max_lateness_secs", "var.kinesis_retention_hours"}
    days = module.default("retention_days")
    assert days * 86400 >= module.default("max_lateness_secs") + module.default("kinesis_retention_hours") * 3600


# --- 10. scanner skips say what the module does ------------------------------------------------

def test_skip_justifications_match_the_configuration(module):
    text = {f.name: f.read_text() for f in module.files}
    alltext = "\n".join(text.values())
    assert "re-read the secret" not in alltext
    assert "source_code_hash" not in "".join(l for l in alltext.splitlines() if "CKV_AWS_272" in l)
    assert "CloudTrail S3 data events for an audit trail" not in alltext
    # CKV_AWS_272: the functions take a code signing config.
    for fn in ("ingest", "batch_writer", "archiver"):
        assert is_ref(module.resource("aws_lambda_function", fn)["code_signing_config_arn"], "var.code_signing_config_arn")
    # CKV_AWS_18 / AVD-AWS-0089: every bucket logs to the access log bucket when one is given.
    logging = module.resource("aws_s3_bucket_logging", "this")
    assert is_ref(logging["target_bucket"], "var.access_log_bucket")
    assert {"aws_s3_bucket.archive", "aws_s3_bucket.failed_batches", "aws_s3_bucket.athena_results"} <= refs(logging["for_each"])
    assert set(module.of_type("aws_s3_bucket")) == {"archive", "failed_batches", "athena_results"}
