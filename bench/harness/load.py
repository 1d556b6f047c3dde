"""The load generator: runs wrk against one URL and parses its report."""

import re
import subprocess
from pathlib import Path

POST_SCRIPT = Path(__file__).resolve().parent.parent / "functions" / "post.lua"

# The body post.lua sends, for one-off requests outside wrk.
POST_BODY = '{"name":"bench","items":[1,2,3],"nested":{"ok":true}}'

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse(output):
    """The numbers of one `wrk --latency` report."""
    result = {"rps": None, "p50_ms": None, "p99_ms": None, "requests": 0, "non2xx": 0, "socket_errors": 0}
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(line.split()[1])
        elif re.match(r"^50(\.0+)?%\s", line):
            result["p50_ms"] = _ms(line.split()[1])
        elif re.match(r"^99(\.0+)?%\s", line):
            result["p99_ms"] = _ms(line.split()[1])
        elif re.match(r"^\d+ requests in", line):
            result["requests"] = int(line.split()[0])
        elif line.startswith("Non-2xx or 3xx responses:"):
            result["non2xx"] = int(line.split(":")[1])
        elif line.startswith("Socket errors:"):
            # connect N, read N, write N, timeout N
            result["socket_errors"] = sum(int(n) for n in re.findall(r"\d+", line))
    if result["rps"] is None:
        raise ValueError("wrk printed no Requests/sec line:\n" + output)
    return result


def run(url, concurrency, seconds, post_json=False):
    """One measurement point. wrk's own timeout bounds every request; the
    subprocess timeout bounds the whole run."""
    threads = min(concurrency, 2)
    cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    if post_json:
        cmd += ["-s", str(POST_SCRIPT)]
    cmd.append(url)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return parse(done.stdout)
