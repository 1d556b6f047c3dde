//! Shared by the Kubernetes-mode tests: the harness API server
//! (tools/k8s-harness, started by scripts/test.sh), the CRDs from
//! deploy/kubeless.yaml, a namespace per test whose `kubeless-config`
//! scopes an in-process controller-manager to it, and bounded waits.
//!
//! Without `KUBECONFIG` the tests are skipped, except when `REQUIRE_K8S=1`
//! or `CI` is set: then they fail.

#![allow(dead_code)]

pub mod node;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kubeless_controller::resources::Function;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub fn required() -> bool {
    std::env::var_os("REQUIRE_K8S").is_some_and(|v| v == "1") || std::env::var_os("CI").is_some()
}

pub async fn client() -> Option<Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        assert!(
            !required(),
            "REQUIRE_K8S=1/CI but KUBECONFIG is not set: start tools/k8s-harness/up.sh"
        );
        eprintln!("skipped: KUBECONFIG not set (tools/k8s-harness/up.sh starts a control plane)");
        return None;
    }
    Some(Client::try_default().await.expect("kubeconfig is usable"))
}

pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Apply deploy/kubeless.yaml and wait until the Function CRD is served.
pub async fn install_crds(c: &Client) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/kubeless.yaml"
    ))
    .expect("deploy/kubeless.yaml");
    let objects: Vec<Value> = text
        .split("\n---\n")
        .filter_map(|d| serde_yaml::from_str::<Value>(d).ok())
        .filter(|v| v.is_object())
        .collect();
    assert!(objects.len() > 10, "deploy/kubeless.yaml has every object");
    kubeless_controller::install::apply(c, &objects)
        .await
        .expect("deploy/kubeless.yaml applies to the API server");
    let fns: Api<Function> = Api::all(c.clone());
    eventually("the Function CRD to be served", 30, || async {
        fns.list(&ListParams::default()).await.ok().map(|_| ())
    })
    .await;
}

/// Create namespace `ns` with a `kubeless-config` whose
/// `functions-namespace` is `ns`.
pub async fn namespace(c: &Client, ns: &str) {
    let nss: Api<Namespace> = Api::all(c.clone());
    let _ = nss
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
        )
        .await;
    let mut data = kubeless_controller::settings::default_config_data();
    data.insert("functions-namespace".into(), ns.to_string());
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "kubeless-config"}, "data": data}))
            .expect("cm");
    Api::<ConfigMap>::namespaced(c.clone(), ns)
        .patch(
            "kubeless-config",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&cm),
        )
        .await
        .expect("config map");
}

/// controller-manager options for a test namespace: no leader election,
/// default trigger options.
pub fn options(ns: &str, identity: &str) -> kubeless_controller::Options {
    kubeless_controller::Options {
        namespace: ns.to_string(),
        config_map: "kubeless-config".into(),
        leader_election: None,
        identity: identity.to_string(),
        events: Default::default(),
    }
}

/// Run controller-manager in this process until the token is cancelled
/// (or the task aborted).
pub fn spawn_controller(
    client: Client,
    opts: kubeless_controller::Options,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        kubeless_controller::run(client, opts, token)
            .await
            .expect("controller-manager runs");
    });
    (stop, task)
}

/// A namespace with its own controller-manager.
pub struct Env {
    pub client: Client,
    pub ns: String,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl Env {
    /// Namespace `<prefix>-<name>-<pid>`; controller identity
    /// `<prefix>-test-<name>`.
    pub async fn start(prefix: &str, name: &str) -> Option<Env> {
        let c = client().await?;
        Some(Env::start_with(c.clone(), c, prefix, name).await)
    }

    /// With separate clients for the test (`admin`) and the controller.
    pub async fn start_with(admin: Client, controller: Client, prefix: &str, name: &str) -> Env {
        Env::start_with_options(admin, controller, prefix, name, |_| {}).await
    }

    /// As [`Env::start_with`], with the controller's options adjusted by
    /// `adjust` (after the namespace exists, before the controller starts).
    pub async fn start_with_options(
        admin: Client,
        controller: Client,
        prefix: &str,
        name: &str,
        adjust: impl FnOnce(&mut kubeless_controller::Options),
    ) -> Env {
        install_crds(&admin).await;
        let ns = format!("{prefix}-{name}-{}", std::process::id());
        namespace(&admin, &ns).await;
        let mut opts = options(&ns, &format!("{prefix}-test-{name}"));
        adjust(&mut opts);
        let (stop, task) = spawn_controller(controller, opts);
        Env {
            client: admin,
            ns,
            stop,
            task,
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Stop the controller only (the namespace stays); [`Env::stop`]
    /// afterwards removes the namespace.
    pub async fn stop_controller(&mut self) {
        self.stop.cancel();
        // Swap in a finished task so `stop` never awaits this one twice.
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
        let nss: Api<Namespace> = Api::all(self.client.clone());
        let _ = nss.delete(&self.ns, &DeleteParams::default()).await;
    }
}

/// A client authenticated as ServiceAccount `namespace/name` with a token
/// from the TokenRequest API (what a pod running as it would get).
pub async fn service_account_client(admin: &Client, namespace: &str, name: &str) -> Client {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))
            .expect("token request");
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), namespace)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("a token for the service account")
        .status
        .expect("token status")
        .token;
    let path = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let text = std::fs::read_to_string(&path).expect("kubeconfig");
    let mut kc: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig yaml");
    kc["users"] =
        serde_yaml::to_value(json!([{"name": "sa", "user": {"token": token}}])).expect("users");
    for c in kc["contexts"].as_sequence_mut().expect("contexts") {
        c["context"]["user"] = serde_yaml::Value::String("sa".into());
    }
    let kc = kube::config::Kubeconfig::from_yaml(&serde_yaml::to_string(&kc).expect("yaml"))
        .expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("service account config");
    Client::try_from(cfg).expect("service account client")
}

/// The built `kubeless` (target/<profile>/kubeless).
pub fn kubeless_bin() -> PathBuf {
    if let Some(d) = std::env::var_os("KUBELESS_BIN_DIR") {
        return PathBuf::from(d).join("kubeless");
    }
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("kubeless");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        bin.display()
    );
    bin
}

/// Run `kubeless --backend kubernetes <args>` with extra env.
pub async fn kubeless(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(kubeless_bin());
    cmd.arg("--backend").arg("kubernetes").args(args);
    cmd.env_remove("KUBELESS_NAMESPACE")
        .env_remove("KUBELESS_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("run kubeless"))
        .await
        .expect("join")
}
