//! Go functions end to end: Kubeless handlers (`package kubeless`,
//! `functions.Event`/`functions.Context`) compiled once per artifact, a
//! dependency from the Go module proxy, the host contract, legacy runtime
//! ids, and a compile error reported in the function's status.

mod common;

use common::Server;
use common::contract::{BUILD, Contract, check_contract, deploy, deploy_contract, require_tool};

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
    // Legacy Kubeless runtime ids (go1.14, go1.13) resolve to the installed toolchain.
    let c = Contract {
        lang: "go",
        file: &f,
        handlers: [
            "handlers.Hello",
            "handlers.Echo",
            "handlers.Slow",
            "handlers.Fail",
            "handlers.Created",
        ],
        runtimes: ["go1.26", "go1.14", "go1.26", "go1.13", "go1.26"],
        created_body: "created Created",
    };
    deploy_contract(&s, &c);
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

    check_contract(&s, &c);
    s.wait_log("slow", "context cancelled at the timeout");

    s.wait_phase("uuid", "Ready", BUILD);
    assert_eq!(
        s.ok(&["function", "call", "uuid"]).stdout,
        "uuid version VERSION_1\n"
    );

    let st = s.wait_phase("broken", "Failed", BUILD);
    let reason = st["reason"].as_str().unwrap_or("");
    assert!(reason.contains("compilation failed"), "{st}");
    assert!(
        reason.contains("broken.go:6") && reason.contains("undefined: undefinedThing"),
        "{st}"
    );
    let d = s.ok(&["function", "describe", "broken"]).stdout;
    assert!(d.contains("undefined: undefinedThing"), "{d}");
}
