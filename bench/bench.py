#!/usr/bin/env python3
"""The benchmark run: a real `kubeless server` against bare servers and the
peers' patterns, on 127.0.0.1, in one process tree that it cleans up.

Normally started by `bench/run.sh`, which installs wrk, builds the release
binaries and prepares the peers. Standard library only.
"""

import argparse
import datetime
import json
import os
import platform as pyplatform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import procs, report  # noqa: E402
from harness.platform import Server  # noqa: E402
from harness.scenarios import Run, log  # noqa: E402

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
LATEST_HEADING = "## Latest results"

MODES = {
    # seconds per point, warm-up seconds, concurrencies, functions at scale, `ls` runs
    "default": {"duration": 5, "warmup": 1, "concurrency": [1, 16, 64], "functions": 500, "ls_runs": 10},
    "quick": {"duration": 2, "warmup": 1, "concurrency": [1, 16, 64], "functions": 50, "ls_runs": 5},
    "smoke": {"duration": 1, "warmup": 0, "concurrency": [1, 16], "functions": 5, "ls_runs": 2},
}


def machine():
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])

    def version(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": mem_kb / 1024 / 1024,
        "kernel": f"Linux {pyplatform.release()}",
        "python": f"Python {pyplatform.python_version()}",
        "node": version(["node", "--version"]),
        "wrk": version(["wrk", "--version"]).split(" [")[0],
        "load": os.getloadavg(),
    }


def binaries(bin_dir):
    """`kubeless version` of the binaries under test, and where they are."""
    try:
        out = subprocess.run([str(Path(bin_dir) / "kubeless"), "version"], capture_output=True, text=True, timeout=10)
        version = " ".join(out.stdout.split())
    except (OSError, subprocess.TimeoutExpired):
        version = "unknown version"
    return f"{version} ({bin_dir})"


def publish(text):
    """Put the table under README.md's "Latest results" heading."""
    readme = BENCH / "README.md"
    head, sep, _ = readme.read_text().partition(LATEST_HEADING)
    if sep:
        body = text.split("\n", 2)[2].replace("\n## ", "\n### ")  # own title dropped, sections nested
        readme.write_text(head + sep + "\n\n`bench/run.sh` writes this section.\n\n" + body)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=MODES, default="default")
    p.add_argument("--bin-dir", required=True, help="directory with the kubeless and kubeless-runtime binaries")
    p.add_argument("--kubeless-python", required=True, help="python of the venv with bottle and cherrypy")
    p.add_argument("--watchdog", required=True, help="the built watchdog pattern binary")
    p.add_argument("--out", default=str(RESULTS), help="where latest.md/json go")
    p.add_argument("--duration", type=int, help="seconds per measurement point")
    p.add_argument("--functions", type=int, help="functions deployed for the scale step")
    p.add_argument("--deploy-clients", type=int, default=8, help="concurrent API clients for the scale step")
    return p.parse_args()


def main():
    args = parse_args()
    settings = dict(MODES[args.mode], mode=args.mode)
    if args.duration:
        settings["duration"] = args.duration
    if args.functions is not None:
        settings["functions"] = args.functions
    settings.update(deploy_clients=args.deploy_clients, start_limit=60.0, idle_settle=1.0)
    settings["binaries"] = binaries(args.bin_dir)
    for tool in ("wrk", "node"):
        if not shutil.which(tool):
            sys.exit(f"error: {tool} is not installed (bench/run.sh installs wrk)")

    results = {"schema": 1, "settings": settings, "machine": machine(), "throughput": [], "notes": []}
    results["notes"].append(
        "The of-watchdog row is a Go standard-library reproduction of of-watchdog's http mode "
        "(bench/peers/watchdog): the Go module proxy does not serve github.com/openfaas/of-watchdog here. "
        "The Kubeless row reproduces `_kubeless.py` (bench/peers/kubeless_python.py) on bottle 0.12 and "
        "cherrypy 18 (Kubeless pinned cherrypy 8.9.1, which does not import on Python 3.11)."
    )
    workdir = Path(tempfile.mkdtemp(prefix="kubeless-bench-logs-"))
    started = time.monotonic()
    server = Server(args.bin_dir)
    log(f"starting kubeless server (home {server.home})")
    server.start()
    try:
        run = Run(server, settings, results, workdir)
        # What the server costs with no function, so the scale section can
        # tell each function's share of it (the runtime hosts live there).
        results["server_idle_rss_kb"] = procs.memory_kb(server.proc.pid)[0]
        run.discover()
        run.startup()
        run.platform_throughput()
        run.peer_throughput(args.kubeless_python, args.watchdog)
        if settings["functions"] > 0 and run.runtimes:
            run.scale()
    except BaseException:
        print(f"--- server log (tail) ---\n{server.tail_log()}", file=sys.stderr)
        raise
    finally:
        log("stopping kubeless server")
        server.stop()
        server.cleanup()
    results["elapsed_s"] = time.monotonic() - started

    report.derive(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = report.markdown(results)
    (out / "latest.md").write_text(text)
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    if out.resolve() == RESULTS.resolve():
        publish(text)
    shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(text)
    log(f"wrote {out / 'latest.md'} and {out / 'latest.json'} in {results['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
