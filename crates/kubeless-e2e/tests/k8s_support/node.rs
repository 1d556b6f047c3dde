//! Shared by the real-node tests (k8s_node*.rs): a client of a cluster with
//! a Ready node (tools/k8s-harness/node-up.sh), `kubeless install` once per
//! test binary, the built `kubeless` run as a user runs it, bounded waits
//! that print the namespace's pods, events and controller log on failure.
//!
//! Without a cluster that has a Ready node the tests are skipped, except
//! when `REQUIRE_K8S_NODE=1` or `CI` is set: then they fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

use super::eventually;

pub fn required() -> bool {
    std::env::var_os("REQUIRE_K8S_NODE").is_some_and(|v| v == "1")
        || std::env::var_os("CI").is_some()
}

/// A client of a cluster with a Ready node, or `None` (skip) when there is
/// none and none is required.
pub async fn node_client() -> Option<Client> {
    let skip = |why: &str| {
        assert!(
            !required(),
            "REQUIRE_K8S_NODE=1/CI but {why}: start tools/k8s-harness/node-up.sh \
             (scripts/test.sh does) and export the KUBECONFIG it prints"
        );
        eprintln!("skipped: {why} (tools/k8s-harness/node-up.sh starts a node)");
    };
    if std::env::var_os("KUBECONFIG").is_none() {
        skip("KUBECONFIG is not set");
        return None;
    }
    let c = Client::try_default().await.expect("kubeconfig is usable");
    let nodes = Api::<Node>::all(c.clone())
        .list(&ListParams::default())
        .await
        .expect("list nodes");
    let ready = nodes.items.iter().any(|n| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    });
    if !ready {
        skip("the cluster has no Ready node");
        return None;
    }
    Some(c)
}

/// Run a command to completion; answers (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn kubeless_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(super::kubeless_bin());
    cmd.arg("--backend").arg("kubernetes").args(args);
    cmd.env_remove("KUBELESS_NAMESPACE")
        .env_remove("KUBELESS_CONFIG");
    cmd
}

/// `kubeless --backend kubernetes ARGS`, required to succeed; answers stdout.
pub async fn kubeless_ok(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = run(&mut kubeless_cmd(&refs));
        assert!(ok, "kubeless {args:?} failed\nstdout: {out}\nstderr: {err}");
        out
    })
    .await
    .expect("join")
}

/// `kubeless --backend kubernetes ARGS`: (success, stdout + stderr).
pub async fn kubeless_try(args: &[&str]) -> (bool, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = run(&mut kubeless_cmd(&refs));
        (ok, format!("{out}{err}"))
    })
    .await
    .expect("join")
}

/// `kubeless install` once per test binary, then wait until the
/// controller-manager pod is available.
pub fn install_once() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(install);
}

/// `kubeless install` (idempotent), then wait until the controller-manager
/// pod is available.
pub fn install() {
    let t = Instant::now();
    let (ok, out, err) = run(&mut kubeless_cmd(&["install"]));
    assert!(ok, "kubeless install failed\nstdout: {out}\nstderr: {err}");
    let (ok, out, err) = run(Command::new("kubectl").args([
        "-n",
        "kubeless",
        "rollout",
        "status",
        "deployment/kubeless-controller-manager",
        "--timeout=180s",
    ]));
    assert!(
        ok,
        "controller-manager did not become available\n{out}{err}\n{}",
        diagnose("kubeless")
    );
    eprintln!(
        "kubeless install -> controller-manager available: {:.1}s",
        t.elapsed().as_secs_f64()
    );
}

/// What a failing test prints about a namespace: pods, events, and the
/// controller-manager's log.
pub fn diagnose(ns: &str) -> String {
    let mut s = String::new();
    for args in [
        vec!["get", "pods", "-o", "wide", "-n", ns],
        vec!["get", "events", "--sort-by=.lastTimestamp", "-n", ns],
        vec![
            "logs",
            "-n",
            "kubeless",
            "deployment/kubeless-controller-manager",
            "--tail=40",
        ],
    ] {
        let (_, out, err) = run(Command::new("kubectl").args(&args));
        s.push_str(&format!("$ kubectl {}\n{out}{err}\n", args.join(" ")));
    }
    s
}

pub async fn create_namespace(c: &Client, ns: &str) {
    let nss: Api<Namespace> = Api::all(c.clone());
    let _ = nss.delete(ns, &DeleteParams::default()).await.map(|_| ());
    eventually(&format!("namespace {ns} to be gone"), 120, || async {
        nss.get_opt(ns)
            .await
            .ok()
            .and_then(|o| o.is_none().then_some(()))
    })
    .await;
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
    )
    .await
    .expect("create namespace");
}

/// Call until the answer contains `want` (pods start, roll, compile);
/// answers the time it took.
pub async fn call_until(name: &str, ns: &str, data: &str, want: &str, secs: u64) -> Duration {
    let t = Instant::now();
    let deadline = t + Duration::from_secs(secs);
    loop {
        let (ok, out) = kubeless_try(&["function", "call", name, "-n", ns, "--data", data]).await;
        if ok && out.contains(want) {
            return t.elapsed();
        }
        if Instant::now() > deadline {
            let ns = ns.to_string();
            let d = tokio::task::spawn_blocking(move || diagnose(&ns))
                .await
                .expect("join");
            panic!("{name} did not answer {want:?} within {secs}s; last answer: {out}\n{d}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write code file");
    p
}

/// `kubeless function deploy NAME -n NS --runtime R --handler H --from-file
/// FILE EXTRA...`, required to succeed.
pub async fn deploy(
    ns: &str,
    name: &str,
    runtime: &str,
    handler: &str,
    file: &Path,
    extra: &[&str],
) {
    let file = file.to_str().expect("utf-8 path");
    let mut args = vec![
        "function",
        "deploy",
        name,
        "-n",
        ns,
        "--runtime",
        runtime,
        "--handler",
        handler,
        "--from-file",
        file,
    ];
    args.extend(extra);
    kubeless_ok(&args).await;
}

/// What every real-node test starts with: a client of the node (or `None`:
/// skip), Kubeless installed, namespace `ns` made anew, a scratch directory.
pub async fn setup(ns: &str) -> Option<(Client, tempfile::TempDir)> {
    let c = node_client().await?;
    tokio::task::spawn_blocking(install_once)
        .await
        .expect("install");
    create_namespace(&c, ns).await;
    Some((c, tempfile::tempdir().expect("tempdir")))
}
