//! The benchmark harness end to end, in its smoke mode: `bench/run.sh
//! --smoke` against the binaries this test run built, into a temporary
//! results directory. It checks that every step ran and the JSON report has
//! its keys, not the numbers (those are for `bench/run.sh` on a quiet
//! machine). wrk missing is a failure: `scripts/deps/bench.sh` installs it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/kubeless-e2e is two levels below the repository root")
        .to_path_buf()
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn smoke_run_writes_every_section() {
    assert!(
        on_path("wrk"),
        "wrk is missing: run scripts/setup.sh (scripts/deps/bench.sh installs it)"
    );
    let root = repo_root();
    let out = tempfile::tempdir().expect("results dir");
    let run = Command::new("bash")
        .arg(root.join("bench/run.sh"))
        .arg("--smoke")
        .arg("--bin-dir")
        .arg(common::bin_dir())
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run bench/run.sh");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "bench/run.sh --smoke failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        run.status
    );
    let md = std::fs::read_to_string(out.path().join("latest.md")).expect("latest.md written");
    assert!(md.contains("## Throughput"), "{md}");
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("latest.json")).expect("latest.json written"),
    )
    .expect("latest.json is JSON");

    for key in [
        "machine",
        "settings",
        "runtimes",
        "throughput",
        "startup",
        "idle_memory",
        "peer_startup",
        "scale",
        "ratios",
        "targets",
    ] {
        assert!(
            json.get(key).is_some(),
            "latest.json has no {key:?}:\n{json:#}"
        );
    }
    for key in ["nproc", "cpu", "memory_gib", "date"] {
        assert!(json["machine"].get(key).is_some(), "machine.{key} missing");
    }

    // Every server was measured: the gateway and the host for Python and
    // Node.js, the bare servers and both peers.
    let targets: Vec<&str> = json["throughput"]
        .as_array()
        .expect("throughput is a list")
        .iter()
        .filter_map(|p| p["target"].as_str())
        .collect();
    for t in [
        "gateway-python",
        "gateway-nodejs",
        "host-python",
        "host-nodejs",
        "bare-python",
        "bare-nodejs",
        "kubeless-python",
        "watchdog-nodejs",
    ] {
        assert!(targets.contains(&t), "no throughput for {t}: {targets:?}");
    }
    for p in json["throughput"].as_array().expect("list") {
        assert!(
            p["rps"].as_f64().is_some_and(|r| r > 0.0),
            "a point with no throughput: {p}"
        );
        for k in ["p50_ms", "p99_ms", "concurrency", "handler"] {
            assert!(p.get(k).is_some(), "point without {k}: {p}");
        }
    }
    for (rt, st) in json["startup"].as_object().expect("startup is a map") {
        assert!(
            st["cold_ms"].as_f64().is_some() && st["warm_ms"].as_f64().is_some(),
            "{rt}: {st}"
        );
    }
    let langs: Vec<&str> = json["runtimes"]["chosen"]
        .as_object()
        .expect("chosen runtimes")
        .values()
        .filter(|i| i["status"] == "benchmarked")
        .filter_map(|i| i["language"].as_str())
        .collect();
    assert!(
        langs.contains(&"python") && langs.contains(&"nodejs"),
        "{langs:?}"
    );
    let scale = &json["scale"];
    assert_eq!(scale["functions"], 5, "{scale}");
    assert_eq!(
        scale["ready"], 5,
        "not every function became Ready: {scale}"
    );
    assert!(
        scale["server_rss_kb"].as_u64().is_some_and(|k| k > 0),
        "{scale}"
    );
    assert!(scale["ls_ms"]["p50"].as_f64().is_some(), "{scale}");
}
