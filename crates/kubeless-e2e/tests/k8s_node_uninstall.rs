//! `kubeless uninstall` on the real node (tools/k8s-harness/node-up.sh)
//! with functions running and triggers present: nothing of Kubeless is left
//! (no CRD, object, finalizer, child, pod or namespace `kubeless`), and the
//! users' namespaces stay. scripts/test.sh runs this binary last, after
//! every other real-node test; it installs Kubeless again when it ends so
//! that a developer's cluster stays usable.
//!
//! Skipped without a cluster that has a Ready node, except when
//! `REQUIRE_K8S_NODE=1` or `CI` is set: then it fails.

mod k8s_support;

use std::process::Command;
use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_support::eventually;
use k8s_support::node::{install, kubeless_ok, kubeless_try as kubeless, node_client};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_node_uninstall_leaves_nothing_behind() {
    let Some(c) = node_client().await else { return };
    tokio::task::spawn_blocking(install).await.expect("install");
    let ns = "node-uninstall";
    let nss: Api<Namespace> = Api::all(c.clone());
    if nss.get_opt(ns).await.expect("read namespace").is_none() {
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
        )
        .await
        .expect("create namespace");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let code = dir.path().join("hello.py");
    std::fs::write(&code, "def hello(event, context):\n    return 'hello'\n").expect("write");
    kubeless_ok(&[
        "function",
        "deploy",
        "hello",
        "-n",
        ns,
        "--runtime",
        "python3.11",
        "--handler",
        "hello.hello",
        "--from-file",
        code.to_str().expect("utf-8"),
    ])
    .await;
    eventually("hello to answer", 180, || async {
        let (ok, out) = kubeless(&["function", "call", "hello", "-n", ns]).await;
        (ok && out.contains("hello")).then_some(())
    })
    .await;
    kubeless_ok(&[
        "trigger",
        "http",
        "create",
        "web",
        "-n",
        ns,
        "--function-name",
        "hello",
        "--hostname",
        "hello.example",
        "--gateway",
        "traefik",
    ])
    .await;
    kubeless_ok(&[
        "trigger",
        "cronjob",
        "create",
        "often",
        "-n",
        ns,
        "--function",
        "hello",
        "--schedule",
        "*/5 * * * *",
    ])
    .await;
    kubeless_ok(&[
        "trigger",
        "nats",
        "create",
        "events",
        "-n",
        ns,
        "--trigger-topic",
        "events",
        "--function-selector",
        "function=hello",
    ])
    .await;
    // the controllers have made the children and set their finalizers
    let ingresses: Api<Ingress> = Api::namespaced(c.clone(), ns);
    let cronjobs: Api<CronJob> = Api::namespaced(c.clone(), ns);
    eventually("the trigger's Ingress and CronJob", 60, || async {
        let i = ingresses.get_opt("web").await.ok()??;
        let j = cronjobs.get_opt("trigger-often").await.ok()??;
        Some((i, j))
    })
    .await;

    let t = Instant::now();
    let out = kubeless_ok(&["uninstall", "--timeout", "180"]).await;
    eprintln!(
        "kubeless uninstall with a function and three triggers: {:.1}s\n{out}",
        t.elapsed().as_secs_f64()
    );

    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    let left: Vec<String> = crds
        .list(&ListParams::default())
        .await
        .expect("list CRDs")
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .filter(|n| n.ends_with(".kubeless.io"))
        .collect();
    assert!(left.is_empty(), "CRDs left: {left:?}");
    assert!(
        nss.get_opt("kubeless").await.expect("read").is_none(),
        "namespace kubeless is left"
    );
    assert!(
        nss.get_opt(ns).await.expect("read").is_some(),
        "the user's namespace stays"
    );
    let ours = ListParams::default().labels("created-by=kubeless");
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), ns);
    let services: Api<Service> = Api::namespaced(c.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(c.clone(), ns);
    assert!(
        deployments
            .list(&ours)
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert!(services.list(&ours).await.expect("list").items.is_empty());
    assert!(
        config_maps
            .list(&ours)
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert!(ingresses.list(&ours).await.expect("list").items.is_empty());
    assert!(cronjobs.list(&ours).await.expect("list").items.is_empty());
    for kind in ["clusterrole", "clusterrolebinding"] {
        let out = Command::new("kubectl")
            .args([
                "get",
                kind,
                "kubeless-controller-deployer",
                "--ignore-not-found",
            ])
            .output()
            .expect("kubectl");
        assert!(
            String::from_utf8_lossy(&out.stdout).trim().is_empty(),
            "{kind} left"
        );
    }
    // the function's pods go away with their Deployment
    let pods: Api<Pod> = Api::namespaced(c.clone(), ns);
    eventually("the function's pods to be gone", 120, || async {
        let l = pods
            .list(&ListParams::default().labels("function=hello"))
            .await
            .ok()?;
        l.items.is_empty().then_some(())
    })
    .await;
    let (ok, out) = kubeless(&["uninstall"]).await;
    assert!(
        ok && out.contains("nothing to delete"),
        "a second uninstall: {out}"
    );

    // leave the cluster as it was: Kubeless installed, the namespace gone
    let _ = nss.delete(ns, &DeleteParams::default()).await;
    tokio::task::spawn_blocking(install).await.expect("install");
}
