"""What one benchmark run measures, step by step. Every step records into
one `results` dict (the JSON report); nothing here formats text."""

import concurrent.futures
import statistics
import time
import uuid

from . import load, peers, procs
from .platform import ApiError

# Handler sources per language family, in bench/functions. A runtime the
# server lists whose family is not here is reported as not benchmarked.
LANGUAGES = {
    "python": {"file": "handlers.py", "comment": "#", "hello": "handlers.hello", "echo": "handlers.echo"},
    "nodejs": {"file": "handlers.js", "comment": "//", "hello": "handlers.hello", "echo": "handlers.echo"},
    "ruby": {"file": "handlers.rb", "comment": "#", "hello": "handlers.hello", "echo": "handlers.echo"},
    "php": {"file": "handlers.php", "comment": "//", "hello": "handlers.hello", "echo": "handlers.echo_json"},
    "go": {"file": "handlers.go", "comment": "//", "hello": "handlers.Hello", "echo": "handlers.Echo"},
    # Java's module is its class name (io.kubeless.Handlers).
    "java": {"file": "Handlers.java", "comment": "//", "hello": "Handlers.hello", "echo": "Handlers.echo"},
}


def family(runtime):
    return runtime.rstrip("0123456789.")


def version_key(runtime):
    parts = runtime[len(family(runtime)) :].split(".")
    return tuple(int(p) if p.isdigit() else 0 for p in parts)


def choose_runtimes(listed):
    """One runtime per language family: the newest the server lists."""
    best = {}
    for rt in listed:
        fam = family(rt)
        if fam not in best or version_key(rt) > version_key(best[fam]):
            best[fam] = rt
    return dict(sorted(best.items()))


def source(language, nonce=None):
    lang = LANGUAGES[language]
    text = (peers.FUNCTIONS / lang["file"]).read_text()
    if nonce:
        # A different checksum, so the artifact cache misses.
        text += f"\n{lang['comment']} cold start {nonce}\n"
    return text


def log(msg):
    print(f"--> {msg}", flush=True)


class Run:
    def __init__(self, server, settings, results, workdir):
        self.server = server
        self.s = settings
        self.results = results
        self.workdir = workdir
        self.runtimes = {}

    # -- runtimes ------------------------------------------------------------

    def discover(self):
        listed = self.server.runtimes()
        chosen = choose_runtimes(listed)
        info = {}
        for fam, rt in chosen.items():
            if fam in LANGUAGES:
                self.runtimes[fam] = rt
                info[rt] = {"language": fam, "status": "benchmarked"}
            else:
                info[rt] = {"language": fam, "status": "not benchmarked: no handler in bench/functions"}
        self.results["runtimes"] = {"listed": listed, "chosen": info}
        log("runtimes: " + ", ".join(f"{rt} ({i['status']})" for rt, i in info.items()))

    def fail_runtime(self, fam, why):
        rt = self.runtimes.pop(fam)
        self.results["runtimes"]["chosen"][rt]["status"] = f"failed: {why}"
        log(f"{rt} failed: {why}")

    def deploy_and_wait(self, name, fam, role, text):
        rt = self.runtimes[fam]
        started = time.monotonic()
        self.server.deploy(name, rt, LANGUAGES[fam][role], text)
        host, port = self.server.gateway
        procs.wait_200(host, port, f"/default/{name}", limit=self.s["start_limit"])
        return time.monotonic() - started

    # -- start-up and idle memory ------------------------------------------------

    def startup(self):
        out = self.results.setdefault("startup", {})
        mem = self.results.setdefault("idle_memory", {})
        for fam in list(self.runtimes):
            rt = self.runtimes[fam]
            log(f"{rt}: deploy to first response, cold and with the artifact cache warm")
            nonce = uuid.uuid4().hex
            try:
                cold = self.deploy_and_wait(f"cold-{fam}", fam, "hello", source(fam, nonce))
                warm = self.deploy_and_wait(f"warm-{fam}", fam, "hello", source(fam, nonce))
            except (ApiError, TimeoutError, RuntimeError) as e:
                self.fail_runtime(fam, str(e).splitlines()[0])
                continue
            out[rt] = {"cold_ms": cold * 1000, "warm_ms": warm * 1000}
            time.sleep(self.s["idle_settle"])
            # The function's own processes (its workers; the runtime host
            # runs inside the server, whose share per function the scale
            # section measures).
            m = {"rss_kb": 0, "pss_kb": 0, "processes": 0}
            for pid in self.server.instance_pids(f"warm-{fam}"):
                for k, v in procs.tree_memory(pid).items():
                    m[k] += v
            mem[rt] = m

    # -- throughput ------------------------------------------------------------------

    def measure(self, key, label, kind, language, handler, url, proc=None):
        post = handler == "echo"
        if self.s["warmup"]:
            load.run(url, max(self.s["concurrency"]), self.s["warmup"], post_json=post)
        for c in self.s["concurrency"]:
            point = load.run(url, c, self.s["duration"], post_json=post)
            point.update(target=key, label=label, kind=kind, language=language, handler=handler, concurrency=c)
            if point["non2xx"] or point["socket_errors"]:
                point["error_sample"] = procs.sample(url, post_json=post)
                log(f"{label} [{handler}] c={c}: {point['non2xx']} non-2xx, {point['socket_errors']} socket errors; one request now: {point['error_sample']}")
            self.results["throughput"].append(point)
            log(f"{label} [{handler}] c={c}: {point['rps']:.0f} req/s, p50 {point['p50_ms']:.2f} ms, p99 {point['p99_ms']:.2f} ms")
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{label} exited during the run")

    def platform_throughput(self):
        self.results.setdefault("throughput", [])
        for fam in list(self.runtimes):
            rt = self.runtimes[fam]
            try:
                for role in ("hello", "echo"):
                    self.deploy_and_wait(f"{role}-{fam}", fam, role, source(fam))
            except (ApiError, TimeoutError, RuntimeError) as e:
                self.fail_runtime(fam, str(e).splitlines()[0])
                continue
            for role in ("hello", "echo"):
                url = self.server.gateway_url(f"{role}-{fam}")
                self.measure(f"gateway-{fam}", f"kubeless gateway, {rt}", "gateway", fam, role, url)
            # The same instance without the gateway: what the gateway costs.
            port = self.server.instance_port(f"hello-{fam}")
            self.measure(
                f"host-{fam}", f"runtime host on its own port (no gateway routing), {rt}", "host", fam, "hello", f"http://127.0.0.1:{port}/"
            )

    def peer_throughput(self, venv_python, watchdog_bin):
        starts = self.results.setdefault("peer_startup", {})
        factories = [
            (peers.bare_python, ()),
            (peers.bare_node, ()),
            (peers.kubeless_python, (venv_python,)),
            (peers.watchdog_node, (watchdog_bin,)),
        ]
        for factory, extra in factories:
            for role in ("hello", "echo"):
                peer = factory(role, procs.free_port(), *extra)
                proc = peer.start(self.workdir / f"{peer.key}-{role}.log")
                try:
                    took = procs.wait_200("127.0.0.1", peer.port, "/", limit=self.s["start_limit"], proc=proc)
                    if role == "hello":
                        time.sleep(self.s["idle_settle"])
                        m = procs.tree_memory(proc.pid)
                        m.update(label=peer.label, start_ms=took * 1000)
                        starts[peer.key] = m
                    self.measure(peer.key, peer.label, "peer", peer.language, role, f"http://127.0.0.1:{peer.port}/", proc)
                finally:
                    procs.stop(proc)

    # -- many functions ----------------------------------------------------------------

    def scale(self):
        n = self.s["functions"]
        fam = "python" if "python" in self.runtimes else next(iter(self.runtimes))
        rt = self.runtimes[fam]
        log(f"removing the benchmark's functions, then deploying {n} {rt} functions")
        for fn in self.server.functions():
            self.server.request("DELETE", f"/apis/kubeless.io/v1beta1/namespaces/default/functions/{fn['metadata']['name']}")
        deadline = time.monotonic() + 60
        while self.server.instances() and time.monotonic() < deadline:
            time.sleep(0.2)

        text = source(fam)
        names = [f"s-{i:04d}" for i in range(n)]
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(self.s["deploy_clients"]) as pool:
            list(pool.map(lambda name: self.server.deploy(name, rt, LANGUAGES[fam]["hello"], text), names))
        accepted = time.monotonic() - started
        log(f"{n} deploys accepted in {accepted:.2f} s; waiting until every function is Ready")

        limit = max(120.0, n * 0.6)
        ready = 0
        while True:
            items = self.server.functions()
            ready = sum(1 for f in items if (f.get("status") or {}).get("phase") == "Ready")
            if ready >= n:
                break
            if time.monotonic() - started > limit:
                break
            time.sleep(0.5)
        all_ready = time.monotonic() - started
        time.sleep(self.s["idle_settle"])

        instance_pids = list(self.server.instances())
        inst = {"rss_kb": 0, "pss_kb": 0, "processes": 0}
        for pid in instance_pids:
            m = procs.tree_memory(pid)
            for k in inst:
                inst[k] += m[k]
        server_rss, server_pss = procs.memory_kb(self.server.proc.pid)

        ls_times = []
        for _ in range(self.s["ls_runs"]):
            took, out = self.server.cli("function", "ls")
            ls_times.append(took * 1000)
        listed = len(out.strip().splitlines()) - 1
        api_times = []
        for _ in range(self.s["ls_runs"]):
            t = time.monotonic()
            self.server.functions()
            api_times.append((time.monotonic() - t) * 1000)

        self.results["scale"] = {
            "functions": n,
            "runtime": rt,
            "deploy_method": f"local API (POST), {self.s['deploy_clients']} concurrent clients, identical code",
            "deploy_accept_s": accepted,
            "deploys_per_s": n / accepted if accepted else None,
            "ready": ready,
            "all_ready_s": all_ready if ready >= n else None,
            "server_rss_kb": server_rss,
            "server_pss_kb": server_pss,
            "instances": len(instance_pids),
            "instances_rss_kb": inst["rss_kb"],
            "instances_pss_kb": inst["pss_kb"],
            "instance_processes": inst["processes"],
            "ls_rows": listed,
            "ls_ms": {"p50": statistics.median(ls_times), "max": max(ls_times), "runs": len(ls_times)},
            "api_list_ms": {"p50": statistics.median(api_times), "max": max(api_times), "runs": len(api_times)},
        }
        log(
            f"{ready}/{n} Ready after {all_ready:.1f} s; server {server_rss / 1024:.1f} MB RSS, "
            f"instances {inst['rss_kb'] / 1024:.0f} MB RSS in {inst['processes']} processes; "
            f"`function ls` p50 {statistics.median(ls_times):.0f} ms"
        )
