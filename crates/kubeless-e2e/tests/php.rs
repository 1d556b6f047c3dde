//! PHP functions end to end: Kubeless handlers (a function taking
//! `$event`/`$context` objects), a composer.json whose package is vendored
//! in the function archive (Packagist is not reachable here), the host
//! contract, legacy runtime ids, and a clear error for a package composer
//! cannot get.

mod common;

use std::io::Write;
use std::time::Duration;

use common::Server;

const LANG: &str = "php";

const HANDLERS: &str = r#"<?php
function hello($event, $context) {
    return "hello world";
}

function echo_event($event, $context) {
    echo "event-id={$event->{'event-id'}} event-type={$event->{'event-type'}} event-time={$event->{'event-time'}} event-namespace={$event->{'event-namespace'}}\n";
    return json_encode($event->data);
}

function slow($event, $context) {
    sleep(30);
    return "too late";
}

function fail($event, $context) {
    throw new RuntimeException("boom from the handler");
}

function created($event, $context) {
    $response = $event->extensions->response->withStatus(201)->withHeader('X-Made-By', 'php');
    $response->getBody()->write("created " . $event->data);
    return $response;
}

function teapot($event, $context) {
    http_response_code(418);
    return "short and stout";
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

fn zip(files: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut out));
    let opts = zip::write::SimpleFileOptions::default();
    for (name, body) in files {
        z.start_file(*name, opts).expect("zip entry");
        z.write_all(body.as_bytes()).expect("zip write");
    }
    z.finish().expect("zip");
    out
}

#[test]
fn php_functions_end_to_end() {
    require_tool("php");
    require_tool("composer");
    let s = Server::start();
    let r = s.ok(&["get-server-config"]);
    let config = format!("{}{}", r.stdout, r.stderr);
    assert!(
        config.contains("php8.2") && config.contains("php7.4"),
        "{config}"
    );

    let f = s.file("handlers.php", HANDLERS);
    deploy(&s, "hello", "php8.2", "handlers.hello", &f, &[]);
    // Legacy Kubeless runtime ids resolve to the installed interpreter.
    deploy(&s, "echo", "php7.4", "handlers.echo_event", &f, &[]);
    deploy(
        &s,
        "slow",
        "php8.2",
        "handlers.slow",
        &f,
        &["--timeout", "1"],
    );
    deploy(&s, "fail", "php7.2", "handlers.fail", &f, &[]);
    deploy(&s, "created", "php8.2", "handlers.created", &f, &[]);
    deploy(&s, "teapot", "php8.2", "handlers.teapot", &f, &[]);

    // A package vendored in the archive, installed by composer from a path
    // repository, next to an extension Debian ships (php-mbstring).
    let archive = s.file(
        "greet.zip",
        zip(&[
            (
                "greet.php",
                "<?php\nrequire 'vendor/autoload.php';\nfunction handler($event, $context) {\n    return mb_strtoupper(greet('php'));\n}\n",
            ),
            (
                "lib/greeter/composer.json",
                r#"{"name": "acme/greeter", "version": "1.0.0", "autoload": {"files": ["greeter.php"]}}"#,
            ),
            ("lib/greeter/greeter.php", "<?php\nfunction greet($who) { return \"hello $who\"; }\n"),
        ]),
    );
    let composer = s.file(
        "composer.json",
        r#"{"repositories": [{"type": "path", "url": "lib/greeter"}, {"packagist.org": false}],
            "require": {"acme/greeter": "*", "ext-mbstring": "*"}}"#,
    );
    deploy(
        &s,
        "greet",
        "php8.2",
        "greet.handler",
        &archive,
        &["--dependencies", &composer],
    );
    let missing = s.file(
        "missing/composer.json",
        r#"{"require": {"monolog/monolog": "^3.0"}}"#,
    );
    deploy(
        &s,
        "missing",
        "php8.2",
        "handlers.hello",
        &f,
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

    s.wait_phase("teapot", "Ready", slow_build);
    let resp = gateway_post(&s, "teapot", "");
    assert_eq!(resp.status().as_u16(), 418);
    assert_eq!(resp.text().expect("body"), "short and stout");

    s.wait_phase("greet", "Ready", slow_build);
    assert_eq!(s.ok(&["function", "call", "greet"]).stdout, "HELLO PHP\n");

    let st = s.wait_phase("missing", "Failed", slow_build);
    let reason = st["reason"].as_str().unwrap_or("");
    assert!(reason.contains("dependency installation failed"), "{st}");
    assert!(reason.contains("Packagist is not reachable"), "{st}");
}
