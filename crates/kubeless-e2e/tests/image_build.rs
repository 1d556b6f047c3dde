//! Function image builds against a real OCI registry: Debian's
//! `docker-registry` (distribution 2.8) started here on a free loopback port
//! with bcrypt htpasswd auth, `skopeo` as the independent client that pushes
//! the base image and reads back what the builder pushed, and the built
//! image run by `kubeless server` from the pulled layers under bubblewrap.
//!
//! Nothing here skips: a missing `docker-registry`, `htpasswd`, `skopeo` or
//! `bwrap` fails the test with the command that installs it
//! (`scripts/deps/registry.sh`, `scripts/deps/sandbox.sh`).

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::registry::{PASSWORD, Registry, USER, creds, inspect, need, push_base, skopeo_ok};
use common::{Server, bin_dir};
use serde_json::{Value, json};

/// A finished `kubeless` command run without a server.
struct Out {
    success: bool,
    stdout: String,
    stderr: String,
    args: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ kubeless {}\nsuccess: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args, self.success, self.stdout, self.stderr
        )
    }
}

fn kubeless(args: &[&str]) -> Out {
    let home = tempfile::tempdir().expect("KUBELESS_HOME");
    let out = Command::new(bin_dir().join("kubeless"))
        .args(args)
        .env_remove("KUBELESS_REGISTRY")
        .env_remove("KUBELESS_DOCKER_CONFIG")
        // The artifact cache of a throwaway home.
        .env("KUBELESS_HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .expect("run kubeless");
    Out {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        args: args.join(" "),
    }
}

const HELLO_V1: &str =
    "def foo(event, context):\n    return 'hello from the image ' + str(event['data'])\n";
const HELLO_V2: &str = "def foo(event, context):\n    return 'version two'\n";

fn function_file(dir: &Path, name: &str, code: &str) -> PathBuf {
    let f = json!({
        "apiVersion": "kubeless.io/v1beta1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "handler": "hello.foo",
            "runtime": "python3.11",
            "function": code,
            "function-content-type": "text",
            "deps": "",
        }
    });
    let p = dir.join(format!("{name}-{}.json", code.len()));
    std::fs::write(&p, f.to_string()).expect("write function file");
    p
}

fn tag_of(reference: &str) -> &str {
    reference.rsplit(':').next().unwrap_or("")
}

/// Push a base, build, read it back with skopeo, rebuild unchanged (no
/// upload), change the code (new tag), then run the built image in
/// embedded mode and call it through the gateway.
#[test]
fn build_push_inspect_rebuild_and_run_from_the_image() {
    need("bwrap", "run scripts/deps/sandbox.sh");
    let reg = Registry::start();
    let base = push_base(&reg);
    let cfg = reg.docker_config(PASSWORD);
    let cfg_s = cfg.to_string_lossy().to_string();
    let server = Server::start();
    let code = server.file("hello.py", HELLO_V1);
    server.ok(&[
        "function",
        "deploy",
        "hello",
        "--runtime",
        "python3.11",
        "--handler",
        "hello.foo",
        "--from-file",
        &code,
    ]);
    let host = reg.host();
    let build = [
        "function",
        "build",
        "hello",
        "--registry",
        &host,
        "--insecure",
        "--docker-config",
        &cfg_s,
    ];

    // First build: base layers mounted from the base repository, only the
    // function layer and the config uploaded.
    let started = Instant::now();
    let first = server.ok(&build);
    eprintln!("first build: {:?}", started.elapsed());
    let reference = first.stdout.trim().to_string();
    let tag = tag_of(&reference).to_string();
    assert!(
        reference.starts_with(&format!("{host}/default-hello:")) && tag.len() == 64,
        "{first}"
    );
    assert!(
        first.stderr.contains("2 blobs uploaded, 1 mounted"),
        "{first}"
    );
    assert_eq!(reg.blob_mounts(), 1, "{}", reg.log());
    let uploads_after_first = reg.blob_uploads();

    // Read back with skopeo: tag, layers, config.
    let base_info = inspect(&base, false);
    let info = inspect(&reference, false);
    let layers = info["Layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2, "{info}");
    assert_eq!(
        layers[0], base_info["Layers"][0],
        "the base layer is reused as is"
    );
    assert_eq!(
        info["Labels"]["io.kubeless.build-key"],
        tag.as_str(),
        "{info}"
    );
    assert_eq!(info["Labels"]["io.kubeless.function"], "default/hello");
    let tags = skopeo_ok(&[
        "list-tags",
        "--tls-verify=false",
        "--creds",
        &creds(),
        &format!("docker://{host}/default-hello"),
    ]);
    assert!(tags.contains(&tag), "{tags}");
    let config = inspect(&reference, true);
    assert_eq!(
        config["config"]["Entrypoint"],
        json!(["/usr/local/bin/kubeless-runtime"])
    );
    assert_eq!(config["config"]["WorkingDir"], "/kubeless");
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        "FUNC_HANDLER=foo",
        "MOD_NAME=hello",
        "FUNC_RUNTIME=python3.11",
        "FUNC_PORT=8080",
        "KUBELESS_INSTALL_VOLUME=/kubeless",
        "PYTHONPATH=/kubeless/.python_packages:/kubeless",
        "LANG=C.UTF-8",
    ] {
        assert!(env.contains(&want), "{want} missing from {env:?}");
    }
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(2)
    );

    // Unchanged: nothing built, nothing uploaded, same tag.
    let started = Instant::now();
    let again = server.ok(&build);
    eprintln!("unchanged rebuild: {:?}", started.elapsed());
    assert_eq!(again.stdout.trim(), reference);
    assert!(again.stderr.contains("up to date"), "{again}");
    assert_eq!(
        reg.blob_uploads(),
        uploads_after_first,
        "an unchanged rebuild uploaded blobs"
    );

    // Changed code: a new tag, the base layer already in the repository.
    let v2 = server.file("hello2.py", HELLO_V2);
    server.ok(&["function", "update", "hello", "--from-file", &v2]);
    let changed = server.ok(&build);
    let reference2 = changed.stdout.trim().to_string();
    assert_ne!(tag_of(&reference2), tag, "{changed}");
    assert!(
        changed.stderr.contains("2 blobs uploaded, 0 mounted"),
        "{changed}"
    );
    assert_eq!(reg.blob_uploads(), uploads_after_first + 2);

    // Run the first image in embedded mode and call it.
    server.ok(&[
        "secret",
        "create",
        "kubeless-registry-credentials",
        "--from-file",
        &format!(".dockerconfigjson={cfg_s}"),
    ]);
    let manifest = json!({
        "apiVersion": "kubeless.io/v1beta1",
        "kind": "Function",
        "metadata": {
            "name": "from-image",
            "namespace": "default",
            "annotations": {"kubeless.io/run-image": "true", "kubeless.io/registry-tls-verify": "false"}
        },
        "spec": {
            "handler": "", "runtime": "", "function": "", "deps": "",
            "deployment": {"spec": {"template": {"spec": {"containers": [{"image": reference}]}}}}
        }
    });
    let path = server.file("from-image.json", manifest.to_string());
    server.ok(&["apply", "-f", &path]);
    let started = Instant::now();
    server.wait_ready("from-image");
    eprintln!("pull, unpack and start: {:?}", started.elapsed());
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/default/from-image", server.gateway()))
        .header("Content-Type", "application/json")
        .body("\"world\"")
        .send()
        .expect("call the function through the gateway");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().expect("body"), "hello from the image world");
    // The image root is what ran: the host's log line names the image's module.
    server.wait_log("from-image", "serving hello.foo (python)");
}

/// Wrong password, invalid reference, missing base image, registry down and
/// a tag collision, with `build-image` (the Job's entry point, no server).
#[test]
fn bad_input_fails_clearly_and_never_half_pushes() {
    let mut reg = Registry::start();
    let base = push_base(&reg);
    let host = reg.host();
    let work = tempfile::tempdir().expect("work dir");
    let func = function_file(work.path(), "hello", HELLO_V1);
    let func = func.to_string_lossy().to_string();
    let good = reg.docker_config(PASSWORD).to_string_lossy().to_string();
    let bad = reg
        .docker_config("wrong-password")
        .to_string_lossy()
        .to_string();
    let build = |cfg: &str, extra: &[&str]| {
        let mut args = vec![
            "build-image",
            "--function-file",
            &func,
            "--registry",
            &host,
            "--insecure",
            "--docker-config",
            cfg,
        ];
        args.extend_from_slice(extra);
        kubeless(&args)
    };

    // Wrong password: a 401 naming the registry and the user.
    let r = build(&bad, &[]);
    assert!(!r.success, "{r}");
    assert!(
        r.stderr
            .contains(&format!("registry {host} refused the credentials of user"))
            && r.stderr.contains(USER)
            && r.stderr.contains("401 Unauthorized"),
        "{r}"
    );

    // An invalid reference and a base that does not exist.
    let r = build(&good, &["--base-image", "127.0.0.1:5000/Bad//Name"]);
    assert!(
        !r.success && r.stderr.contains("invalid image reference"),
        "{r}"
    );
    let r = build(
        &good,
        &["--base-image", &format!("{host}/kubeless/missing:1")],
    );
    assert!(!r.success && r.stderr.contains("does not exist"), "{r}");

    // Build once, then write something else under that tag: refused.
    let first = build(&good, &[]);
    assert!(first.success, "{first}");
    let reference = first.stdout.trim().to_string();
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        &creds(),
        "--dest-creds",
        &creds(),
        &format!("docker://{base}"),
        &format!("docker://{reference}"),
    ]);
    let r = build(&good, &[]);
    assert!(!r.success, "{r}");
    assert!(
        r.stderr.contains("already exists with different content"),
        "{r}"
    );

    // Registry down: bounded retries, a clear error, and no tag written.
    let v2 = function_file(work.path(), "hello", HELLO_V2);
    let v2 = v2.to_string_lossy().to_string();
    reg.stop();
    let started = Instant::now();
    let r = kubeless(&[
        "build-image",
        "--function-file",
        &v2,
        "--registry",
        &host,
        "--insecure",
        "--docker-config",
        &good,
    ]);
    let took = started.elapsed();
    assert!(!r.success, "{r}");
    assert!(
        r.stderr
            .contains(&format!("registry {host} is unreachable"))
            && r.stderr.contains("4 attempts"),
        "{r}"
    );
    assert!(took < Duration::from_secs(30), "retries took {took:?}");
    reg.spawn();
    let tags = skopeo_ok(&[
        "list-tags",
        "--tls-verify=false",
        "--creds",
        &creds(),
        &format!("docker://{host}/default-hello"),
    ]);
    let tags: Value = serde_json::from_str(&tags).expect("list-tags JSON");
    assert_eq!(
        tags["Tags"].as_array().map(Vec::len),
        Some(1),
        "only the first build's tag: {tags}"
    );
}

/// A layer with `../` in a path: the image is refused when it is unpacked
/// and the function's status says why.
#[test]
fn unsafe_layer_paths_are_refused_on_unpack() {
    need("bwrap", "run scripts/deps/sandbox.sh");
    let reg = Registry::start();
    let host = reg.host();
    let layout = tempfile::tempdir().expect("layout");
    let reference = format!("{host}/kubeless/evil:1");
    write_evil_layout(layout.path());
    skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds(),
        &format!("oci:{}:latest", layout.path().display()),
        &format!("docker://{reference}"),
    ]);
    let server = Server::start();
    let cfg = reg.docker_config(PASSWORD);
    server.ok(&[
        "secret",
        "create",
        "kubeless-registry-credentials",
        "--from-file",
        &format!(".dockerconfigjson={}", cfg.display()),
    ]);
    let manifest = json!({
        "apiVersion": "kubeless.io/v1beta1",
        "kind": "Function",
        "metadata": {
            "name": "evil", "namespace": "default",
            "annotations": {"kubeless.io/run-image": "true", "kubeless.io/registry-tls-verify": "false"}
        },
        "spec": {
            "handler": "", "runtime": "", "function": "", "deps": "",
            "deployment": {"spec": {"template": {"spec": {"containers": [{"image": reference}]}}}}
        }
    });
    let path = server.file("evil.json", manifest.to_string());
    server.ok(&["apply", "-f", &path]);
    let status = server.wait_phase("evil", "Failed", Duration::from_secs(60));
    let reason = status["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("../escape") && reason.contains("refused") && reason.contains("'..'"),
        "{status}"
    );
    assert!(
        !contains_file(server.home.path(), "escape"),
        "the unsafe entry was written somewhere under the server's home"
    );
}

/// An OCI layout with one layer whose entry is `../escape`.
fn write_evil_layout(dir: &Path) {
    let mut tar = Vec::new();
    {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(5);
        h.as_gnu_mut().expect("gnu header").name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        let mut b = tar::Builder::new(&mut tar);
        b.append(&h, &b"owned"[..]).expect("tar entry");
        b.finish().expect("tar");
    }
    let diff_id = sha(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    let layer = gz.finish().expect("gzip");
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}
    })
    .to_string();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config.as_bytes()), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(&layer), "size": layer.len()}]
    })
    .to_string();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blobs dir");
    for body in [&layer[..], config.as_bytes(), manifest.as_bytes()] {
        std::fs::write(blobs.join(&sha(body)[7..]), body).expect("blob");
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("oci-layout");
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha(manifest.as_bytes()), "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "latest"}
    }]});
    std::fs::write(dir.join("index.json"), index.to_string()).expect("index");
}

fn sha(b: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

fn contains_file(dir: &Path, name: &str) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            e.file_name() == name
                || (e.file_type().is_ok_and(|t| t.is_dir()) && contains_file(&e.path(), name))
        })
}
