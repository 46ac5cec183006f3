"""Shared helpers of the offline Terraform tests: parse infra/terraform with python-hcl2.

Run through `bash infra/terraform/check` (it creates .tf/venv with the pinned python-hcl2 and
sets STELE_TF_CHECK=1). Under another interpreter without python-hcl2 these tests are skipped
rather than errored, so a repository-wide pytest run elsewhere does not break on them.
"""
import os
import re
from pathlib import Path

import pytest

if os.environ.get("STELE_TF_CHECK") == "1":
    import hcl2  # must be there: the check created the venv
else:
    hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 missing: run `bash infra/terraform/check`")

from hcl2.utils import SerializationOptions  # noqa: E402  (python-hcl2 >= 8)

REPO = Path(__file__).resolve().parents[2]
TF = REPO / "infra" / "terraform"
MODULE = TF / "modules" / "stele"
EXAMPLE = TF / "examples" / "complete"

_OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


def parse_file(path):
    with open(path) as f:
        return hcl2.load(f, serialization_options=_OPTIONS)


class Config:
    """All .tf files of one Terraform directory, merged by block kind."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.files = sorted(self.directory.glob("*.tf"))
        assert self.files, f"no .tf files in {directory}"
        self.resources = {}  # (type, name) -> body
        self.data = {}  # (type, name) -> body
        self.variables = {}
        self.outputs = {}
        self.locals = {}
        self.modules = {}
        self.file_of = {}
        for f in self.files:
            doc = parse_file(f)
            for kind, target in (("resource", self.resources), ("data", self.data)):
                for block in doc.get(kind, []):
                    for rtype, named in block.items():
                        for rname, body in named.items():
                            key = (rtype, rname)
                            assert key not in target, f"{kind} {rtype}.{rname} defined twice"
                            target[key] = body
                            self.file_of[(kind,) + key] = f.name
            for block in doc.get("variable", []):
                self.variables.update(block)
            for block in doc.get("output", []):
                self.outputs.update(block)
            for block in doc.get("locals", []):
                self.locals.update(block)
            for block in doc.get("module", []):
                self.modules.update(block)

    def resource(self, rtype, name):
        assert (rtype, name) in self.resources, f"resource {rtype}.{name} missing"
        return self.resources[(rtype, name)]

    def datasource(self, rtype, name):
        assert (rtype, name) in self.data, f"data {rtype}.{name} missing"
        return self.data[(rtype, name)]

    def of_type(self, rtype):
        return {name: body for (t, name), body in self.resources.items() if t == rtype}

    def default(self, variable):
        assert variable in self.variables, f"variable {variable} missing"
        return self.variables[variable].get("default")


def block(body, key):
    """A nested block: python-hcl2 gives a list of one dict per occurrence."""
    value = body.get(key)
    assert value, f"block {key} missing"
    assert isinstance(value, list) and len(value) == 1, f"expected one {key} block, got {value!r}"
    return value[0]


def blocks(body, key):
    value = body.get(key, [])
    return value if isinstance(value, list) else [value]


def as_list(value):
    return value if isinstance(value, list) else [value]


_REF = re.compile(r"\b((?:data\.)?aws_[a-z0-9_]+\.[a-z0-9_]+|local\.[a-z0-9_]+|var\.[a-z0-9_]+)")


def refs(value):
    """Terraform references (aws_x.y, data.aws_x.y, local.z, var.z) inside a value, as a set."""
    found = set()
    for item in as_list(value):
        found.update(_REF.findall(str(item)))
    return found


def is_ref(value, target):
    """value is exactly the interpolation ${target}."""
    return str(value).strip() == "${%s}" % target


@pytest.fixture(scope="session")
def module():
    return Config(MODULE)


@pytest.fixture(scope="session")
def example():
    return Config(EXAMPLE)
