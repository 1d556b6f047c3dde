//! `kubeless --backend kubernetes function call` and `function top`
//! through the API server's service proxy, end to end against the real
//! kube-apiserver and kube-controller-manager of tools/k8s-harness.
//!
//! There is no kubelet, so the function's "pod" is played by the parts a
//! kubelet would provide: a real `kubeless-runtime` host with a Python
//! handler listening on this machine's non-loopback address (the API
//! server refuses to proxy to loopback), a Node object, and a Pod object
//! whose status says Running and Ready at that address. Everything between
//! the CLI and that process is real: the controller's Service, the
//! EndpointSlice kube-controller-manager derives from the Pod, and the API
//! server's proxy.
//!
//! Without `KUBECONFIG` the test is skipped, except when `REQUIRE_K8S=1` or
//! `CI` is set: then it fails.

mod common;
mod k8s_support;

use std::process::Command;

use common::bin_dir;
use common::host::Host;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const HELLO: &str = "def foo(event, context):\n    return 'hello ' + event['data']['name']\n";

/// This machine's first non-loopback IPv4 address.
fn node_ip() -> String {
    let out = Command::new("hostname")
        .arg("-I")
        .output()
        .expect("run hostname -I");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .expect("a non-loopback IPv4 address (the API server does not proxy to loopback)")
        .to_string()
}

fn kubeless(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin_dir().join("kubeless"))
        .arg("--backend")
        .arg("kubernetes")
        .args(args)
        .env_remove("KUBELESS_NAMESPACE")
        .output()
        .expect("run kubeless");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn ok(args: &[&str]) -> String {
    let (success, stdout, stderr) = kubeless(args);
    assert!(
        success,
        "kubeless {args:?} failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

#[test]
fn call_and_top_reach_the_function_through_the_service_proxy() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let Some(env) = rt.block_on(k8s_support::Env::start("p", "proxy")) else {
        return;
    };
    let ns = env.ns.clone();
    let ip = node_ip();
    let host = Host::python(&ip, "hello", "foo", HELLO, &[]);
    let port = host.port.to_string();
    let file = host.dir().join("code/hello.py");
    ok(&[
        "function",
        "deploy",
        "hello",
        "-n",
        &ns,
        "--runtime",
        "python3.11",
        "--handler",
        "hello.foo",
        "--from-file",
        &file.to_string_lossy(),
        "--port",
        &port,
    ]);

    let node_name = format!("kubeless-test-node-{}", std::process::id());
    rt.block_on(async {
        let services: Api<Service> = env.api();
        k8s_support::eventually("the function's Service", 30, || async {
            services.get_opt("hello").await.ok().flatten()
        })
        .await;
        // The node and pod a kubelet would report.
        let nodes: Api<Node> = Api::all(env.client.clone());
        let _ = nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": node_name}})).expect("node"),
            )
            .await;
        nodes
            .patch_status(
                &node_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                    "message": "test node"}],
                    "addresses": [{"type": "InternalIP", "address": ip}],
                }})),
            )
            .await
            .expect("node status");
        let pods: Api<Pod> = env.api();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "hello-pod", "labels": {"created-by": "kubeless", "function": "hello"}},
            "spec": {"nodeName": node_name, "automountServiceAccountToken": false,
                     "containers": [{"name": "hello", "image": "kubeless-test/none",
                                     "ports": [{"containerPort": host.port}]}]}
        }))
        .expect("pod");
        // The namespace's default ServiceAccount appears asynchronously.
        k8s_support::eventually("the Pod to be admitted", 30, || async {
            pods.create(&PostParams::default(), &pod).await.ok()
        })
        .await;
        pods.patch_status(
            "hello-pod",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "phase": "Running", "hostIP": ip, "podIP": ip, "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True"},
                               {"type": "ContainersReady", "status": "True"}],
                "containerStatuses": [{"name": "hello", "ready": true, "started": true,
                                       "restartCount": 0, "image": "kubeless-test/none",
                                       "imageID": "", "state": {"running": {}}}],
            }})),
        )
        .await
        .expect("pod status");
        let slices: Api<EndpointSlice> = env.api();
        let want = ip.clone();
        k8s_support::eventually("an EndpointSlice with the ready pod", 60, || async {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=hello"))
                .await
                .ok()?;
            list.items
                .iter()
                .any(|s| {
                    s.endpoints.iter().flatten().any(|e| {
                        e.addresses.contains(&want)
                            && e.conditions
                                .as_ref()
                                .and_then(|c| c.ready)
                                .unwrap_or(false)
                    })
                })
                .then_some(())
        })
        .await;
    });

    // `function call`: POST with JSON through the service proxy.
    let out = ok(&[
        "function",
        "call",
        "hello",
        "-n",
        &ns,
        "--data",
        "{\"name\": \"proxy\"}",
    ]);
    assert_eq!(out.trim(), "hello proxy");
    ok(&[
        "function",
        "call",
        "hello",
        "-n",
        &ns,
        "--data",
        "{\"name\": \"again\"}",
    ]);
    // `function top`: the host's /metrics through the proxy.
    let out = ok(&[
        "function",
        "top",
        "-n",
        &ns,
        "--function",
        "hello",
        "-o",
        "json",
    ]);
    let rows: Value = serde_json::from_str(&out).expect("top -o json prints JSON");
    let rows = rows
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![rows.clone()]);
    let calls: u64 = rows
        .iter()
        .filter(|r| r["function"] == "hello")
        .filter_map(|r| r["total_calls"].as_u64())
        .sum();
    assert!(calls >= 2, "top counts both calls: {out}");
    eprintln!("function top through the proxy: {out}");
    // The host saw them (the proxy really reached it).
    assert!(host.log().contains("POST /"), "host log:\n{}", host.log());

    rt.block_on(async {
        let pods: Api<Pod> = env.api();
        let _ = pods
            .delete("hello-pod", &DeleteParams::default().grace_period(0))
            .await;
        let nodes: Api<Node> = Api::all(env.client.clone());
        let _ = nodes.delete(&node_name, &DeleteParams::default()).await;
        env.stop().await;
    });
}
