//! What every runtime shares beyond the per-language tests: unavailable
//! runtimes say how to install them, Kubeless's legacy ids run with a
//! warning, binary bodies pass byte-exact, and logs stream while a function
//! is still running.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Server;

#[test]
fn a_runtime_without_its_toolchain_says_how_to_install_it() {
    // A wrong interpreter path stands in for a machine without Ruby, so the
    // test does not depend on what is installed.
    let s = Server::start_with(&["--ruby", "/nonexistent/ruby"]);
    let r = s.ok(&["get-server-config"]);
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(out.contains("python3.11"), "{out}");
    assert!(out.contains("custom"), "{out}");
    assert!(
        out.contains("Unavailable runtimes (ruby is not installed): ruby2.3,")
            && out.contains("install Ruby (apt-get install ruby ruby-bundler)"),
        "{out}"
    );

    let api: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/config", s.api()))
        .bearer_auth(s.token())
        .send()
        .expect("config")
        .json()
        .expect("json");
    let runtimes = api["runtimes"].as_array().expect("runtimes");
    assert!(!runtimes.iter().any(|r| r == "ruby3.1"), "{api}");
    let ruby = &api["unavailableRuntimes"]
        .as_array()
        .expect("unavailableRuntimes")
        .iter()
        .find(|u| u["language"] == "ruby")
        .cloned()
        .expect("ruby listed as unavailable");
    assert!(
        ruby["runtimes"]
            .as_array()
            .expect("ids")
            .iter()
            .any(|r| r == "ruby3.1")
    );

    let f = s.file("hello.rb", "def hello(event, context)\n  'hi'\nend\n");
    let r = s.fails(&[
        "function",
        "deploy",
        "rb",
        "--runtime",
        "ruby3.1",
        "--handler",
        "hello.hello",
        "--from-file",
        &f,
    ]);
    assert!(
        r.stderr.contains(
            "runtime ruby3.1 is not available on this machine: install Ruby (apt-get install ruby ruby-bundler) or point --ruby at it, and restart kubeless server"
        ),
        "{r}"
    );
    // An unknown runtime keeps Kubeless's message.
    let r = s.fails(&[
        "function",
        "deploy",
        "rb",
        "--runtime",
        "cobol85",
        "--handler",
        "hello.hello",
        "--from-file",
        &f,
    ]);
    assert!(r.stderr.contains("Invalid runtime: cobol85"), "{r}");

    // A manifest applied directly gets the same line from the server.
    let manifest = s.file(
        "rb.yaml",
        "apiVersion: kubeless.io/v1beta1\nkind: Function\nmetadata:\n  name: rb\nspec:\n  runtime: ruby2.6\n  handler: hello.hello\n  function-content-type: text\n  function: \"def hello(e, c)\\n 'hi'\\nend\\n\"\n",
    );
    let r = s.fails(&["apply", "-f", &manifest]);
    assert!(
        format!("{}{}", r.stdout, r.stderr)
            .contains("runtime ruby2.6 is not available on this machine"),
        "{r}"
    );
}

#[test]
fn legacy_ids_run_on_the_installed_toolchain_with_a_warning() {
    let s = Server::start();
    let py = s.file(
        "old.py",
        "def hello(event, context):\n    return 'old python'\n",
    );
    let js = s.file("old.js", "module.exports = { hello: () => 'old node' };\n");
    for (name, runtime, file) in [("oldpy", "python3.8", &py), ("oldjs", "nodejs14", &js)] {
        s.ok(&[
            "function",
            "deploy",
            name,
            "--runtime",
            runtime,
            "--handler",
            "old.hello",
            "--from-file",
            file,
        ]);
    }
    s.wait_ready("oldpy");
    s.wait_ready("oldjs");
    assert_eq!(
        s.ok(&["function", "call", "oldpy"]).stdout.trim(),
        "old python"
    );
    assert_eq!(
        s.ok(&["function", "call", "oldjs"]).stdout.trim(),
        "old node"
    );
    s.wait_log(
        "oldpy",
        "kubeless: warning: runtime python3.8 runs on the installed Python 3.",
    );
    s.wait_log(
        "oldjs",
        "kubeless: warning: runtime nodejs14 runs on the installed Node.js ",
    );
    let d = s.ok(&["function", "describe", "oldpy"]);
    assert!(
        d.stdout.contains("Warnings:")
            && d.stdout
                .contains("runtime python3.8 runs on the installed Python 3."),
        "{d}"
    );
    // A current id has nothing to warn about.
    let cur = s.file("cur.py", "def hello(event, context):\n    return 'new'\n");
    s.ok(&[
        "function",
        "deploy",
        "curpy",
        "--runtime",
        "python3.11",
        "--handler",
        "cur.hello",
        "--from-file",
        &cur,
    ]);
    s.wait_ready("curpy");
    let d = s.ok(&["function", "describe", "curpy"]);
    assert!(!d.stdout.contains("Warnings:"), "{d}");
}

#[test]
fn python_and_node_return_binary_bodies_byte_exact() {
    let s = Server::start();
    let py = s.file(
        "bin.py",
        "def blob(event, context):\n    return bytes(range(256)) * 4\n",
    );
    let js = s.file(
        "bin.js",
        "module.exports = { blob: () => { const b = Buffer.alloc(1024); for (let i = 0; i < 1024; i++) b[i] = i % 256; return b; } };\n",
    );
    for (name, runtime, file) in [("binpy", "python3.11", &py), ("binjs", "nodejs20", &js)] {
        s.ok(&[
            "function",
            "deploy",
            name,
            "--runtime",
            runtime,
            "--handler",
            "bin.blob",
            "--from-file",
            file,
        ]);
    }
    let want: Vec<u8> = (0..1024).map(|i| (i % 256) as u8).collect();
    let gw = s.gateway();
    for name in ["binpy", "binjs"] {
        s.wait_ready(name);
        let resp = reqwest::blocking::get(format!("{gw}/default/{name}")).expect("call");
        assert_eq!(resp.status(), 200, "{name}");
        let got = resp.bytes().expect("body");
        assert_eq!(got.as_ref(), want.as_slice(), "{name}");
    }
}

/// Each handler prints, waits 3 s, prints again: the first line must show
/// up in `kubeless function logs -f` before the call returns.
const STREAMERS: &[(&str, &str, &str)] = &[
    (
        "python3.11",
        "stream.py",
        "import time\ndef run(event, context):\n    print('first-python', flush=True)\n    time.sleep(3)\n    print('second-python', flush=True)\n    return 'done'\n",
    ),
    (
        "nodejs20",
        "stream.js",
        "module.exports = { run: async () => { console.log('first-nodejs'); await new Promise(r => setTimeout(r, 3000)); console.log('second-nodejs'); return 'done'; } };\n",
    ),
    (
        "ruby3.1",
        "stream.rb",
        "def run(event, context)\n  puts 'first-ruby'\n  $stdout.flush\n  sleep 3\n  puts 'second-ruby'\n  'done'\nend\n",
    ),
    (
        "php8.2",
        "stream.php",
        "<?php\nfunction run($event, $context) {\n  echo \"first-php\\n\";\n  flush();\n  sleep(3);\n  echo \"second-php\\n\";\n  return 'done';\n}\n",
    ),
    (
        "go1.26",
        "stream.go",
        "package kubeless\n\nimport (\n\t\"fmt\"\n\t\"time\"\n\n\t\"github.com/kubeless/kubeless/pkg/functions\"\n)\n\nfunc Run(event functions.Event, context functions.Context) (string, error) {\n\tfmt.Println(\"first-go\")\n\ttime.Sleep(3 * time.Second)\n\tfmt.Println(\"second-go\")\n\treturn \"done\", nil\n}\n",
    ),
    (
        "java17",
        "Stream.java",
        "package io.kubeless;\n\npublic class Stream {\n    public String run(io.kubeless.Event event, io.kubeless.Context context) throws Exception {\n        System.out.println(\"first-java\");\n        System.out.flush();\n        Thread.sleep(3000);\n        System.out.println(\"second-java\");\n        return \"done\";\n    }\n}\n",
    ),
];

#[test]
fn every_runtime_streams_logs_while_running() {
    let s = Server::start();
    for (runtime, file, code) in STREAMERS {
        let lang = runtime.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        // Go exports the handler; Java's module is the class.
        let handler = match lang {
            "go" => "stream.Run",
            "java" => "Stream.run",
            _ => "stream.run",
        };
        let name = format!("stream-{lang}");
        let path = s.file(file, code);
        s.ok(&[
            "function",
            "deploy",
            &name,
            "--runtime",
            runtime,
            "--handler",
            handler,
            "--from-file",
            &path,
            "--timeout",
            "30",
        ]);
        s.wait_phase(&name, "Ready", Duration::from_secs(300));

        let mut follow = s
            .cmd()
            .args(["function", "logs", "-f", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("logs -f");
        let out = follow.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<(String, Instant)>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send((line, Instant::now())).is_err() {
                    break;
                }
            }
        });

        let gw = s.gateway();
        let url = format!("{gw}/default/{name}");
        let call = std::thread::spawn(move || {
            let body = reqwest::blocking::Client::new()
                .get(url)
                .timeout(Duration::from_secs(60))
                .send()
                .and_then(|r| r.text());
            (body, Instant::now())
        });

        let first = format!("first-{lang}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let seen_at = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((line, at)) if line.contains(&first) => break at,
                Ok(_) => continue,
                Err(e) => panic!(
                    "{first} never streamed ({e}):\n{}",
                    s.run(&["function", "logs", &name]).stdout
                ),
            }
        };
        let (body, returned_at) = call.join().expect("call thread");
        assert_eq!(body.expect("call").trim(), "done", "{runtime}");
        assert!(
            seen_at < returned_at,
            "{runtime}: the first line arrived only after the call returned"
        );
        let second = format!("second-{lang}");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((line, _)) if line.contains(&second) => break,
                Ok(_) => continue,
                Err(e) => panic!("{second} never streamed ({e})"),
            }
        }
        let _ = follow.kill();
        let _ = follow.wait();
        drop(rx);
        let _ = reader.join();
    }
}
