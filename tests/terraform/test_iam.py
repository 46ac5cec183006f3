"""Every role's policy names only the resources (and actions) its holder needs."""
import pytest

from conftest import as_list, block, blocks, is_ref, refs

# role -> (trusted service, references its inline policy may name, actions it may allow)
ROLES = {
    "ingest": (
        "lambda.amazonaws.com",
        {"aws_cloudwatch_log_group.ingest", "aws_kinesis_stream.events", "local.kms_key_arn", "local.kms_via",
         "aws_dynamodb_table.tenant_quotas"},
        # A producer needs no kms:Decrypt: it cannot read the stream or anything else under the key.
        # The quota table: one conditional UpdateItem per request, GetItem for overrides.
        {"logs:CreateLogStream", "logs:PutLogEvents", "kinesis:PutRecords", "kinesis:PutRecord",
         "kinesis:DescribeStreamSummary", "kms:GenerateDataKey", "dynamodb:UpdateItem", "dynamodb:GetItem"},
    ),
    "batch_writer": (
        "lambda.amazonaws.com",
        {"aws_cloudwatch_log_group.batch_writer", "aws_kinesis_stream.events", "aws_sqs_queue.dlq",
         "aws_s3_bucket.failed_batches", "local.db_writer_secret_arn", "local.db_secret_kms_key_arns", "local.kms_via"},
        {"logs:CreateLogStream", "logs:PutLogEvents", "kinesis:DescribeStream", "kinesis:DescribeStreamSummary",
         "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards", "sqs:SendMessage",
         "sqs:GetQueueAttributes", "s3:PutObject", "s3:ListBucket", "secretsmanager:GetSecretValue",
         "kms:Decrypt", "kms:GenerateDataKey"},
    ),
    "archiver": (
        "lambda.amazonaws.com",
        {"aws_cloudwatch_log_group.archiver", "aws_s3_bucket.archive", "var.archive_prefix",
         "aws_sqs_queue.archiver_dlq", "local.db_archiver_secret_arn", "local.db_secret_kms_key_arns",
         "aws_kinesis_stream.events", "local.kms_via"},
        {"logs:CreateLogStream", "logs:PutLogEvents", "kinesis:ListShards", "kinesis:GetShardIterator",
         "kinesis:GetRecords", "s3:PutObject", "s3:GetObject", "s3:DeleteObject",
         "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:ListBucket", "s3:ListBucketMultipartUploads", "sqs:SendMessage",
         "secretsmanager:GetSecretValue", "kms:Decrypt", "kms:GenerateDataKey"},
    ),
    "checkpointer": (
        "lambda.amazonaws.com",
        {"aws_cloudwatch_log_group.checkpointer", "aws_s3_bucket.archive", "var.archive_prefix",
         "aws_kms_key.log", "local.db_checkpointer_secret_arn", "local.db_secret_kms_key_arns", "local.kms_via"},
        {"logs:CreateLogStream", "logs:PutLogEvents", "s3:PutObject", "s3:GetObject", "s3:ListBucket", "kms:Sign",
         "kms:GetPublicKey", "secretsmanager:GetSecretValue", "kms:Decrypt", "kms:GenerateDataKey"},
    ),
    # The read path: its log group, its own database secret and cursor key, the archive's
    # tenant directories read-only, and its exports under _exports/ (no Kinesis, no signing key).
    "query": (
        "lambda.amazonaws.com",
        {"aws_cloudwatch_log_group.query", "local.db_query_secret_arn", "local.db_secret_kms_key_arns", "local.kms_via",
         "aws_secretsmanager_secret.cursor_key", "aws_s3_bucket.archive", "var.archive_prefix", "local.export_prefix",
         "local.kms_key_arn", "aws_sqs_queue.export_jobs"},
        {"logs:CreateLogStream", "logs:PutLogEvents", "secretsmanager:GetSecretValue", "kms:Decrypt",
         "s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:PutObjectRetention", "s3:AbortMultipartUpload",
         "kms:GenerateDataKey", "sqs:SendMessage"},
    ),
    # Asynchronous exports: the query function's reads and exports, fed by the export queue
    # (no cursor key, no API).
    "export_worker": (
        "lambda.amazonaws.com",
        {"aws_cloudwatch_log_group.export_worker", "local.db_query_secret_arn", "local.db_secret_kms_key_arns",
         "local.kms_via", "aws_s3_bucket.archive", "var.archive_prefix", "local.export_prefix", "local.kms_key_arn",
         "aws_sqs_queue.export_jobs"},
        {"logs:CreateLogStream", "logs:PutLogEvents", "secretsmanager:GetSecretValue", "kms:Decrypt",
         "s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:PutObjectRetention", "s3:AbortMultipartUpload",
         "kms:GenerateDataKey", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"},
    ),
    "scheduler": (
        "scheduler.amazonaws.com",
        {"aws_lambda_function.archiver", "aws_lambda_function.checkpointer", "aws_sqs_queue.archiver_dlq", "local.kms_key_arn", "local.kms_via"},
        {"lambda:InvokeFunction", "sqs:SendMessage", "kms:Decrypt", "kms:GenerateDataKey"},
    ),
    "rds_proxy": (
        "rds.amazonaws.com",
        {"aws_secretsmanager_secret.db_login", "aws_rds_cluster.this", "local.kms_key_arn", "local.region"},
        {"secretsmanager:GetSecretValue", "kms:Decrypt"},
    ),
}

LAMBDA_MANAGED = {
    "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaENIManagementAccess",
    "arn:${local.partition}:iam::aws:policy/AWSXrayWriteOnlyAccess",
}


def statements(module, name):
    return blocks(module.datasource("aws_iam_policy_document", name), "statement")


@pytest.mark.parametrize("role", sorted(ROLES))
def test_inline_policy_names_only_the_resources_the_role_needs(module, role):
    service, allowed_refs, allowed_actions = ROLES[role]
    policy = module.resource("aws_iam_role_policy", role)
    assert is_ref(policy["role"], f"aws_iam_role.{role}.id") or is_ref(policy["role"], f"aws_iam_role.{role}[0].id")
    assert f"data.aws_iam_policy_document.{role}" in refs(policy["policy"])

    named, actions = set(), set()
    for st in statements(module, role):
        assert st.get("effect", "Allow") == "Allow"
        for resource in as_list(st["resources"]):
            assert resource.strip() not in ("*", ""), f"{role}: {st.get('sid')} allows every resource"
            assert refs(resource), f"{role}: {st.get('sid')} names a literal resource {resource!r}"
        for action in as_list(st["actions"]):
            assert "*" not in action, f"{role}: wildcard action {action}"
            actions.add(action)
        named |= refs(st["resources"]) | refs(st.get("condition", []))
    assert named == allowed_refs, f"{role}: extra {named - allowed_refs}, missing {allowed_refs - named}"
    assert actions <= allowed_actions, f"{role}: unexpected actions {actions - allowed_actions}"


def test_no_role_may_destroy_versions_or_rewrite_retention_of_archive_objects(module):
    for role in ROLES:
        for st in statements(module, role):
            for action in as_list(st["actions"]):
                # The archiver may only add delete markers to stale parts under its
                # prefix (checked below); nothing may destroy a version.
                if role == "archiver" and action == "s3:DeleteObject":
                    continue
                # The query function and the export worker set their exports' own one-day
                # retention, under _exports/ only.
                if role in ("query", "export_worker") and action == "s3:PutObjectRetention":
                    assert as_list(st["resources"]) == ["${aws_s3_bucket.archive.arn}/${local.export_prefix}/tenant_id=*"]
                    continue
                assert not action.startswith(("s3:Delete", "s3:PutObjectRetention", "s3:PutObjectLegalHold",
                                              "s3:BypassGovernanceRetention", "s3:PutBucket")), (role, action)


def test_checkpointer_writes_only_the_log_and_signs_only_with_the_log_key(module):
    for st in statements(module, "checkpointer"):
        for action in as_list(st["actions"]):
            if action == "s3:PutObject":
                assert all(r.endswith("/${var.archive_prefix}/_log/*") for r in as_list(st["resources"])), st
            if action in ("kms:Sign", "kms:GetPublicKey"):
                assert as_list(st["resources"]) == ["${aws_kms_key.log.arn}"], st
    key = module.resource("aws_kms_key", "log")
    assert key["customer_master_key_spec"] == "ECC_NIST_EDWARDS25519"
    assert key["key_usage"] == "SIGN_VERIFY"


def test_archiver_writes_only_under_the_archive_prefix(module):
    for st in statements(module, "archiver"):
        for action in as_list(st["actions"]):
            if action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
                assert as_list(st["resources"]) == ["${aws_s3_bucket.archive.arn}/${var.archive_prefix}/*"]
            if action == "s3:ListBucket":
                cond = block(st, "condition")
                assert cond["variable"] == "s3:prefix"
                assert as_list(cond["values"]) == ["${var.archive_prefix}/*"]


def test_secret_key_list_is_the_stack_key_and_the_existing_secrets_key_only(module):
    assert refs(module.locals["db_secret_kms_key_arns"]) == {"local.kms_key_arn", "var.existing_db_secret_kms_key_arn"}
    for fn in ("writer", "archiver", "checkpointer", "query"):
        assert refs(module.locals[f"db_{fn}_secret_arn"]) == {
            "local.create_db", "aws_secretsmanager_secret.db_login", f"var.existing_db_{fn}_secret_arn",
            "var.existing_db_secret_arn"}


@pytest.mark.parametrize("role,own", [("batch_writer", "writer"), ("archiver", "archiver"),
                                      ("checkpointer", "checkpointer"), ("query", "query"),
                                      ("export_worker", "query")])
def test_each_function_reads_only_its_own_database_secret(module, role, own):
    """Database roles (migration 0006_roles.sql): a function's IAM reaches only the secret of its
    own login user, so a compromised writer cannot connect as the archiver, or the reverse."""
    secrets = [r for st in statements(module, role) if "secretsmanager:GetSecretValue" in as_list(st["actions"])
               for r in as_list(st["resources"])]
    database = [r for r in secrets if r.startswith("${local.db_")]
    assert database == ["${local.db_%s_secret_arn}" % own], role
    # Besides its database secret, only the query function's cursor key.
    assert set(secrets) - set(database) <= {"${aws_secretsmanager_secret.cursor_key.arn}"}, role
    assert f'["{own}"]' in module.locals[f"db_{own}_secret_arn"]


@pytest.mark.parametrize("role", sorted(ROLES))
def test_trust_policy_is_the_one_service_in_this_account(module, role):
    service = ROLES[role][0]
    r = module.resource("aws_iam_role", role)
    doc = module.datasource("aws_iam_policy_document", refs(r["assume_role_policy"]).pop().split(".")[2])
    (st,) = blocks(doc, "statement")
    assert as_list(st["actions"]) == ["sts:AssumeRole"]
    principal = block(st, "principals")
    assert principal["type"] == "Service" and as_list(principal["identifiers"]) == [service]
    cond = block(st, "condition")
    assert cond["variable"] == "aws:SourceAccount" and is_ref(as_list(cond["values"])[0], "local.account_id")


def test_only_the_unscopable_managed_policies_are_attached(module):
    assert set(as_list(module.locals["lambda_managed_policy_arns"])) == LAMBDA_MANAGED
    attachments = module.of_type("aws_iam_role_policy_attachment")
    fns = ("ingest", "batch_writer", "archiver", "checkpointer", "query", "export_worker")
    assert set(attachments) == {*fns, "rds_monitoring"}
    for fn in fns:
        a = attachments[fn]
        assert is_ref(a["for_each"], "toset(local.lambda_managed_policy_arns)")
        assert is_ref(a["role"], f"aws_iam_role.{fn}.name")
    assert attachments["rds_monitoring"]["policy_arn"].endswith(":iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole")
    assert not module.of_type("aws_iam_policy"), "no standalone policies: each role has its own inline policy"
    assert set(module.of_type("aws_iam_role_policy")) == set(ROLES)
    assert set(module.of_type("aws_iam_role")) == set(ROLES) | {"rds_monitoring"}
