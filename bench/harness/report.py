"""Derived numbers (ratios, issue #6's targets) and the Markdown report.
Every ratio divides two numbers measured in the same run."""

MB = 1024.0


def point(results, target, handler, c):
    for p in results.get("throughput", []):
        if p["target"] == target and p["handler"] == handler and p["concurrency"] == c:
            return p
    return None


def ratio(results, num, den, handler, c, field="rps"):
    a, b = point(results, num, handler, c), point(results, den, handler, c)
    if not a or not b or not b[field]:
        return None
    return a[field] / b[field]


# (key, text, numerator target, denominator target)
COMPARISONS = [
    ("python_vs_bare", "gateway Python / bare Python server", "gateway-python", "bare-python"),
    ("python_vs_kubeless", "gateway Python / Kubeless Python pattern", "gateway-python", "kubeless-python"),
    ("nodejs_vs_bare", "gateway Node.js / bare Node.js `http`", "gateway-nodejs", "bare-nodejs"),
    ("nodejs_vs_watchdog", "gateway Node.js / of-watchdog pattern + Node.js", "gateway-nodejs", "watchdog-nodejs"),
    ("python_gateway_vs_host", "gateway Python / runtime host on its own port", "gateway-python", "host-python"),
    ("nodejs_gateway_vs_host", "gateway Node.js / runtime host on its own port", "gateway-nodejs", "host-nodejs"),
]


def derive(results):
    conc = results["settings"]["concurrency"]
    ratios = {}
    for key, text, num, den in COMPARISONS:
        for handler in ("hello", "echo"):
            row = {str(c): ratio(results, num, den, handler, c) for c in conc}
            if any(v is not None for v in row.values()):
                ratios[f"{key}.{handler}"] = {"text": text, "handler": handler, "by_concurrency": row}
    results["ratios"] = ratios
    results["targets"] = targets(results)


def server_share_kb(results):
    """What one more function adds to the `kubeless server` process (its
    in-process runtime host, route, store entry): the server's growth over
    the N-function run divided by N. Conservative: the growth includes
    whatever earlier sections left in the allocator."""
    sc = results.get("scale")
    idle = results.get("server_idle_rss_kb")
    if not sc or idle is None or not sc["functions"]:
        return None
    return max(sc["server_rss_kb"] - idle, 0) / sc["functions"]


def targets(results):
    """Issue #6's targets against this run's numbers (hello handler)."""
    out = []
    c_mid = 16 if 16 in results["settings"]["concurrency"] else max(results["settings"]["concurrency"])
    c_top = max(results["settings"]["concurrency"])

    def add(text, value, goal, ok, unit=""):
        out.append({"target": text, "measured": value, "goal": goal, "met": ok, "unit": unit})

    r = ratio(results, "gateway-python", "kubeless-python", "hello", c_mid)
    add(f"Python hello req/s vs Kubeless pattern, c={c_mid}", r, ">= 50x", r is not None and r >= 50, "x")
    p = point(results, "gateway-python", "hello", c_top)
    add(f"Python hello p99 at c={c_top}", p and p["p99_ms"], "< 5 ms", bool(p) and p["p99_ms"] < 5, "ms")
    r = ratio(results, "gateway-nodejs", "watchdog-nodejs", "hello", c_mid)
    add(f"Node.js hello req/s vs of-watchdog pattern, c={c_mid}", r, ">= 1.5x", r is not None and r >= 1.5, "x")
    r = ratio(results, "gateway-nodejs", "bare-nodejs", "hello", c_mid)
    add(f"Node.js hello req/s vs bare Node.js, c={c_mid}", r, ">= 0.5x", r is not None and r >= 0.5, "x")
    for fam in ("python", "nodejs"):
        p = point(results, f"gateway-{fam}", "hello", c_top)
        tail = p["p99_ms"] / p["p50_ms"] if p and p["p50_ms"] else None
        add(f"{fam} hello p99/p50 at c={c_top}", tail, "<= 5x", tail is not None and tail <= 5, "x")
    py_rt = next((rt for rt, i in results["runtimes"]["chosen"].items() if i["language"] == "python"), None)
    st = results.get("startup", {}).get(py_rt)
    add("Python deploy to first response (cold)", st and st["cold_ms"], "< 150 ms", bool(st) and st["cold_ms"] < 150, "ms")
    mem = results.get("idle_memory", {}).get(py_rt)
    share = server_share_kb(results)
    v = mem and (mem["rss_kb"] + (share or 0)) / MB
    what = "worker + its share of the server (runtime host)" if share is not None else "worker, without the server's share"
    add(f"Python idle RSS per function: {what}", v, "< 25 MB", bool(mem) and v < 25, "MB")
    sc = results.get("scale")
    v = sc and sc["ls_ms"]["p50"]
    add(f"`function ls` with {sc['functions'] if sc else '?'} functions (p50)", v, "< 100 ms", bool(sc) and v < 100, "ms")
    return out


# -- Markdown ----------------------------------------------------------------


def num(v, digits=0, unit=""):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}{unit}"


def cell(p):
    if not p:
        return "–"
    errs = p["non2xx"] + p["socket_errors"]
    flag = f" ⚠{errs} err" if errs else ""
    return f"{p['rps']:,.0f} ({p['p50_ms']:.2f} / {p['p99_ms']:.2f}){flag}"


def markdown(results):
    m, s = results["machine"], results["settings"]
    conc = s["concurrency"]
    lines = [
        f"# kubeless benchmark ({s['mode']} run)",
        "",
        f"{m['date']} · {m['nproc']} CPUs, {m['cpu']} · {m['memory_gib']:.1f} GiB RAM · {m['kernel']} "
        f"· load average {m['load'][0]:.1f} at start · {m['python']} · Node.js {m['node']} · {m['wrk']} "
        f"· binaries: {s.get('binaries', '?')}",
        "",
        f"One run, {s['duration']} s per point after a {s['warmup']} s warm-up, wrk on 127.0.0.1 on the same machine "
        "(the load generator shares the CPUs). The machine is shared and noisy: compare ratios within this run, "
        "not numbers across runs.",
        "",
        "## Throughput: req/s (p50 / p99 latency, ms)",
        "",
        "| server | handler | " + " | ".join(f"c={c}" for c in conc) + " |",
        "|---|---|" + "---|" * len(conc),
    ]
    seen = []
    for p in results.get("throughput", []):
        key = (p["target"], p["handler"])
        if key in seen:
            continue
        seen.append(key)
        cells = " | ".join(cell(point(results, p["target"], p["handler"], c)) for c in conc)
        lines.append(f"| {p['label']} | {p['handler']} | {cells} |")

    lines += ["", "## Ratios (throughput, same run)", "", "| comparison | handler | " + " | ".join(f"c={c}" for c in conc) + " |"]
    lines.append("|---|---|" + "---|" * len(conc))
    for r in results.get("ratios", {}).values():
        cells = " | ".join(num(r["by_concurrency"][str(c)], 2, "×") for c in conc)
        lines.append(f"| {r['text']} | {r['handler']} | {cells} |")

    lines += [
        "",
        "## Start-up and idle memory",
        "",
        "| server | deploy/start to first 200 | with artifact cache warm | idle RSS (processes) | idle PSS |",
        "|---|---|---|---|---|",
    ]
    for rt, st in results.get("startup", {}).items():
        mem = results.get("idle_memory", {}).get(rt, {})
        lines.append(
            f"| kubeless {rt} (deploy; its workers, the host runs in the server) | {num(st['cold_ms'], 0, ' ms')} | {num(st['warm_ms'], 0, ' ms')} "
            f"| {num(mem.get('rss_kb', 0) / MB, 1, ' MB')} ({mem.get('processes', '–')}) | {num(mem.get('pss_kb', 0) / MB, 1, ' MB')} |"
        )
    for key, st in results.get("peer_startup", {}).items():
        lines.append(
            f"| {st['label']} (process start) | {num(st['start_ms'], 0, ' ms')} | – "
            f"| {num(st['rss_kb'] / MB, 1, ' MB')} ({st['processes']}) | {num(st['pss_kb'] / MB, 1, ' MB')} |"
        )

    sc = results.get("scale")
    if sc:
        ready = num(sc["all_ready_s"], 1, " s") if sc["all_ready_s"] is not None else f"only {sc['ready']} Ready"
        lines += [
            "",
            f"## {sc['functions']} functions ({sc['runtime']}, hello world)",
            "",
            "| what | measured |",
            "|---|---|",
            f"| deploys ({sc['deploy_method']}) | {sc['functions']} accepted in {num(sc['deploy_accept_s'], 2, ' s')} ({num(sc['deploys_per_s'], 0, '/s')}) |",
            f"| all Ready (first POST to last Ready) | {ready} |",
            f"| `kubeless server` process (runtime hosts included) | {num(sc['server_rss_kb'] / MB, 1, ' MB')} RSS; with no function {num((results.get('server_idle_rss_kb') or 0) / MB, 1, ' MB')}; {num((server_share_kb(results) or 0) / MB, 2, ' MB')} per function |",
            f"| all function processes ({sc['instance_processes']} workers) | {num(sc['instances_rss_kb'] / MB, 0, ' MB')} RSS, {num(sc['instances_pss_kb'] / MB, 0, ' MB')} PSS ({num(sc['instances_rss_kb'] / MB / max(sc['functions'], 1), 1, ' MB')} RSS per function) |",
            f"| `kubeless function ls` ({sc['ls_rows']} rows), CLI process included | p50 {num(sc['ls_ms']['p50'], 1, ' ms')}, max {num(sc['ls_ms']['max'], 1, ' ms')} ({sc['ls_ms']['runs']} runs) |",
            f"| list API (`GET .../functions`) | p50 {num(sc['api_list_ms']['p50'], 1, ' ms')}, max {num(sc['api_list_ms']['max'], 1, ' ms')} |",
        ]

    lines += ["", "## Issue #6 targets (hello world)", "", "| target | measured | goal | met |", "|---|---|---|---|"]
    for t in results.get("targets", []):
        unit = t["unit"]
        v = num(t["measured"], 2 if unit == "x" else 1, "×" if unit == "x" else f" {unit}")
        lines.append(f"| {t['target']} | {v} | {t['goal']} | {'yes' if t['met'] else '**no**'} |")

    rts = results.get("runtimes", {}).get("chosen", {})
    lines += ["", "Runtimes listed by the server: " + ", ".join(f"{rt} ({i['status']})" for rt, i in rts.items()) + "."]
    for note in results.get("notes", []):
        lines.append("")
        lines.append(note)
    return "\n".join(lines) + "\n"
