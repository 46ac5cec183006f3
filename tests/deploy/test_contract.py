"""The deploy contract: each function binary, started with exactly the environment the Terraform
module gives it (rendered with the example deployment's values) plus what the Lambda service
itself sets and the AWS endpoint of LocalStack, driven through cargo-lambda's Runtime API
emulator with the payloads AWS sends. What a user sees is asserted: the 202 body, the rows in
PostgreSQL, the Parquet files and manifest in S3. A variable the code needs that Terraform does
not set fails the function at start, and so this test.

Run by scripts/test (after PostgreSQL and LocalStack are up): tests/deploy/run.sh.
Env: STELE_TEST_PG_URL, STELE_TEST_AWS_ENDPOINT (required); STELE_FUNCTION_DIR, the directory
holding the stele-ingest, stele-batch-writer, stele-archiver, stele-checkpointer and stele-query
binaries (default target/release); STELE_DEPLOY_LOGS, where the functions' output goes.

One deliberate difference from AWS: STELE_DB_TLS is rendered (`verify-full` with Aurora) and
then set to `disable`, because the test PostgreSQL has no certificate. It is asserted, not
hidden, below.
"""
import base64
import datetime as dt
import hashlib
import json
import os
import subprocess
import tempfile
import time
import uuid
import urllib.request
from urllib.parse import urlparse

import boto3
import pytest

import lambda_rt
import payloads
import render

PG_URL = os.environ.get("STELE_TEST_PG_URL")
AWS_ENDPOINT = os.environ.get("STELE_TEST_AWS_ENDPOINT")
if not (PG_URL and AWS_ENDPOINT):
    pytest.skip("needs STELE_TEST_PG_URL and STELE_TEST_AWS_ENDPOINT (scripts/test sets them)", allow_module_level=True)

REGION = "us-east-1"
FUNCTION_DIR = os.environ.get("STELE_FUNCTION_DIR", str(render.REPO / "target" / "release"))
LOGS = os.environ.get("STELE_DEPLOY_LOGS") or tempfile.mkdtemp(prefix="stele-deploy-")
CARGO_LAMBDA = os.environ.get("CARGO_LAMBDA", "cargo-lambda")


def aws(service):
    return boto3.client(service, endpoint_url=AWS_ENDPOINT, region_name=REGION,
                        aws_access_key_id="test", aws_secret_access_key="test")


def psql(url, sql):
    out = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def stack():
    """What `terraform apply` would have created, in LocalStack and the test PostgreSQL."""
    suffix = uuid.uuid4().hex[:10]
    name = f"contract-{suffix}"
    db = f"contract_{suffix}"
    psql(PG_URL, f"CREATE DATABASE {db}")
    pg = urlparse(PG_URL)
    db_url = PG_URL.rsplit("/", 1)[0] + "/" + db
    kinesis, sqs, s3, sm = aws("kinesis"), aws("sqs"), aws("s3"), aws("secretsmanager")
    stream = f"{name}-events"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    queue = sqs.create_queue(QueueName=f"{name}-batch-writer-dlq")["QueueUrl"]
    export_jobs = sqs.create_queue(QueueName=f"{name}-export-jobs")["QueueUrl"]
    bucket = f"{name}-archive"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)  # as the module's default
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    # The query function's own login (database.tf: stele_query_login in the read-only
    # stele_reader role, which the migrations make; granted once they ran, in its test).
    query_user, query_password = f"contract_query_{suffix}", uuid.uuid4().hex
    psql(PG_URL, f"CREATE ROLE {query_user} LOGIN PASSWORD '{query_password}'")
    query_secret = sm.create_secret(Name=f"{name}/db-query", SecretString=json.dumps({
        "host": pg.hostname, "port": pg.port or 5432, "username": query_user,
        "password": query_password, "dbname": db}))["ARN"]
    # The query function's cursor key (query.tf: a random value generated once).
    cursor_secret = sm.create_secret(Name=f"{name}/query-cursor-key", SecretString=uuid.uuid4().hex * 2)["ARN"]
    # The secret the module creates for Aurora (or the user's, database_mode = existing).
    secret = sm.create_secret(Name=f"{name}/db", SecretString=json.dumps({
        "host": pg.hostname, "port": pg.port or 5432, "username": pg.username or "postgres",
        "password": pg.password or "unused-with-trust-auth", "dbname": db}))["ARN"]
    # The per-tenant quota table (quota.tf): hash key pk, on demand, TTL on expires_at.
    quota_table = f"{name}-tenant-quotas"
    dynamodb = aws("dynamodb")
    dynamodb.create_table(TableName=quota_table, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    dynamodb.get_waiter("table_exists").wait(TableName=quota_table, WaiterConfig={"Delay": 1})
    dynamodb.update_time_to_live(TableName=quota_table, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": "expires_at"})
    for _ in range(100):
        if kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            break
        time.sleep(0.2)
    # The log key (checkpointer.tf): Ed25519 as in AWS if LocalStack has it (4.9 does not:
    # it refuses ECC_NIST_EDWARDS25519), else a P-256 signing key the checkpointer must refuse.
    kms = aws("kms")
    try:
        log_key = kms.create_key(KeySpec="ECC_NIST_EDWARDS25519", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    except kms.exceptions.ClientError:
        log_key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    renderer = render.Renderer({
        "aws_kinesis_stream.events.name": stream,
        "aws_sqs_queue.dlq.url": queue,
        "aws_sqs_queue.export_jobs.url": export_jobs,
        "aws_s3_bucket.archive.id": bucket,
        # One secret for both here (the test cluster's superuser); deployed, each function has
        # its own login user's (tests/it/db_roles.rs checks what each role may do).
        "db_writer_secret_arn": secret,
        "db_archiver_secret_arn": secret,
        "db_checkpointer_secret_arn": secret,
        "db_query_secret_arn": query_secret,
        "aws_secretsmanager_secret.cursor_key.arn": cursor_secret,
        "aws_kms_key.log.arn": log_key["Arn"],
        "account_id": "000000000000",
        "region": REGION,
        "aws_dynamodb_table.tenant_quotas.name": quota_table,
    })
    yield {"renderer": renderer, "db_url": db_url, "stream": stream, "bucket": bucket, "quota_table": quota_table,
           "log_key": log_key, "query_user": query_user, "export_jobs": export_jobs,
           "stream_arn": kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]}


def environment(stack, fn):
    """Terraform's environment of `fn`, exactly, plus the runtime's and the endpoint."""
    tf_env = stack["renderer"].environment(fn)
    if "STELE_DB_TLS" in tf_env:
        assert tf_env["STELE_DB_TLS"] in ("verify-full", "require"), tf_env
        tf_env["STELE_DB_TLS"] = "disable"  # the one deviation: the test database has no TLS
    env = lambda_rt.lambda_environment(f"stele-{fn.replace('_', '-')}", "", region=REGION)
    # The execution role's credentials, which Lambda puts in the environment, and LocalStack.
    env.update({"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_SESSION_TOKEN": "test",
                "AWS_ENDPOINT_URL": AWS_ENDPOINT})
    env.update(tf_env)
    env["_HANDLER"] = stack["renderer"].handler(fn)
    return env


def start(stack, fn):
    binary = os.path.join(FUNCTION_DIR, render.FUNCTIONS[fn])
    assert os.access(binary, os.X_OK), f"{binary} missing: build it (cargo build --release -p {render.FUNCTIONS[fn]})"
    f = lambda_rt.Function([binary], environment(stack, fn), CARGO_LAMBDA, str(render.REPO), LOGS, fn,
                           timeout_secs=stack["renderer"].timeout(fn))
    try:
        init = f.wait_ready()
    except Exception:
        f.stop()
        raise
    print(f"{fn}: initialised in {init * 1000:.0f} ms with Terraform's environment")
    return f


def kinesis_records(stack):
    kinesis = aws("kinesis")
    shard = kinesis.list_shards(StreamName=stack["stream"])["Shards"][0]["ShardId"]
    it = kinesis.get_shard_iterator(StreamName=stack["stream"], ShardId=shard,
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    out = []
    for _ in range(20):
        page = kinesis.get_records(ShardIterator=it, Limit=1000)
        out += [(shard, r) for r in page["Records"]]
        it = page["NextShardIterator"]
        if not page["Records"] and out:
            break
    return out


def test_ingest_then_batch_writer_store_what_a_client_sent(stack):
    claim = stack["renderer"].environment("ingest")["STELE_TENANT_CLAIM"]
    events = [payloads.new_event("acme", action=f"contract.{i}") for i in range(3)]
    ingest = start(stack, "ingest")
    try:
        # What API Gateway sends after its JWT authorizer accepted the token (api.tf).
        request = payloads.api_gateway_v2("POST", "/v1/events", body={"events": events},
                                          claims=payloads.jwt_claims(claim, "acme"))
        status, response = ingest.invoke(request)
    finally:
        ingest.stop()
    assert status == 200, (status, response, ingest.output())
    assert response["statusCode"] == 202, (response, ingest.output())
    body = json.loads(response["body"])
    assert [a["event_id"] for a in body["accepted"]] == [e["event_id"] for e in events], body
    assert all(len(a["event_hash"]) == 64 for a in body["accepted"]), body

    # Terraform turns the per-tenant quota on: the request was counted in the quota table.
    tf_env = stack["renderer"].environment("ingest")
    assert int(tf_env["STELE_TENANT_QUOTA_EVENTS_PER_SEC"]) > 0, tf_env
    counters = aws("dynamodb").scan(TableName=stack["quota_table"])["Items"]
    assert [(c["pk"]["S"].rsplit("#", 1)[0], c["events"]["N"]) for c in counters] == [("count#acme", "3")], counters

    records = kinesis_records(stack)
    assert len(records) == len(events)
    writer = start(stack, "batch_writer")
    try:
        # What the event source mapping sends (kinesis.tf: ReportBatchItemFailures).
        status, response = writer.invoke(payloads.kinesis_batch(records, stack["stream_arn"], REGION))
        again, replay = writer.invoke(payloads.kinesis_batch(records, stack["stream_arn"], REGION))
    finally:
        writer.stop()
    assert status == 200 and response == {"batchItemFailures": []}, (status, response, writer.output())
    assert again == 200 and replay == {"batchItemFailures": []}, replay
    ids = ",".join(f"'{e['event_id']}'" for e in events)
    rows = psql(stack["db_url"], f"SELECT tenant_id || ' ' || action || ' ' || encode(event_hash, 'hex') "
                                 f"FROM audit_events WHERE event_id IN ({ids}) ORDER BY action")
    assert rows.splitlines() == [f"acme {e['action']} {a['event_hash']}" for e, a in zip(events, body["accepted"])]


def test_archiver_run_by_the_schedule_archives_an_old_day_to_s3(stack):
    # The batch-writer test applied the schema at its cold start; make sure it is there even
    # when this test runs alone.
    if psql(stack["db_url"], "SELECT to_regclass('audit_events') IS NOT NULL") != "t":
        writer = start(stack, "batch_writer")
        writer.stop()
    day = dt.date.today() - dt.timedelta(days=40)
    # Rows as the batch-writer stores them (the archiver re-hashes every row and checks its
    # leaf in the tenant's log, so made-up rows would rightly fail its verify step).
    at = dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.timezone.utc)
    records = [("shardId-000000000000", payloads.sealed_record(
        "acme", at + dt.timedelta(seconds=g), at + dt.timedelta(seconds=g, milliseconds=500), sequence=str(10_000 + g)))
        for g in range(50)]
    writer = start(stack, "batch_writer")
    try:
        status, response = writer.invoke(payloads.kinesis_batch(records, stack["stream_arn"], REGION))
    finally:
        writer.stop()
    assert status == 200 and response == {"batchItemFailures": []}, (status, response, writer.output())
    part = f"audit_events_p{day:%Y%m%d}"
    assert psql(stack["db_url"], f"SELECT count(*) FROM {part} WHERE leaf_index IS NOT NULL") == "50"
    archiver = start(stack, "archiver")
    try:
        # EventBridge Scheduler passes the target's `input` (scheduler.tf) as the event.
        status, report = archiver.invoke(stack["renderer"].scheduler_input(), timeout=300)
    finally:
        archiver.stop()
    assert status == 200, (status, report, archiver.output())
    assert report["error"] is None and [p["state"] for p in report["archived"]] == ["done"], report
    assert psql(stack["db_url"], f"SELECT to_regclass('{part}') IS NULL") == "t", "archived day still in Postgres"
    keys = sorted(o["Key"] for o in aws("s3").list_objects_v2(Bucket=stack["bucket"]).get("Contents", []))
    prefix = stack["renderer"].environment("archiver")["STELE_ARCHIVE_PREFIX"]
    assert f"{prefix}/_manifests/dt={day}.json" in keys, keys
    parts = [k for k in keys if k.startswith(f"{prefix}/tenant_id=acme/dt={day}/") and k.endswith(".parquet")]
    assert parts, keys
    manifest = json.loads(aws("s3").get_object(Bucket=stack["bucket"], Key=f"{prefix}/_manifests/dt={day}.json")["Body"].read())
    assert sum(t["rows"] for t in manifest["tenants"]) == 50, manifest


def test_checkpointer_starts_with_terraforms_environment_and_its_log_key(stack):
    env = stack["renderer"].environment("checkpointer")
    assert env["STELE_LOG_KMS_KEY_ID"] == stack["log_key"]["Arn"]
    assert env["STELE_LOG_ORIGIN"] and "${" not in env["STELE_LOG_ORIGIN"], env
    if psql(stack["db_url"], "SELECT to_regclass('tlog_checkpoints') IS NOT NULL") != "t":
        writer = start(stack, "batch_writer")
        writer.stop()
    if stack["log_key"]["KeySpec"] != "ECC_NIST_EDWARDS25519":
        # LocalStack has no Ed25519 keys: everything Terraform gives the function is read
        # (database secret, bucket, origin), and KMS is asked for the key, which is refused
        # at start with the reason.
        with pytest.raises(RuntimeError) as failed:
            start(stack, "checkpointer")
        assert "ECC_NIST_EDWARDS25519" in str(failed.value), failed.value
        assert stack["log_key"]["KeySpec"] in str(failed.value), failed.value
        return
    checkpointer = start(stack, "checkpointer")
    try:
        status, report = checkpointer.invoke(stack["renderer"].scheduler_input("checkpointer"), timeout=60)
    finally:
        checkpointer.stop()
    assert status == 200 and report["refused"] == [] and report["error"] is None, (status, report, checkpointer.output())


def query_request(stack, route_key, path, tenant=None, query=None, method="GET"):
    """What API Gateway sends the query function for a read route (api.tf) once its JWT
    authorizer accepted a token with a read scope; `tenant=None`: a token without the claim."""
    claim = stack["renderer"].environment("query")["STELE_TENANT_CLAIM"]
    claims = payloads.jwt_claims(claim, tenant)
    if tenant is None:
        del claims[claim]
    claims["scope"] = "stele/events.read"
    event = payloads.api_gateway_v2(method, path, claims=claims, route_key=route_key)
    if "{event_id}" in route_key:
        event["pathParameters"] = {"event_id": path.split("/")[3]}
    if "{export_id}" in route_key:
        event["pathParameters"] = {"export_id": path.split("/")[3]}
    if query:
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
        event["queryStringParameters"] = dict(query)
    return event


def rfc6962_root_from_inclusion(index, size, leaf, proof):
    """RFC 9162 2.1.3.2: the root a leaf's inclusion proof leads to."""
    node = lambda left, right: hashlib.sha256(b"\x01" + left + right).digest()
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise AssertionError("proof too long")
        if fn % 2 == 1 or fn == sn:
            r = node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0, "proof too short"
    return r


def test_query_answers_reads_with_terraforms_environment_as_its_own_read_only_login(stack):
    env = stack["renderer"].environment("query")
    assert env["STELE_DB_SECRET_ARN"] != stack["renderer"].environment("batch_writer")["STELE_DB_SECRET_ARN"], \
        "the query function connects with its own secret"
    # Its own events, stored by the batch-writer as in AWS (the cold start applies the schema).
    tenant = f"q-{uuid.uuid4().hex[:8]}"
    # Whole quarter seconds: the arrival timestamp is a float the event type parses exactly.
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    records = [("shardId-000000000009", payloads.sealed_record(
        tenant, now, now + dt.timedelta(milliseconds=250 * g), sequence=str(90_000 + g), action=f"query.{g}"))
        for g in range(3)]
    writer = start(stack, "batch_writer")
    try:
        status, response = writer.invoke(payloads.kinesis_batch(records, stack["stream_arn"], REGION))
    finally:
        writer.stop()
    assert status == 200 and response == {"batchItemFailures": []}, (status, response, writer.output())
    psql(stack["db_url"], f"GRANT stele_reader TO {stack['query_user']}")
    stored = psql(stack["db_url"], f"SELECT event_id || ' ' || leaf_index FROM audit_events "
                                   f"WHERE tenant_id = '{tenant}' ORDER BY leaf_index").splitlines()
    assert len(stored) == 3, stored
    event_id, leaf_index = stored[1].split()

    proof_route = "GET /v1/events/{event_id}/proof"
    query = start(stack, "query")
    try:
        # No signed checkpoint yet: 409 with Terraform's Retry-After.
        status, early = query.invoke(query_request(stack, proof_route, f"/v1/events/{event_id}/proof", tenant))
        # A checkpoint of the tenant's head, as the checkpointer records it (LocalStack cannot
        # sign with Ed25519, so the row stands in for its run; the note is not checked here).
        origin = f"contract.example/stele/tenant/{tenant}"
        psql(stack["db_url"], f"INSERT INTO tlog_checkpoints (tenant_id, size, root, note) "
                              f"SELECT tenant_id, size, root, '{origin}' || chr(10) || size || chr(10) "
                              f"|| encode(root, 'base64') || chr(10) || chr(10) || '— contract test' || chr(10) "
                              f"FROM tlog_heads WHERE tenant_id = '{tenant}'")
        _, proof = query.invoke(query_request(stack, proof_route, f"/v1/events/{event_id}/proof", tenant))
        _, checkpoint = query.invoke(query_request(stack, "GET /v1/log/checkpoint", "/v1/log/checkpoint", tenant))
        _, consistency = query.invoke(query_request(stack, "GET /v1/log/consistency", "/v1/log/consistency",
                                                    tenant, {"from": "3"}))
        # Tenant-scoped: another tenant's token does not find the event; no claim is a 401.
        _, other = query.invoke(query_request(stack, proof_route, f"/v1/events/{event_id}/proof", "someone-else"))
        _, unclaimed = query.invoke(query_request(stack, "GET /v1/log/checkpoint", "/v1/log/checkpoint"))
        _, bad_id = query.invoke(query_request(stack, proof_route, "/v1/events/not-a-uuid/proof", tenant))
        # The tenant's events, two pages (the cursor is signed with the key from its secret).
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        window = {"from": (now - dt.timedelta(hours=1)).strftime(fmt),
                  "to": (now + dt.timedelta(hours=1)).strftime(fmt), "limit": "2"}
        _, page1 = query.invoke(query_request(stack, "GET /v1/events", "/v1/events", tenant, window))
        cursor = json.loads(page1["body"]).get("next_cursor") or ""
        _, page2 = query.invoke(query_request(stack, "GET /v1/events", "/v1/events", tenant,
                                              {**window, "cursor": cursor}))
        _, foreign = query.invoke(query_request(stack, "GET /v1/events", "/v1/events", "someone-else", window))
        # The same events as one CSV export (inline: it is small).
        export_window = {k: v for k, v in window.items() if k != "limit"}
        _, exported = query.invoke(query_request(stack, "GET /v1/events/export", "/v1/events/export", tenant,
                                                 {**export_window, "format": "csv"}))
        # The whole range again, as an asynchronous export: queued by the query function, run by
        # the export worker from the queue's message, then served with a presigned URL.
        _, started = query.invoke(query_request(stack, "POST /v1/exports", "/v1/exports", tenant,
                                                {**export_window, "format": "csv"}, method="POST"))
        sqs = aws("sqs")
        messages = sqs.receive_message(QueueUrl=stack["export_jobs"], AttributeNames=["All"],
                                       WaitTimeSeconds=5).get("Messages", [])
        queue_arn = sqs.get_queue_attributes(QueueUrl=stack["export_jobs"],
                                             AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        worker = start(stack, "export_worker")
        try:
            worker_status, worker_response = worker.invoke(payloads.sqs_event(messages, queue_arn, REGION))
        finally:
            worker.stop()
        export_id = json.loads(started["body"]).get("export_id", "")
        _, job = query.invoke(query_request(stack, "GET /v1/exports/{export_id}", f"/v1/exports/{export_id}", tenant))
    finally:
        query.stop()
    assert started["statusCode"] == 202, (started, query.output())
    assert len(messages) == 1 and json.loads(messages[0]["Body"])["export_id"] == export_id, messages
    assert worker_status == 200 and worker_response == {"batchItemFailures": []}, \
        (worker_status, worker_response, worker.output())
    assert job["statusCode"] == 200, (job, query.output())
    job = json.loads(job["body"])
    assert (job["status"], job["events"], job["format"]) == ("succeeded", 3, "csv"), job
    assert job["key"].startswith(f"_exports/tenant_id={tenant}/"), job
    with urllib.request.urlopen(job["url"]) as downloaded:
        assert downloaded.read().decode() == exported["body"], job
    assert env["STELE_CURSOR_KEY_SECRET_ARN"] and env["STELE_ARCHIVE_BUCKET"] == stack["bucket"], env
    assert page1["statusCode"] == 200 and page2["statusCode"] == 200, (page1, page2, query.output())
    first, second = json.loads(page1["body"]), json.loads(page2["body"])
    assert len(first["events"]) == 2 and len(second["events"]) == 1 and second["next_cursor"] is None, (first, second)
    served = [e["event_id"] for e in first["events"] + second["events"]]
    assert sorted(served) == sorted(line.split()[0] for line in stored), (served, stored)
    assert foreign["statusCode"] == 200 and json.loads(foreign["body"])["events"] == [], foreign
    assert exported["statusCode"] == 200, (exported, query.output())
    lines = exported["body"].splitlines()
    assert lines[0].startswith("tenant_id,event_id,") and len(lines) == 4, exported
    assert [line.split(",")[1] for line in lines[1:]] == served, (lines, served)
    assert status == 200, (status, early, query.output())
    assert early["statusCode"] == 409, (early, query.output())
    assert json.loads(early["body"])["error"] == "not_yet_checkpointed", early
    headers = {k.lower(): v for k, v in early["headers"].items()}
    assert headers["retry-after"] == env["STELE_PROOF_RETRY_AFTER_SECS"], early

    assert proof["statusCode"] == 200, (proof, query.output())
    body = json.loads(proof["body"])
    assert (body["tenant_id"], body["event_id"], body["leaf_index"], body["tree_size"]) == \
        (tenant, event_id, int(leaf_index), 3), body
    root = rfc6962_root_from_inclusion(body["leaf_index"], body["tree_size"], base64.b64decode(body["leaf_hash"]),
                                       [base64.b64decode(h) for h in body["inclusion_proof"]])
    assert base64.b64encode(root).decode() == body["checkpoint"]["root"], body
    assert body["checkpoint"]["origin"] == origin and body["tlog_proof"].startswith("c2sp.org/tlog-proof@v1"), body

    assert checkpoint["statusCode"] == 200, checkpoint
    assert {k.lower(): v for k, v in checkpoint["headers"].items()}["content-type"].startswith("text/plain"), checkpoint
    assert checkpoint["body"].splitlines()[:3] == [origin, "3", body["checkpoint"]["root"]], checkpoint
    assert consistency["statusCode"] == 200, consistency
    c = json.loads(consistency["body"])
    assert (c["from"]["size"], c["to"]["size"], c["consistency_proof"]) == (3, 3, []), c

    assert other["statusCode"] == 404 and json.loads(other["body"])["error"] == "not_found", other
    assert unclaimed["statusCode"] == 401, unclaimed
    assert "error" in json.loads(unclaimed["body"]), unclaimed
    assert bad_id["statusCode"] == 400 and json.loads(bad_id["body"])["error"] == "invalid_request", bad_id
