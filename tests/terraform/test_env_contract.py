"""The other direction of the deploy contract (tests/deploy starts the binaries): every environment
variable a function's code reads is either set by Terraform for that function or documented, next
to where it is read, with the default it falls back to. A variable documented as required, or
not documented at all, that Terraform does not set is a function that fails (or silently runs
differently) in AWS.
"""
import re

from conftest import REPO
from test_pipeline import FUNCTIONS, PACKAGES, env_of

# The crates whose settings each function reads at start (main.rs → from_env / from_lookup).
SOURCES = {
    "ingest": ["functions/ingest/src"],
    "batch_writer": ["functions/batch-writer/src", "crates/store/src/config.rs"],
    "archiver": ["functions/archiver/src", "crates/store/src/config.rs"],
    "checkpointer": ["functions/checkpointer/src", "crates/store/src/config.rs"],
    "query": ["functions/query/src", "crates/store/src/config.rs"],
    "export_worker": ["functions/query/src", "crates/store/src/config.rs"],
}
# Read by the process but set by the Lambda service itself (runtime contract, role credentials).
LAMBDA_SETS = re.compile(r"^(AWS_|_HANDLER$|LAMBDA_)")
NAME = re.compile(r'"((?:STELE|DATABASE|RUST)_[A-Z0-9_]+)"')
# Modules that only `stele dev` and tests use, never the Lambda binary.
NOT_IN_LAMBDA = {"functions/ingest/src/local.rs"}


def production_code(path):
    """The file without its `#[cfg(test)]` module (settings tests name variables freely)."""
    text = path.read_text()
    return text.split("#[cfg(test)]", 1)[0]


def read_by(fn):
    names, docs = {}, []
    for src in SOURCES[fn]:
        root = REPO / src
        files = [root] if root.is_file() else sorted(root.rglob("*.rs"))
        for f in files:
            rel = str(f.relative_to(REPO))
            if rel in NOT_IN_LAMBDA:
                continue
            code = production_code(f)
            for name in NAME.findall(code):
                names.setdefault(name, rel)
            if "try_from_default_env" in code:  # tracing's EnvFilter
                names.setdefault("RUST_LOG", rel)
            docs += [line.strip() for line in code.splitlines() if line.strip().startswith(("///", "//!"))]
    return names, " ".join(d.lstrip("/!").strip() for d in docs)


def documented_default(name, docs):
    """`NAME` (…) in a doc comment, where the parenthesis is a default, not `required`."""
    for m in re.finditer(r"`%s`\s*\(([^)]*)\)" % re.escape(name), docs):
        if "required" not in m.group(1):
            return m.group(1)
    # `NAME`: `value` (default, …)  /  `NAME` … (optional …)
    m = re.search(r"`%s`:?[^.;]{0,40}?\((default|optional)\b" % re.escape(name), docs)
    return m.group(1) if m else None


def documented_alternative(name, docs, set_by_terraform):
    """`NAME` documented as one of two ways to give a setting (`A` or `B`), the other set."""
    for other in set_by_terraform:
        if re.search(r"`%s`[^.;]{0,60}\bor\b[^.;]{0,60}`%s`" % (re.escape(name), re.escape(other)), docs) or re.search(
            r"`%s`[^.;]{0,60}\bor\b[^.;]{0,60}`%s`" % (re.escape(other), re.escape(name)), docs
        ):
            return other
    return None


def test_every_variable_the_code_reads_is_set_by_terraform_or_has_a_documented_default(module):
    problems = []
    for fn in FUNCTIONS:
        set_by_terraform, _ = env_of(module, fn)
        names, docs = read_by(fn)
        assert names, f"{fn}: found no environment variable read in {SOURCES[fn]}"
        for name, where in sorted(names.items()):
            if name in set_by_terraform or LAMBDA_SETS.match(name):
                continue
            if documented_default(name, docs) or documented_alternative(name, docs, set_by_terraform):
                continue
            problems.append(f"{PACKAGES[fn]} reads {name} ({where}): Terraform does not set it and no default is documented")
    assert not problems, "\n".join(problems)


def test_terraform_sets_nothing_the_code_does_not_read(module):
    for fn in FUNCTIONS:
        set_by_terraform, _ = env_of(module, fn)
        names, _ = read_by(fn)
        unread = set_by_terraform - set(names)
        assert not unread, f"{PACKAGES[fn]}: Terraform sets {sorted(unread)}, which its code never reads"
