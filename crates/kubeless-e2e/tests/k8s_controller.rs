//! Kubernetes mode against a real kube-apiserver (etcd, kube-apiserver and
//! kube-controller-manager from tools/k8s-harness, started by
//! scripts/test.sh). Pods never run (no kubelet): the tests assert what the
//! API shows. Each test gets its own namespace and its own in-process
//! controller-manager scoped to it (`functions-namespace`).
//!
//! Without `KUBECONFIG` the tests are skipped, except when `REQUIRE_K8S=1`
//! or `CI` is set: then they fail.

mod k8s_support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_support::{Env, client, eventually};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::{Client, Config};
use kubeless_controller::resources::{CronJobTrigger, Function, HttpTrigger};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

fn function(name: &str, code: &str) -> Function {
    serde_json::from_value(json!({
        "apiVersion": "kubeless.io/v1beta1", "kind": "Function",
        "metadata": {"name": name, "labels": {"created-by": "kubeless", "function": name}},
        "spec": {
            "handler": "hello.hello", "runtime": "python3.11", "timeout": "30",
            "function": code, "function-content-type": "text", "checksum": "", "deps": "",
            "deployment": {"spec": {"template": {"spec": {"containers": [
                {"name": "", "env": [{"name": "GREETING", "value": "hi"}]}]}}}},
            "service": {"ports": [{"name": "http-function-port", "protocol": "TCP", "port": 8080, "targetPort": 8080}],
                        "selector": {"created-by": "kubeless", "function": name}, "type": "ClusterIP"},
            "horizontalPodAutoscaler": {}
        }
    }))
    .expect("function")
}

fn prepare_script(d: &Deployment) -> String {
    let v = serde_json::to_value(d).expect("json");
    v.pointer("/spec/template/spec/initContainers/0/command/2")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_becomes_configmap_deployment_service_then_updates_and_deletes() {
    let Some(env) = Env::start("t", "fn").await else {
        return;
    };
    let fns: Api<Function> = env.api();
    let f = fns
        .create(
            &PostParams::default(),
            &function("hello", "def hello(e, c):\n    return 'v1'\n"),
        )
        .await
        .expect("create function");
    let uid = f.metadata.uid.clone().expect("uid");
    let deps: Api<Deployment> = env.api();
    let d = eventually("the Deployment", 30, || async {
        deps.get_opt("hello").await.ok().flatten()
    })
    .await;
    let cm = env
        .api::<ConfigMap>()
        .get("hello")
        .await
        .expect("configmap");
    let svc = env.api::<Service>().get("hello").await.expect("service");
    for (kind, meta) in [
        ("ConfigMap", &cm.metadata),
        ("Service", &svc.metadata),
        ("Deployment", &d.metadata),
    ] {
        let labels = meta.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("created-by").map(String::as_str),
            Some("kubeless"),
            "{kind}"
        );
        assert_eq!(
            labels.get("function").map(String::as_str),
            Some("hello"),
            "{kind}"
        );
        let owners = meta.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1, "{kind}");
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].uid.as_str()),
            ("Function", uid.as_str()),
            "{kind}"
        );
    }
    let data = cm.data.unwrap_or_default();
    assert_eq!(data.get("handler").map(String::as_str), Some("hello.hello"));
    assert!(
        data.contains_key("hello.py") && data.contains_key("requirements.txt"),
        "{data:?}"
    );
    let v = serde_json::to_value(&d).expect("json");
    let env_names: Vec<&str> = v["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(
        env_names,
        [
            "GREETING",
            "FUNC_HANDLER",
            "MOD_NAME",
            "FUNC_TIMEOUT",
            "FUNC_RUNTIME",
            "FUNC_MEMORY_LIMIT",
            "FUNC_PORT",
            "KUBELESS_INSTALL_VOLUME",
            "PYTHONPATH"
        ]
    );
    assert_eq!(
        v["spec"]["template"]["spec"]["securityContext"],
        json!({"runAsUser": 1000, "fsGroup": 1000})
    );
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"],
        "/healthz"
    );
    assert_eq!(
        v["spec"]["template"]["spec"]["initContainers"][0]["name"],
        "prepare"
    );
    assert_eq!(
        v["spec"]["selector"]["matchLabels"],
        json!({"created-by": "kubeless", "function": "hello"})
    );
    // Status: finalizer, Ready=False (no kubelet), observed generation.
    let f = eventually("the status", 30, || async {
        fns.get("hello").await.ok().filter(|f| {
            f.status
                .as_ref()
                .is_some_and(|s| s.observed_generation == 1)
        })
    })
    .await;
    assert_eq!(
        f.metadata.finalizers.unwrap_or_default(),
        ["kubeless.io/function"]
    );
    let st = f.status.expect("status");
    assert_eq!(st.conditions[0].type_, "Ready");
    assert_eq!(st.conditions[0].status, "False");
    // A new ReplicaSet appears through kube-controller-manager.
    let before = prepare_script(&d);
    // Code update → the pod template changes (the prepare step embeds the code checksum).
    let mut f2 = fns.get("hello").await.expect("get");
    f2.spec.function = "def hello(e, c):\n    return 'v2'\n".into();
    f2.spec.checksum = format!("sha256:{}", "b".repeat(64));
    fns.replace("hello", &PostParams::default(), &f2)
        .await
        .expect("update");
    let d2 = eventually("the Deployment to roll", 30, || async {
        deps.get("hello")
            .await
            .ok()
            .filter(|d| prepare_script(d) != before)
    })
    .await;
    assert!(prepare_script(&d2).contains("sha256sum -c"));
    // Labels-only update → the Deployment's labels change, its pod
    // template (and so its pods) does not.
    let template = |d: &Deployment| {
        serde_json::to_value(&d.spec.as_ref().expect("spec").template).expect("json")
    };
    let generation = d2.metadata.generation;
    let mut f3 = fns.get("hello").await.expect("get");
    f3.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("tier".into(), "gold".into());
    fns.replace("hello", &PostParams::default(), &f3)
        .await
        .expect("update labels");
    let d3 = eventually("the Deployment's labels", 30, || async {
        deps.get("hello").await.ok().filter(|d| {
            d.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.get("tier").map(String::as_str) == Some("gold"))
        })
    })
    .await;
    assert_eq!(
        template(&d3),
        template(&d2),
        "a label change rolled the pods"
    );
    assert_eq!(
        d3.metadata.generation, generation,
        "the Deployment spec did not change"
    );
    // Delete → the finalizer cleans up, then the Function is gone.
    fns.delete("hello", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the Function to be gone", 30, || async {
        matches!(fns.get_opt("hello").await, Ok(None)).then_some(())
    })
    .await;
    assert!(deps.get_opt("hello").await.expect("get").is_none());
    assert!(
        env.api::<Service>()
            .get_opt("hello")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        env.api::<ConfigMap>()
            .get_opt("hello")
            .await
            .expect("get")
            .is_none()
    );
    env.stop().await;
}

/// An autoscaler on the request rate (`autoscale create --metric qps`)
/// needs the function's metrics scraped: the controller writes a
/// prometheus-operator ServiceMonitor when the cluster has that kind, says
/// so in the status when it has not, and removes it with the autoscaler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qps_autoscaling_gets_a_service_monitor() {
    let Some(env) = Env::start("t", "monitor").await else {
        return;
    };
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    let crd_name = "servicemonitors.monitoring.coreos.com";
    // Start without prometheus-operator's kind (a reused control plane may
    // still have it from an earlier run).
    let _ = crds.delete(crd_name, &DeleteParams::default()).await;
    eventually("the ServiceMonitor CRD to be absent", 60, || async {
        matches!(crds.get_opt(crd_name).await, Ok(None)).then_some(())
    })
    .await;
    let fns: Api<Function> = env.api();
    let mut f = function("busy", "def hello(e, c):\n    return 'x'\n");
    f.spec.horizontal_pod_autoscaler = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "busy", "namespace": env.ns},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "busy"},
                 "minReplicas": 1, "maxReplicas": 3,
                 "metrics": [{"type": "Object", "object": {
                     "metric": {"name": "function_calls"},
                     "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "busy"},
                     "target": {"type": "Value", "value": "10"}}}]}
    });
    fns.create(&PostParams::default(), &f)
        .await
        .expect("create");
    let st = eventually("the prometheus-operator warning", 30, || async {
        fns.get("busy")
            .await
            .ok()
            .and_then(|f| f.status)
            .filter(|s| s.message.contains("prometheus-operator"))
    })
    .await;
    assert!(
        st.message.contains("monitoring.coreos.com/v1"),
        "{}",
        st.message
    );

    // The kind appears (as prometheus-operator installs it): the next
    // reconcile writes the ServiceMonitor.
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": crd_name},
        "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                 "names": {"kind": "ServiceMonitor", "listKind": "ServiceMonitorList",
                           "plural": "servicemonitors", "singular": "servicemonitor"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                          "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .expect("crd");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("ServiceMonitor CRD");
    let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor");
    let monitors: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &env.ns,
        &ApiResource::from_gvk_with_plural(&gvk, "servicemonitors"),
    );
    let touch = |n: u32| {
        let fns = fns.clone();
        async move {
            let patch = json!({"metadata": {"annotations": {"touched": n.to_string()}}});
            let _ = fns
                .patch("busy", &PatchParams::default(), &Patch::Merge(&patch))
                .await;
        }
    };
    let mut n = 0;
    let sm = eventually("the ServiceMonitor", 60, || {
        n += 1;
        let monitors = monitors.clone();
        let touch = touch(n);
        async move {
            touch.await;
            monitors.get_opt("busy").await.ok().flatten()
        }
    })
    .await;
    let sm = serde_json::to_value(&sm).expect("json");
    assert_eq!(
        sm["metadata"]["labels"],
        json!({"service-monitor": "function", "created-by": "kubeless"})
    );
    assert_eq!(sm["metadata"]["ownerReferences"][0]["kind"], "Function");
    assert_eq!(
        sm["spec"]["selector"],
        json!({"matchLabels": {"function": "busy"}})
    );
    assert_eq!(
        sm["spec"]["endpoints"],
        json!([{"port": "http-function-port", "path": "/metrics"}])
    );

    // `autoscale delete` clears the autoscaler: the ServiceMonitor goes too.
    let mut f = fns.get("busy").await.expect("get");
    f.spec.horizontal_pod_autoscaler = json!({});
    fns.replace("busy", &PostParams::default(), &f)
        .await
        .expect("update");
    eventually("the ServiceMonitor to be deleted", 30, || async {
        matches!(monitors.get_opt("busy").await, Ok(None)).then_some(())
    })
    .await;
    let _ = crds.delete(crd_name, &DeleteParams::default()).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_objects_are_never_overwritten() {
    let Some(env) = Env::start("t", "conflict").await else {
        return;
    };
    let cms: Api<ConfigMap> = env.api();
    let theirs: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "clash"}, "data": {"mine": "yes"}}))
            .expect("cm");
    cms.create(&PostParams::default(), &theirs)
        .await
        .expect("foreign configmap");
    let fns: Api<Function> = env.api();
    fns.create(&PostParams::default(), &function("clash", "x = 1\n"))
        .await
        .expect("create");
    let st = eventually("a Conflict condition", 30, || async {
        fns.get("clash")
            .await
            .ok()
            .and_then(|f| f.status)
            .filter(|s| s.reason == "Conflict")
    })
    .await;
    assert!(
        st.message.contains("Found a conflicting configmap object"),
        "{}",
        st.message
    );
    let cm = cms.get("clash").await.expect("still there");
    assert_eq!(
        cm.data.unwrap_or_default().get("mine").map(String::as_str),
        Some("yes")
    );
    assert!(
        env.api::<Deployment>()
            .get_opt("clash")
            .await
            .expect("get")
            .is_none()
    );
    // Invalid function: a condition, not a crash loop.
    let mut bad = function("bad", "x = 1\n");
    bad.spec.handler = "nodot".into();
    fns.create(&PostParams::default(), &bad)
        .await
        .expect("create");
    let st = eventually("an InvalidFunction condition", 30, || async {
        fns.get("bad")
            .await
            .ok()
            .and_then(|f| f.status)
            .filter(|s| s.reason == "InvalidFunction")
    })
    .await;
    assert!(st.message.contains("handler"), "{}", st.message);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_cron_triggers_become_ingress_and_cronjob() {
    let Some(env) = Env::start("t", "triggers").await else {
        return;
    };
    let fns: Api<Function> = env.api();
    fns.create(
        &PostParams::default(),
        &function("tick", "def hello(e, c):\n    return 'ok'\n"),
    )
    .await
    .expect("create");
    let https: Api<HttpTrigger> = env.api();
    let t: HttpTrigger = serde_json::from_value(json!({
        "apiVersion": "kubeless.io/v1beta1", "kind": "HTTPTrigger",
        "metadata": {"name": "tick-http", "labels": {"created-by": "kubeless"}, "annotations": {"a": "1"}},
        "spec": {"function-name": "tick", "host-name": "tick.example.com", "path": "tick", "gateway": "nginx", "cors-enable": true}
    }))
    .expect("trigger");
    https
        .create(&PostParams::default(), &t)
        .await
        .expect("create http trigger");
    let ings: Api<Ingress> = env.api();
    let ing = eventually("the Ingress", 30, || async {
        ings.get_opt("tick-http").await.ok().flatten()
    })
    .await;
    let v = serde_json::to_value(&ing).expect("json");
    assert_eq!(v["spec"]["ingressClassName"], "nginx");
    assert_eq!(v["spec"]["rules"][0]["host"], "tick.example.com");
    assert_eq!(v["spec"]["rules"][0]["http"]["paths"][0]["path"], "/tick");
    assert_eq!(
        v["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"],
        json!({"name": "tick", "port": {"number": 8080}})
    );
    assert_eq!(
        v["metadata"]["annotations"]["nginx.ingress.kubernetes.io/enable-cors"],
        "true"
    );
    // Fix of Kubeless: annotations follow the trigger.
    https
        .patch(
            "tick-http",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"a": "2"}}})),
        )
        .await
        .expect("patch");
    eventually("the Ingress annotation to follow", 30, || async {
        ings.get("tick-http").await.ok().filter(|i| {
            i.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("a"))
                .map(String::as_str)
                == Some("2")
        })
    })
    .await;

    let crons: Api<CronJobTrigger> = env.api();
    let c: CronJobTrigger = serde_json::from_value(json!({
        "apiVersion": "kubeless.io/v1beta1", "kind": "CronJobTrigger",
        "metadata": {"name": "tick", "labels": {"created-by": "kubeless"}},
        "spec": {"function-name": "tick", "schedule": "* * * * *", "payload": {"n": 1}}
    }))
    .expect("cron");
    crons
        .create(&PostParams::default(), &c)
        .await
        .expect("create cron trigger");
    let cjs: Api<CronJob> = env.api();
    let cj = eventually("the CronJob", 30, || async {
        cjs.get_opt("trigger-tick").await.ok().flatten()
    })
    .await;
    let v = serde_json::to_value(&cj).expect("json");
    let container = &v["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["command"][0], "kubeless");
    assert_eq!(container["command"][1], "cron-invoke");
    assert!(
        container["command"].to_string().contains("http://tick."),
        "{}",
        container["command"]
    );
    assert_eq!(container["command"][5], "{\"n\":1}");
    // kube-controller-manager starts a Job on the schedule.
    let jobs: Api<Job> = env.api();
    eventually("a Job from the CronJob", 90, || async {
        jobs.list(&ListParams::default())
            .await
            .ok()
            .filter(|l| !l.items.is_empty())
            .map(|_| ())
    })
    .await;
    // Deleting the function removes its triggers and their objects.
    fns.delete("tick", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the triggers to be gone", 60, || async {
        let h = https.get_opt("tick-http").await.ok()?;
        let c = crons.get_opt("tick").await.ok()?;
        (h.is_none() && c.is_none()).then_some(())
    })
    .await;
    eventually("the Ingress and CronJob to be gone", 60, || async {
        let i = ings.get_opt("tick-http").await.ok()?;
        let c = cjs.get_opt("trigger-tick").await.ok()?;
        (i.is_none() && c.is_none()).then_some(())
    })
    .await;
    env.stop().await;
}

/// A TCP forwarder to the API server that the test can cut and restore.
async fn proxy(listener: TcpListener, upstream: String, stop: CancellationToken) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => {
                let Ok((mut down, _)) = a else { continue };
                let upstream = upstream.clone();
                conns.spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
            }
        }
    }
    conns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_recovers_when_the_api_server_comes_back() {
    let Some(admin) = client().await else { return };
    let mut cfg = Config::infer().await.expect("kubeconfig");
    let upstream = format!(
        "{}:{}",
        cfg.cluster_url.host().unwrap_or("127.0.0.1"),
        cfg.cluster_url.port_u16().unwrap_or(443)
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    cfg.cluster_url = format!("https://127.0.0.1:{}", addr.port())
        .parse()
        .expect("url");
    cfg.read_timeout = Some(Duration::from_secs(5));
    let controller = Client::try_from(cfg).expect("client");
    let mut cut = CancellationToken::new();
    let mut link = tokio::spawn(proxy(listener, upstream.clone(), cut.clone()));
    let env = Env::start_with(admin, controller, "t", "recover").await;
    let fns: Api<Function> = env.api();
    let deps: Api<Deployment> = env.api();
    fns.create(&PostParams::default(), &function("before", "x = 1\n"))
        .await
        .expect("create");
    eventually("the first Deployment", 30, || async {
        deps.get_opt("before").await.ok().flatten()
    })
    .await;
    // The API server becomes unreachable for the controller.
    cut.cancel();
    let _ = link.await;
    fns.create(&PostParams::default(), &function("during", "x = 2\n"))
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        deps.get_opt("during").await.expect("get").is_none(),
        "nothing can be reconciled while cut off"
    );
    // It comes back on the same address: the controller retries and catches up.
    let listener = TcpListener::bind(addr).await.expect("rebind");
    cut = CancellationToken::new();
    link = tokio::spawn(proxy(listener, upstream, cut.clone()));
    eventually("the Deployment created after recovery", 90, || async {
        deps.get_opt("during").await.ok().flatten()
    })
    .await;
    env.stop().await;
    cut.cancel();
    let _ = link.await;
}
