"""The archive bucket (and the Athena results bucket): encryption, versioning, no public
access, TLS only, lifecycle, Object Lock."""
import pytest

from conftest import as_list, block, blocks, is_ref, refs

BUCKETS = ("archive", "athena_results", "failed_batches")


@pytest.mark.parametrize("bucket", BUCKETS)
def test_bucket_is_kms_encrypted(module, bucket):
    sse = module.resource("aws_s3_bucket_server_side_encryption_configuration", bucket)
    assert is_ref(sse["bucket"], f"aws_s3_bucket.{bucket}.id")
    rule = block(sse, "rule")
    default = block(rule, "apply_server_side_encryption_by_default")
    assert default["sse_algorithm"] == "aws:kms"
    assert is_ref(default["kms_master_key_id"], "local.kms_key_arn")
    assert rule["bucket_key_enabled"] is True


@pytest.mark.parametrize("bucket", BUCKETS)
def test_bucket_is_versioned(module, bucket):
    v = module.resource("aws_s3_bucket_versioning", bucket)
    assert is_ref(v["bucket"], f"aws_s3_bucket.{bucket}.id")
    assert block(v, "versioning_configuration")["status"] == "Enabled"


@pytest.mark.parametrize("bucket", BUCKETS)
def test_bucket_blocks_public_access_and_acls(module, bucket):
    pab = module.resource("aws_s3_bucket_public_access_block", bucket)
    assert is_ref(pab["bucket"], f"aws_s3_bucket.{bucket}.id")
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        assert pab[flag] is True, flag
    owner = module.resource("aws_s3_bucket_ownership_controls", bucket)
    assert block(owner, "rule")["object_ownership"] == "BucketOwnerEnforced"


@pytest.mark.parametrize("bucket", BUCKETS)
def test_bucket_policy_denies_plain_http(module, bucket):
    policy = module.resource("aws_s3_bucket_policy", bucket)
    assert is_ref(policy["bucket"], f"aws_s3_bucket.{bucket}.id")
    doc_name = f"{bucket}_bucket"
    assert f"data.aws_iam_policy_document.{doc_name}" in refs(policy["policy"])
    denies = [
        st for st in blocks(module.datasource("aws_iam_policy_document", doc_name), "statement")
        if st.get("effect") == "Deny"
        and any(c["variable"] == "aws:SecureTransport" and as_list(c["values"]) == ["false"] for c in blocks(st, "condition"))
    ]
    assert denies, "no Deny on aws:SecureTransport = false"
    st = denies[0]
    assert as_list(st["actions"]) == ["s3:*"]
    assert set(as_list(st["resources"])) == {f"${{aws_s3_bucket.{bucket}.arn}}", f"${{aws_s3_bucket.{bucket}.arn}}/*"}
    assert block(st, "principals")["type"] == "*"


def test_archive_lifecycle_tiers_then_expires(module):
    lc = module.resource("aws_s3_bucket_lifecycle_configuration", "archive")
    rules = {r["id"]: r for r in blocks(lc, "rule")}
    tiering = rules["archive-tiering"]
    assert tiering["status"] == "Enabled"
    assert block(tiering, "filter")["prefix"] == "${var.archive_prefix}/"
    dyn = blocks(tiering, "dynamic")
    names = {}
    for d in dyn:
        for kind, body in d.items():
            names.setdefault(kind, []).append(body)
    classes = [block(t, "content")["storage_class"] for t in names["transition"]]
    assert classes == ["STANDARD_IA", "GLACIER_IR"], "GLACIER_IR keeps the files queryable by Athena"
    (exp,) = names["expiration"]
    assert "var.archive_expiration_days" in refs(exp["for_each"])
    assert module.default("archive_transition_ia_days") < module.default("archive_transition_glacier_ir_days")
    assert module.default("archive_expiration_days") > module.default("archive_transition_glacier_ir_days")
    assert any(blocks(r, "abort_incomplete_multipart_upload") for r in rules.values())


def test_archive_is_object_locked_by_default_in_governance_mode(module):
    bucket = module.resource("aws_s3_bucket", "archive")
    assert is_ref(bucket["object_lock_enabled"], "var.object_lock_enabled")
    lock = module.resource("aws_s3_bucket_object_lock_configuration", "archive")
    assert is_ref(lock["count"], "var.object_lock_enabled ? 1 : 0")
    retention = block(block(lock, "rule"), "default_retention")
    assert is_ref(retention["mode"], "var.object_lock_mode")
    assert is_ref(retention["days"], "var.object_lock_retention_days")
    assert module.default("object_lock_enabled") is True
    assert module.default("object_lock_mode") == "GOVERNANCE"
    mode = block(module.variables["object_lock_mode"], "validation")["condition"]
    assert "GOVERNANCE" in mode and "COMPLIANCE" in mode
    # Locked for as long as the archive keeps an object.
    assert module.default("object_lock_retention_days") >= module.default("archive_expiration_days")
    main = open(module.directory / "main.tf").read()
    assert "var.object_lock_retention_days >= coalesce(var.archive_expiration_days, 0)" in main


def test_no_lifecycle_rule_expires_locked_versions_under_the_archive_prefix(module):
    lc = module.resource("aws_s3_bucket_lifecycle_configuration", "archive")
    for rule in blocks(lc, "rule"):
        if rule["id"] == "expire-exports":
            # Exports carry their own one-day retention (functions/query/src/export/spool.rs).
            assert block(rule, "filter")["prefix"] == "${local.export_prefix}/"
            assert module.locals["export_prefix"] == "_exports"
            continue
        for nve in blocks(rule, "noncurrent_version_expiration"):
            # A version made noncurrent at any time is locked at most the retention longer.
            assert is_ref(nve["noncurrent_days"], "local.archive_noncurrent_days"), rule["id"]
    assert module.locals["archive_noncurrent_days"] == (
        "${var.object_lock_enabled ? max(30, var.object_lock_retention_days) : 30}"
    )


def test_no_role_can_bypass_or_destroy_archived_versions(module):
    for name, doc in module.data.items():
        if name[0] != "aws_iam_policy_document":
            continue
        for st in blocks(doc, "statement"):
            actions = set(as_list(st.get("actions", [])))
            if all("${local.export_prefix}/" in r for r in as_list(st.get("resources", []))):
                # Exports, never an archived object: they set their own short retention.
                actions -= {"s3:PutObjectRetention"}
            assert not actions & {
                "s3:BypassGovernanceRetention",
                "s3:DeleteObjectVersion",
                "s3:PutObjectRetention",
                "s3:PutBucketObjectLockConfiguration",
                "s3:*",
            } or st.get("effect") == "Deny", f"{name[1]}: {st.get('sid')}"


def test_athena_workgroup_enforces_encrypted_results(module):
    wg = module.resource("aws_athena_workgroup", "this")
    conf = block(wg, "configuration")
    assert conf["enforce_workgroup_configuration"] is True
    result = block(conf, "result_configuration")
    assert result["output_location"] == "s3://${aws_s3_bucket.athena_results.id}/results/"
    enc = block(result, "encryption_configuration")
    assert enc["encryption_option"] == "SSE_KMS"
    assert is_ref(enc["kms_key_arn"], "local.kms_key_arn")


def test_kms_key_rotates(module):
    key = module.resource("aws_kms_key", "this")
    assert key["enable_key_rotation"] is True
    assert is_ref(key["count"], "local.create_kms_key ? 1 : 0")


def test_kms_key_policy_lets_logs_and_alarms_use_the_key_only_for_this_stack(module):
    sts = {st["sid"]: st for st in blocks(module.datasource("aws_iam_policy_document", "kms"), "statement")}
    logs = sts["CloudWatchLogsOfThisStack"]
    assert as_list(block(logs, "principals")["identifiers"]) == ["logs.${local.region}.amazonaws.com"]
    cond = block(logs, "condition")
    assert cond["variable"] == "kms:EncryptionContext:aws:logs:arn" and "${var.name}" in as_list(cond["values"])[0]
    alarms = sts["CloudWatchAlarmsToEncryptedTopics"]
    assert as_list(block(alarms, "principals")["identifiers"]) == ["cloudwatch.amazonaws.com"]
    assert block(alarms, "condition")["variable"] == "aws:SourceAccount"
