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

use common::registry::proxy::{Fault, FaultyProxy};
use common::registry::{
    PASSWORD, Registry, TestCa, USER, creds, docker_config, inspect, need, push_base, skopeo,
    skopeo_ok,
};
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
    kubeless_env(args, &[])
}

/// `kubeless` with extra environment variables.
fn kubeless_env(args: &[&str], env: &[(&str, &str)]) -> Out {
    let home = tempfile::tempdir().expect("KUBELESS_HOME");
    let out = Command::new(bin_dir().join("kubeless"))
        .args(args)
        .env_remove("KUBELESS_REGISTRY")
        .env_remove("KUBELESS_DOCKER_CONFIG")
        .env_remove("KUBELESS_REGISTRY_CA_FILE")
        .envs(env.iter().copied())
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

/// The layer digests of an image, read with skopeo.
fn layers_of(reference: &str) -> Vec<String> {
    inspect(reference, false)["Layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l.as_str().expect("digest").to_string())
        .collect()
}

/// The tags of `host/repository`, asked with skopeo; none when the
/// repository has no tag (distribution answers 404 NAME_UNKNOWN for a
/// repository that holds only blobs, skopeo 1.9 prints just the status).
fn tags_of(host: &str, repository: &str) -> Vec<String> {
    let out = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        "--creds",
        &creds(),
        &format!("docker://{host}/{repository}"),
    ]);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("name unknown")
                || err.contains("NAME_UNKNOWN")
                || err.contains("invalid status code from registry 404"),
            "skopeo list-tags {host}/{repository} failed:\n{err}"
        );
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("list-tags JSON");
    v["Tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Copy an image out of the registry with skopeo: every blob downloaded
/// and checked against its digest.
fn pull_all_blobs(reference: &str) {
    let dir = tempfile::tempdir().expect("copy dir");
    skopeo_ok(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--src-creds",
        &creds(),
        &format!("docker://{reference}"),
        &format!("dir:{}", dir.path().display()),
    ]);
}

/// A base on another registry (A) than the push target (B): the first
/// function copies each base layer once into B's base cache and mounts it
/// from there; the second function on the same base downloads and uploads
/// no base layer (only mounts), counted in both registries' access logs.
#[test]
fn a_base_on_another_registry_is_copied_once_then_only_mounted() {
    let a = Registry::start();
    let b = Registry::start();
    let base = push_base(&a);
    let base_info = inspect(&base, false);
    let base_digest = base_info["Digest"]
        .as_str()
        .expect("base digest")
        .to_string();
    let base_layers = layers_of(&base);
    let n = base_layers.len();
    let work = tempfile::tempdir().expect("work dir");
    let cfg = docker_config(work.path(), &[a.host(), b.host()], PASSWORD);
    let cfg = cfg.to_string_lossy().to_string();
    let target = b.host();
    let build = |name: &str| {
        let f = function_file(work.path(), name, HELLO_V1);
        let started = Instant::now();
        let out = kubeless(&[
            "build-image",
            "--function-file",
            &f.to_string_lossy(),
            "--registry",
            &target,
            "--insecure",
            "--docker-config",
            &cfg,
            "--base-image",
            &base,
        ]);
        eprintln!("build of {name}: {:?}", started.elapsed());
        assert!(out.success, "{out}");
        out
    };
    let cache = format!("{target}/kubeless_base_cache:sha256-{}", &base_digest[7..]);
    let downloads = || {
        base_layers
            .iter()
            .map(|d| a.blob_downloads(d))
            .sum::<usize>()
    };
    let base_uploads = || {
        base_layers
            .iter()
            .map(|d| b.uploads_of(d, None))
            .sum::<usize>()
    };

    // First function: each base layer downloaded from A once, uploaded once
    // into the cache, mounted into the function's repository; the base's
    // config joins the cache, then the function's layer and config.
    let first = build("hello");
    assert!(
        first.stderr.contains(&format!(
            "2 blobs uploaded, {n} mounted, 0 already there; base copied into {cache}: {} blobs",
            n + 1
        )),
        "{first}"
    );
    assert_eq!(downloads(), n, "{}", a.log());
    for d in &base_layers {
        assert_eq!(b.uploads_of(d, Some("kubeless_base_cache")), 1, "{d}");
    }
    assert_eq!(
        base_uploads(),
        n,
        "base layers uploaded only into the cache"
    );
    assert_eq!(b.blob_mounts(), n);
    let uploads_after_first = b.blob_uploads();
    assert_eq!(uploads_after_first, n + 3, "{}", b.log());
    eprintln!(
        "first function: {} base layer downloads from A, {uploads_after_first} uploads and {} mounts on B",
        downloads(),
        b.blob_mounts()
    );

    // Second function on the same base: only mounts from the cache.
    let second = build("other");
    assert!(
        second.stderr.contains(&format!(
            "2 blobs uploaded, {n} mounted, 0 already there; base layers from {cache}"
        )),
        "{second}"
    );
    assert_eq!(
        downloads(),
        n,
        "the second function downloaded a base layer"
    );
    assert_eq!(
        base_uploads(),
        n,
        "the second function uploaded a base layer"
    );
    assert_eq!(
        b.blob_uploads(),
        uploads_after_first + 2,
        "only the function's layer and config"
    );
    assert_eq!(b.blob_mounts(), 2 * n);
    assert_eq!(
        b.requests("POST", "from=kubeless_base_cache", 201).len(),
        2 * n,
        "every mount came from the cache"
    );
    eprintln!(
        "second function: {} base layer downloads from A in all, {} uploads and {} mounts on B in all",
        downloads(),
        b.blob_uploads(),
        b.blob_mounts()
    );

    // Both images read back whole, with the base's layers first; the cache
    // is the base byte for byte.
    for out in [&first, &second] {
        let reference = out.stdout.trim();
        let layers = layers_of(reference);
        assert_eq!(layers.len(), n + 1, "{reference}");
        assert_eq!(layers[..n], base_layers[..], "{reference}");
        pull_all_blobs(reference);
    }
    let cached = inspect(&cache, false);
    assert_eq!(cached["Digest"], base_digest.as_str(), "{cached}");
    pull_all_blobs(&cache);
}

/// `kubeless function build NAME --registry A --registry B`: both get the
/// image under the same tag, and a rebuild uploads nothing to either.
#[test]
fn function_build_pushes_to_every_registry_given() {
    let a = Registry::start();
    let b = Registry::start();
    // Each registry's default base (`<registry>/kubeless/base-python:3.11`)
    // is the same image, so both builds give the same tag.
    let base_a = push_base(&a);
    let base_b = push_base(&b);
    assert_eq!(
        inspect(&base_a, false)["Digest"],
        inspect(&base_b, false)["Digest"]
    );
    let server = Server::start();
    let cfg = docker_config(server.home.path(), &[a.host(), b.host()], PASSWORD);
    let cfg = cfg.to_string_lossy().to_string();
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
    let (host_a, host_b) = (a.host(), b.host());
    let build = [
        "function",
        "build",
        "hello",
        "--registry",
        &host_a,
        "--registry",
        &host_b,
        "--insecure",
        "--docker-config",
        &cfg,
    ];
    let started = Instant::now();
    let first = server.ok(&build);
    eprintln!("build for two registries: {:?}", started.elapsed());
    let refs: Vec<&str> = first.stdout.lines().collect();
    assert_eq!(refs.len(), 2, "{first}");
    assert!(
        refs[0].starts_with(&format!("{host_a}/default-hello:")),
        "{first}"
    );
    assert!(
        refs[1].starts_with(&format!("{host_b}/default-hello:")),
        "{first}"
    );
    let tag = tag_of(refs[0]).to_string();
    assert_eq!(tag.len(), 64, "{first}");
    assert_eq!(tag_of(refs[1]), tag, "the same tag on both registries");
    assert_eq!(
        first.stderr.matches("2 blobs uploaded, 1 mounted").count(),
        2,
        "{first}"
    );
    let mut digests = Vec::new();
    for (reg, reference) in [(&a, refs[0]), (&b, refs[1])] {
        let info = inspect(reference, false);
        assert_eq!(info["Labels"]["io.kubeless.build-key"], tag.as_str());
        digests.push(info["Digest"].clone());
        assert_eq!(tags_of(&reg.host(), "default-hello"), vec![tag.clone()]);
        assert_eq!(reg.uploads_into("default-hello"), 2, "{}", reg.log());
        assert_eq!(reg.blob_mounts(), 1, "{}", reg.log());
        pull_all_blobs(reference);
    }
    assert_eq!(digests[0], digests[1], "the same image on both registries");
    let before = [
        (a.blob_uploads(), a.manifest_puts()),
        (b.blob_uploads(), b.manifest_puts()),
    ];

    // Unchanged: up to date on both, nothing sent to either.
    let started = Instant::now();
    let again = server.ok(&build);
    eprintln!(
        "unchanged rebuild for two registries: {:?}",
        started.elapsed()
    );
    assert_eq!(again.stdout, first.stdout);
    assert_eq!(again.stderr.matches("is up to date").count(), 2, "{again}");
    let after = [
        (a.blob_uploads(), a.manifest_puts()),
        (b.blob_uploads(), b.manifest_puts()),
    ];
    assert_eq!(
        after, before,
        "an unchanged rebuild sent blobs or manifests"
    );
}

/// The registry fails the manifest push after the blobs arrived (a proxy
/// in front of it answers 503, then drops the connection): the build fails
/// naming the registry, no tag exists (asked of the registry directly),
/// and the retry through a healthy path uploads no blob again.
#[test]
fn a_registry_failing_mid_push_leaves_no_tag_and_the_retry_skips_the_blobs() {
    let reg = Registry::start();
    push_base(&reg);
    let proxy = FaultyProxy::start(&reg.host());
    let via = proxy.host();
    let work = tempfile::tempdir().expect("work dir");
    let cfg = docker_config(work.path(), &[via.clone(), reg.host()], PASSWORD);
    let cfg = cfg.to_string_lossy().to_string();
    let func = function_file(work.path(), "hello", HELLO_V1);
    let func = func.to_string_lossy().to_string();
    let build = || {
        let started = Instant::now();
        let out = kubeless(&[
            "build-image",
            "--function-file",
            &func,
            "--registry",
            &via,
            "--insecure",
            "--docker-config",
            &cfg,
        ]);
        (out, started.elapsed())
    };
    let manifests_before = reg.manifest_puts();

    // 503 on the manifest PUT, every attempt.
    proxy.set_fault(Fault::Unavailable);
    let (r, took) = build();
    eprintln!("push failing with 503: {took:?}: {}", r.stderr.trim());
    assert!(!r.success, "{r}");
    let prefix = format!("push {via}/default-hello:");
    assert!(
        r.stderr.contains(&prefix)
            && r.stderr.contains(&format!(
                "registry {via} keeps failing (manifest push: 503 after 4 attempts)"
            )),
        "{r}"
    );
    assert_eq!(proxy.refused(), 4);
    let at = r.stderr.find(&prefix).expect("the image in the error") + prefix.len();
    let tag = r.stderr[at..].chars().take(64).collect::<String>();
    assert!(
        tag.chars().all(|c| c.is_ascii_hexdigit()) && tag.len() == 64,
        "{r}"
    );
    // The blobs arrived, the tag did not.
    assert_eq!(reg.uploads_into("default-hello"), 2, "{}", reg.log());
    assert_eq!(reg.blob_mounts(), 1, "{}", reg.log());
    assert_eq!(reg.manifest_puts(), manifests_before);
    let direct = format!("{}/default-hello:{tag}", reg.host());
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &creds(),
        &format!("docker://{direct}"),
    ]);
    assert!(!out.status.success(), "{direct} exists after a failed push");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("manifest unknown"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tags_of(&reg.host(), "default-hello"), Vec::<String>::new());

    // The connection dropped on the manifest PUT: the same, and the blobs
    // already there are not sent again.
    proxy.set_fault(Fault::Drop);
    let (r, took) = build();
    eprintln!(
        "push failing with a dropped connection: {took:?}: {}",
        r.stderr.trim()
    );
    assert!(!r.success, "{r}");
    assert!(
        r.stderr.contains(&format!("{prefix}{tag}"))
            && r.stderr.contains(&format!(
                "registry {via} is unreachable (manifest push, 4 attempts)"
            )),
        "{r}"
    );
    assert_eq!(proxy.refused(), 8);
    assert_eq!(reg.uploads_into("default-hello"), 2, "{}", reg.log());
    assert_eq!(tags_of(&reg.host(), "default-hello"), Vec::<String>::new());

    // Healthy again: the retry pushes only the manifest.
    proxy.set_fault(Fault::None);
    let (r, took) = build();
    eprintln!("retry through the healed path: {took:?}");
    assert!(r.success, "{r}");
    assert_eq!(r.stdout.trim(), format!("{via}/default-hello:{tag}"));
    assert!(
        r.stderr
            .contains("0 blobs uploaded, 0 mounted, 3 already there"),
        "{r}"
    );
    assert_eq!(
        reg.uploads_into("default-hello"),
        2,
        "the retry uploaded a blob again"
    );
    assert_eq!(reg.blob_mounts(), 1);
    assert_eq!(reg.manifest_puts(), manifests_before + 1);
    assert_eq!(tags_of(&reg.host(), "default-hello"), vec![tag.clone()]);
    let info = inspect(&direct, false);
    assert_eq!(info["Labels"]["io.kubeless.build-key"], tag.as_str());
    pull_all_blobs(&direct);
}

/// An HTTPS registry with a private CA: refused with the machine's usual
/// roots, accepted when the system's trust store holds the CA
/// (`SSL_CERT_FILE`, read by rustls-native-certs: the system roots are
/// what is used) or when `--ca-file` adds it; a `--ca-file` that is not
/// PEM is refused before anything is sent.
#[test]
fn https_registries_are_verified_against_the_system_roots_or_a_ca_file() {
    let ca = TestCa::new();
    let reg = Registry::start_tls(&ca);
    push_base(&reg);
    let host = reg.host();
    let work = tempfile::tempdir().expect("work dir");
    let cfg = reg.docker_config(PASSWORD).to_string_lossy().to_string();
    let func = function_file(work.path(), "hello", HELLO_V1);
    let func = func.to_string_lossy().to_string();
    let ca_file = ca.ca_file().to_string_lossy().to_string();
    let build = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "build-image",
            "--function-file",
            &func,
            "--registry",
            &host,
            "--docker-config",
            &cfg,
        ];
        args.extend_from_slice(extra);
        kubeless_env(&args, env)
    };

    // The CA is in no trust store the builder reads.
    let r = build(&[], &[]);
    assert!(!r.success, "{r}");
    eprintln!("untrusted: {}", r.stderr.trim());
    assert!(
        r.stderr
            .contains(&format!("registry {host} is unreachable (manifest fetch"))
            && r.stderr.contains("certificate"),
        "{r}"
    );

    // The system's trust store, pointed at the CA.
    let r = build(&[], &[("SSL_CERT_FILE", &ca_file), ("SSL_CERT_DIR", "")]);
    assert!(r.success, "{r}");
    let reference = r.stdout.trim().to_string();
    assert!(
        reference.starts_with(&format!("{host}/default-hello:")),
        "{r}"
    );
    assert!(r.stderr.contains("pushed"), "{r}");

    // --ca-file, with the usual system roots.
    let r = build(&["--ca-file", &ca_file], &[]);
    assert!(r.success, "{r}");
    assert_eq!(r.stdout.trim(), reference);
    assert!(r.stderr.contains("is up to date"), "{r}");

    // Not a certificate: refused before any request.
    let requests = reg.log().matches("\"GET /v2/").count();
    let r = build(&["--ca-file", &cfg], &[]);
    assert!(!r.success, "{r}");
    assert!(
        r.stderr
            .contains(&format!("CA file {cfg}: it holds no PEM certificate")),
        "{r}"
    );
    assert_eq!(reg.log().matches("\"GET /v2/").count(), requests);
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
