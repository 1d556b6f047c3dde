//! A `kubeless-runtime` host run on its own, the way a function's pod runs
//! it: a real Python worker serving a handler on a TCP port, in its own
//! process group (stopped with SIGTERM, then SIGKILL).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::bin_dir;

/// A running runtime host.
pub struct Host {
    child: Child,
    pub port: u16,
    pub bind: String,
    dir: tempfile::TempDir,
}

/// A free TCP port on `bind`.
pub fn free_port_on(bind: &str) -> u16 {
    std::net::TcpListener::bind((bind, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Host {
    /// Serve `module.function` from `code` (Python) on `bind`, with `env`.
    pub fn python(
        bind: &str,
        module: &str,
        function: &str,
        code: &str,
        env: &[(&str, &str)],
    ) -> Host {
        let dir = tempfile::tempdir().expect("host dir");
        let src = dir.path().join("code");
        std::fs::create_dir(&src).expect("code dir");
        std::fs::write(src.join(format!("{module}.py")), code).expect("handler");
        let port = free_port_on(bind);
        let log = std::fs::File::create(dir.path().join("host.log")).expect("log");
        let mut cmd = Command::new(bin_dir().join("kubeless-runtime"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("FUNC_HANDLER", function)
            .env("MOD_NAME", module)
            .env("FUNC_RUNTIME", "python3.11")
            .env("FUNC_TIMEOUT", "30")
            .env("FUNC_PORT", port.to_string())
            .env("KUBELESS_BIND", bind)
            .env("KUBELESS_INSTALL_VOLUME", &src)
            .env("KUBELESS_RUNTIME_DIR", dir.path().join("run"))
            .env("KUBELESS_WORKERS", "2");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start kubeless-runtime");
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://{bind}:{port}/healthz");
        while !reqwest::blocking::get(&url).is_ok_and(|r| r.status().is_success()) {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "kubeless-runtime exited ({st}): {}",
                    std::fs::read_to_string(dir.path().join("host.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "the runtime host did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Host {
            child,
            port,
            bind: bind.to_string(),
            dir,
        }
    }

    /// The host's working directory (code under `code/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the host logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("host.log")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
