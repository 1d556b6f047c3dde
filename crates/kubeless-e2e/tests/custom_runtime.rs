//! Custom runtimes end to end: a function that brings its own HTTP server
//! (runtime `custom`, the executable named by the handler's module) is
//! started by the supervisor, waited for on `/healthz`, routed through the
//! gateway, restarted when it crashes, and bounded by the gateway's
//! timeout; a missing executable is a clear status, not a crash loop.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::Server;

/// A tiny server in Python's standard library: the kind of program a
/// custom runtime is for. It prints each request (the function log), can
/// crash (`/crash`) and hang (`/sleep`).
const SERVER: &str = r#"#!/usr/bin/env python3
import os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def answer(self):
        if self.path == "/healthz":
            body = b"ok"
        elif self.path == "/crash":
            print("crashing on purpose", flush=True)
            os._exit(3)
        elif self.path == "/sleep":
            time.sleep(30)
            body = b"late"
        else:
            n = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(n).decode()
            print("custom got %s %s %s" % (self.command, self.path, data), flush=True)
            body = ("%s %s handler=%s data=%s" % (
                self.command, self.path, os.environ.get("FUNC_HANDLER"), data)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = answer
    do_POST = answer
    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["FUNC_PORT"])), H).serve_forever()
"#;

fn zip_with_executable(name: &str, body: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut bytes));
        let exec = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        z.start_file(name, exec).expect("zip entry");
        z.write_all(body.as_bytes()).expect("zip write");
        z.finish().expect("zip");
    }
    bytes
}

#[test]
fn own_server_is_supervised_routed_and_restarted() {
    let s = Server::start();
    let zip_path = s.file("custom.zip", zip_with_executable("server", SERVER));
    s.ok(&[
        "function",
        "deploy",
        "mine",
        "--runtime",
        "custom",
        "--handler",
        "server.main",
        "--from-file",
        &zip_path,
        "--port",
        "9090",
        "--timeout",
        "2",
    ]);
    s.wait_ready("mine");
    let r = s.ok(&["function", "call", "mine", "--data", "hi"]);
    assert_eq!(r.stdout.trim(), "POST / handler=main data=hi");
    s.wait_log("mine", "custom got POST / hi");

    // `--port` is kept for Kubernetes (the Service's target port); locally
    // the instance got its own loopback port through FUNC_PORT.
    let f = s.function("mine");
    assert_eq!(f["spec"]["service"]["ports"][0]["targetPort"], 9090, "{f}");

    // Through the gateway: the sub-path and query reach the server.
    let gw = s.gateway();
    let resp = reqwest::blocking::get(format!("{gw}/default/mine/sub/path?x=1")).expect("call");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().expect("body"),
        "GET /sub/path?x=1 handler=main data="
    );

    // A body declared over the limit is refused by the gateway (413).
    let client = reqwest::blocking::Client::new();
    let resp = client
        .post(format!("{gw}/default/mine"))
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .expect("call");
    assert_eq!(resp.status(), 413);

    // A crash: the supervisor starts the server again.
    let _ = reqwest::blocking::get(format!("{gw}/default/mine/crash"));
    s.wait_log("mine", "crashing on purpose");
    s.wait_answer(
        &["function", "call", "mine", "--data", "again"],
        "POST / handler=main data=again",
        Duration::from_secs(60),
    );

    // The platform cannot interrupt a custom server's handler: the gateway
    // gives up at the timeout plus its grace (5 s) with 504.
    let started = Instant::now();
    let resp = client
        .get(format!("{gw}/default/mine/sleep"))
        .timeout(Duration::from_secs(60))
        .send()
        .expect("call");
    assert_eq!(resp.status(), 504);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(6) && took < Duration::from_secs(20),
        "{took:?}"
    );
}

#[test]
fn single_file_server_and_missing_executable() {
    let s = Server::start();
    // A plain file (no execute bit on disk) is made executable: the runtime
    // id says it is the program.
    let f = s.file("server", SERVER);
    s.ok(&[
        "function",
        "deploy",
        "plain",
        "--runtime",
        "custom",
        "--handler",
        "server.run",
        "--from-file",
        &f,
    ]);
    s.wait_ready("plain");
    let r = s.ok(&["function", "call", "plain", "--data", "x"]);
    assert_eq!(r.stdout.trim(), "POST / handler=run data=x");

    // The handler names a module the archive does not have.
    let zip_path = s.file("other.zip", zip_with_executable("server", SERVER));
    s.ok(&[
        "function",
        "deploy",
        "absent",
        "--runtime",
        "custom",
        "--handler",
        "nothere.run",
        "--from-file",
        &zip_path,
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = s.ok(&["function", "describe", "absent"]);
        if d.stdout.contains("has no file \"nothere\" to run") {
            break;
        }
        assert!(Instant::now() < deadline, "no clear status:\n{d}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
