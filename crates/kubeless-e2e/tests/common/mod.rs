//! The harness: a real `kubeless server` in a temporary `$KUBELESS_HOME`,
//! driven through the built `kubeless` binary exactly as a user would.
//!
//! The binaries come from the workspace's target directory (`cargo build`
//! first; the test command in the README does). A missing binary or
//! interpreter fails the test: nothing here skips.

#![allow(dead_code)]

pub mod contract;
pub mod host;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// The directory holding the built `kubeless` and `kubeless-runtime`.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KUBELESS_BIN_DIR") {
        return PathBuf::from(d);
    }
    // target/<profile>/deps/<test> -> target/<profile>
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    for b in ["kubeless", "kubeless-runtime"] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: run `cargo build --workspace` before the end-to-end tests",
            dir.join(b).display()
        );
    }
    dir
}

pub struct Server {
    pub home: tempfile::TempDir,
    child: Option<Child>,
    log: PathBuf,
    /// Flags added to `kubeless server` (kept across restarts).
    extra: Vec<String>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Start with extra `kubeless server` flags.
    pub fn start_with(extra: &[&str]) -> Server {
        let home = tempfile::tempdir().expect("temp KUBELESS_HOME");
        let log = home.path().join("server.log");
        let mut s = Server {
            home,
            child: None,
            log,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.home.path().join("config.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log file");
        let child = Command::new(bin_dir().join("kubeless"))
            .args([
                "server",
                "--api-addr",
                "127.0.0.1:0",
                "--gateway-addr",
                "127.0.0.1:0",
            ])
            .args(&self.extra)
            .env("KUBELESS_HOME", self.home.path())
            .env_remove("KUBELESS_SERVER")
            .env_remove("KUBELESS_TOKEN")
            .env_remove("KUBELESS_GATEWAY")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start kubeless server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(cfg) = self.config()
                && reqwest::blocking::get(format!(
                    "{}/healthz",
                    cfg["server"].as_str().unwrap_or("")
                ))
                .is_ok()
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("kubeless server exited ({status}):\n{}", self.server_log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not come up:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn config(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.home.path().join("config.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn gateway(&self) -> String {
        self.config().expect("client config")["gateway"]
            .as_str()
            .expect("gateway")
            .to_string()
    }

    pub fn api(&self) -> String {
        self.config().expect("client config")["server"]
            .as_str()
            .expect("server")
            .to_string()
    }

    pub fn token(&self) -> String {
        self.config().expect("client config")["token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A `kubeless` command with this server's home.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin_dir().join("kubeless"));
        c.env("KUBELESS_HOME", self.home.path())
            .env_remove("KUBELESS_SERVER")
            .env_remove("KUBELESS_TOKEN")
            .env_remove("KUBELESS_GATEWAY")
            .env_remove("KUBELESS_BACKEND")
            .stdin(Stdio::null());
        c
    }

    /// Run `kubeless <args>`.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.cmd().args(args).output().expect("run kubeless");
        Run::from(args, out)
    }

    /// Run `kubeless <args>` and require success.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert!(
            r.success,
            "kubeless {args:?} failed:\n{r}\n--- server log ---\n{}",
            self.server_log()
        );
        r
    }

    /// Run `kubeless <args>` and require failure.
    pub fn fails(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert!(!r.success, "kubeless {args:?} should have failed:\n{r}");
        r
    }

    /// The stored Function as JSON.
    pub fn function(&self, name: &str) -> Value {
        let r = self.ok(&["function", "describe", name, "-o", "json"]);
        serde_json::from_str(&r.stdout).expect("describe -o json is JSON")
    }

    /// Wait until the function's status phase is `phase`; returns the status.
    pub fn wait_phase(&self, name: &str, phase: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let f = self.function(name);
            let status = f.get("status").cloned().unwrap_or(Value::Null);
            if status["phase"] == phase {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "function {name} did not reach {phase} within {timeout:?}; status {status}\n--- function log ---\n{}\n--- server log ---\n{}",
                self.run(&["function", "logs", name]).stdout,
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_ready(&self, name: &str) -> Value {
        self.wait_phase(name, "Ready", Duration::from_secs(120))
    }

    /// Wait until `kubeless function call` prints `want`.
    pub fn wait_answer(&self, args: &[&str], want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.run(args);
            if r.success && r.stdout.trim() == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kubeless {args:?} never answered {want:?}; last:\n{r}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The function's log, waiting until it contains `needle`.
    pub fn wait_log(&self, name: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.ok(&["function", "logs", name]).stdout;
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "log of {name} never contained {needle:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .map(|c| c.id() as i32)
            .expect("server running")
    }

    /// `kill -9` the server.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.spawn();
    }

    /// SIGTERM and wait; returns how long the shutdown took.
    pub fn stop(&mut self) -> Duration {
        let start = Instant::now();
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if c.try_wait().ok().flatten().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("server did not stop within 30 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        start.elapsed()
    }

    /// Write a file under the test's home and return its path.
    pub fn file(&self, name: &str, body: impl AsRef<[u8]>) -> String {
        let p = self.home.path().join("src").join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, body).expect("write file");
        p.to_string_lossy().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

/// A finished CLI command.
pub struct Run {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    args: String,
}

impl Run {
    fn from(args: &[&str], out: Output) -> Run {
        Run {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
            args: args.join(" "),
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ kubeless {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

/// Processes whose command line contains `needle`.
pub fn processes_matching(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmd).contains(needle) {
                    out.push(pid);
                }
            }
        }
    }
    out
}
