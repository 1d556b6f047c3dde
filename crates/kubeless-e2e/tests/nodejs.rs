//! Node.js functions end to end, including a dependency from npm.

mod common;

use std::time::Duration;

use common::Server;

const HANDLERS: &str = r#"
module.exports = {
  hello: (event, context) => 'hello world',
  echo: async (event, context) => {
    console.log(`event-id=${event['event-id']} event-type=${event['event-type']} event-time=${event['event-time']} event-namespace=${event['event-namespace']}`);
    return event.data;
  },
  forbidden: (event, context) => { event.extensions.response.status(403).send('no'); },
};
"#;

#[test]
fn hello_echo_status_and_npm_dependency() {
    let s = Server::start();
    let f = s.file("handlers.js", HANDLERS);
    s.ok(&[
        "function",
        "deploy",
        "hello",
        "--runtime",
        "nodejs20",
        "--handler",
        "handlers.hello",
        "--from-file",
        &f,
    ]);
    s.ok(&[
        "function",
        "deploy",
        "echo",
        "--runtime",
        "nodejs14",
        "--handler",
        "handlers.echo",
        "--from-file",
        &f,
    ]);
    s.ok(&[
        "function",
        "deploy",
        "forbidden",
        "--runtime",
        "nodejs20",
        "--handler",
        "handlers.forbidden",
        "--from-file",
        &f,
    ]);
    let code = s.file("isnum.js", "const isNumber = require('is-number');\nmodule.exports.check = (event) => `is-number says ${isNumber(5)}`;\n");
    let pkg = s.file(
        "package.json",
        r#"{"name": "fn", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}}"#,
    );
    s.ok(&[
        "function",
        "deploy",
        "isnum",
        "--runtime",
        "nodejs20",
        "--handler",
        "isnum.check",
        "--from-file",
        &code,
        "--dependencies",
        &pkg,
    ]);

    s.wait_ready("hello");
    assert_eq!(s.ok(&["function", "call", "hello"]).stdout, "hello world\n");
    s.wait_ready("echo");
    let r = s.ok(&["function", "call", "echo", "--data", r#"{"a": [1, 2]}"#]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v, serde_json::json!({"a": [1, 2]}));
    let log = s.wait_log("echo", "event-namespace=cli.kubeless.io");
    assert!(log.contains("event-type=application/json"), "{log}");
    s.wait_ready("forbidden");
    let r = s.fails(&["function", "call", "forbidden"]);
    assert!(r.stderr.contains("403"), "{r}");
    s.wait_phase("isnum", "Ready", Duration::from_secs(300));
    assert_eq!(
        s.ok(&["function", "call", "isnum"]).stdout,
        "is-number says true\n"
    );
    let ls = s.ok(&["function", "ls", "isnum"]).stdout;
    assert!(ls.contains("is-number: 7.0.0"), "node deps column: {ls}");
}
