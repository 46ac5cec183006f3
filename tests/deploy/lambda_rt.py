"""Run a Lambda `bootstrap` the way the provided.al2023 runtime does: against cargo-lambda's
Runtime API emulator (`cargo lambda watch --only-lambda-apis`, from PyPI or crates.io; not an
emulator written here), with the environment Lambda sets, and time its cold start (process start
to its first `GET …/runtime/invocation/next`). Standard library only, so that
`scripts/package-lambdas --check` can use it with any Python 3.
"""
import http.client
import http.server
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


class Emulator:
    """`cargo lambda watch --only-lambda-apis`: the Runtime API (under /.rt) and the Invoke API
    of one function, which this process starts itself."""

    def __init__(self, cargo_lambda, cwd, log_path):
        self.port = free_port()
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [cargo_lambda, "lambda", "watch", "--only-lambda-apis", "--ignore-changes",
             "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port)],
            cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc)

    @property
    def runtime_api(self):
        return f"127.0.0.1:{self.port}/.rt"

    def invoke(self, payload, timeout=120):
        """Invoke the function synchronously; returns (HTTP status, decoded JSON or text)."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/2015-03-31/functions/_/invocations",
            data=json.dumps(payload).encode(), method="POST",
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class FirstNextProxy:
    """Forwards the Runtime API to the emulator and notes when the function first asks for an
    event: that is when its initialisation is over, as Lambda's Init Duration counts it.

    It also sets each event's `Lambda-Runtime-Deadline-Ms` as Lambda does (now + the function's
    timeout, epoch milliseconds): cargo-lambda 1.9 sends a constant 600000, a deadline in 1970,
    with which the archiver would (rightly) start no work."""

    def __init__(self, upstream, timeout_secs=900):
        self.upstream = upstream  # host:port/.rt
        self.timeout_secs = timeout_secs
        self.first_next = None
        self.started = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one_request(self):
                try:
                    super().handle_one_request()
                except (ConnectionError, http.client.HTTPException):
                    # The emulator stopped under a pending long poll: the test is over.
                    self.close_connection = True

            def _forward(self):
                if "/runtime/invocation/next" in self.path and proxy.first_next is None:
                    proxy.first_next = time.monotonic()
                    proxy.started.set()
                host, _, base = proxy.upstream.partition("/")
                body = None
                if self.headers.get("content-length"):
                    body = self.rfile.read(int(self.headers["content-length"]))
                conn = http.client.HTTPConnection(host, timeout=900)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, "/" + base + self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() == "lambda-runtime-deadline-ms":
                        v = str(int((time.time() + proxy.timeout_secs) * 1000))
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def runtime_api(self):
        return f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.server.shutdown()


def lambda_environment(function_name, runtime_api, memory_mb=512, region="us-east-1"):
    """What the Lambda service sets for every provided.al2023 function (besides the role's
    credentials): the runtime's contract, not the deployment's."""
    return {
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "_HANDLER": "bootstrap",
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }


class Function:
    """One cold start of a bootstrap: emulator, timing proxy, process."""

    def __init__(self, cmd, env, cargo_lambda, cwd, log_dir, name, timeout_secs=900):
        self.emulator = Emulator(cargo_lambda, cwd, os.path.join(log_dir, f"{name}.emulator.log"))
        self.proxy = FirstNextProxy(self.emulator.runtime_api, timeout_secs)
        full_env = dict(env)
        full_env["AWS_LAMBDA_RUNTIME_API"] = self.proxy.runtime_api
        self.env = full_env
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.log = open(self.log_path, "wb")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=full_env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout=120.0):
        """Seconds from start to the first `next`; raises with the log if the process died."""
        deadline = time.monotonic() + timeout
        while not self.proxy.started.wait(0.05):
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode} during init:\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no `next` request after {timeout} s:\n{self.output()}")
        return self.proxy.first_next - self.t0

    def invoke(self, payload, timeout=120):
        return self.emulator.invoke(payload, timeout)

    def output(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proxy.stop()
        self.emulator.stop()
        self.log.close()
