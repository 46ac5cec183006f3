"""The Glue table matches what the archiver writes: columns (from the archiver's own schema,
printed by `stele archive-schema`), partition keys, projection and the S3 layout."""
import json
import os
import subprocess

import pytest

from conftest import REPO, block, blocks, is_ref

# The S3 layout of the archive (DESIGN.md): <prefix>/tenant_id=<t>/dt=<YYYY-MM-DD>/part-<n>.parquet
LAYOUT = "tenant_id=${tenant_id}/dt=${dt}"


def archive_schema_command():
    binary = os.environ.get("STELE_BIN")
    if binary:
        return [binary, "archive-schema"]
    return ["cargo", "run", "-q", "--bin", "stele", "--", "archive-schema"]


def run_archive_schema(command, timeout=1800):
    """("ok", schema) | ("skip", reason) | ("fail", reason).

    Skips only while the CLI does not have the subcommand yet ("unrecognized subcommand");
    anything else that goes wrong is a failure.
    """
    try:
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "fail", f"{' '.join(command)}: {e}"
    if proc.returncode != 0:
        if "unrecognized subcommand" in proc.stderr:
            return "skip", ("`stele archive-schema` does not exist yet (functions/archiver/src/schema.rs and the CLI "
                            "subcommand are being written); the Glue columns cannot be compared until it does")
        return "fail", f"{' '.join(command)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"
    try:
        schema = json.loads(proc.stdout)
    except ValueError as e:
        return "fail", f"{' '.join(command)} printed no JSON ({e}): {proc.stdout[:500]!r}"
    for key in ("columns", "partition_keys", "layout"):
        if key not in schema:
            return "fail", f"archive-schema output has no {key!r}: {schema!r}"
    return "ok", schema


def archiver_schema():
    status, value = run_archive_schema(archive_schema_command())
    if status == "skip":
        pytest.skip(value)
    if status == "fail":
        pytest.fail(value)
    return value


def glue_table(module):
    return module.resource("aws_glue_catalog_table", "audit_events")


def glue_columns(module):
    sd = block(glue_table(module), "storage_descriptor")
    return [(c["name"], c["type"]) for c in blocks(sd, "columns")]


def glue_partition_keys(module):
    return [(k["name"], k["type"]) for k in blocks(glue_table(module), "partition_keys")]


def glue_layout(module):
    """storage.location.template after the table location, HCL's $${ escape undone."""
    template = glue_table(module)["parameters"]["storage.location.template"]
    assert template.startswith("${local.archive_location}"), template
    return template[len("${local.archive_location}"):].replace("$${", "${")


def test_glue_table_matches_the_archivers_parquet_schema(module):
    schema = archiver_schema()
    expected_columns = [(c["name"], c["glue_type"]) for c in schema["columns"]]
    assert glue_columns(module) == expected_columns
    expected_keys = [(k["name"], k["glue_type"]) for k in schema["partition_keys"]]
    assert glue_partition_keys(module) == expected_keys
    assert glue_layout(module) == schema["layout"]
    partition_names = {name for name, _ in expected_keys}
    assert not partition_names & {name for name, _ in expected_columns}, "the Parquet files hold no partition columns"


def test_partition_keys_and_projection_match_the_layout(module):
    assert glue_partition_keys(module) == [("tenant_id", "string"), ("dt", "string")]
    assert glue_layout(module) == LAYOUT
    assert not {"tenant_id", "dt"} & {name for name, _ in glue_columns(module)}
    p = glue_table(module)["parameters"]
    assert p["projection.enabled"] == "true"
    assert p["projection.tenant_id.type"] == "injected"
    assert p["projection.dt.type"] == "date"
    assert p["projection.dt.format"] == "yyyy-MM-dd"
    assert p["projection.dt.range"] == "2020-01-01,NOW"
    assert p["projection.dt.interval.unit"] == "DAYS"


def test_table_reads_parquet_under_the_archive_prefix(module):
    assert module.locals["archive_location"] == "s3://${aws_s3_bucket.archive.id}/${var.archive_prefix}/"
    t = glue_table(module)
    assert t["table_type"] == "EXTERNAL_TABLE"
    assert is_ref(t["database_name"], "aws_glue_catalog_database.this.name")
    sd = block(t, "storage_descriptor")
    assert is_ref(sd["location"], "local.archive_location")
    assert sd["input_format"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    assert block(sd, "ser_de_info")["serialization_library"] == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    # The manifests (<prefix>/_manifests/...) are JSON; projection never lists them as partitions.
    assert not glue_layout(module).startswith("_")


# --- the skip/fail rule of the schema command itself ------------------------------------------

def _fake(tmp_path, body):
    script = tmp_path / "stele"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return [str(script), "archive-schema"]


def test_schema_command_is_skipped_only_while_the_subcommand_is_missing(tmp_path):
    missing = _fake(tmp_path, "echo \"error: unrecognized subcommand 'archive-schema'\" >&2; exit 2")
    assert run_archive_schema(missing)[0] == "skip"
    broken = _fake(tmp_path, "echo 'error: could not compile stele' >&2; exit 101")
    assert run_archive_schema(broken)[0] == "fail"
    silent = _fake(tmp_path, "exit 0")
    assert run_archive_schema(silent)[0] == "fail"
    assert run_archive_schema([str(tmp_path / "absent"), "archive-schema"])[0] == "fail"
    good = _fake(tmp_path, "echo '{\"columns\":[],\"partition_keys\":[],\"layout\":\"x\"}'")
    assert run_archive_schema(good) == ("ok", {"columns": [], "partition_keys": [], "layout": "x"})
