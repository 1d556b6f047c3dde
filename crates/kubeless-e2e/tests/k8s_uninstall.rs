//! `kubeless uninstall` against a real kube-apiserver (the
//! tools/k8s-harness control plane that scripts/test.sh starts).
//!
//! Kubeless on a cluster with functions and triggers whose finalizers the
//! controller set (`kubeless controller-manager` ran, then stopped, so
//! nothing will ever remove them), one function already stuck in deletion, and a
//! terminating namespace held by a Function and an HTTPTrigger with
//! finalizers: the hang the original Kubeless had on removal. Uninstall
//! must finish within a bound and leave no Function, trigger, CRD, child
//! object, install object or stuck namespace.
//!
//! Isolation: uninstalling deletes the cluster-wide CRDs, which every other
//! Kubernetes test uses. That is why this is its own test binary with a
//! single cluster test: `cargo test` runs test binaries one after another,
//! so no other test talks to the API server while it runs. Afterwards it
//! installs Kubeless again (`kubeless install`), whether it passed or not,
//! for any binary that runs after it.
//!
//! Without `KUBECONFIG` the cluster test is skipped, except when
//! `REQUIRE_K8S=1` or `CI` is set: then it fails.

mod k8s_support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::serde::de::DeserializeOwned;
use k8s_support::{client, eventually, kubeless, kubeless_bin};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use kubeless_controller::resources::{CronJobTrigger, Function, HttpTrigger};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// The whole uninstall must finish within this (its own waits are bounded
/// by `--timeout`; nothing here should need more than a few seconds).
const UNINSTALL_BOUND: Duration = Duration::from_secs(90);

const CRDS: [&str; 6] = [
    "functions.kubeless.io",
    "httptriggers.kubeless.io",
    "cronjobtriggers.kubeless.io",
    "kafkatriggers.kubeless.io",
    "natstriggers.kubeless.io",
    "kinesistriggers.kubeless.io",
];

/// Run and require success; answers stdout and stderr.
async fn ok(args: &[&str]) -> (String, String) {
    let out = kubeless(args, &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "kubeless {args:?} failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    (stdout, stderr)
}

/// `kubeless install`, retried while a namespace of a previous run is
/// still terminating; then wait until the Function CRD is served.
async fn install(c: &Client) {
    eventually("kubeless install to succeed", 120, || async {
        kubeless(&["install"], &[])
            .await
            .status
            .success()
            .then_some(())
    })
    .await;
    let fns: Api<Function> = Api::all(c.clone());
    eventually("the Function CRD to be served", 30, || async {
        fns.list(&ListParams::default()).await.ok().map(|_| ())
    })
    .await;
}

async fn create_namespace(c: &Client, name: &str) {
    Api::<Namespace>::all(c.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns"),
        )
        .await
        .expect("create namespace");
}

fn from_json<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("object")
}

/// Objects of `K` in every namespace labelled `created-by=kubeless`.
async fn kubeless_children<K>(c: &Client) -> Vec<String>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    Api::<K>::all(c.clone())
        .list(&ListParams::default().labels("created-by=kubeless"))
        .await
        .expect("list children")
        .items
        .iter()
        .map(|o| {
            format!(
                "{} {}/{}",
                K::kind(&()),
                o.namespace().unwrap_or_default(),
                o.name_any()
            )
        })
        .collect()
}

/// `kubeless controller-manager` as the installed Deployment runs it,
/// reading `kubeless-config` from `ns` (which scopes it to `ns`). Killed
/// when dropped, so a failing test never leaves it running.
struct Controller {
    child: Child,
    log: PathBuf,
}

impl Controller {
    fn start(ns: &str, log: PathBuf) -> Controller {
        let file = std::fs::File::create(&log).expect("controller log");
        let child = Command::new(kubeless_bin())
            .args(["controller-manager", "--no-leader-elect", "--namespace", ns])
            .env_remove("KUBELESS_NAMESPACE")
            .env_remove("KUBELESS_CONFIG")
            .stdout(Stdio::from(file.try_clone().expect("log file")))
            .stderr(file)
            .spawn()
            .expect("start kubeless controller-manager");
        Controller { child, log }
    }

    /// SIGTERM, as Kubernetes stops a pod; waits for the exit.
    async fn stop(mut self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        kill(pid, Signal::SIGTERM).expect("signal the controller");
        eventually("the controller-manager to exit", 30, || {
            std::future::ready(self.child.try_wait().expect("wait").map(|_| ()))
        })
        .await;
        eprintln!(
            "controller-manager log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn has_finalizer<K>(api: &Api<K>, name: &str, finalizer: &str) -> Option<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let o = api.get_opt(name).await.ok().flatten()?;
    o.finalizers().iter().any(|f| f == finalizer).then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstall_removes_everything_with_functions_and_triggers_present() {
    let Some(c) = client().await else {
        return;
    };
    // Run the scenario as a task so that a failure still re-installs.
    let result = tokio::spawn(scenario(c.clone())).await;
    install(&c).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn scenario(c: Client) {
    install(&c).await;
    let pid = std::process::id();
    let ns = format!("uninstall-a-{pid}");
    let held = format!("uninstall-b-{pid}");
    create_namespace(&c, &ns).await;
    create_namespace(&c, &held).await;
    let mut data = kubeless_controller::settings::default_config_data();
    data.insert("functions-namespace".into(), ns.clone());
    Api::<ConfigMap>::namespaced(c.clone(), &ns)
        .patch(
            "kubeless-config",
            &PatchParams::apply("test").force(),
            &Patch::Apply(from_json::<ConfigMap>(
                json!({"metadata": {"name": "kubeless-config"}, "data": data}),
            )),
        )
        .await
        .expect("config map");
    let dir = tempfile::tempdir().expect("tmp");
    let controller = Controller::start(&ns, dir.path().join("controller.log"));

    // Two functions and HTTP and cron triggers, through the CLI.
    let code = dir.path().join("hello.py");
    std::fs::write(&code, "def hello(event, context):\n    return 'hi'\n").expect("code");
    let code = code.to_str().expect("utf-8 path");
    for f in ["hello", "bye"] {
        ok(&[
            "function",
            "deploy",
            f,
            "--runtime",
            "python3.11",
            "--handler",
            "hello.hello",
            "--from-file",
            code,
            "-n",
            &ns,
        ])
        .await;
    }
    ok(&[
        "trigger",
        "http",
        "create",
        "web",
        "--function-name",
        "hello",
        "-n",
        &ns,
    ])
    .await;
    ok(&[
        "trigger",
        "cronjob",
        "create",
        "tick",
        "--function",
        "hello",
        "--schedule",
        "*/5 * * * *",
        "-n",
        &ns,
    ])
    .await;

    // The controller set its finalizers and created the children.
    let fns: Api<Function> = Api::namespaced(c.clone(), &ns);
    let https: Api<HttpTrigger> = Api::namespaced(c.clone(), &ns);
    let crons: Api<CronJobTrigger> = Api::namespaced(c.clone(), &ns);
    for f in ["hello", "bye"] {
        eventually("the Function finalizer", 60, || {
            has_finalizer(&fns, f, "kubeless.io/function")
        })
        .await;
        for what in ["Deployment", "Service", "ConfigMap"] {
            eventually(&format!("the {what} of {f}"), 60, || async {
                let found = match what {
                    "Deployment" => Api::<Deployment>::namespaced(c.clone(), &ns)
                        .get_opt(f)
                        .await
                        .ok()
                        .flatten()
                        .is_some(),
                    "Service" => Api::<Service>::namespaced(c.clone(), &ns)
                        .get_opt(f)
                        .await
                        .ok()
                        .flatten()
                        .is_some(),
                    _ => Api::<ConfigMap>::namespaced(c.clone(), &ns)
                        .get_opt(f)
                        .await
                        .ok()
                        .flatten()
                        .is_some(),
                };
                found.then_some(())
            })
            .await;
        }
    }
    eventually("the HTTP trigger finalizer", 60, || {
        has_finalizer(&https, "web", "kubeless.io/httptrigger")
    })
    .await;
    eventually("the cron trigger finalizer", 60, || {
        has_finalizer(&crons, "tick", "kubeless.io/cronjobtrigger")
    })
    .await;
    eventually("the Ingress", 60, || async {
        Api::<Ingress>::namespaced(c.clone(), &ns)
            .get_opt("web")
            .await
            .ok()
            .flatten()
    })
    .await;
    eventually("the CronJob", 60, || async {
        Api::<CronJob>::namespaced(c.clone(), &ns)
            .get_opt("trigger-tick")
            .await
            .ok()
            .flatten()
    })
    .await;

    // The controller goes away; its finalizers stay.
    controller.stop().await;

    // A function deleted now hangs in deletion: nobody removes the
    // finalizer (what blocked removing the original Kubeless).
    fns.delete("bye", &DeleteParams::default())
        .await
        .expect("delete bye");
    let bye = fns.get("bye").await.expect("bye is still there");
    assert!(bye.metadata.deletion_timestamp.is_some());

    // A terminating namespace held by a Function and a trigger whose
    // controller is long gone.
    let held_fns: Api<Function> = Api::namespaced(c.clone(), &held);
    held_fns
        .create(
            &PostParams::default(),
            &from_json(json!({
                "apiVersion": "kubeless.io/v1beta1", "kind": "Function",
                "metadata": {"name": "orphan", "finalizers": ["kubeless.io/function"]},
                "spec": {"handler": "hello.hello", "runtime": "python3.11",
                         "function": "def hello(e, c):\n    return 1\n"}
            })),
        )
        .await
        .expect("create orphan function");
    Api::<HttpTrigger>::namespaced(c.clone(), &held)
        .create(
            &PostParams::default(),
            &from_json(json!({
                "apiVersion": "kubeless.io/v1beta1", "kind": "HTTPTrigger",
                "metadata": {"name": "orphan", "finalizers": ["kubeless.io/httptrigger"]},
                "spec": {"function-name": "orphan"}
            })),
        )
        .await
        .expect("create orphan trigger");
    let nss: Api<Namespace> = Api::all(c.clone());
    nss.delete(&held, &DeleteParams::default())
        .await
        .expect("delete namespace");

    // A user's object that merely carries the label is not Kubeless's.
    Api::<ConfigMap>::namespaced(c.clone(), &ns)
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "users-own",
                                           "labels": {"created-by": "kubeless"}}})),
        )
        .await
        .expect("create the user's ConfigMap");

    // --dry-run lists, changes nothing.
    let (out, _) = ok(&["uninstall", "--dry-run"]).await;
    for line in [
        "Deployment kubeless/kubeless-controller-manager".to_string(),
        format!("Function {ns}/hello"),
        format!("Function {ns}/bye"),
        format!("Function {held}/orphan"),
        format!("HTTPTrigger {ns}/web"),
        format!("HTTPTrigger {held}/orphan"),
        format!("CronJobTrigger {ns}/tick"),
        format!("Ingress {ns}/web"),
        format!("CronJob {ns}/trigger-tick"),
        format!("Deployment {ns}/hello"),
        format!("ConfigMap {ns}/bye"),
        "CustomResourceDefinition functions.kubeless.io".to_string(),
        "ClusterRole kubeless-controller-deployer".to_string(),
        "Namespace kubeless".to_string(),
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "dry run misses {line:?}:\n{out}"
        );
    }
    assert!(!out.contains("users-own"), "{out}");
    let hello = fns.get("hello").await.expect("dry run kept hello");
    assert!(hello.metadata.deletion_timestamp.is_none());
    assert!(
        Api::<Deployment>::namespaced(c.clone(), "kubeless")
            .get_opt("kubeless-controller-manager")
            .await
            .expect("get")
            .is_some()
    );

    // The uninstall itself, bounded.
    let started = Instant::now();
    let (_, err) = ok(&["uninstall", "--timeout", "60"]).await;
    let took = started.elapsed();
    eprintln!("kubeless uninstall took {took:?}\n{err}");
    assert!(took < UNINSTALL_BOUND, "uninstall took {took:?}");
    assert!(err.contains("Kubeless is uninstalled"), "{err}");

    // Nothing is left: CRDs (so no Function or trigger can be stuck),
    // children, install objects.
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    for name in CRDS {
        assert!(
            crds.get_opt(name).await.expect("get CRD").is_none(),
            "CRD {name} is still there"
        );
    }
    // Children: uninstall deletes those of Functions and triggers; what they
    // own in turn (a CronJob's Jobs) follows through the garbage collector.
    let mut left = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        left.clear();
        left.extend(kubeless_children::<Ingress>(&c).await);
        left.extend(kubeless_children::<CronJob>(&c).await);
        left.extend(kubeless_children::<Job>(&c).await);
        left.extend(kubeless_children::<HorizontalPodAutoscaler>(&c).await);
        left.extend(kubeless_children::<Deployment>(&c).await);
        left.extend(kubeless_children::<Service>(&c).await);
        left.extend(kubeless_children::<ConfigMap>(&c).await);
        left.retain(|o| *o != format!("ConfigMap {ns}/users-own"));
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(
        Api::<ConfigMap>::namespaced(c.clone(), &ns)
            .get_opt("users-own")
            .await
            .expect("get")
            .is_some(),
        "the user's ConfigMap labelled created-by=kubeless was deleted"
    );
    assert!(nss.get_opt("kubeless").await.expect("get").is_none());
    assert!(
        Api::<ClusterRole>::all(c.clone())
            .get_opt("kubeless-controller-deployer")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        Api::<ClusterRoleBinding>::all(c.clone())
            .get_opt("kubeless-controller-deployer")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        Api::<ServiceAccount>::namespaced(c.clone(), "kubeless")
            .get_opt("controller-acct")
            .await
            .expect("get")
            .is_none()
    );
    // The namespace the finalizers held finishes terminating, and the
    // function Deployments' ReplicaSets follow them (garbage collector).
    eventually("the held namespace to be deleted", 60, || async {
        nss.get_opt(&held)
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.clone(), &ns);
    eventually("the function ReplicaSets to be deleted", 60, || async {
        rss.list(&ListParams::default().labels("created-by=kubeless"))
            .await
            .ok()
            .filter(|l| l.items.is_empty())
            .map(|_| ())
    })
    .await;

    // A second run finds nothing and succeeds.
    let (out, err) = ok(&["uninstall"]).await;
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("nothing to delete"), "{err}");
    let (out, _) = ok(&["uninstall", "--dry-run"]).await;
    assert!(out.is_empty(), "{out}");

    let _ = nss.delete(&ns, &DeleteParams::default()).await;
}

/// No API server: one clear line, exit 1, no retry loop.
#[tokio::test]
async fn uninstall_without_an_api_server_fails_with_one_clear_line() {
    // A port nobody listens on: bind, note, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = tempfile::tempdir().expect("tmp");
    let kc = dir.path().join("kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: down\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: down\n  context: {{cluster: down, user: u}}\ncurrent-context: down\n"
        ),
    )
    .expect("kubeconfig");
    let started = Instant::now();
    let out = kubeless(
        &["uninstall"],
        &[("KUBECONFIG", kc.to_str().expect("path"))],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains(&format!(
            "cannot reach the Kubernetes API server at https://127.0.0.1:{port}"
        )) && lines[0].to_lowercase().contains("refused"),
        "{stderr}"
    );
}
