//! Python functions end to end: deploy, call, events, logs, update, delete,
//! timeout, crash and restart, archives, dependencies from PyPI.

mod common;

use std::io::Write;
use std::time::Duration;

use common::Server;

const HELLO: &str = r#"
calls = 0

def hello(event, context):
    print(event)
    return "hello world"

def echo(event, context):
    print("event-id=%s event-type=%s event-time=%s event-namespace=%s" % (
        event["event-id"], event["event-type"], event["event-time"], event["event-namespace"]))
    return event["data"]

def slow(event, context):
    import time
    time.sleep(30)
    return "late"

def fail(event, context):
    raise ValueError("boom from the handler")
"#;

#[test]
fn hello_world_json_echo_and_event_fields() {
    let s = Server::start();
    let f = s.file("hello.py", HELLO);
    s.ok(&[
        "function",
        "deploy",
        "hello",
        "--runtime",
        "python3.11",
        "--handler",
        "hello.hello",
        "--from-file",
        &f,
    ]);
    s.ok(&[
        "function",
        "deploy",
        "echo",
        "--runtime",
        "python3.8",
        "--handler",
        "hello.echo",
        "--from-file",
        &f,
    ]);
    s.wait_ready("hello");
    s.wait_ready("echo");
    let r = s.ok(&["function", "call", "hello"]);
    assert_eq!(r.stdout, "hello world\n");
    let r = s.ok(&[
        "function",
        "call",
        "echo",
        "--data",
        r#"{"hello": "world", "n": 1}"#,
    ]);
    let body: serde_json::Value = serde_json::from_str(&r.stdout).expect("echo returns JSON");
    assert_eq!(body, serde_json::json!({"hello": "world", "n": 1}));
    let log = s.wait_log("echo", "event-namespace=cli.kubeless.io");
    assert!(log.contains("event-type=application/json"), "{log}");
    assert!(
        regex_like(&log, "event-time=", "Z event-namespace"),
        "{log}"
    );
    // The host batches its request log; wait for the line rather than race it.
    s.wait_log("echo", "\"POST / HTTP/1.1\" 200");
    // Kubeless's integration tests grep this exact shape.
    let log = s.wait_log("hello", "\"GET / HTTP/1.1\" 200 11");
    assert!(
        log.contains("'event-namespace': 'cli.kubeless.io'"),
        "{log}"
    );

    // Plain-text data is form-encoded, not JSON.
    let r = s.ok(&["function", "call", "echo", "--data", "plain text"]);
    assert_eq!(r.stdout, "plain text\n");

    // ls / describe / top.
    let ls = s.ok(&["function", "ls"]).stdout;
    assert!(ls.lines().next().unwrap_or("").starts_with("NAME"), "{ls}");
    assert!(
        ls.lines()
            .any(|l| l.starts_with("hello") && l.contains("1/1 READY")),
        "{ls}"
    );
    let d = s.ok(&["function", "describe", "echo"]).stdout;
    assert!(d.contains("hello.echo") && d.contains("python3.8"), "{d}");
    let top = s
        .ok(&["function", "top", "--function", "echo", "-o", "json"])
        .stdout;
    let top: serde_json::Value = serde_json::from_str(&top).expect("top json");
    let rows = top.as_array().expect("rows");
    let post = rows
        .iter()
        .find(|r| r["method"] == "POST")
        .expect("a POST row");
    assert_eq!(post["total_calls"], 2, "{top}");
}

fn regex_like(hay: &str, start: &str, end: &str) -> bool {
    hay.split(start)
        .skip(1)
        .any(|rest| rest.find(end).is_some_and(|i| i > 10))
}

#[test]
fn timeout_exception_and_crash_restart() {
    let s = Server::start();
    let f = s.file("hello.py", HELLO);
    s.ok(&[
        "function",
        "deploy",
        "slow",
        "--runtime",
        "python3.11",
        "--handler",
        "hello.slow",
        "--from-file",
        &f,
        "--timeout",
        "1",
    ]);
    s.ok(&[
        "function",
        "deploy",
        "fail",
        "--runtime",
        "python3.11",
        "--handler",
        "hello.fail",
        "--from-file",
        &f,
    ]);
    s.ok(&[
        "function",
        "deploy",
        "hello",
        "--runtime",
        "python3.11",
        "--handler",
        "hello.hello",
        "--from-file",
        &f,
    ]);
    s.wait_ready("slow");
    s.wait_ready("fail");
    s.wait_ready("hello");

    let r = s.fails(&["function", "call", "slow"]);
    assert!(r.stderr.contains("Request timeout exceeded"), "{r}");
    // The stuck worker was replaced: the function still answers (with 408 again).
    let r = s.fails(&["function", "call", "slow"]);
    assert!(r.stderr.contains("Request timeout exceeded"), "{r}");

    let r = s.fails(&["function", "call", "fail"]);
    assert!(r.stderr.contains("500"), "{r}");
    s.wait_log("fail", "boom from the handler");

    // Kill the function's worker processes: the runtime host (inside the
    // server) starts another with the next request and says so in the log.
    let before = host_pids(&s);
    assert!(!before.is_empty());
    for pid in &before {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    s.wait_answer(
        &["function", "call", "hello"],
        "hello world",
        Duration::from_secs(30),
    );
    let log = s.wait_log("hello", "was killed by signal 9 (SIGKILL) while idle");
    assert!(log.contains("the next request starts another"), "{log}");
    let after = host_pids(&s);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "new processes: {before:?} -> {after:?}"
    );
}

fn host_pids(s: &Server) -> Vec<i32> {
    std::fs::read_dir(s.home.path().join("server/run/pids"))
        .expect("pid dir")
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

#[test]
fn update_keeps_settings_and_delete_stops_everything() {
    let s = Server::start();
    let v1 = s.file(
        "v1/hello.py",
        "def hello(event, context):\n    return 'v1'\n",
    );
    let v2 = s.file(
        "v2/hello.py",
        "def hello(event, context):\n    return 'v2'\n",
    );
    s.ok(&[
        "function",
        "deploy",
        "up",
        "--runtime",
        "python3.11",
        "--handler",
        "hello.hello",
        "--from-file",
        &v1,
        "--timeout",
        "7",
        "--env",
        "FOO=bar",
        "--label",
        "team=a",
    ]);
    s.wait_ready("up");
    s.wait_answer(&["function", "call", "up"], "v1", Duration::from_secs(10));
    s.ok(&["function", "update", "up", "--from-file", &v2]);
    s.wait_answer(&["function", "call", "up"], "v2", Duration::from_secs(60));
    let f = s.function("up");
    assert_eq!(
        f["spec"]["timeout"], "7",
        "update keeps the timeout (Kubeless reset it to 180)"
    );
    assert_eq!(f["metadata"]["labels"]["team"], "a");
    let env = &f["spec"]["deployment"]["spec"]["template"]["spec"]["containers"][0]["env"];
    assert_eq!(env[0]["name"], "FOO", "{env}");

    let pids = host_pids(&s);
    assert!(!pids.is_empty());
    s.ok(&["function", "delete", "up"]);
    let r = s.fails(&["function", "call", "up"]);
    assert!(r.stderr.contains("not found"), "{r}");
    let ls = s.ok(&["function", "ls"]).stdout;
    assert!(!ls.contains("up "), "{ls}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while pids
        .iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "instance processes survived the delete"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s.fails(&["function", "delete", "up"]);
}

#[test]
fn zip_and_tar_archives_and_requirements_from_pypi() {
    let s = Server::start();
    // A zip with two modules.
    let mut zip_bytes = Vec::new();
    {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut zip_bytes));
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("main.py", opts).expect("zip entry");
        z.write_all(b"import helper\ndef handler(event, context):\n    return helper.greet()\n")
            .expect("write");
        z.start_file("helper.py", opts).expect("zip entry");
        z.write_all(b"def greet():\n    return 'from zip'\n")
            .expect("write");
        z.finish().expect("zip");
    }
    let zip_path = s.file("fn.zip", &zip_bytes);
    s.ok(&[
        "function",
        "deploy",
        "zipped",
        "--runtime",
        "python3.11",
        "--handler",
        "main.handler",
        "--from-file",
        &zip_path,
    ]);

    // A tar.gz.
    let mut tgz = Vec::new();
    {
        let enc = flate2::write::GzEncoder::new(&mut tgz, flate2::Compression::default());
        let mut t = tar::Builder::new(enc);
        let body = b"def handler(event, context):\n    return 'from tar'\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, "main.py", &body[..])
            .expect("tar entry");
        t.into_inner().expect("tar").finish().expect("gzip");
    }
    let tgz_path = s.file("fn.tar.gz", &tgz);
    s.ok(&[
        "function",
        "deploy",
        "tarred",
        "--runtime",
        "python3.11",
        "--handler",
        "main.handler",
        "--from-file",
        &tgz_path,
    ]);

    // A dependency really installed from PyPI.
    let code = s.file(
        "deps.py",
        "import six\ndef handler(event, context):\n    return 'six ' + six.__version__\n",
    );
    let reqs = s.file("requirements.txt", "six==1.16.0\n");
    s.ok(&[
        "function",
        "deploy",
        "withdeps",
        "--runtime",
        "python3.11",
        "--handler",
        "deps.handler",
        "--from-file",
        &code,
        "--dependencies",
        &reqs,
    ]);

    s.wait_answer(
        &["function", "call", "zipped"],
        "from zip",
        Duration::from_secs(30),
    );
    s.wait_answer(
        &["function", "call", "tarred"],
        "from tar",
        Duration::from_secs(30),
    );
    s.wait_phase("withdeps", "Ready", Duration::from_secs(300));
    s.wait_answer(
        &["function", "call", "withdeps"],
        "six 1.16.0",
        Duration::from_secs(10),
    );
    let ls = s.ok(&["function", "ls", "withdeps"]).stdout;
    assert!(ls.contains("six==1.16.0"), "dependencies column: {ls}");

    // Same code and deps again: the artifact cache answers, nothing is reinstalled.
    s.ok(&[
        "function",
        "deploy",
        "withdeps2",
        "--runtime",
        "python3.11",
        "--handler",
        "deps.handler",
        "--from-file",
        &code,
        "--dependencies",
        &reqs,
    ]);
    s.wait_answer(
        &["function", "call", "withdeps2"],
        "six 1.16.0",
        Duration::from_secs(30),
    );
    let log = s.ok(&["function", "logs", "withdeps2"]).stdout;
    assert!(
        !log.contains("installing dependencies"),
        "cached artifact reused: {log}"
    );
}
