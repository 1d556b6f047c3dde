"""The platform under test: a real `kubeless server` in a temporary
`$KUBELESS_HOME`, driven through its local API (and the CLI where the CLI's
own cost is what is measured)."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from . import procs

FUNCTIONS = "/apis/kubeless.io/v1beta1/namespaces/{ns}/functions"


class ApiError(RuntimeError):
    pass


class Server:
    def __init__(self, bin_dir):
        self.bin_dir = Path(bin_dir)
        self.home = Path(tempfile.mkdtemp(prefix="kubeless-bench-"))
        self.log = self.home / "server.log"
        self.proc = None
        self.config = None

    # -- life cycle ---------------------------------------------------------

    def start(self, limit=30.0):
        argv = [str(self.bin_dir / "kubeless"), "server", "--api-addr", "127.0.0.1:0", "--gateway-addr", "127.0.0.1:0"]
        self.proc = procs.start(argv, env=self.env(), log=self.log)
        deadline = time.monotonic() + limit
        cfg_path = self.home / "config.json"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kubeless server exited with {self.proc.returncode}:\n{self.tail_log()}")
            if cfg_path.exists():
                try:
                    self.config = json.loads(cfg_path.read_text())
                    if self.request("GET", "/healthz", auth=False, raw=True) == b"ok":
                        return
                except (ValueError, OSError, ApiError):
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"kubeless server did not come up within {limit:.0f} s:\n{self.tail_log()}")
            time.sleep(0.05)

    def stop(self, grace=60.0):
        """SIGTERM the server (it stops every instance), then kill whatever
        is left of its process tree."""
        if self.proc is None:
            return
        leftovers = procs.descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc = None

    def cleanup(self):
        shutil.rmtree(self.home, ignore_errors=True)

    def env(self):
        env = dict(os.environ)
        env["KUBELESS_HOME"] = str(self.home)
        for var in ("KUBELESS_SERVER", "KUBELESS_TOKEN", "KUBELESS_GATEWAY", "KUBELESS_BACKEND"):
            env.pop(var, None)
        return env

    def tail_log(self, lines=30):
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # -- addresses ------------------------------------------------------------

    @property
    def gateway(self):
        u = urllib.parse.urlsplit(self.config["gateway"])
        return u.hostname, u.port

    def gateway_url(self, name, ns="default"):
        host, port = self.gateway
        return f"http://{host}:{port}/{ns}/{name}"

    # -- local API ---------------------------------------------------------------

    def request(self, method, path, body=None, auth=True, raw=False, timeout=30.0):
        headers = {}
        if auth:
            headers["Authorization"] = "Bearer " + self.config["token"]
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.config["server"] + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as e:
            raise ApiError(f"{method} {path}: {e.code} {e.read().decode(errors='replace').strip()}") from None
        return payload if raw else json.loads(payload)

    def runtimes(self):
        return self.request("GET", "/api/v1/config")["runtimes"]

    def deploy(self, name, runtime, handler, source, ns="default"):
        """Create a Function the way `kubeless function deploy` does."""
        fn = {
            "apiVersion": "kubeless.io/v1beta1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": ns, "labels": {"created-by": "kubeless", "function": name}},
            "spec": {
                "handler": handler,
                "function": source,
                "function-content-type": "text",
                "checksum": "sha256:" + hashlib.sha256(source.encode()).hexdigest(),
                "runtime": runtime,
                "timeout": "180",
                "deps": "",
            },
        }
        return self.request("POST", FUNCTIONS.format(ns=ns), fn)

    def functions(self, ns="default"):
        return self.request("GET", FUNCTIONS.format(ns=ns))["items"]

    def cli(self, *args, timeout=60.0):
        """Run `kubeless ARGS` against this server; returns seconds taken."""
        started = time.monotonic()
        done = subprocess.run(
            [str(self.bin_dir / "kubeless"), *args],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
        took = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"kubeless {' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()}")
        return took, done.stdout.decode(errors="replace")

    # -- instances ------------------------------------------------------------------

    def instances(self):
        """pid -> function name (`<ns>_<name>`), for every process the
        server started for a function: the worker processes of a runtime
        host that runs inside the server (every language runtime), or the
        host process of an image or custom-runtime instance. Each has the
        instance's HOME, `<home>/server/run/<ns>_<name>_<set>_<slot>/home`."""
        out = {}
        table = procs.table()
        for pid in procs.descendants(self.proc.pid, table):
            if table[pid][0] != self.proc.pid:
                continue
            home = procs.environ(pid).get("HOME", "")
            scratch = Path(home).parent.name
            name = scratch.rsplit("_", 2)[0] if scratch.count("_") >= 2 else scratch
            out[pid] = name
        return out

    def instance_pids(self, name, ns="default"):
        pids = [pid for pid, fn in self.instances().items() if fn == f"{ns}_{name}"]
        if not pids:
            raise LookupError(f"no instance process for {ns}/{name}")
        return pids

    def instance_of(self, name, ns="default"):
        return self.instance_pids(name, ns)[0]

    def instance_port(self, name, ns="default"):
        pid = self.instance_of(name, ns)
        port = procs.environ(pid).get("FUNC_PORT")
        if not port:
            raise LookupError(f"instance of {ns}/{name} (pid {pid}) has no FUNC_PORT")
        return int(port)
