"""`scripts/package-lambdas --check`: the arm64 zips' sizes, and the cold-start init time (start
to the first Runtime API `next` request) of each function, native x86-64 release build against
arm64 bootstrap under qemu-aarch64, through cargo-lambda's Runtime API emulator; then one real
invocation of the arm64 ingest bootstrap (API Gateway v2 `GET /v1/health`). Prints a markdown
table for docs/BENCHMARKS.md.

No database or AWS endpoint is needed: the functions get their Terraform environment with
placeholder resources; DATABASE_URL points at a closed local port, so the batch-writer's
best-effort migration at start fails at once (a real cold start also runs that check).
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lambda_rt  # noqa: E402
import payloads  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PACKAGES = ("stele-ingest", "stele-batch-writer", "stele-archiver")
CREDS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_SESSION_TOKEN": "test"}
ENV = {  # Terraform's environment of each function (lambda.tf), with placeholder resources
    "stele-ingest": {"STELE_STREAM_NAME": "stele-events", "STELE_TENANT_CLAIM": "tenant_id",
                     "STELE_MAX_LATENESS_SECS": "259200", "STELE_MAX_SKEW_SECS": "300",
                     "STELE_PUT_DEADLINE_MS": "5000", "RUST_LOG": "info",
                     "STELE_TENANT_QUOTA_EVENTS_PER_SEC": "1000", "STELE_TENANT_QUOTA_BURST": "2000",
                     "STELE_TENANT_QUOTA_TABLE": "stele-tenant-quotas"},
    "stele-batch-writer": {"DATABASE_URL": "postgres://stele@127.0.0.1:9/stele", "STELE_DB_TLS": "disable",
                           "STELE_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/stele-batch-writer-dlq",
                           "STELE_PARTITION_DAYS_AHEAD": "7", "RUST_LOG": "info"},
    "stele-archiver": {"DATABASE_URL": "postgres://stele@127.0.0.1:9/stele", "STELE_DB_TLS": "disable",
                       "STELE_ARCHIVE_BUCKET": "stele-archive", "STELE_ARCHIVE_PREFIX": "audit",
                       "STELE_RETENTION_DAYS": "30", "STELE_MAX_LATENESS_SECS": "259200",
                       "STELE_DROP_AFTER_ARCHIVE": "true",
                       # kinesis_retention_hours (168) + ceil(max_lateness_secs / 3600) (72)
                       "STELE_DEDUP_WINDOW_HOURS": "336", "STELE_STREAM_NAME": "stele-events",
                       "RUST_LOG": "info"},
}


# The zips' bootstrap is a dynamic glibc executable (interpreter /lib/ld-linux-aarch64.so.1, as on
# provided.al2023): qemu-user looks for it and libc under Debian's aarch64 cross sysroot.
SYSROOT = "/usr/aarch64-linux-gnu"


def qemu():
    """The qemu-aarch64 command line that runs an arm64 glibc executable on this host."""
    if not os.path.exists(os.path.join(SYSROOT, "lib", "ld-linux-aarch64.so.1")):
        sys.exit(f"cold_start: no aarch64 glibc under {SYSROOT} "
                 "(apt-get install libc6-arm64-cross)")
    for name in ("qemu-aarch64-static", "qemu-aarch64"):
        path = shutil.which(name)
        if path:
            return [path, "-L", SYSROOT]
    sys.exit("cold_start: qemu-aarch64 not found (apt-get install qemu-user-static)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target-dir", default=os.path.join(ROOT, "target"))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    cargo_lambda = shutil.which("cargo-lambda") or sys.exit("cold_start: cargo-lambda not on PATH")
    work = tempfile.mkdtemp(prefix="stele-cold-")
    rows = []
    health = "not run"
    for pkg in PACKAGES:
        zpath = os.path.join(ROOT, "target", "lambda", pkg, "bootstrap.zip")
        with zipfile.ZipFile(zpath) as z:
            z.extract("bootstrap", os.path.join(work, pkg))
            unpacked = z.getinfo("bootstrap").file_size
        arm = os.path.join(work, pkg, "bootstrap")
        os.chmod(arm, 0o755)
        native = os.path.join(args.target_dir, "release", pkg)
        times = {}
        for label, cmd in (("x86-64 native", [native]), ("arm64 qemu", [*qemu(), arm])):
            if not os.path.exists(cmd[-1]):
                print(f"cold_start: {cmd[-1]} missing (cargo build --release -p {pkg}); skipped", file=sys.stderr)
                continue
            samples = []
            for i in range(args.runs):
                env = lambda_rt.lambda_environment(pkg, "")
                env.update(CREDS)
                env.update(ENV[pkg])
                f = lambda_rt.Function(cmd, env, cargo_lambda, ROOT, work, f"{pkg}-{label.split()[0]}-{i}")
                try:
                    samples.append(f.wait_ready())
                    if pkg == "stele-ingest" and label.startswith("arm64") and i == 0:
                        status, body = f.invoke(payloads.api_gateway_v2("GET", "/v1/health"))
                        assert status == 200 and body.get("statusCode") == 200, (status, body)
                        health = f"HTTP {status}, statusCode {body['statusCode']}, body {body.get('body')}"
                        print(f"arm64 ingest under qemu answered GET /v1/health: {body}", file=sys.stderr)
                finally:
                    f.stop()
            times[label] = samples
        rows.append((pkg, os.path.getsize(zpath), unpacked, times))
    print()
    print("| function | zip bytes | unpacked bytes | init, x86-64 native (median of %d) | init, arm64 under qemu (median of %d) |" % (args.runs, args.runs))
    print("|---|---:|---:|---:|---:|")
    for pkg, size, unpacked, times in rows:
        def fmt(label):
            s = times.get(label)
            return "%.0f ms (%.0f–%.0f)" % (statistics.median(s) * 1e3, min(s) * 1e3, max(s) * 1e3) if s else "n/a"
        print(f"| {pkg} | {size:,} | {unpacked:,} | {fmt('x86-64 native')} | {fmt('arm64 qemu')} |")
    print()
    print(f"arm64 stele-ingest under qemu, API Gateway v2 GET /v1/health: {health}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
