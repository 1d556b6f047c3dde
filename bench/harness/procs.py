"""Processes: starting the ones the benchmark owns, waiting for HTTP, and
reading memory from /proc.

Every process started here gets its own process group, so stopping it also
stops whatever it started (forked workers, the watchdog's upstream)."""

import http.client
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

from .load import POST_BODY


def start(argv, env=None, cwd=None, log=None):
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen(
        argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
    )


def stop(proc, grace=10.0):
    """SIGTERM the process group, then SIGKILL it after `grace` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=5)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_status(host, port, path="/", timeout=2.0):
    """Status of one GET on a fresh connection, or None when not answering."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return None
    finally:
        conn.close()


def sample(url, post_json=False):
    """One request, for the report when a load run saw errors."""
    data = POST_BODY.encode() if post_json else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if post_json else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return f"{resp.status} {resp.read(200)!r}"
    except urllib.error.HTTPError as e:
        return f"{e.code} {e.read(200)!r}"
    except OSError as e:
        return f"no answer: {e}"


def wait_200(host, port, path="/", limit=60.0, proc=None, interval=0.002):
    """Poll until GET answers 200; returns the seconds it took. Raises when
    `limit` passes or `proc` exits first."""
    started = time.monotonic()
    while True:
        if get_status(host, port, path) == 200:
            return time.monotonic() - started
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[0]} exited with {proc.returncode} before answering")
        if time.monotonic() - started > limit:
            raise TimeoutError(f"http://{host}:{port}{path} did not answer 200 within {limit:.0f} s")
        time.sleep(interval)


def table():
    """pid -> (ppid, comm) for every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may contain spaces and parentheses: split at the last ')'.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        out[int(entry)] = (ppid, comm)
    return out


def descendants(root, procs=None):
    procs = procs if procs is not None else table()
    children = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def memory_kb(pid):
    """(rss, pss) in KiB; zeros for a process that is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def tree_memory(root):
    """RSS and PSS (KiB) summed over `root` and its descendants."""
    pids = [root] + descendants(root)
    rss = pss = 0
    for pid in pids:
        r, p = memory_kb(pid)
        rss += r
        pss += p
    return {"rss_kb": rss, "pss_kb": pss, "processes": len(pids)}


def environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            out[k.decode(errors="replace")] = v.decode(errors="replace")
    return out
