"""API Gateway, PostgreSQL, network, alarms and outputs."""
import re
from pathlib import Path

from conftest import as_list, block, blocks, is_ref, refs


def test_http_api_routes_and_jwt_authorizer(module):
    api = module.resource("aws_apigatewayv2_api", "this")
    assert api["protocol_type"] == "HTTP"
    auth = module.resource("aws_apigatewayv2_authorizer", "jwt")
    assert auth["authorizer_type"] == "JWT"
    assert as_list(auth["identity_sources"]) == ["$request.header.Authorization"]
    jwt = block(auth, "jwt_configuration")
    assert is_ref(jwt["issuer"], "var.jwt_issuer") and is_ref(jwt["audience"], "var.jwt_audience")

    routes = {r["route_key"]: r for r in module.of_type("aws_apigatewayv2_route").values()
              if not str(r["route_key"]).startswith("${")}
    assert set(routes) == {"POST /v1/events", "GET /v1/health"}
    post = routes["POST /v1/events"]
    assert post["authorization_type"] == "JWT"
    assert is_ref(post["authorizer_id"], "aws_apigatewayv2_authorizer.jwt.id")
    assert is_ref(post["authorization_scopes"], "length(var.jwt_authorization_scopes) > 0 ? var.jwt_authorization_scopes : null")
    assert routes["GET /v1/health"]["authorization_type"] == "NONE"
    for r in routes.values():
        assert r["target"] == "integrations/${aws_apigatewayv2_integration.ingest.id}"
    # The read routes (one resource over local.query_routes): the query function, JWT, and
    # the read scopes, never the write scopes.
    assert set(as_list(module.locals["query_routes"])) == {
        "GET /v1/events", "GET /v1/events/export", "GET /v1/events/{event_id}/proof", "GET /v1/log/checkpoint",
            "GET /v1/log/consistency", "POST /v1/exports", "GET /v1/exports/{export_id}"}
    query = module.resource("aws_apigatewayv2_route", "query")
    assert is_ref(query["for_each"], "toset(local.query_routes)") and is_ref(query["route_key"], "each.value")
    assert query["authorization_type"] == "JWT"
    assert is_ref(query["authorizer_id"], "aws_apigatewayv2_authorizer.jwt.id")
    assert is_ref(query["authorization_scopes"], "var.jwt_read_scopes")
    assert query["target"] == "integrations/${aws_apigatewayv2_integration.query.id}"
    for fn in ("ingest", "query"):
        integ = module.resource("aws_apigatewayv2_integration", fn)
        assert integ["integration_type"] == "AWS_PROXY" and integ["payload_format_version"] == "2.0"
        assert is_ref(integ["integration_uri"], f"aws_lambda_function.{fn}.invoke_arn")
    for name, fn in (("api", "ingest"), ("query", "query"), ("query_start_export", "query")):
        perm = module.resource("aws_lambda_permission", name)
        assert perm["principal"] == "apigateway.amazonaws.com"
        assert is_ref(perm["function_name"], f"aws_lambda_function.{fn}.function_name")
        assert perm["source_arn"].startswith("${aws_apigatewayv2_api.this.execution_arn}/")
    # The query function may be invoked for GET requests, and POST only to start an export.
    assert module.resource("aws_lambda_permission", "query")["source_arn"].endswith("/*/GET/v1/*")
    assert module.resource("aws_lambda_permission", "query_start_export")["source_arn"].endswith("/*/POST/v1/exports")


def test_stage_has_access_logs_and_throttling(module):
    stage = module.resource("aws_apigatewayv2_stage", "default")
    logs = block(stage, "access_log_settings")
    assert is_ref(logs["destination_arn"], "aws_cloudwatch_log_group.api_access.arn")
    assert "$context.requestId" in logs["format"] and "$context.status" in logs["format"]
    throttle = block(stage, "default_route_settings")
    assert is_ref(throttle["throttling_rate_limit"], "var.api_throttling_rate_limit")
    assert is_ref(throttle["throttling_burst_limit"], "var.api_throttling_burst_limit")
    group = module.resource("aws_cloudwatch_log_group", "api_access")
    assert is_ref(group["retention_in_days"], "var.log_retention_days")


def test_aurora_is_private_encrypted_and_requires_tls(module):
    assert is_ref(module.locals["create_db"], 'var.database_mode == "aurora"')
    cluster = module.resource("aws_rds_cluster", "this")
    assert cluster["engine"] == "aurora-postgresql" and cluster["engine_mode"] == "provisioned"
    assert blocks(cluster, "serverlessv2_scaling_configuration")
    assert cluster["storage_encrypted"] is True
    assert is_ref(cluster["kms_key_id"], "local.kms_key_arn")
    params = {p["name"]: p["value"] for p in blocks(module.resource("aws_rds_cluster_parameter_group", "this"), "parameter")}
    assert params["rds.force_ssl"] == "1"
    instance = module.resource("aws_rds_cluster_instance", "this")
    assert instance["instance_class"] == "db.serverless" and instance["publicly_accessible"] is False
    assert is_ref(module.resource("aws_db_subnet_group", "this")["subnet_ids"], "var.private_subnet_ids")
    proxy = module.resource("aws_db_proxy", "this")
    assert proxy["require_tls"] is True and proxy["engine_family"] == "POSTGRESQL"
    assert is_ref(proxy["vpc_subnet_ids"], "var.private_subnet_ids")
    # A login per function's secret, and the RDS-managed master secret.
    auths = blocks(proxy, "dynamic")
    assert len(auths) == 1 and "auth" in auths[0], auths
    assert is_ref(auths[0]["auth"]["for_each"], "aws_secretsmanager_secret.db_login")
    assert is_ref(block(proxy, "auth")["secret_arn"], "aws_rds_cluster.this[0].master_user_secret[0].secret_arn")
    target = module.resource("aws_db_proxy_target", "this")
    assert is_ref(target["db_cluster_identifier"], "aws_rds_cluster.this[0].id")
    # TLS is never off, verify-full through the proxy.
    assert is_ref(module.locals["db_tls"], 'coalesce(var.db_tls, local.create_db ? "verify-full" : "require")')


def test_database_secrets_have_the_shape_the_functions_read(module):
    secret = module.resource("aws_secretsmanager_secret", "db_login")
    assert is_ref(secret["kms_key_id"], "local.kms_key_arn")
    version = module.resource("aws_secretsmanager_secret_version", "db_login")
    body = version["secret_string"]
    keys = set(re.findall(r"\b([a-z]+)\s*=", body))
    assert {"host", "port", "username", "password", "dbname"} <= keys
    assert "aws_db_proxy.this[0].endpoint" in body, "the functions connect through RDS Proxy"
    # No password in Terraform: `stele db create-login` sets it, and Terraform leaves it be.
    assert re.search(r'password\s*=\s*""', body), body
    assert "secret_string" in str(version["lifecycle"])
    logins = module.locals["db_logins"]
    assert {k: v["role"] for k, v in logins.items()} == {
        "writer": "stele_writer", "archiver": "stele_archiver", "checkpointer": "stele_checkpointer",
        "query": "stele_reader", "reader": "stele_reader"}
    # One login user per secret: the query function's is its own, not the operators' reader.
    users = [v["user"] for v in logins.values()]
    assert len(set(users)) == len(users), users


def test_no_database_password_in_terraform_state(module):
    cluster = module.resource("aws_rds_cluster", "this")
    assert cluster["manage_master_user_password"] is True
    assert "master_password" not in cluster
    assert is_ref(cluster["master_user_secret_kms_key_id"], "local.kms_key_arn")
    assert not module.of_type("random_password")


def test_the_migration_makes_the_roles_terraform_names(module):
    sql = (Path(__file__).resolve().parents[2] / "crates/store/migrations/0006_roles.sql").read_text()
    for login in module.locals["db_logins"].values():
        assert f"'{login['role']}'" in sql, login


def test_network_paths_are_least_privilege(module):
    egress = module.of_type("aws_vpc_security_group_egress_rule")
    ingress = module.of_type("aws_vpc_security_group_ingress_rule")
    for name, rule in {**egress, **ingress}.items():
        assert "cidr_ipv4" not in rule or "0.0.0.0/0" not in str(rule["cidr_ipv4"]), name
        assert rule["ip_protocol"] == "tcp", name
    assert {r["from_port"] for r in egress.values() if is_ref(r["security_group_id"], "aws_security_group.lambda.id")} \
        == {443, 5432, "${var.existing_db_port}"}
    assert is_ref(ingress["db_from_proxy"]["referenced_security_group_id"], "aws_security_group.proxy[0].id")
    assert is_ref(ingress["proxy_from_lambda"]["referenced_security_group_id"], "aws_security_group.lambda.id")
    endpoints = module.resource("aws_vpc_endpoint", "interface")
    assert "local.endpoint_access" in refs(endpoints["for_each"]) and "var.create_vpc_endpoints" in refs(endpoints["for_each"])
    assert set(module.locals["endpoint_access"]) == {"kinesis-streams", "kms", "secretsmanager", "sqs"}
    assert module.resource("aws_vpc_endpoint", "s3")["vpc_endpoint_type"] == "Gateway"


def test_alarms_cover_iterator_age_dlq_errors_and_api_5xx(module):
    alarms = module.of_type("aws_cloudwatch_metric_alarm")
    age = alarms["iterator_age"]
    assert (age["namespace"], age["metric_name"]) == ("AWS/Lambda", "IteratorAge")
    assert "aws_lambda_function.batch_writer.function_name" in str(age["dimensions"])
    dlq = alarms["dlq_depth"]
    assert (dlq["namespace"], dlq["metric_name"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert {"aws_sqs_queue.dlq", "aws_sqs_queue.archiver_dlq", "aws_sqs_queue.export_jobs_dlq"} <= refs(dlq["for_each"])
    errors = alarms["function_errors"]
    assert (errors["namespace"], errors["metric_name"]) == ("AWS/Lambda", "Errors")
    assert {f"aws_lambda_function.{f}" for f in ("ingest", "batch_writer", "archiver", "checkpointer", "query",
                                                 "export_worker")} \
        <= refs(errors["for_each"])
    api = alarms["api_5xx"]
    assert (api["namespace"], api["metric_name"]) == ("AWS/ApiGateway", "5xx")
    assert "aws_apigatewayv2_api.this.id" in str(api["dimensions"])
    conflicts = alarms["id_conflicts"]
    assert (conflicts["namespace"], conflicts["metric_name"], conflicts["threshold"]) == ("stele", "conflicts", 0)
    assert conflicts["dimensions"] == {"function": "batch-writer"}
    for name, alarm in alarms.items():
        assert is_ref(alarm["alarm_actions"], "var.alarm_actions"), name


def test_outputs(module, example):
    wanted = {
        "api_endpoint": "aws_apigatewayv2_stage.default",
        "stream_name": "aws_kinesis_stream.events",
        "archive_bucket": "aws_s3_bucket.archive",
        "glue_table": "aws_glue_catalog_table.audit_events",
        "glue_database": "aws_glue_catalog_database.this",
        "athena_workgroup": "aws_athena_workgroup.this",
    }
    for name, resource in wanted.items():
        assert resource in refs(module.outputs[name]["value"]), name
        assert is_ref(example.outputs[name]["value"], f"module.stele.{name}"), name
