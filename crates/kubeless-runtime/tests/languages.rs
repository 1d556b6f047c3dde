//! The runtime host with the Ruby, PHP, Go and Java workers, driven over
//! real HTTP: event fields, status and headers set by the function, 500 on
//! an error, 408 with only the stuck worker replaced, load failures. Go and
//! Java fixtures are built with `kubeless-runtime compile` first.

mod common;

use std::time::Duration;

use common::{Options, client, load_failure, start};
use serde_json::Value;

struct Lang {
    runtime: &'static str,
    module: &'static str,
    echo: &'static str,
    status: &'static str,
    fail: &'static str,
    slow: &'static str,
}

const RUBY: Lang = Lang {
    runtime: "ruby2.6",
    module: "langs",
    echo: "echo",
    status: "status",
    fail: "fail",
    slow: "slow",
};
const PHP: Lang = Lang {
    runtime: "php7.4",
    module: "langs",
    echo: "echo_event",
    status: "status",
    fail: "fail",
    slow: "slow",
};
const GO: Lang = Lang {
    runtime: "go1.14",
    module: "langs",
    echo: "Echo",
    status: "Status",
    fail: "Fail",
    slow: "Slow",
};
const JAVA: Lang = Lang {
    runtime: "java11",
    module: "Langs",
    echo: "echo",
    status: "status",
    fail: "fail",
    slow: "slow",
};

fn contract(lang: &Lang, json_data: bool) {
    let host = start(Options::runtime(lang.runtime, lang.module, lang.echo));
    let body = if json_data { r#"{"k":1}"# } else { "plain" };
    let r = client()
        .put(host.url("/p/q?a=1"))
        .header(
            "Content-Type",
            if json_data {
                "application/json"
            } else {
                "text/plain"
            },
        )
        .header("Event-Id", "id-1")
        .header("Event-Namespace", "cli.kubeless.io")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let v: Value = r.json().unwrap();
    if json_data {
        assert_eq!(v["data"], serde_json::json!({"k": 1}), "{v}");
    } else {
        assert_eq!(v["data"], "plain", "{v}");
    }
    assert_eq!(v["event-id"], "id-1", "{v}");
    assert_eq!(v["method"], "PUT", "{v}");
    assert_eq!(v["path"], "/p/q", "{v}");
    assert!(
        host.stdout
            .wait_for("\"PUT /p/q?a=1 HTTP/1.1\" 200", Duration::from_secs(5)),
        "request log"
    );
    let metrics = client()
        .get(host.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("function_calls_total{method=\"PUT\"} 1"),
        "{metrics}"
    );
    drop(host);

    let host = start(Options::runtime(lang.runtime, lang.module, lang.status));
    let r = client().get(host.url("/")).send().unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["x-lang"],
        lang.runtime
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '.')
    );
    assert_eq!(r.text().unwrap(), "made");
    drop(host);

    let host = start(Options::runtime(lang.runtime, lang.module, lang.fail));
    let r = client().get(host.url("/")).send().unwrap();
    assert_eq!(r.status(), 500);
    assert!(
        host.stderr
            .wait_for("Function returned an exception", Duration::from_secs(5)),
        "{}",
        host.stderr.text()
    );
    assert!(host.stderr.wait_for("boom", Duration::from_secs(5)));
    drop(host);

    let host = start(
        Options::runtime(lang.runtime, lang.module, lang.slow)
            .env("FUNC_TIMEOUT", "1")
            .env("KUBELESS_WORKERS", "2"),
    );
    let url = host.url("/");
    let stuck =
        std::thread::spawn(move || client().post(url).body("long").send().unwrap().status());
    std::thread::sleep(Duration::from_millis(200));
    let r = client().post(host.url("/")).body("short").send().unwrap();
    assert_eq!(r.status(), 200, "a second worker serves while one is stuck");
    assert_eq!(stuck.join().unwrap(), 408);
    let r = client().post(host.url("/")).body("short").send().unwrap();
    assert_eq!(r.status(), 200, "the stuck worker was replaced");
}

#[test]
fn ruby_contract() {
    contract(&RUBY, true);
    let (code, stderr) = load_failure(Options::runtime("ruby3.1", "langs", "nope")).unwrap();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("module \"langs\" has no function \"nope\""),
        "{stderr}"
    );
    let host = start(Options::runtime("ruby3.1", "langs", "echo"));
    let r = client()
        .post(host.url("/"))
        .header("Content-Type", "application/json")
        .body("{oops")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn php_contract() {
    contract(&PHP, true);
    let (code, stderr) = load_failure(Options::runtime("php8.2", "langs", "nope")).unwrap();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("module \"langs\" has no function \"nope\""),
        "{stderr}"
    );
}

#[test]
fn go_contract() {
    contract(&GO, false);
}

#[test]
fn java_contract() {
    contract(&JAVA, false);
    let (code, stderr) = load_failure(Options::runtime("java17", "Langs", "nope")).unwrap();
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("has no public method nope"), "{stderr}");
}
