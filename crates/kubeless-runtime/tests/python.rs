//! The runtime host with the Python worker, driven over real HTTP.

mod common;

use std::time::{Duration, Instant};

use common::{Options, client, load_failure, read_pid, start, wait_gone};
use serde_json::{Value, json};

#[test]
fn hello_world_and_request_log() {
    let host = start(Options::python("app", "hello"));
    let r = client()
        .get(host.url("/"))
        .header("User-Agent", "curl/7.88")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.text().unwrap(), "hello world");
    assert!(
        host.stdout.wait_for(
            "\"GET / HTTP/1.1\" 200 11 \"-\" \"curl/7.88\"",
            Duration::from_secs(5)
        ),
        "stdout:\n{}",
        host.stdout.text()
    );
    assert!(
        host.stdout.text().contains("module app loaded"),
        "user output reaches the log"
    );
}

#[test]
fn json_echo_with_event_fields() {
    let host = start(
        Options::python("app", "echo")
            .env("FUNC_TIMEOUT", "7")
            .env("FUNC_MEMORY_LIMIT", "128Mi"),
    );
    let r = client()
        .post(host.url("/some/path?a=1&b=two"))
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Event-Id", "abc123")
        .header("EVENT-TYPE", "application/json")
        .header("event-time", "2026-11-21T10:00:00Z")
        .header("Event-Namespace", "cli.kubeless.io")
        .header("X-Custom", "yes")
        .body(r#"{"hello": "world", "n": [1, 2]}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().unwrap();
    assert_eq!(v["data"], json!({"hello": "world", "n": [1, 2]}));
    assert_eq!(v["event-id"], "abc123");
    assert_eq!(v["event-type"], "application/json");
    assert_eq!(v["event-time"], "2026-11-21T10:00:00Z");
    assert_eq!(v["event-namespace"], "cli.kubeless.io");
    assert_eq!(
        v["context"],
        json!({"function-name": "echo", "timeout": 7.0, "runtime": "python3.11", "memory-limit": "128Mi"})
    );
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/some/path");
    assert_eq!(v["query"], json!({"a": "1", "b": "two"}));
    assert_eq!(v["query_string"], "a=1&b=two");
    assert_eq!(
        v["url"],
        format!("http://127.0.0.1:{}/some/path?a=1&b=two", host.port)
    );
    assert_eq!(v["header"], "yes");
    assert_eq!(
        v["cwd"],
        host.dir.path().canonicalize().unwrap().to_str().unwrap()
    );

    // Missing event headers are None; invalid JSON is the client's fault.
    let r = client().get(host.url("/")).send().unwrap();
    let v: Value = r.json().unwrap();
    assert_eq!(v["event-id"], Value::Null);
    assert_eq!(v["data"], json!({"bytes": ""}), "empty body is b''");
    let r = client()
        .post(host.url("/"))
        .header("Content-Type", "application/json")
        .body("{not json")
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
fn non_json_body_is_raw_bytes() {
    let host = start(Options::python("app", "echo"));
    let r = client()
        .post(host.url("/"))
        .header("Content-Type", "text/plain")
        .body("just text")
        .send()
        .unwrap();
    let v: Value = r.json().unwrap();
    assert_eq!(v["data"], json!({"bytes": "just text"}));
    // A content type that merely mentions JSON is not JSON.
    let r = client()
        .post(host.url("/"))
        .header("Content-Type", "application/jsonx")
        .body("{}")
        .send()
        .unwrap();
    let v: Value = r.json().unwrap();
    assert_eq!(v["data"], json!({"bytes": "{}"}));
}

#[test]
fn every_method_reaches_the_function() {
    let host = start(Options::python("app", "echo"));
    let c = client();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = c.request(m, host.url("/m")).body("x").send().unwrap();
        assert_eq!(r.status(), 200, "{method}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["method"], method);
    }
    let r = c.head(host.url("/")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        host.stdout
            .wait_for("\"PUT /m HTTP/1.1\" 200", Duration::from_secs(5))
    );
}

#[test]
fn timeout_kills_only_the_stuck_worker() {
    let host = start(
        Options::python("app", "slow")
            .env("FUNC_TIMEOUT", "1")
            .env("KUBELESS_WORKERS", "3"),
    );
    let slow_url = host.url("/slow");
    let slow = std::thread::spawn(move || {
        let started = Instant::now();
        let r = client().get(slow_url).send().unwrap();
        (r.status(), r.text().unwrap(), started.elapsed())
    });
    let slow_pid = read_pid(&host.path("slow.pid"), Duration::from_secs(5)).unwrap();
    let r = client().get(host.url("/fast")).send().unwrap();
    assert_eq!(
        r.status(),
        200,
        "a second worker serves while the first is stuck"
    );
    assert_eq!(r.text().unwrap(), "fast");

    let (status, body, elapsed) = slow.join().unwrap();
    assert_eq!(status, 408);
    assert_eq!(body, "Timeout while processing the function");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(
        wait_gone(slow_pid, Duration::from_secs(5)),
        "stuck worker {slow_pid} was killed"
    );

    let r = client().get(host.url("/healthz")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "OK");
    let r = client().get(host.url("/fast")).send().unwrap();
    assert_eq!(r.status(), 200);
    let metrics = client()
        .get(host.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("function_failures_total{method=\"GET\"} 1\n"),
        "{metrics}"
    );
}

#[test]
fn exceptions_and_crashes_answer_500_and_the_host_survives() {
    let mut host = start(Options::python("app", "answers"));
    let c = client();
    let r = c.get(host.url("/raise")).send().unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.text().unwrap(), "Internal Server Error");
    assert!(
        host.stderr
            .wait_for("ZeroDivisionError", Duration::from_secs(5)),
        "traceback in the function log"
    );

    let r = c.get(host.url("/exit")).send().unwrap();
    assert_eq!(r.status(), 500);
    assert!(host.is_running());
    let r = c.get(host.url("/ok")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "ok");

    let metrics = c.get(host.url("/metrics")).send().unwrap().text().unwrap();
    assert!(
        metrics.contains("function_calls_total{method=\"GET\"} 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("function_failures_total{method=\"GET\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("function_duration_seconds_count{method=\"GET\"} 3\n"),
        "{metrics}"
    );
}

#[test]
fn return_values_and_tuples() {
    let host = start(Options::python("app", "answers"));
    let c = client();
    let r = c.get(host.url("/tuple")).send().unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-kind"], "tuple");
    assert_eq!(r.text().unwrap(), "created");
    let r = c.get(host.url("/pair")).send().unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().unwrap(), r#"{"a": 1}"#);
    assert_eq!(
        c.get(host.url("/bytes"))
            .send()
            .unwrap()
            .bytes()
            .unwrap()
            .as_ref(),
        b"\x00\x01"
    );
    let r = c.get(host.url("/none")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "");
    assert_eq!(
        c.get(host.url("/number")).send().unwrap().text().unwrap(),
        "42"
    );
    assert_eq!(
        c.get(host.url("/list")).send().unwrap().text().unwrap(),
        r#"[1, "two"]"#
    );
}

#[test]
fn body_over_limit_is_413() {
    let host = start(Options::python("app", "hello"));
    let big = vec![b'a'; 2 << 20];
    let r = client()
        .post(host.url("/"))
        .body(big.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    // Without Content-Length (chunked) the cap applies while streaming.
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(big));
    let r = client().post(host.url("/")).body(chunked).send().unwrap();
    assert_eq!(r.status(), 413);
    // Exactly at the limit is fine.
    let r = client()
        .post(host.url("/"))
        .body(vec![b'a'; 1 << 20])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .post(host.url("/"))
        .body(vec![b'a'; 2 << 10])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn cors_preflight_is_answered_by_the_host() {
    let host = start(Options::python("app", "echo"));
    let r = client()
        .request(reqwest::Method::OPTIONS, host.url("/anything"))
        .header("Origin", "http://example.com")
        .header("Access-Control-Request-Method", "PUT")
        .header("Access-Control-Request-Headers", "x-custom, content-type")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.headers()["access-control-allow-methods"], "PUT");
    assert_eq!(
        r.headers()["access-control-allow-headers"],
        "x-custom, content-type"
    );
    assert_eq!(r.text().unwrap(), "");
    let metrics = client()
        .get(host.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        !metrics.contains("method=\"OPTIONS\""),
        "preflight is not a call:\n{metrics}"
    );
}

#[test]
fn metrics_count_calls_per_method() {
    let host = start(Options::python("app", "hello"));
    let c = client();
    for _ in 0..3 {
        c.get(host.url("/")).send().unwrap();
    }
    c.post(host.url("/")).body("x").send().unwrap();
    let r = c.get(host.url("/metrics")).send().unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().unwrap();
    assert!(
        text.contains("# TYPE function_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("function_calls_total{method=\"GET\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("function_calls_total{method=\"POST\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("function_failures_total{method=\"GET\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("function_duration_seconds_bucket{method=\"POST\",le=\"+Inf\"} 1\n"),
        "{text}"
    );
}

#[test]
fn module_level_code_runs_once_per_worker() {
    let host = start(Options::python("app", "echo").env("KUBELESS_WORKERS", "1"));
    let c = client();
    let mut last = Value::Null;
    for _ in 0..5 {
        last = c.get(host.url("/")).send().unwrap().json().unwrap();
    }
    assert_eq!(last["calls"], 5, "globals survive between calls");
    assert_eq!(last["loads"], 1);
    let loads = std::fs::read_to_string(host.path("loads.txt")).unwrap();
    assert_eq!(loads.lines().count(), 1, "module imported once: {loads:?}");
}

#[test]
fn missing_function_exits_3_with_one_line() {
    let (code, stderr) = load_failure(Options::python("app", "nope")).unwrap();
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
}

#[test]
fn load_failures_exit_3() {
    let (code, stderr) = load_failure(Options::python("broken", "foo")).unwrap();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("kubeless-runtime: cannot load handler broken.foo: SyntaxError: expected ':' (broken.py, line 1)"),
        "{stderr}"
    );
    let (code, stderr) = load_failure(Options::python("missing", "foo")).unwrap();
    assert_eq!(code, 3);
    assert!(
        stderr.contains("cannot load handler missing.foo: module \"missing\" not found in"),
        "{stderr}"
    );
    let (code, stderr) = load_failure(Options::python("failing_import", "foo")).unwrap();
    assert_eq!(code, 3);
    assert!(
        stderr.contains("cannot load handler failing_import.foo: RuntimeError: cannot start (failing_import.py, line 3)"),
        "{stderr}"
    );
    let (code, stderr) = load_failure(Options::python("app", "not_callable")).unwrap();
    assert_eq!(code, 3);
    assert!(
        stderr.contains("\"not_callable\" in module \"app\" is not callable"),
        "{stderr}"
    );
}

#[test]
fn invalid_config_exits_2() {
    let (code, stderr) =
        load_failure(Options::python("app", "hello").env("FUNC_TIMEOUT", "soon")).unwrap();
    assert_eq!(code, 2);
    assert!(
        stderr.contains("kubeless-runtime: invalid FUNC_TIMEOUT"),
        "{stderr}"
    );
}

#[test]
fn sigterm_stops_host_and_workers() {
    let mut host = start(Options::python("app", "echo").env("KUBELESS_WORKERS", "2"));
    // Two concurrent requests make the pool grow to two workers.
    let urls = [host.url("/"), host.url("/")];
    let pids: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = urls
            .iter()
            .map(|u| {
                s.spawn(move || {
                    client()
                        .get(u.as_str())
                        .send()
                        .unwrap()
                        .json::<Value>()
                        .unwrap()["pid"]
                        .as_u64()
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    host.signal("TERM");
    let status = host.wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", host.stderr.text());
    for pid in pids {
        assert!(
            wait_gone(pid as u32, Duration::from_secs(3)),
            "worker {pid} left behind"
        );
    }
}

#[test]
fn workers_exit_when_the_host_is_killed() {
    let mut host = start(Options::python("app", "echo"));
    let v: Value = client().get(host.url("/")).send().unwrap().json().unwrap();
    let pid = v["pid"].as_u64().unwrap() as u32;
    host.signal("KILL");
    host.wait_exit(Duration::from_secs(5)).unwrap();
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "orphaned worker {pid} kept running"
    );
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let mut host = start(Options::python("app", "nap"));
    let url = host.url("/");
    let request = std::thread::spawn(move || {
        let r = client().get(url).send().unwrap();
        (r.status(), r.text().unwrap())
    });
    assert!(
        host.stdout
            .wait_for("module app loaded", Duration::from_secs(5))
    );
    std::thread::sleep(Duration::from_millis(150));
    host.signal("TERM");
    let (status, body) = request.join().unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("rested "), "{body}");
    assert_eq!(
        host.wait_exit(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
}

#[test]
fn client_disconnect_keeps_the_worker() {
    let host = start(Options::python("app", "nap").env("KUBELESS_WORKERS", "1"));
    let impatient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    assert!(impatient.get(host.url("/")).send().is_err());
    let first = read_pid(&host.path("nap.pid"), Duration::from_secs(2)).unwrap();
    let body = client().get(host.url("/")).send().unwrap().text().unwrap();
    assert_eq!(
        body,
        format!("rested {first}"),
        "the same worker finished and served again"
    );
}

#[test]
fn serves_the_same_http_on_kubeless_socket() {
    use std::io::{Read, Write};
    let sockets = tempfile::tempdir().unwrap();
    let path = sockets.path().join("http.sock");
    let mut host =
        start(Options::python("app", "hello").env("KUBELESS_SOCKET", path.display().to_string()));
    let mut stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
    stream
        .write_all(b"GET /over/unix HTTP/1.1\r\nHost: fn\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello world"), "{answer}");
    // Wait for this request's own line (the health check's may be there
    // first); a request over the socket is logged as from loopback.
    assert!(
        host.stdout
            .wait_for("\"GET /over/unix HTTP/1.1\" 200 11", Duration::from_secs(5)),
        "stdout:\n{}",
        host.stdout.text()
    );
    let text = host.stdout.text();
    let line = text
        .lines()
        .find(|l| l.contains("\"GET /over/unix HTTP/1.1\""))
        .unwrap_or_default();
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    // TCP keeps working beside it (health checks, Kubernetes).
    assert_eq!(client().get(host.url("/")).send().unwrap().status(), 200);
    host.signal("TERM");
    assert_eq!(
        host.wait_exit(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
    assert!(!path.exists(), "the socket file is removed on exit");
}

#[test]
fn a_worker_that_died_while_idle_is_skipped() {
    let host = start(Options::python("app", "echo").env("KUBELESS_WORKERS", "1"));
    let v: Value = client().get(host.url("/")).send().unwrap().json().unwrap();
    let pid = v["pid"].as_u64().unwrap() as u32;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(wait_gone(pid, Duration::from_secs(5)));
    // The only worker is dead; the request still gets an answer from a
    // fresh one instead of a 500.
    let r = client().get(host.url("/")).send().unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_ne!(v["pid"].as_u64().unwrap() as u32, pid);
}

#[test]
fn many_concurrent_requests_each_get_their_own_answer() {
    // Two workers, sixteen clients: requests queue on busy workers, and
    // every answer must still reach the request it belongs to.
    let host = start(Options::python("app", "echo").env("KUBELESS_WORKERS", "2"));
    let url = host.url("/");
    std::thread::scope(|scope| {
        for t in 0..16 {
            let url = url.clone();
            scope.spawn(move || {
                let c = client();
                for i in 0..40 {
                    let sent = format!("{t}-{i}");
                    let v: Value = c
                        .post(&url)
                        .json(&json!({ "n": sent }))
                        .send()
                        .unwrap()
                        .json()
                        .unwrap();
                    assert_eq!(v["data"]["n"], sent.as_str());
                }
            });
        }
    });
}

#[test]
fn requests_behind_a_dying_request_go_to_another_worker() {
    // One worker: fast requests arriving while it runs a request that kills
    // it are queued on it or wait for it; none of them may fail.
    let host = start(Options::python("app", "answers").env("KUBELESS_WORKERS", "1"));
    let c = client();
    for _ in 0..20 {
        // Requests are fast, so the pool queues behind busy workers.
        assert_eq!(c.get(host.url("/")).send().unwrap().text().unwrap(), "ok");
    }
    // Arriving at once they are queued behind it (its first 5 ms); after
    // 50 ms they wait for the worker instead.
    for stagger in [0, 0, 50] {
        std::thread::scope(|scope| {
            let dying = scope.spawn(|| {
                client()
                    .get(host.url("/exit-later"))
                    .send()
                    .unwrap()
                    .status()
            });
            std::thread::sleep(Duration::from_millis(stagger));
            let fast: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| client().get(host.url("/")).send().unwrap()))
                .collect();
            assert_eq!(dying.join().unwrap(), 500);
            for f in fast {
                let r = f.join().unwrap();
                assert_eq!(r.status(), 200);
                assert_eq!(r.text().unwrap(), "ok");
            }
        });
    }
}
