//! Java functions end to end: Kubeless handlers (class `io.kubeless.<Module>`,
//! `String method(io.kubeless.Event, io.kubeless.Context)`) compiled once per
//! artifact, a Kubeless-style pom.xml whose dependency comes from Maven
//! Central, the host contract (Kubeless's Java runtime had no timeout),
//! legacy runtime ids, and a compile error reported in the function's status.

mod common;

use std::time::Duration;

use common::Server;

const HANDLERS: &str = r#"package io.kubeless;

import io.kubeless.Context;
import io.kubeless.Event;

public class Handlers {
    public String hello(io.kubeless.Event event, io.kubeless.Context context) {
        return "hello world";
    }

    public String echo(Event event, Context context) {
        System.out.println("event-id=" + event.EventID + " event-type=" + event.EventType
            + " event-time=" + event.EventTime + " event-namespace=" + event.EventNamespace);
        return event.Data;
    }

    public String slow(Event event, Context context) throws InterruptedException {
        Thread.sleep(30000);
        return "too late";
    }

    public String fail(Event event, Context context) {
        throw new IllegalStateException("boom from the handler");
    }

    public Response created(Event event, Context context) {
        return Response.status(201).header("X-Made-By", "java").body("created " + context.functionName);
    }
}
"#;

const UPPER: &str = r#"package io.kubeless;

import org.apache.commons.lang3.StringUtils;

public class Upper {
    public String shout(io.kubeless.Event event, io.kubeless.Context context) {
        return StringUtils.upperCase("hello ") + StringUtils.reverse("avaj");
    }
}
"#;

// A pom as Kubeless documented it: its parent and `params` exist in no
// public repository and are provided by the runtime.
const POM: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <artifactId>function</artifactId>
  <name>function</name>
  <version>1.0-SNAPSHOT</version>
  <parent>
    <groupId>io.kubeless</groupId>
    <artifactId>kubeless</artifactId>
    <version>1.0-SNAPSHOT</version>
  </parent>
  <dependencies>
    <dependency>
      <groupId>org.apache.commons</groupId>
      <artifactId>commons-lang3</artifactId>
      <version>3.14.0</version>
    </dependency>
    <dependency>
      <groupId>io.kubeless</groupId>
      <artifactId>params</artifactId>
      <version>1.0-SNAPSHOT</version>
    </dependency>
  </dependencies>
</project>
"#;

const BROKEN: &str = r#"package io.kubeless;

public class Broken {
    public String run(Event event, Context context) {
        int n = "not a number";
        return "x";
    }
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
fn java_functions_end_to_end() {
    require_tool("java");
    require_tool("javac");
    require_tool("mvn");
    let s = Server::start();
    let r = s.ok(&["get-server-config"]);
    let config = format!("{}{}", r.stdout, r.stderr);
    assert!(
        config.contains("java17") && config.contains("java11"),
        "{config}"
    );

    let f = s.file("Handlers.java", HANDLERS);
    deploy(&s, "hello", "java17", "Handlers.hello", &f, &[]);
    // Legacy Kubeless runtime ids resolve to the installed JDK.
    deploy(&s, "echo", "java11", "Handlers.echo", &f, &[]);
    deploy(
        &s,
        "slow",
        "java17",
        "Handlers.slow",
        &f,
        &["--timeout", "1"],
    );
    deploy(&s, "fail", "java1.8", "Handlers.fail", &f, &[]);
    deploy(&s, "created", "java17", "Handlers.created", &f, &[]);
    let upper = s.file("Upper.java", UPPER);
    let pom = s.file("pom.xml", POM);
    deploy(
        &s,
        "upper",
        "java11",
        "Upper.shout",
        &upper,
        &["--dependencies", &pom],
    );
    let broken = s.file("Broken.java", BROKEN);
    deploy(&s, "broken", "java17", "Broken.run", &broken, &[]);

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
        !log.contains("event-id=null") && !log.contains("event-time=null"),
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
    assert_eq!(resp.headers()["x-made-by"], "java");
    assert_eq!(resp.text().expect("body"), "created created");

    s.wait_phase("upper", "Ready", slow_build);
    assert_eq!(s.ok(&["function", "call", "upper"]).stdout, "HELLO java\n");

    let st = s.wait_phase("broken", "Failed", slow_build);
    let reason = st["reason"].as_str().unwrap_or("");
    assert!(reason.contains("compilation failed"), "{st}");
    assert!(
        reason.contains("Broken.java:5") && reason.contains("incompatible types"),
        "{st}"
    );
    let d = s.ok(&["function", "describe", "broken"]).stdout;
    assert!(d.contains("incompatible types"), "{d}");
}
