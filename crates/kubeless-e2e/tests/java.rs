//! Java functions end to end: Kubeless handlers (class `io.kubeless.<Module>`,
//! `String method(io.kubeless.Event, io.kubeless.Context)`) compiled once per
//! artifact, a Kubeless-style pom.xml whose dependency comes from Maven
//! Central, the host contract (Kubeless's Java runtime had no timeout),
//! legacy runtime ids, and a compile error reported in the function's status.

mod common;

use common::Server;
use common::contract::{BUILD, Contract, check_contract, deploy, deploy_contract, require_tool};

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

const UPPER: &str = include_str!("fixtures/java/Upper.java");

// A pom as Kubeless documented it: its parent and `params` exist in no
// public repository and are provided by the runtime.
const POM: &str = include_str!("fixtures/java/pom.xml");

const BROKEN: &str = r#"package io.kubeless;

public class Broken {
    public String run(Event event, Context context) {
        int n = "not a number";
        return "x";
    }
}
"#;

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
    // Legacy Kubeless runtime ids (java11, java1.8) resolve to the installed toolchain.
    let c = Contract {
        lang: "java",
        file: &f,
        handlers: [
            "Handlers.hello",
            "Handlers.echo",
            "Handlers.slow",
            "Handlers.fail",
            "Handlers.created",
        ],
        runtimes: ["java17", "java11", "java17", "java1.8", "java17"],
        created_body: "created created",
    };
    deploy_contract(&s, &c);
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

    check_contract(&s, &c);

    s.wait_phase("upper", "Ready", BUILD);
    assert_eq!(s.ok(&["function", "call", "upper"]).stdout, "HELLO java\n");

    let st = s.wait_phase("broken", "Failed", BUILD);
    let reason = st["reason"].as_str().unwrap_or("");
    assert!(reason.contains("compilation failed"), "{st}");
    assert!(
        reason.contains("Broken.java:5") && reason.contains("incompatible types"),
        "{st}"
    );
    let d = s.ok(&["function", "describe", "broken"]).stdout;
    assert!(d.contains("incompatible types"), "{d}");
}
