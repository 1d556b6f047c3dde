//! HTTP and cron triggers end to end: a real server, the built CLI, real
//! HTTP and HTTPS clients.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

/// Prints one `EVENT {...}` line per call and answers with the path it saw.
const ECHO: &str = r#"import json

def handler(event, context):
    r = event['extensions']['request']
    d = event['data']
    if isinstance(d, bytes):
        d = d.decode()
    print('EVENT ' + json.dumps({'path': r.path, 'method': r.method, 'data': d,
        'id': event['event-id'], 'ns': event['event-namespace'], 'type': event['event-type'],
        'time': event['event-time']}), flush=True)
    return json.dumps({'path': r.path, 'method': r.method})
"#;

fn deploy_echo(s: &Server, name: &str, extra: &[&str]) {
    let code = s.file("echo.py", ECHO);
    let mut args = vec![
        "function",
        "deploy",
        name,
        "--runtime",
        "python3.11",
        "--handler",
        "echo.handler",
        "--from-file",
        &code,
    ];
    args.extend_from_slice(extra);
    s.ok(&args);
    s.wait_ready(name);
}

/// The `EVENT` lines of a function's log, parsed.
fn events(s: &Server, name: &str) -> Vec<Value> {
    s.ok(&["function", "logs", name])
        .stdout
        .lines()
        .filter_map(|l| l.split_once("EVENT ").map(|(_, j)| j))
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect()
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn trigger_status(s: &Server, kind: &str, name: &str) -> Value {
    let r = s.ok(&["trigger", kind, "list", "-o", "wide"]);
    assert!(r.stdout.contains("DELIVERED"), "{r}");
    let api = s.api();
    let plural = match kind {
        "http" => "httptriggers",
        "cronjob" => "cronjobtriggers",
        "nats" => "natstriggers",
        _ => "kafkatriggers",
    };
    let v: Value = reqwest::blocking::Client::new()
        .get(format!(
            "{api}/apis/kubeless.io/v1beta1/namespaces/default/{plural}/{name}"
        ))
        .bearer_auth(s.token())
        .send()
        .expect("read trigger")
        .json()
        .expect("trigger JSON");
    v["status"].clone()
}

#[test]
fn http_trigger_routes_by_host_and_path_with_basic_auth_cors_and_tls() {
    let s = Server::start_with(&["--gateway-tls-addr", "127.0.0.1:0"]);
    deploy_echo(&s, "echo", &[]);

    // Basic auth from an htpasswd secret (bcrypt, as `htpasswd -B` writes).
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
    s.ok(&[
        "secret",
        "create",
        "web-auth",
        "--from-literal",
        &format!("auth=alice:{hash}"),
    ]);
    // A certificate for the host, and a secret that is not one.
    let ck =
        rcgen::generate_simple_self_signed(vec!["web.example.test".to_string()]).expect("cert");
    let crt = s.file("tls.crt", ck.cert.pem());
    let key = s.file("tls.key", ck.signing_key.serialize_pem());
    s.ok(&[
        "secret",
        "create",
        "web-tls",
        "--from-file",
        &format!("tls.crt={crt}"),
        "--from-file",
        &format!("tls.key={key}"),
    ]);
    s.ok(&[
        "secret",
        "create",
        "not-tls",
        "--from-literal",
        "tls.crt=hello",
        "--from-literal",
        "tls.key=world",
    ]);

    s.ok(&[
        "trigger",
        "http",
        "create",
        "web",
        "--function-name",
        "echo",
        "--hostname",
        "web.example.test",
        "--path",
        "api",
        "--basic-auth-secret",
        "web-auth",
        "--tls-secret",
        "web-tls",
        "--cors-enable",
    ]);
    s.ok(&[
        "trigger",
        "http",
        "create",
        "open",
        "--function-name",
        "echo",
        "--path",
        "open/door",
    ]);
    s.ok(&[
        "trigger",
        "http",
        "create",
        "broken",
        "--function-name",
        "echo",
        "--hostname",
        "broken.example.test",
        "--tls-secret",
        "not-tls",
    ]);

    let gw = s.gateway();
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let call = |host: &str, path: &str, auth: Option<(&str, &str)>| {
        let mut r = http.get(format!("{gw}{path}")).header("host", host);
        if let Some((u, p)) = auth {
            r = r.basic_auth(u, Some(p));
        }
        r.send().expect("gateway answers")
    };
    // The route appears once the supervisor has read the trigger.
    wait_until("the web trigger to route", Duration::from_secs(20), || {
        (call("web.example.test", "/api", Some(("alice", "s3cret"))).status() == 200).then_some(())
    });
    let ok = call(
        "web.example.test",
        "/api/deep/path?x=1",
        Some(("alice", "s3cret")),
    );
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().expect("json");
    assert_eq!(
        body["path"], "/",
        "the path is rewritten to / like nginx rewrite-target"
    );
    let wrong = call("web.example.test", "/api", Some(("alice", "wrong")));
    assert_eq!(wrong.status(), 401, "wrong password");
    assert!(wrong.headers().contains_key("www-authenticate"));
    assert_eq!(
        call("web.example.test", "/api", None).status(),
        401,
        "no credentials"
    );
    // Another host does not reach the host-bound trigger.
    assert_eq!(
        call("other.test", "/api", Some(("alice", "s3cret"))).status(),
        404
    );
    // Any host, path prefix on segment boundaries.
    assert_eq!(call("whatever.test", "/open/door/x", None).status(), 200);
    assert_eq!(call("whatever.test", "/open/doorx", None).status(), 404);
    // The function path keeps working beside triggers.
    assert_eq!(call("whatever.test", "/default/echo", None).status(), 200);

    // CORS: a preflight is answered by the gateway, responses carry the headers.
    let pre = http
        .request(reqwest::Method::OPTIONS, format!("{gw}/api"))
        .header("host", "web.example.test")
        .header("origin", "https://app.test")
        .header("access-control-request-method", "POST")
        .send()
        .expect("preflight");
    assert_eq!(pre.status(), 204);
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://app.test"
    );
    assert!(pre.headers().contains_key("access-control-allow-methods"));
    let r = http
        .get(format!("{gw}/api"))
        .header("host", "web.example.test")
        .header("origin", "https://app.test")
        .basic_auth("alice", Some("s3cret"))
        .send()
        .expect("cors get");
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.test"
    );

    // HTTPS with the trigger's certificate, chosen by SNI.
    let tls_url = s.config().expect("config")["gatewayTls"]
        .as_str()
        .expect("gatewayTls")
        .to_string();
    let tls_addr: std::net::SocketAddr = tls_url
        .trim_start_matches("https://")
        .parse()
        .expect("tls addr");
    let https = reqwest::blocking::Client::builder()
        .no_proxy()
        .add_root_certificate(
            reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).expect("root"),
        )
        .resolve("web.example.test", tls_addr)
        .build()
        .expect("https client");
    let url = format!("https://web.example.test:{}/api", tls_addr.port());
    let r = https
        .get(&url)
        .basic_auth("alice", Some("s3cret"))
        .send()
        .expect("https call");
    assert_eq!(r.status(), 200);
    assert_eq!(
        https
            .get(&url)
            .basic_auth("alice", Some("nope"))
            .send()
            .expect("https call")
            .status(),
        401
    );

    // A TLS secret that is not a certificate: the trigger's status says so.
    let st = wait_until(
        "the broken trigger's status",
        Duration::from_secs(10),
        || {
            let st = trigger_status(&s, "http", "broken");
            (st["state"] == "Error").then_some(st)
        },
    );
    assert!(
        st["message"].as_str().unwrap_or("").contains("certificate"),
        "{st}"
    );
    assert_eq!(trigger_status(&s, "http", "web")["state"], "Ready");

    // Deleting the function deletes its triggers, and the routes go.
    s.ok(&["function", "delete", "echo"]);
    let list = s.ok(&["trigger", "http", "list"]).stdout;
    assert!(!list.contains("web"), "{list}");
    wait_until("the route to go", Duration::from_secs(10), || {
        (call("web.example.test", "/api", Some(("alice", "s3cret"))).status() == 404).then_some(())
    });
}

#[test]
fn cron_triggers_fire_with_payload_and_headers() {
    let s = Server::start();
    deploy_echo(&s, "echo", &[]);
    s.ok(&[
        "trigger",
        "cronjob",
        "create",
        "tick",
        "--function",
        "echo",
        "--schedule",
        "@every 1s",
        "--payload",
        r#"{"n": 7}"#,
    ]);
    // `function deploy --schedule` creates a trigger without payload: a GET.
    deploy_echo(&s, "ticker", &["--schedule", "@every 1s"]);

    let posts = wait_until(
        "two POSTs from the cron trigger",
        Duration::from_secs(30),
        || {
            let ev = events(&s, "echo");
            (ev.len() >= 2).then_some(ev)
        },
    );
    for e in &posts {
        assert_eq!(e["method"], "POST", "{e}");
        assert_eq!(e["data"], serde_json::json!({"n": 7}), "{e}");
        assert_eq!(e["ns"], "cronjobtrigger.kubeless.io", "{e}");
        assert_eq!(e["type"], "application/json", "{e}");
        assert!(e["time"].as_str().unwrap_or("").ends_with("+00:00"), "{e}");
        assert!(!e["id"].as_str().unwrap_or("").is_empty(), "{e}");
    }
    let gets = wait_until("a GET from the schedule", Duration::from_secs(30), || {
        let ev = events(&s, "ticker");
        (!ev.is_empty()).then_some(ev)
    });
    assert_eq!(gets[0]["method"], "GET", "{}", gets[0]);

    let st = wait_until(
        "delivered counted in the status",
        Duration::from_secs(10),
        || {
            let st = trigger_status(&s, "cronjob", "tick");
            (st["delivered"].as_u64().unwrap_or(0) >= 2).then_some(st)
        },
    );
    assert_eq!(st["state"], "Ready", "{st}");
    let wide = s.ok(&["trigger", "cronjob", "list", "-o", "wide"]).stdout;
    assert!(wide.contains("Ready"), "{wide}");
    let metrics = reqwest::blocking::get(format!("{}/metrics", s.api()))
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        metrics.contains(r#"kubeless_trigger_delivered_total{kind="CronJobTrigger",namespace="default",trigger="tick"}"#),
        "{metrics}"
    );

    // An invalid schedule is refused up front.
    let bad = s.fails(&[
        "trigger",
        "cronjob",
        "create",
        "bad",
        "--function",
        "echo",
        "--schedule",
        "61 * * * *",
    ]);
    assert!(
        bad.stderr.to_lowercase().contains("minute") || bad.stderr.contains("61"),
        "{bad}"
    );
}
