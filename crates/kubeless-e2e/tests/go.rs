//! Go functions end to end: Kubeless handlers (`package kubeless`,
//! `functions.Event`/`functions.Context`) compiled once per artifact, a
//! dependency from the Go module proxy, the host contract, legacy runtime
//! ids, and a compile error reported in the function's status.

mod common;

use std::time::Duration;

use common::Server;

const HANDLERS: &str = r#"package kubeless

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/kubeless/kubeless/pkg/functions"
)

func Hello(event functions.Event, context functions.Context) (string, error) {
	return "hello world", nil
}

func Echo(event functions.Event, context functions.Context) (string, error) {
	fmt.Printf("event-id=%s event-type=%s event-time=%s event-namespace=%s\n",
		event.EventID, event.EventType, event.EventTime, event.EventNamespace)
	return event.Data, nil
}

func Slow(event functions.Event, context functions.Context) (string, error) {
	select {
	case <-time.After(30 * time.Second):
		return "too late", nil
	case <-event.Extensions.Context.Done():
		fmt.Println("context cancelled at the timeout")
		time.Sleep(30 * time.Second)
		return "cancelled", nil
	}
}

func Fail(event functions.Event, context functions.Context) (string, error) {
	return "", errors.New("boom from the handler")
}

func Created(event functions.Event, context functions.Context) (string, error) {
	event.Extensions.Response.Header().Set("X-Made-By", "go")
	event.Extensions.Response.WriteHeader(http.StatusCreated)
	return "created " + context.FunctionName, nil
}
"#;

const UUID_FN: &str = r#"package kubeless

import (
	"github.com/google/uuid"
	"github.com/kubeless/kubeless/pkg/functions"
)

func Parse(event functions.Event, context functions.Context) (string, error) {
	id, err := uuid.Parse("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	if err != nil {
		return "", err
	}
	return "uuid version " + id.Version().String(), nil
}
"#;

const GO_MOD: &str = "module function\n\ngo 1.21\n\nrequire github.com/google/uuid v1.6.0\n";

const BROKEN: &str = r#"package kubeless

import "github.com/kubeless/kubeless/pkg/functions"

func Broken(event functions.Event, context functions.Context) (string, error) {
	return undefinedThing, nil
}
"#;

fn require_tool(tool: &str) {
    let ok = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{tool} must be installed for the go end-to-end tests (see scripts/deps/runtimes.sh)"
    );
}

fn deploy(s: &Server, name: &str, runtime: &str, handler: &str, file: &str, extra: &[&str]) {
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

fn gateway_post(s: &Server, name: &str, body: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .post(format!("{}/default/{name}", s.gateway()))
        .body(body.to_string())
        .send()
        .expect("gateway request")
}

#[test]
fn go_functions_end_to_end() {
    require_tool("go");
    let s = Server::start();
    let r = s.ok(&["get-server-config"]);
    let config = format!("{}{}", r.stdout, r.stderr);
    assert!(
        config.contains("go1.26") && config.contains("go1.14"),
        "{config}"
    );

    let f = s.file("handlers.go", HANDLERS);
    deploy(&s, "hello", "go1.26", "handlers.Hello", &f, &[]);
    // Legacy Kubeless runtime ids resolve to the installed toolchain.
    deploy(&s, "echo", "go1.14", "handlers.Echo", &f, &[]);
    deploy(
        &s,
        "slow",
        "go1.26",
        "handlers.Slow",
        &f,
        &["--timeout", "1"],
    );
    deploy(&s, "fail", "go1.13", "handlers.Fail", &f, &[]);
    deploy(&s, "created", "go1.26", "handlers.Created", &f, &[]);
    let uuid_fn = s.file("uuidfn.go", UUID_FN);
    let go_mod = s.file("go.mod", GO_MOD);
    deploy(
        &s,
        "uuid",
        "go1.26",
        "uuidfn.Parse",
        &uuid_fn,
        &["--dependencies", &go_mod],
    );
    let broken = s.file("broken.go", BROKEN);
    deploy(&s, "broken", "go1.26", "broken.Broken", &broken, &[]);

    let slow_build = Duration::from_secs(300);
    s.wait_phase("hello", "Ready", slow_build);
    assert_eq!(s.ok(&["function", "call", "hello"]).stdout, "hello world\n");

    s.wait_phase("echo", "Ready", slow_build);
    let r = s.ok(&["function", "call", "echo", "--data", r#"{"a": [1, 2]}"#]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json echo");
    assert_eq!(v, serde_json::json!({"a": [1, 2]}));
    let log = s.wait_log("echo", "event-namespace=cli.kubeless.io");
    assert!(log.contains("event-type=application/json"), "{log}");
    assert!(
        log.contains("event-time=") && !log.contains("event-id= "),
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

    s.wait_phase("slow", "Ready", slow_build);
    let r = s.fails(&["function", "call", "slow"]);
    assert!(r.stderr.contains("Request timeout exceeded"), "{r}");
    s.wait_log("slow", "context cancelled at the timeout");
    // The stuck worker was replaced: the function answers (408 again).
    let r = s.fails(&["function", "call", "slow"]);
    assert!(r.stderr.contains("Request timeout exceeded"), "{r}");

    s.wait_phase("fail", "Ready", slow_build);
    let r = s.fails(&["function", "call", "fail"]);
    assert!(r.stderr.contains("500"), "{r}");
    s.wait_log("fail", "boom from the handler");

    s.wait_phase("created", "Ready", slow_build);
    let resp = gateway_post(&s, "created", "x");
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(resp.headers()["x-made-by"], "go");
    assert_eq!(resp.text().expect("body"), "created Created");

    s.wait_phase("uuid", "Ready", slow_build);
    assert_eq!(
        s.ok(&["function", "call", "uuid"]).stdout,
        "uuid version VERSION_1\n"
    );

    let st = s.wait_phase("broken", "Failed", slow_build);
    let reason = st["reason"].as_str().unwrap_or("");
    assert!(reason.contains("compilation failed"), "{st}");
    assert!(
        reason.contains("broken.go:6") && reason.contains("undefined: undefinedThing"),
        "{st}"
    );
    let d = s.ok(&["function", "describe", "broken"]).stdout;
    assert!(d.contains("undefined: undefinedThing"), "{d}");
}
