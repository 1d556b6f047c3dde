//! A real OCI registry for tests: Debian's `docker-registry`
//! (distribution 2.8) on a free loopback port with bcrypt htpasswd auth,
//! `skopeo` as the independent client, and the cached test base image
//! (scripts/base-image.sh). Missing tools fail the test with the command
//! that installs them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use super::bin_dir;

pub const USER: &str = "builder";
pub const PASSWORD: &str = "s3cret-pw";

pub fn need(cmd: &str, hint: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()));
    assert!(found, "{cmd} is not installed: {hint}");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A `docker-registry serve` process with its own config on 127.0.0.1.
pub struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Registry {
    pub fn start() -> Registry {
        need("docker-registry", "run scripts/deps/registry.sh");
        need("htpasswd", "run scripts/deps/registry.sh (apache2-utils)");
        let dir = tempfile::tempdir().expect("registry dir");
        let out = Command::new("htpasswd")
            .args(["-Bbn", USER, PASSWORD])
            .output()
            .expect("run htpasswd");
        assert!(out.status.success(), "htpasswd failed");
        std::fs::write(dir.path().join("htpasswd"), &out.stdout).expect("write htpasswd");
        let mut r = Registry {
            dir,
            port: free_port(),
            child: None,
        };
        r.spawn();
        r
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// (re)start on the same port and data directory.
    pub fn spawn(&mut self) {
        let d = self.dir.path().display();
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n  secret: kubeless-test-secret\nauth:\n  htpasswd:\n    realm: kubeless-test\n    path: {d}/htpasswd\n",
            self.port
        );
        std::fs::write(self.dir.path().join("config.yml"), config).expect("registry config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("http://{}/v2/", self.host());
        loop {
            if let Ok(r) = reqwest::blocking::get(&url)
                && r.status().as_u16() == 401
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Blob uploads the registry completed (its access log: the final PUT
    /// of an upload session).
    pub fn blob_uploads(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                l.contains("\"PUT /v2/") && l.contains("/blobs/uploads/") && l.contains("\" 201 ")
            })
            .count()
    }

    /// Cross-repository mounts the registry completed.
    pub fn blob_mounts(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"POST /v2/") && l.contains("mount=") && l.contains("\" 201 "))
            .count()
    }

    /// A docker config JSON file for this registry.
    pub fn docker_config(&self, password: &str) -> PathBuf {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        let body = json!({"auths": {self.host(): {"auth": auth}}});
        let p = self
            .dir
            .path()
            .join(format!("docker-config-{}.json", password.len()));
        std::fs::write(&p, body.to_string()).expect("write docker config");
        p
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn skopeo(args: &[&str]) -> std::process::Output {
    need("skopeo", "run scripts/deps/registry.sh");
    Command::new("skopeo")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo")
}

pub fn skopeo_ok(args: &[&str]) -> String {
    let out = skopeo(args);
    assert!(
        out.status.success(),
        "skopeo {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub fn creds() -> String {
    format!("{USER}:{PASSWORD}")
}

/// The base image (scripts/base-image.sh, cached) pushed with skopeo to
/// `<registry>/kubeless/base-python:3.11`; returns its reference.
pub fn push_base(reg: &Registry) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(root.join("scripts/base-image.sh"))
        .arg(bin_dir().join("kubeless-runtime"))
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/base-image.sh");
    assert!(
        out.status.success(),
        "scripts/base-image.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let base = format!("{}/kubeless/base-python:3.11", reg.host());
    skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds(),
        &format!("oci:{layout}:latest"),
        &format!("docker://{base}"),
    ]);
    base
}

pub fn inspect(reference: &str, config: bool) -> Value {
    let mut args = vec!["inspect", "--tls-verify=false", "--creds"];
    let c = creds();
    args.push(&c);
    if config {
        args.push("--config");
    }
    let r = format!("docker://{reference}");
    args.push(&r);
    serde_json::from_str(&skopeo_ok(&args)).expect("skopeo inspect prints JSON")
}
