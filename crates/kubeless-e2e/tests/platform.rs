//! The platform as a whole: restarts, secrets, env, labels, manifests,
//! logs, and every kind of bad input getting one clear message.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Server;

const PY: &str = "def hello(event, context):\n    return 'hello world'\n";
const NODE: &str = "module.exports = { hello: () => 'hello from node' };\n";

#[test]
fn kill_9_and_restart_brings_every_function_back() {
    let mut s = Server::start();
    let py = s.file("hello.py", PY);
    let js = s.file("hello.js", NODE);
    s.ok(&[
        "function",
        "deploy",
        "py",
        "--runtime",
        "python3.11",
        "--handler",
        "hello.hello",
        "--from-file",
        &py,
    ]);
    s.ok(&[
        "function",
        "deploy",
        "js",
        "--runtime",
        "nodejs20",
        "--handler",
        "hello.hello",
        "--from-file",
        &js,
    ]);
    s.wait_ready("py");
    s.wait_ready("js");
    // The runtime hosts run inside the server; each function's first
    // worker is a process of its own, working in the function's code dir.
    let old_hosts = common::processes_matching("kubeless_worker")
        .into_iter()
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|c| c.starts_with(s.home.path()))
        })
        .collect::<Vec<_>>();
    assert_eq!(old_hosts.len(), 2, "one worker per function");

    s.kill9();
    s.restart();
    s.wait_answer(
        &["function", "call", "py"],
        "hello world",
        Duration::from_secs(30),
    );
    s.wait_answer(
        &["function", "call", "js"],
        "hello from node",
        Duration::from_secs(30),
    );
    // The old server's instances were cleared, not left beside the new ones.
    let deadline = Instant::now() + Duration::from_secs(10);
    while old_hosts
        .iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "instances of the killed server survived the restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A graceful stop is bounded and leaves no function process behind.
    let hosts: Vec<i32> = std::fs::read_dir(s.home.path().join("server/run/pids"))
        .expect("pids")
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect();
    assert_eq!(hosts.len(), 2);
    let took = s.stop();
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");
    for p in hosts {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists(),
            "instance {p} outlived the server"
        );
    }
}

#[test]
fn secrets_env_labels_and_memory() {
    let s = Server::start();
    s.ok(&[
        "secret",
        "create",
        "creds",
        "--from-literal",
        "password=s3cr3t",
    ]);
    let list = s.ok(&["secret", "ls"]).stdout;
    assert!(
        list.contains("creds") && !list.contains("s3cr3t"),
        "secret values are never listed: {list}"
    );
    let code = s.file(
        "env.py",
        "import os\n\ndef handler(event, context):\n    with open('/creds/password') as f:\n        secret = f.read()\n    return '%s %s %s %s' % (os.environ['FOO'], secret, os.environ['FUNC_MEMORY_LIMIT'], context['memory-limit'])\n",
    );
    s.ok(&[
        "function",
        "deploy",
        "envy",
        "--runtime",
        "python3.11",
        "--handler",
        "env.handler",
        "--from-file",
        &code,
        "--secrets",
        "creds",
        "--env",
        "FOO=bar",
        "--label",
        "team=blue",
        "--memory",
        "64Mi",
    ]);
    s.wait_ready("envy");
    assert_eq!(
        s.ok(&["function", "call", "envy"]).stdout.trim(),
        "bar s3cr3t 64Mi 64Mi"
    );
    let wide = s.ok(&["function", "ls", "-o", "wide"]).stdout;
    assert!(
        wide.contains("FOO = bar") && wide.contains("team : blue"),
        "{wide}"
    );
    let d = s.ok(&["function", "describe", "envy"]).stdout;
    assert!(d.contains("64Mi"), "{d}");
    // The secret never reaches the function log or the server log.
    assert!(
        !s.ok(&["function", "logs", "envy"])
            .stdout
            .contains("s3cr3t")
    );
    assert!(!s.server_log().contains("s3cr3t"));

    // A function whose secret does not exist says so.
    s.ok(&[
        "function",
        "deploy",
        "nosecret",
        "--runtime",
        "python3.11",
        "--handler",
        "env.handler",
        "--from-file",
        &code,
        "--secrets",
        "missing",
    ]);
    let st = s.wait_phase("nosecret", "Failed", Duration::from_secs(30));
    assert!(
        st["reason"]
            .as_str()
            .unwrap_or("")
            .contains("secret \"missing\" not found"),
        "{st}"
    );
}

#[test]
fn manifests_apply_and_delete() {
    let s = Server::start();
    let manifest = format!(
        r#"apiVersion: kubeless.io/v1beta1
kind: Function
metadata:
  name: from-yaml
  namespace: default
spec:
  runtime: python3.8
  handler: hello.hello
  timeout: "30"
  deps: ""
  checksum: ""
  function-content-type: text
  function: |
{}
---
apiVersion: kubeless.io/v1beta1
kind: HTTPTrigger
metadata:
  name: from-yaml
spec:
  function-name: from-yaml
  path: hello
"#,
        PY.lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let f = s.file("fn.yaml", &manifest);
    let r = s.ok(&["apply", "-f", &f]);
    assert!(
        r.stdout.contains("function.kubeless.io/from-yaml created"),
        "{r}"
    );
    s.wait_answer(
        &["function", "call", "from-yaml"],
        "hello world",
        Duration::from_secs(30),
    );
    let r = s.ok(&["apply", "-f", &f]);
    assert!(r.stdout.contains("configured"), "{r}");
    let r = s.ok(&["trigger", "http", "ls"]);
    assert!(r.stdout.contains("from-yaml"), "{r}");
    s.ok(&["delete", "-f", &f]);
    let r = s.ok(&["function", "ls"]);
    assert!(!r.stdout.contains("from-yaml"), "{r}");
    assert!(
        !s.ok(&["trigger", "http", "ls"])
            .stdout
            .contains("from-yaml")
    );

    // A malformed document: nothing at all is applied.
    let bad = s.file(
        "bad.yaml",
        format!("{manifest}---\nkind: Function\nmetadata: [oops\n"),
    );
    let r = s.fails(&["apply", "-f", &bad]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.to_lowercase().contains("document"), "{r}");
    assert!(
        !s.ok(&["function", "ls"]).stdout.contains("from-yaml"),
        "nothing stored half-way"
    );
}

#[test]
fn logs_follow_streams_new_lines() {
    let s = Server::start();
    let code = s.file(
        "p.py",
        "def handler(event, context):\n    print('marker-%s' % event['data'])\n    return 'ok'\n",
    );
    s.ok(&[
        "function",
        "deploy",
        "printer",
        "--runtime",
        "python3.11",
        "--handler",
        "p.handler",
        "--from-file",
        &code,
    ]);
    s.wait_ready("printer");
    let mut follower = s
        .cmd()
        .args(["function", "logs", "printer", "-f"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("logs -f");
    let out = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("marker-") && line.contains("xyz") {
                let _ = tx.send(());
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    s.ok(&["function", "call", "printer", "--data", "xyz"]);
    let seen = rx.recv_timeout(Duration::from_secs(10)).is_ok();
    let _ = follower.kill();
    let _ = follower.wait();
    let _ = reader.join();
    assert!(seen, "logs -f did not show the new line");
}

#[test]
fn bad_input_gets_one_clear_message() {
    let s = Server::start();
    let good = s.file("hello.py", PY);

    let r = s.fails(&[
        "function",
        "deploy",
        "x",
        "--runtime",
        "cobol85",
        "--handler",
        "a.b",
        "--from-file",
        &good,
    ]);
    assert!(
        r.stderr.contains("Invalid runtime: cobol85") && r.stderr.contains("python3.8"),
        "{r}"
    );
    let r = s.fails(&[
        "function",
        "deploy",
        "Bad_Name",
        "--runtime",
        "python3.11",
        "--handler",
        "hello.hello",
        "--from-file",
        &good,
    ]);
    assert!(r.stderr.contains("Bad_Name"), "{r}");
    let r = s.fails(&[
        "function",
        "deploy",
        "nohandler",
        "--runtime",
        "python3.11",
        "--from-file",
        &good,
    ]);
    assert!(
        r.stderr
            .contains("You must specify handler for the runtime."),
        "{r}"
    );
    let r = s.fails(&[
        "function",
        "deploy",
        "x",
        "--runtime",
        "python3.11",
        "--handler",
        "hello",
        "--from-file",
        &good,
    ]);
    assert!(r.stderr.contains("handler"), "{r}");
    let r = s.fails(&[
        "function",
        "deploy",
        "x",
        "--runtime",
        "python3.11",
        "--handler",
        "a.b",
        "--from-file",
        "/nonexistent.py",
    ]);
    assert!(r.stderr.contains("/nonexistent.py"), "{r}");

    s.ok(&[
        "function",
        "deploy",
        "hello",
        "--runtime",
        "python3.11",
        "--handler",
        "hello.hello",
        "--from-file",
        &good,
    ]);
    let r = s.fails(&[
        "function",
        "deploy",
        "hello",
        "--runtime",
        "python3.11",
        "--handler",
        "hello.hello",
        "--from-file",
        &good,
    ]);
    assert!(r.stderr.contains("already exists"), "{r}");

    // A handler that does not exist, code that does not import.
    s.ok(&[
        "function",
        "deploy",
        "missing",
        "--runtime",
        "python3.11",
        "--handler",
        "hello.nope",
        "--from-file",
        &good,
    ]);
    let broken = s.file("broken.py", "def handler(event, context)\n    return 1\n");
    s.ok(&[
        "function",
        "deploy",
        "broken",
        "--runtime",
        "python3.11",
        "--handler",
        "broken.handler",
        "--from-file",
        &broken,
    ]);
    let badjs = s.file("bad.js", "module.exports = { hello: ( => 1 };\n");
    s.ok(&[
        "function",
        "deploy",
        "badjs",
        "--runtime",
        "nodejs20",
        "--handler",
        "bad.hello",
        "--from-file",
        &badjs,
    ]);
    // A dependency that does not exist.
    let reqs = s.file(
        "requirements.txt",
        "this-package-does-not-exist-kubeless==0.0.1\n",
    );
    s.ok(&[
        "function",
        "deploy",
        "baddeps",
        "--runtime",
        "python3.11",
        "--handler",
        "hello.hello",
        "--from-file",
        &good,
        "--dependencies",
        &reqs,
    ]);

    let st = s.wait_phase("missing", "Failed", Duration::from_secs(30));
    assert!(
        st["reason"]
            .as_str()
            .unwrap_or("")
            .contains("has no function \"nope\""),
        "{st}"
    );
    let st = s.wait_phase("broken", "Failed", Duration::from_secs(30));
    assert!(
        st["reason"].as_str().unwrap_or("").contains("SyntaxError"),
        "{st}"
    );
    let st = s.wait_phase("badjs", "Failed", Duration::from_secs(30));
    assert!(
        st["reason"].as_str().unwrap_or("").contains("SyntaxError"),
        "{st}"
    );
    let st = s.wait_phase("baddeps", "Failed", Duration::from_secs(300));
    let reason = st["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("dependency installation failed")
            && reason.contains("this-package-does-not-exist"),
        "{st}"
    );
    let d = s.ok(&["function", "describe", "missing"]).stdout;
    assert!(d.contains("Failed") && d.contains("nope"), "{d}");
    let r = s.fails(&["function", "call", "missing"]);
    assert!(r.stderr.contains("no ready instance"), "{r}");

    // A checksum that does not match the code.
    let manifest = s.file(
        "bad-sum.yaml",
        "apiVersion: kubeless.io/v1beta1\nkind: Function\nmetadata:\n  name: badsum\nspec:\n  runtime: python3.11\n  handler: hello.hello\n  function-content-type: text\n  checksum: sha256:0000000000000000000000000000000000000000000000000000000000000000\n  function: |\n    def hello(event, context):\n        return 'x'\n",
    );
    s.ok(&["apply", "-f", &manifest]);
    let st = s.wait_phase("badsum", "Failed", Duration::from_secs(30));
    assert!(
        st["reason"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("checksum"),
        "{st}"
    );

    // Bodies over the limit get 413 and the function keeps working.
    s.wait_ready("hello");
    let client = reqwest::blocking::Client::new();
    let resp = client
        .post(format!("{}/default/hello", s.gateway()))
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .expect("gateway answers");
    assert_eq!(resp.status().as_u16(), 413);
    let resp = client
        .get(format!("{}/default/nosuch", s.gateway()))
        .send()
        .expect("gateway");
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(
        s.ok(&["function", "call", "hello"]).stdout.trim(),
        "hello world"
    );

    // A function that prints megabytes only fills its own bounded log.
    let noisy = s.file("noisy.py", "def handler(event, context):\n    for i in range(100000):\n        print('x' * 100)\n    return 'done'\n");
    s.ok(&[
        "function",
        "deploy",
        "noisy",
        "--runtime",
        "python3.11",
        "--handler",
        "noisy.handler",
        "--from-file",
        &noisy,
    ]);
    s.wait_ready("noisy");
    assert_eq!(s.ok(&["function", "call", "noisy"]).stdout.trim(), "done");
    let log = s.ok(&["function", "logs", "noisy"]).stdout;
    assert!(
        log.len() <= 1024 * 1024 + 64 * 1024,
        "log is bounded: {} bytes",
        log.len()
    );
    assert_eq!(
        s.ok(&["function", "call", "hello"]).stdout.trim(),
        "hello world"
    );

    // The local API: wrong token, no server.
    let r = s
        .cmd()
        .args(["function", "ls"])
        .env("KUBELESS_TOKEN", "wrong")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("refused the token"),
        "{err}"
    );
    let r = s
        .cmd()
        .args(["function", "ls"])
        .env("KUBELESS_SERVER", "http://127.0.0.1:9")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("cannot reach the kubeless server"),
        "{err}"
    );
    let resp = client
        .get(format!("{}/apis/kubeless.io/v1beta1/functions", s.api()))
        .send()
        .expect("api");
    assert_eq!(resp.status().as_u16(), 401);
    let resp = client
        .post(format!("{}/apis/kubeless.io/v1beta1/namespaces/default/functions", s.api()))
        .bearer_auth(s.token())
        .body("{\"metadata\": {\"name\": \"v\"}, \"spec\": {\"handler\": \"nodot\", \"runtime\": \"python3.11\", \"timeout\": \"-1\"}}")
        .send()
        .expect("api");
    assert_eq!(resp.status().as_u16(), 422);
    let body: serde_json::Value = resp.json().expect("status json");
    let causes = body["details"]["causes"].as_array().expect("causes").len();
    assert!(causes >= 2, "every problem is reported: {body}");
}
