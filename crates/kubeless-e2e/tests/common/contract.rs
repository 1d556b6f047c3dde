//! The host contract every language's end-to-end test checks the same way:
//! a plain answer, an echo of the event's data with the Kubeless event
//! fields in the log and counted by `function top`, the timeout (408, and
//! the stuck worker replaced), a handler error (500, logged), and a custom
//! status and header. Each language supplies its handlers; what only one
//! language has stays in its own test.

use std::time::Duration;

use super::Server;

/// How long a function may take to build (Go and Java compile).
pub const BUILD: Duration = Duration::from_secs(300);

/// The five handlers of the contract in one language.
pub struct Contract<'a> {
    /// The `X-Made-By` header `created` sets.
    pub lang: &'a str,
    /// The handlers file (already written).
    pub file: &'a str,
    /// `module.function` of hello, echo, slow, fail and created.
    pub handlers: [&'a str; 5],
    /// Runtime ids of the same five (legacy ids for some, which resolve to
    /// the installed toolchain).
    pub runtimes: [&'a str; 5],
    /// What `created` answers to the body `x`.
    pub created_body: &'a str,
}

const NAMES: [&str; 5] = ["hello", "echo", "slow", "fail", "created"];

/// Fail with the install hint when a tool is missing (never skip).
pub fn require_tool(tool: &str) {
    let ok = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{tool} must be installed for the end-to-end tests (see scripts/deps/runtimes.sh)"
    );
}

/// `kubeless function deploy NAME --runtime R --handler H --from-file F ...`.
pub fn deploy(s: &Server, name: &str, runtime: &str, handler: &str, file: &str, extra: &[&str]) {
    let mut args = vec![
        "function",
        "deploy",
        name,
        "--runtime",
        runtime,
        "--handler",
        handler,
        "--from-file",
        file,
    ];
    args.extend_from_slice(extra);
    s.ok(&args);
}

/// POST `body` to the function through the gateway.
pub fn gateway_post(s: &Server, name: &str, body: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .post(format!("{}/default/{name}", s.gateway()))
        .body(body.to_string())
        .send()
        .expect("gateway request")
}

/// Deploy the five contract functions (`slow` with a 1 s timeout).
pub fn deploy_contract(s: &Server, c: &Contract<'_>) {
    for ((name, handler), runtime) in NAMES.iter().zip(c.handlers).zip(c.runtimes) {
        let extra: &[&str] = if *name == "slow" {
            &["--timeout", "1"]
        } else {
            &[]
        };
        deploy(s, name, runtime, handler, c.file, extra);
    }
}

/// Wait for the contract functions and check each behaviour.
pub fn check_contract(s: &Server, c: &Contract<'_>) {
    s.wait_phase("hello", "Ready", BUILD);
    assert_eq!(s.ok(&["function", "call", "hello"]).stdout, "hello world\n");

    s.wait_phase("echo", "Ready", BUILD);
    let r = s.ok(&["function", "call", "echo", "--data", r#"{"a": [1, 2]}"#]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json echo");
    assert_eq!(v, serde_json::json!({"a": [1, 2]}));
    let log = s.wait_log("echo", "event-namespace=cli.kubeless.io");
    assert!(log.contains("event-type=application/json"), "{log}");
    assert!(
        log.contains("event-time=")
            && !log.contains("event-id= ")
            && !log.contains("event-id=null")
            && !log.contains("event-time=null"),
        "{log}"
    );
    s.ok(&["function", "call", "echo", "--data", "second"]);
    let top = s
        .ok(&["function", "top", "--function", "echo", "-o", "json"])
        .stdout;
    let top: serde_json::Value = serde_json::from_str(&top).expect("top json");
    let post = top
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["method"] == "POST"))
        .cloned()
        .expect("a POST row");
    assert_eq!(post["total_calls"], 2, "{top}");

    s.wait_phase("slow", "Ready", BUILD);
    let r = s.fails(&["function", "call", "slow"]);
    assert!(r.stderr.contains("Request timeout exceeded"), "{r}");
    // The stuck worker was replaced: the function answers (408 again).
    let r = s.fails(&["function", "call", "slow"]);
    assert!(r.stderr.contains("Request timeout exceeded"), "{r}");

    s.wait_phase("fail", "Ready", BUILD);
    let r = s.fails(&["function", "call", "fail"]);
    assert!(r.stderr.contains("500"), "{r}");
    s.wait_log("fail", "boom from the handler");

    s.wait_phase("created", "Ready", BUILD);
    let resp = gateway_post(s, "created", "x");
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(resp.headers()["x-made-by"], c.lang);
    assert_eq!(resp.text().expect("body"), c.created_body);
}
