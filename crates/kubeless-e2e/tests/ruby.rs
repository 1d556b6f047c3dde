//! Ruby functions end to end: Kubeless handlers (`def handler(event,
//! context)` with symbol keys), a Gemfile resolved by bundler from gems
//! installed on the machine (RubyGems is not reachable here), the host
//! contract, legacy runtime ids, and a clear error for a gem that cannot be
//! installed.

mod common;

use std::time::Duration;

use common::Server;

const LANG: &str = "ruby";

const HANDLERS: &str = r#"
def hello(event, context)
  'hello world'
end

def echo(event, context)
  puts "event-id=#{event[:'event-id']} event-type=#{event[:'event-type']} event-time=#{event[:'event-time']} event-namespace=#{event[:'event-namespace']}"
  event[:data]
end

def slow(event, context)
  sleep 30
  'too late'
end

def fail(event, context)
  raise ArgumentError, 'boom from the handler'
end

def created(event, context)
  [201, { 'X-Made-By' => 'ruby' }, "created #{event[:data]}"]
end
"#;

const WEBRICK_FN: &str = "require 'webrick'\n\ndef handler(event, context)\n  \"webrick #{WEBrick::VERSION.split('.').first}\"\nend\n";

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
fn ruby_functions_end_to_end() {
    require_tool("ruby");
    require_tool("bundle");
    let s = Server::start();
    let r = s.ok(&["get-server-config"]);
    let config = format!("{}{}", r.stdout, r.stderr);
    assert!(
        config.contains("ruby3.1") && config.contains("ruby2.6"),
        "{config}"
    );

    let f = s.file("handlers.rb", HANDLERS);
    deploy(&s, "hello", "ruby3.1", "handlers.hello", &f, &[]);
    // Legacy Kubeless runtime ids resolve to the installed interpreter.
    deploy(&s, "echo", "ruby2.6", "handlers.echo", &f, &[]);
    deploy(
        &s,
        "slow",
        "ruby3.1",
        "handlers.slow",
        &f,
        &["--timeout", "1"],
    );
    deploy(&s, "fail", "ruby2.5", "handlers.fail", &f, &[]);
    deploy(&s, "created", "ruby3.1", "handlers.created", &f, &[]);
    // webrick is a gem Debian ships (ruby-webrick), not part of Ruby 3.1.
    let web = s.file("web.rb", WEBRICK_FN);
    let gemfile = s.file("Gemfile", "source 'https://rubygems.org'\ngem 'webrick'\n");
    deploy(
        &s,
        "webrick",
        "ruby3.1",
        "web.handler",
        &web,
        &["--dependencies", &gemfile],
    );
    let missing = s.file(
        "missing/Gemfile",
        "source 'https://rubygems.org'\ngem 'no_such_gem_for_kubeless'\n",
    );
    deploy(
        &s,
        "missing",
        "ruby3.1",
        "web.handler",
        &web,
        &["--dependencies", &missing],
    );

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
        log.contains("event-time=20") && !log.contains("event-id= "),
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
    assert_eq!(resp.headers()["x-made-by"], LANG);
    assert_eq!(resp.text().expect("body"), "created x");

    s.wait_phase("webrick", "Ready", slow_build);
    assert_eq!(s.ok(&["function", "call", "webrick"]).stdout, "webrick 1\n");

    let st = s.wait_phase("missing", "Failed", slow_build);
    let reason = st["reason"].as_str().unwrap_or("");
    assert!(reason.contains("no_such_gem_for_kubeless"), "{st}");
    assert!(reason.contains("RubyGems is not reachable"), "{st}");
}
