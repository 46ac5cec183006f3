"""Each function's environment as `terraform apply` would set it, read from the module with
python-hcl2 and rendered with the example deployment's values (examples/complete, its
terraform.tfvars.example, then the module's defaults) and the resources a test created in place
of the stack's (stream, queue, bucket, secret). Only the expression forms the module uses are
understood; anything else raises, so a new form fails the contract test instead of slipping by.
"""
import importlib.util
import json
import math
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("tf_conftest", REPO / "tests" / "terraform" / "conftest.py")
tf = importlib.util.module_from_spec(_spec)
os.environ.setdefault("STELE_TF_CHECK", "1")
_spec.loader.exec_module(tf)

FUNCTIONS = {"ingest": "stele-ingest", "batch_writer": "stele-batch-writer", "archiver": "stele-archiver",
             "checkpointer": "stele-checkpointer", "query": "stele-query",
             # The query function's binary, started as the worker by its handler (export_worker.tf).
             "export_worker": "stele-query"}


class Unrenderable(Exception):
    pass


class Renderer:
    def __init__(self, resources, module=None, example=None, tfvars=None):
        """resources: {"aws_kinesis_stream.events.name": "…", …} for the stack's resources, and
        locals that stand for one ({"db_writer_secret_arn": "arn:…"})."""
        self.module = module or tf.Config(tf.MODULE)
        self.example = example or tf.Config(tf.EXAMPLE)
        self.tfvars = tfvars if tfvars is not None else tf.parse_file(tf.EXAMPLE / "terraform.tfvars.example")
        self.resources = dict(resources)

    # --- values -------------------------------------------------------------------------
    def var(self, name):
        """A module variable: what the example passes (its own variable from the tfvars
        example, or its default), else the module's default."""
        passed = self.example.modules["stele"].get(name)
        if passed is not None:
            m = re.fullmatch(r"\$\{var\.([a-z0-9_]+)\}", str(passed))
            if not m:
                return passed
            ex_var = m.group(1)
            if ex_var in self.tfvars:
                return self.tfvars[ex_var]
            return self.example.default(ex_var)
        return self.module.default(name)

    def local(self, name):
        if name == "create_db":
            return self.var("database_mode") == "aurora"
        if name in self.resources:
            return self.resources[name]
        return self.expr(self.module.locals[name])

    # --- expressions --------------------------------------------------------------------
    def expr(self, text):
        if isinstance(text, dict):
            return {k: self.expr(v) for k, v in text.items()}
        if isinstance(text, (bool, int, float)) or text is None:
            return text
        t = str(text).strip()
        m = re.fullmatch(r"\$\{(.*)\}", t, re.S)
        if m:
            t = m.group(1).strip()
        elif "${" not in t and not re.fullmatch(r"[a-z_]+\.[a-z0-9_.]+|[a-z]+\(.*\)", t, re.S):
            return t  # a literal string
        return self._eval(t)

    def _eval(self, t):
        t = t.strip()
        if m := re.fullmatch(r'"([^"]*)"', t):
            # A template: each ${…} rendered (a literal has none).
            return re.sub(r"\$\{([^}]*)\}", lambda x: str(self._eval(x.group(1))), m.group(1))
        if m := re.fullmatch(r"tostring\((.*)\)", t, re.S):
            v = self._eval(m.group(1))
            return str(v).lower() if isinstance(v, bool) else str(v)
        if m := re.fullmatch(r"coalesce\(([^,]+),(.*)\)", t, re.S):
            first = self._eval(m.group(1))
            return first if first is not None else self._eval(m.group(2))
        if m := re.fullmatch(
            r"((?:local|var)\.[a-z0-9_]+)\s*\?\s*(\"[^\"]*\"|(?:local|var)\.[a-z0-9_]+)\s*:\s*(\"[^\"]*\"|(?:local|var)\.[a-z0-9_]+)",
            t,
        ):
            return self._eval(m.group(2) if self._eval(m.group(1)) else m.group(3))
        if m := re.fullmatch(r"jsonencode\(\{(.*)\}\)", t, re.S):
            return json.dumps(self._object(m.group(1)), separators=(",", ":"))
        if m := re.fullmatch(r"merge\((local\.[a-z0-9_]+),\s*\{(.*)\}\)", t, re.S):
            out = dict(self._eval(m.group(1)))
            out.update(self._object(m.group(2)))
            return out
        if m := re.fullmatch(r"max\((.*)\)", t, re.S):
            return max(self._eval(a) for a in _top_level_args(m.group(1)))
        if m := re.fullmatch(r"(.+?)\s\+\s(.+)", t, re.S):  # numbers only
            return self._eval(m.group(1)) + self._eval(m.group(2))
        if m := re.fullmatch(r"ceil\((.+)/\s*(\d+)\s*\)", t, re.S):
            return math.ceil(self._eval(m.group(1)) / int(m.group(2)))
        if m := re.fullmatch(r"var\.([a-z0-9_]+)", t):
            return self.var(m.group(1))
        if m := re.fullmatch(r"local\.([a-z0-9_]+)", t):
            return self.local(m.group(1))
        if re.fullmatch(r"aws_[a-z0-9_]+\.[a-z0-9_]+\.[a-z_]+", t):
            if t not in self.resources:
                raise Unrenderable(f"{t}: the test has no resource for it")
            return self.resources[t]
        if isinstance(t, str) and t in self.module.locals:
            return self.local(t)
        raise Unrenderable(f"cannot render `{t}`")

    def _object(self, body):
        out = {}
        for key, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*((?:\"[^\"]*\")|[^,}\n]+)", body):
            v = self._eval(value)
            out[key] = v if isinstance(v, dict) else (str(v).lower() if isinstance(v, bool) else v)
        return out

    # --- what the tests use -------------------------------------------------------------
    def environment(self, fn):
        """{name: value} of aws_lambda_function.<fn>'s environment."""
        variables = tf.block(self.module.resource("aws_lambda_function", fn), "environment")["variables"]
        if isinstance(variables, dict):
            env = {k: self.expr(v) for k, v in variables.items()}
        else:
            env = self.expr(variables)
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}

    def handler(self, fn):
        """aws_lambda_function.<fn>.handler (Lambda passes it to the bootstrap as _HANDLER)."""
        return str(self.expr(self.module.resource("aws_lambda_function", fn)["handler"]))

    def timeout(self, fn):
        """aws_lambda_function.<fn>.timeout, seconds."""
        return int(self.expr(self.module.resource("aws_lambda_function", fn)["timeout"]))

    def scheduler_input(self, fn="archiver"):
        target = tf.block(self.module.resource("aws_scheduler_schedule", fn), "target")
        return json.loads(self.expr(target["input"]))


def _top_level_args(text):
    """Split a call's arguments at the commas outside parentheses."""
    args, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[start:i])
            start = i + 1
    args.append(text[start:])
    return [a.strip() for a in args]
