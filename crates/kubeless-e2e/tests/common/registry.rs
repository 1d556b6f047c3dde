//! A real OCI registry for tests: Debian's `docker-registry`
//! (distribution 2.8) on a free loopback port with bcrypt htpasswd auth,
//! over plain HTTP or HTTPS with a certificate the test makes, `skopeo` as
//! the independent client, the cached test base image
//! (scripts/base-image.sh), and [`proxy::FaultyProxy`] to make a registry
//! fail in the middle of a push. Missing tools fail the test with the
//! command that installs them.

pub mod proxy;

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
    /// Certificate chain and key files: HTTPS instead of plain HTTP.
    tls: Option<(PathBuf, PathBuf)>,
}

/// A certificate authority made for one test, and a server certificate
/// it signed for 127.0.0.1 (rustls refuses a CA certificate as a server's).
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let dir = tempfile::tempdir().expect("CA dir");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "kubeless test registry CA");
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        leaf.use_authority_key_identifier_extension = true;
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().expect("server key");
        let leaf_cert = leaf
            .signed_by(&leaf_key, &issuer)
            .expect("server certificate");
        let d = dir.path();
        std::fs::write(d.join("ca.pem"), ca_cert.pem()).expect("ca.pem");
        std::fs::write(d.join("server.pem"), leaf_cert.pem()).expect("server.pem");
        std::fs::write(d.join("server-key.pem"), leaf_key.serialize_pem()).expect("key");
        TestCa { dir }
    }

    /// The CA certificate (PEM), what a client must trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn server_files(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("server.pem"),
            self.dir.path().join("server-key.pem"),
        )
    }
}

impl Registry {
    /// Plain HTTP.
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// HTTPS with a server certificate signed by `ca`.
    pub fn start_tls(ca: &TestCa) -> Registry {
        Registry::start_with(Some(ca.server_files()))
    }

    fn start_with(tls: Option<(PathBuf, PathBuf)>) -> Registry {
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
            tls,
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
        let tls = match &self.tls {
            Some((cert, key)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n  secret: kubeless-test-secret\n{tls}auth:\n  htpasswd:\n    realm: kubeless-test\n    path: {d}/htpasswd\n",
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
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/v2/", self.host());
        // Only "is it up": the certificate is what the tests check.
        let probe = reqwest::blocking::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .expect("probe client");
        loop {
            if let Ok(r) = probe.get(&url).send()
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

    /// Requests the registry answered with `status`, whose request line
    /// (`METHOD /path?query`) starts with `method` and contains `needle`.
    pub fn requests(&self, method: &str, needle: &str, status: u16) -> Vec<String> {
        let start = format!("\"{method} /v2/");
        let status = format!("\" {status} ");
        self.log()
            .lines()
            .filter(|l| {
                let Some(i) = l.find(&start) else {
                    return false;
                };
                let rest = &l[i + 1..];
                let request = rest.split('"').next().unwrap_or("");
                request.contains(needle) && rest[request.len()..].starts_with(&status)
            })
            .map(str::to_string)
            .collect()
    }

    /// Downloads of the blob `digest` the registry served (GET, 200).
    pub fn blob_downloads(&self, digest: &str) -> usize {
        self.requests("GET", &format!("/blobs/{digest}"), 200).len()
    }

    /// Completed uploads (the final PUT of a session) of the blob `digest`
    /// into any repository, or into `repository` when given.
    pub fn uploads_of(&self, digest: &str, repository: Option<&str>) -> usize {
        // The digest is in the query, where `:` may be percent-encoded.
        let hex = digest.trim_start_matches("sha256:");
        let path = match repository {
            Some(r) => format!("/v2/{r}/blobs/uploads/"),
            None => "/blobs/uploads/".to_string(),
        };
        self.requests("PUT", &path, 201)
            .iter()
            .filter(|l| {
                l.contains(&format!("digest=sha256%3A{hex}"))
                    || l.contains(&format!("digest=sha256:{hex}"))
            })
            .count()
    }

    /// Completed blob uploads into `repository`.
    pub fn uploads_into(&self, repository: &str) -> usize {
        self.requests("PUT", &format!("/v2/{repository}/blobs/uploads/"), 201)
            .len()
    }

    /// Manifests the registry accepted (PUT, 201).
    pub fn manifest_puts(&self) -> usize {
        self.requests("PUT", "/manifests/", 201).len()
    }

    /// A docker config JSON file for this registry.
    pub fn docker_config(&self, password: &str) -> PathBuf {
        docker_config(self.dir.path(), &[self.host()], password)
    }
}

/// A docker config JSON file in `dir` with the test user's credentials
/// (`password`) for each of `hosts`.
pub fn docker_config(dir: &Path, hosts: &[String], password: &str) -> PathBuf {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    let auths: serde_json::Map<String, Value> = hosts
        .iter()
        .map(|h| (h.clone(), json!({ "auth": auth })))
        .collect();
    let body = json!({ "auths": auths });
    let p = dir.join(format!(
        "docker-config-{}-{}.json",
        hosts.len(),
        password.len()
    ));
    std::fs::write(&p, body.to_string()).expect("write docker config");
    p
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
