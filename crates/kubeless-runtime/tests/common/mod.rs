//! Harness for the integration tests: starts the real `kubeless-runtime`
//! binary on a free loopback port with a fresh code directory holding the
//! fixtures, and collects its stdout and stderr.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Fails (never skips) when an interpreter the tests need is missing.
pub fn require_interpreter(program: &str) {
    let ok = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{program} must be installed to run the runtime host tests"
    );
}

/// Fails (never skips) when a compiler the tests need is missing.
pub fn require_tool(program: &str, version_flag: &str) {
    let ok = Command::new(program)
        .arg(version_flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{program} must be installed to run the runtime host tests"
    );
}

/// A fresh code directory with every fixture plus a `node_modules` package.
pub fn code_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(FIXTURES).expect("fixtures") {
        let entry = entry.expect("fixture entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy fixture");
    }
    let pkg = dir.path().join("node_modules/leftpad");
    std::fs::create_dir_all(&pkg).expect("node_modules");
    std::fs::write(
        pkg.join("index.js"),
        "module.exports = (s, n) => s.padStart(n, '.');\n",
    )
    .expect("package");
    dir
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Output collected from one stream of the host.
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<String>>);

impl Output {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// Waits until the collected text contains `needle`.
    pub fn wait_for(&self, needle: &str, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn collect(&self, stream: impl Read + Send + 'static) -> JoinHandle<()> {
        let out = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let mut text = out.0.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        })
    }
}

pub struct Host {
    pub child: Child,
    pub port: u16,
    pub stdout: Output,
    pub stderr: Output,
    pub dir: tempfile::TempDir,
    readers: Vec<JoinHandle<()>>,
}

pub struct Options<'a> {
    pub language: &'a str,
    pub module: &'a str,
    pub handler: &'a str,
    pub env: Vec<(&'a str, String)>,
}

impl<'a> Options<'a> {
    pub fn python(module: &'a str, handler: &'a str) -> Self {
        Options {
            language: "python3.11",
            module,
            handler,
            env: Vec::new(),
        }
    }

    pub fn node(module: &'a str, handler: &'a str) -> Self {
        Options {
            language: "nodejs20",
            module,
            handler,
            env: Vec::new(),
        }
    }

    pub fn runtime(language: &'a str, module: &'a str, handler: &'a str) -> Self {
        Options {
            language,
            module,
            handler,
            env: Vec::new(),
        }
    }

    pub fn env(mut self, key: &'a str, value: impl Into<String>) -> Self {
        self.env.push((key, value.into()));
        self
    }
}

/// Spawns the host without waiting for it to become healthy.
pub fn spawn(opts: Options<'_>) -> Host {
    let interpreter = ["python", "nodejs", "ruby", "php", "go", "java"]
        .into_iter()
        .find(|l| opts.language.starts_with(l))
        .map(|l| match l {
            "python" => "python3",
            "nodejs" => "node",
            "go" => "go",
            other => other,
        })
        .expect("a known runtime");
    if interpreter == "go" {
        require_tool("go", "version");
    } else if interpreter == "java" {
        require_tool("javac", "-version");
    } else {
        require_interpreter(interpreter);
    }
    let dir = code_dir();
    // Compiled languages are built the way the artifact cache builds them.
    if interpreter == "go" || interpreter == "java" {
        let out = Command::new(env!("CARGO_BIN_EXE_kubeless-runtime"))
            .args(["compile", "--language", interpreter, "--dir"])
            .arg(dir.path())
            .args(["--module", opts.module, "--handler", opts.handler])
            .output()
            .expect("run kubeless-runtime compile");
        assert!(
            out.status.success(),
            "compile failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kubeless-runtime"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("FUNC_HANDLER", opts.handler)
        .env("MOD_NAME", opts.module)
        .env("FUNC_RUNTIME", opts.language)
        .env("FUNC_PORT", port.to_string())
        .env("KUBELESS_BIND", "127.0.0.1")
        .env("KUBELESS_INSTALL_VOLUME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &opts.env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn kubeless-runtime");
    let stdout = Output::default();
    let stderr = Output::default();
    let readers = vec![
        stdout.collect(child.stdout.take().expect("stdout")),
        stderr.collect(child.stderr.take().expect("stderr")),
    ];
    Host {
        child,
        port,
        stdout,
        stderr,
        dir,
        readers,
    }
}

/// Spawns the host and waits until `/healthz` answers.
pub fn start(opts: Options<'_>) -> Host {
    let mut host = spawn(opts);
    host.wait_healthy().expect("host becomes healthy");
    host
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

impl Host {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn wait_healthy(&mut self) -> Result<()> {
        let start = Instant::now();
        let client = client();
        while start.elapsed() < Duration::from_secs(15) {
            if let Some(status) = self.child.try_wait()? {
                bail!("host exited with {status}; stderr:\n{}", self.stderr.text());
            }
            if let Ok(r) = client.get(self.url("/healthz")).send()
                && r.status() == 200
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("host not healthy in time; stderr:\n{}", self.stderr.text())
    }

    /// Waits for the host to exit on its own and for its output to end.
    pub fn wait_exit(&mut self, within: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return Ok(status);
            }
            if start.elapsed() > within {
                bail!("host still running after {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether process `pid` is gone (absent or a zombie waiting for a reaper).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Waits until `pid` is gone.
pub fn wait_gone(pid: u32, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if process_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    process_gone(pid)
}

/// Reads a pid a handler wrote into the code directory.
pub fn read_pid(path: &Path, within: Duration) -> Result<u32> {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return Ok(pid);
        }
        if start.elapsed() > within {
            bail!("no pid in {}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the host expecting it to fail loading; returns (exit code, stderr).
pub fn load_failure(opts: Options<'_>) -> Result<(i32, String)> {
    let mut host = spawn(opts);
    let status = host
        .wait_exit(Duration::from_secs(15))
        .context("host should exit")?;
    Ok((status.code().unwrap_or(-1), host.stderr.text()))
}
