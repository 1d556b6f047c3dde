//! The runtime host with the Node.js worker, driven over real HTTP.

mod common;

use std::time::Duration;

use common::{Options, client, load_failure, read_pid, start, wait_gone};
use serde_json::{Value, json};

#[test]
fn json_echo_with_event_fields() {
    let host = start(
        Options::node("app", "echo")
            .env("FUNC_TIMEOUT", "9")
            .env("FUNC_MEMORY_LIMIT", "256Mi"),
    );
    let r = client()
        .put(host.url("/p/q?a=1&a=2&b=x"))
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Event-Id", "id-1")
        .header("Event-Type", "application/json")
        .header("Event-Time", "2021-01-29 10:18:03.123456789 +0000 UTC")
        .header("Event-Namespace", "kafkatriggers.kubeless.io")
        .header("X-Custom", "yes")
        .body(r#"{"k": [1, true]}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let v: Value = r.json().unwrap();
    assert_eq!(v["data"], json!({"k": [1, true]}));
    assert_eq!(v["event-id"], "id-1");
    assert_eq!(v["event-type"], "application/json");
    assert_eq!(v["event-time"], "2021-01-29 10:18:03.123456789 +0000 UTC");
    assert_eq!(v["event-namespace"], "kafkatriggers.kubeless.io");
    assert_eq!(
        v["context"],
        json!({"function-name": "echo", "timeout": 9, "runtime": "nodejs20", "memory-limit": "256Mi"})
    );
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["path"], "/p/q");
    assert_eq!(v["url"], "/p/q?a=1&a=2&b=x");
    assert_eq!(v["query"], json!({"a": ["1", "2"], "b": "x"}));
    assert_eq!(v["header"], "yes");
    assert_eq!(v["bodyIsBuffer"], true);
    assert_eq!(
        v["cwd"],
        host.dir.path().canonicalize().unwrap().to_str().unwrap()
    );
    assert!(host.stdout.wait_for(
        "\"PUT /p/q?a=1&a=2&b=x HTTP/1.1\" 200",
        Duration::from_secs(5)
    ));
}

#[test]
fn data_rules() {
    let host = start(Options::node("app", "echo"));
    let c = client();
    let v: Value = c.get(host.url("/")).send().unwrap().json().unwrap();
    assert_eq!(v["data"], json!({}), "empty body is {{}} like Kubeless");
    assert_eq!(v["event-id"], Value::Null);
    let v: Value = c
        .post(host.url("/"))
        .header("Content-Type", "text/plain")
        .body("plain text")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["data"], "plain text");
    let r = c
        .post(host.url("/"))
        .header("Content-Type", "application/json")
        .body("{broken")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .unwrap()
            .starts_with("Invalid JSON in request body")
    );
}

#[test]
fn promise_return() {
    let host = start(Options::node("app", "promise"));
    let r = client().post(host.url("/")).body("later").send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "resolved later");
}

#[test]
fn default_export_function() {
    let host = start(Options::node("fnexport", "whatever"));
    assert_eq!(
        client().get(host.url("/")).send().unwrap().text().unwrap(),
        "default whatever"
    );
}

#[test]
fn response_object_and_return_values() {
    let host = start(Options::node("app", "answers"));
    let c = client();
    let r = c.get(host.url("/send")).send().unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["x-kind"], "response");
    assert_eq!(
        r.text().unwrap(),
        "sent",
        "what the handler sent wins over its return value"
    );
    let r = c.get(host.url("/status")).send().unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-kind"], "status");
    assert_eq!(r.text().unwrap(), r#"{"ok":true}"#);
    assert_eq!(
        c.get(host.url("/buffer"))
            .send()
            .unwrap()
            .bytes()
            .unwrap()
            .as_ref(),
        &[0, 1, 2]
    );
    let r = c.get(host.url("/undefined")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "");
    assert_eq!(
        c.get(host.url("/number")).send().unwrap().text().unwrap(),
        "42"
    );
    assert_eq!(
        c.get(host.url("/null")).send().unwrap().text().unwrap(),
        "null"
    );
    assert_eq!(
        c.get(host.url("/dep")).send().unwrap().text().unwrap(),
        "..x",
        "node_modules in the code dir"
    );
    assert_eq!(
        c.get(host.url("/relative")).send().unwrap().text().unwrap(),
        "helper"
    );
}

#[test]
fn errors_answer_500_and_the_host_survives() {
    let mut host = start(Options::node("app", "answers"));
    let c = client();
    for path in ["/raise", "/reject", "/exit"] {
        let r = c.get(host.url(path)).send().unwrap();
        assert_eq!(r.status(), 500, "{path}");
        assert_eq!(r.text().unwrap(), "Internal Server Error");
    }
    assert!(
        host.stderr.wait_for("Error: kaput", Duration::from_secs(5)),
        "stack in the function log"
    );
    assert!(host.is_running());
    assert_eq!(c.get(host.url("/")).send().unwrap().text().unwrap(), "ok");
    let metrics = c.get(host.url("/metrics")).send().unwrap().text().unwrap();
    assert!(
        metrics.contains("function_failures_total{method=\"GET\"} 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("function_calls_total{method=\"GET\"} 4\n"),
        "{metrics}"
    );
}

#[test]
fn timeout_replaces_a_stuck_worker() {
    let host = start(Options::node("app", "answers").env("FUNC_TIMEOUT", "1"));
    let r = client().get(host.url("/slow")).send().unwrap();
    assert_eq!(r.status(), 408);
    assert_eq!(r.text().unwrap(), "Timeout while processing the function");
    let pid = read_pid(&host.path("slow.pid"), Duration::from_secs(1)).unwrap();
    assert!(wait_gone(pid, Duration::from_secs(5)));
    assert_eq!(
        client().get(host.url("/")).send().unwrap().text().unwrap(),
        "ok"
    );
}

#[test]
fn module_level_code_runs_once() {
    let host = start(Options::node("app", "echo").env("KUBELESS_WORKERS", "1"));
    let mut last = Value::Null;
    for _ in 0..4 {
        last = client().get(host.url("/")).send().unwrap().json().unwrap();
    }
    assert_eq!(last["calls"], 4);
    assert_eq!(last["loads"], 1);
    assert_eq!(
        std::fs::read_to_string(host.path("loads.txt"))
            .unwrap()
            .lines()
            .count(),
        1
    );
}

#[test]
fn load_failures_exit_3() {
    let (code, stderr) = load_failure(Options::node("app", "nope")).unwrap();
    assert_eq!(code, 3);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("kubeless-runtime:"))
        .collect();
    assert_eq!(
        lines,
        ["kubeless-runtime: cannot load handler app.nope: module \"app\" has no function \"nope\""],
        "{stderr}"
    );
    let (code, stderr) = load_failure(Options::node("broken", "foo")).unwrap();
    assert_eq!(code, 3);
    assert!(
        stderr.contains(
            "cannot load handler broken.foo: SyntaxError: Unexpected token ')' (broken.js, line 1)"
        ),
        "{stderr}"
    );
    let (code, stderr) = load_failure(Options::node("missing", "foo")).unwrap();
    assert_eq!(code, 3);
    assert!(
        stderr.contains("cannot load handler missing.foo: module \"missing\" not found in"),
        "{stderr}"
    );
}

#[test]
fn sigterm_leaves_no_workers() {
    let mut host = start(Options::node("app", "echo"));
    let v: Value = client().get(host.url("/")).send().unwrap().json().unwrap();
    let pid = v["pid"].as_u64().unwrap() as u32;
    host.signal("TERM");
    assert_eq!(
        host.wait_exit(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
    assert!(wait_gone(pid, Duration::from_secs(3)));
}

#[test]
fn workers_exit_when_the_host_is_killed() {
    let mut host = start(Options::node("app", "echo"));
    let v: Value = client().get(host.url("/")).send().unwrap().json().unwrap();
    let pid = v["pid"].as_u64().unwrap() as u32;
    host.signal("KILL");
    host.wait_exit(Duration::from_secs(5)).unwrap();
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "orphaned worker {pid} kept running"
    );
}
