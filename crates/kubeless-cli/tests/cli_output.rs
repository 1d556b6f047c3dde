//! Output formatting of the built `kubeless` binary against a tiny stand-in
//! for the local API on 127.0.0.1 (canned answers, recorded requests).
//! Behaviour against a real `kubeless server` is covered by the end-to-end
//! tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// A recorded request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

type Handler = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

/// Serve `handler` on a loopback port until the test process ends.
fn stub(handler: Box<Handler>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let mut headers = Vec::new();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim_end().split_once(':') {
                    let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                    if k == "content-length" {
                        len = v.parse().unwrap_or(0);
                    }
                    headers.push((k, v));
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let req = Seen {
                method,
                path,
                headers,
                body: String::from_utf8_lossy(&body).to_string(),
            };
            let (code, answer) = handler(&req);
            log.lock().expect("lock").push(req);
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (addr, seen)
}

fn kubeless(server: &str, args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("tempdir");
    Command::new(env!("CARGO_BIN_EXE_kubeless"))
        .args(args)
        .env("KUBELESS_HOME", home.path())
        .env("KUBELESS_SERVER", server)
        .env("KUBELESS_GATEWAY", server)
        .env("KUBELESS_TOKEN", "t0k")
        .env_remove("KUBELESS_BACKEND")
        .output()
        .expect("run kubeless")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

const FUNCTIONS: &str = r#"{"apiVersion":"kubeless.io/v1beta1","kind":"FunctionList","items":[
 {"apiVersion":"kubeless.io/v1beta1","kind":"Function","metadata":{"name":"foo","namespace":"default","labels":{"function":"foo"}},
  "spec":{"handler":"foo.bar","runtime":"python3.8","deps":"","function":"","function-content-type":"text","checksum":"","timeout":"180",
   "deployment":{"spec":{"template":{"spec":{"containers":[{"name":"","env":[{"name":"foo","value":"bar"}],"resources":{"requests":{"memory":"128Mi"}}}]}}}},
   "service":{},"horizontalPodAutoscaler":{}},
  "status":{"phase":"Ready","replicas":1,"readyReplicas":1}},
 {"apiVersion":"kubeless.io/v1beta1","kind":"Function","metadata":{"name":"bar","namespace":"default"},
  "spec":{"handler":"bar.h","runtime":"nodejs14","deps":"{\"dependencies\":{\"test\":\"^1.0.0\"}}"},
  "status":{"phase":"Failed","replicas":2,"readyReplicas":0,"reason":"install failed: npm exited with 1"}},
 {"apiVersion":"kubeless.io/v1beta1","kind":"Function","metadata":{"name":"new","namespace":"default"},"spec":{}}
]}"#;

#[test]
fn function_ls_tables_and_json() {
    let (addr, seen) = stub(Box::new(|_| (200, FUNCTIONS.to_string())));
    let out = kubeless(&addr, &["function", "ls"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split('\t').map(str::trim).collect::<Vec<_>>(),
        [
            "NAME",
            "NAMESPACE",
            "HANDLER",
            "RUNTIME",
            "DEPENDENCIES",
            "STATUS"
        ]
    );
    assert!(
        lines[1].starts_with("foo \tdefault  \tfoo.bar\tpython3.8\t"),
        "{text}"
    );
    assert!(lines[1].trim_end().ends_with("\t1/1 READY"), "{text}");
    assert!(text.contains("test: ^1.0.0"), "{text}");
    assert!(
        text.contains("0/2 NOT READY: install failed: npm exited with 1"),
        "{text}"
    );
    assert!(lines[3].trim_end().ends_with("0/1 NOT READY"), "{text}");
    let req = seen.lock().expect("lock")[0].clone();
    assert_eq!(req.method, "GET");
    assert_eq!(
        req.path,
        "/apis/kubeless.io/v1beta1/namespaces/default/functions"
    );
    assert!(
        req.headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == "Bearer t0k")
    );

    let wide = stdout(&kubeless(&addr, &["function", "ls", "-o", "wide"]));
    assert!(wide.contains("128Mi"), "{wide}");
    assert!(wide.contains("foo = bar"), "{wide}");

    let json = stdout(&kubeless(&addr, &["function", "ls", "-o", "json"]));
    assert!(json.starts_with("[\n  {\n    \"apiVersion\""), "{json}");
    let yaml = stdout(&kubeless(&addr, &["function", "ls", "-o", "yaml"]));
    assert!(yaml.contains("memory: 128Mi"), "{yaml}");
}

#[test]
fn unreachable_server_is_one_fatal_line() {
    // Bind then drop: nothing listens on this port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("http://127.0.0.1:{port}");
    let out = kubeless(&addr, &["function", "ls"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "level=fatal msg=\"cannot reach the kubeless server at {addr}: connection refused. Start it with 'kubeless server'\""
        )),
        "{err}"
    );
    assert!(err.starts_with("time=\""), "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn refused_token_and_status_errors() {
    let (addr, _) = stub(Box::new(|req| {
        if req.path.ends_with("/functions") {
            (
                401,
                r#"{"kind":"Status","code":401,"reason":"Unauthorized","message":"bad token"}"#
                    .to_string(),
            )
        } else {
            (404, r#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":404,"reason":"NotFound","message":"Function default/x not found"}"#.to_string())
        }
    }));
    let out = kubeless(&addr, &["function", "ls"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(
        "msg=\"the server refused the token (401): check KUBELESS_TOKEN or $KUBELESS_HOME/config.json\""
    ));
    let out = kubeless(&addr, &["function", "describe", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("level=fatal msg=\"Function default/x not found\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn call_prints_body_and_maps_errors() {
    let (addr, seen) = stub(Box::new(|req| match req.path.as_str() {
        "/default/ok" => (200, format!("echo:{}", req.body)),
        "/default/slow" => (408, "Timeout".to_string()),
        "/default/boom" => (500, "Traceback\nline 2".to_string()),
        _ => (404, "function default/nope not found".to_string()),
    }));
    let out = kubeless(&addr, &["function", "call", "ok", "-d", "{\"a\": 1}"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "echo:{\"a\": 1}\n");
    let req = seen.lock().expect("lock")[0].clone();
    assert_eq!(req.method, "POST");
    let header = |k: &str| {
        req.headers
            .iter()
            .find(|(h, _)| h == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("event-type"), "application/json");
    assert_eq!(header("event-namespace"), "cli.kubeless.io");
    assert_eq!(header("event-id").len(), 15);
    assert!(header("event-time").ends_with('Z'));

    let out = kubeless(&addr, &["function", "call", "slow"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("level=fatal msg=\"Request timeout exceeded\""));

    let out = kubeless(&addr, &["function", "call", "boom"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("level=error msg=Traceback"), "{err}");
    assert!(
        err.contains("level=fatal msg=\"the function answered 500: Traceback\""),
        "{err}"
    );

    let out = kubeless(&addr, &["function", "call", "nope"]);
    assert!(stderr(&out).contains("level=fatal msg=\"function default/nope not found\""));
}

#[test]
fn top_table_and_yaml() {
    let (addr, _) = stub(Box::new(|req| {
        if req.path.ends_with("/metrics") {
            (
                200,
                "function_calls_total{method=\"GET\"} 4\nfunction_duration_seconds_sum{method=\"GET\"} 2\nfunction_failures_total{method=\"GET\"} 1\n"
                    .to_string(),
            )
        } else {
            (200, r#"{"kind":"FunctionList","items":[{"metadata":{"name":"foo","namespace":"default"},"spec":{}}]}"#.to_string())
        }
    }));
    let out = kubeless(&addr, &["function", "top"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "NAME\tNAMESPACE\tMETHOD\tTOTAL_CALLS\tTOTAL_FAILURES\tTOTAL_DURATION_SECONDS\tAVG_DURATION_SECONDS\tMESSAGE"
    );
    let cells: Vec<&str> = lines[1].split('\t').map(str::trim).collect();
    assert_eq!(cells, ["foo", "default", "GET", "4", "1", "2", "0.5", ""]);
    let yaml = stdout(&kubeless(&addr, &["function", "top", "-o", "yaml"]));
    assert_eq!(
        yaml,
        "- avg_duration_seconds: 0.5\n  function: foo\n  method: GET\n  namespace: default\n  total_calls: 4\n  total_duration_seconds: 2\n  total_failures: 1\n"
    );
}

#[test]
fn apply_with_a_malformed_document_sends_nothing() {
    let (addr, seen) = stub(Box::new(|_| (200, "{}".to_string())));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("m.yaml");
    std::fs::write(
        &file,
        "apiVersion: kubeless.io/v1beta1\nkind: Function\nmetadata: {name: a}\n---\napiVersion: kubeless.io/v1beta1\nkind: Function\nmetadata: {name: b}\nspec: {handler: [x]}\n",
    )
    .expect("write");
    let out = kubeless(&addr, &["apply", "-f", &file.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("msg=\"error parsing document 2:"),
        "{}",
        stderr(&out)
    );
    assert!(seen.lock().expect("lock").is_empty());
}

#[test]
fn deploy_dryrun_json_is_4_space_and_kubernetes_backend_is_refused() {
    let (addr, _) = stub(Box::new(|_| {
        (
            200,
            r#"{"runtimes":["python3.8"],"gateway":"","home":""}"#.to_string(),
        )
    }));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("hello.py");
    std::fs::write(&file, "def foo(e, c):\n    return 'hi'\n").expect("write");
    let out = kubeless(
        &addr,
        &[
            "function",
            "deploy",
            "hello",
            "--runtime",
            "python3.8",
            "--handler",
            "hello.foo",
            "--from-file",
            &file.to_string_lossy(),
            "--dryrun",
            "-o",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout(&out);
    assert!(
        json.starts_with("{\n    \"apiVersion\": \"kubeless.io/v1beta1\",\n"),
        "{json}"
    );
    assert!(json.contains("\"function-content-type\": \"text\""));

    let out = kubeless(
        &addr,
        &[
            "function",
            "deploy",
            "hello",
            "--runtime",
            "python9",
            "--handler",
            "a.b",
        ],
    );
    assert!(
        stderr(&out)
            .contains("msg=\"Invalid runtime: python9. Supported runtimes are: python3.8\"")
    );

    // Without a usable kubeconfig the kubernetes backend fails with one line.
    let out = Command::new(env!("CARGO_BIN_EXE_kubeless"))
        .args(["--backend", "kubernetes", "function", "ls"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run kubeless");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot load the kubeconfig"),
        "{}",
        stderr(&out)
    );
}
