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

/// The pod template's hash of the code the pods copy at start.
fn code_hash(d: &Deployment) -> String {
    let v = serde_json::to_value(d).expect("json");
    v.pointer("/spec/template/metadata/annotations/kubeless.io~1code-sha256")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn prepare_script(d: &Deployment) -> String {
    let v = serde_json::to_value(d).expect("json");
    v.pointer("/spec/template/spec/initContainers/0/command/2")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Read-modify-write a Function as kubectl does: the controller writes its
/// status meanwhile (a function that is not ready is re-checked every 10 s),
/// so a conflict is retried on a fresh copy.
async fn update_function(fns: &Api<Function>, name: &str, change: impl Fn(&mut Function)) {
    for attempt in 0.. {
        let mut f = fns.get(name).await.expect("get");
        change(&mut f);
        match fns.replace(name, &PostParams::default(), &f).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 10 => {}
            Err(e) => panic!("update {name}: {e}"),
        }
    }
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
    // Code update of a Function without a checksum (as `kubectl apply` of
    // an edited manifest) → the ConfigMap changes and so does the pod
    // template (its code hash), so the pods roll and copy the new code.
    let before = code_hash(&d);
    assert_eq!(before.len(), 64, "the pod template carries the code hash");
    update_function(&fns, "hello", |f2| {
        assert!(f2.spec.checksum.is_empty());
        f2.spec.function = "def hello(e, c):\n    return 'v2'\n".into();
    })
    .await;
    let d2 = eventually("the Deployment to roll", 30, || async {
        deps.get("hello")
            .await
            .ok()
            .filter(|d| code_hash(d) != before)
    })
    .await;
    assert_eq!(
        prepare_script(&d2),
        prepare_script(&d),
        "no checksum to check"
    );
    let cm = env.api::<ConfigMap>().get("hello").await.expect("cm");
    assert!(
        cm.data.unwrap_or_default()["hello.py"].contains("'v2'"),
        "the ConfigMap has the new code"
    );
    // Labels and kubectl's bookkeeping annotation (which holds the whole
    // object, code included) → the Deployment's labels change, its pod
    // template (and so its pods) does not, and kubectl's annotation is
    // copied nowhere.
    let template = |d: &Deployment| {
        serde_json::to_value(&d.spec.as_ref().expect("spec").template).expect("json")
    };
    let generation = d2.metadata.generation;
    update_function(&fns, "hello", |f3| {
        f3.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("tier".into(), "gold".into());
        f3.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                "kubectl.kubernetes.io/last-applied-configuration".into(),
                serde_json::to_string(&f3.spec).expect("json"),
            );
    })
    .await;
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
    assert!(
        !d3.metadata
            .annotations
            .unwrap_or_default()
            .keys()
            .any(|k| k.starts_with("kubectl.kubernetes.io/")),
        "kubectl's bookkeeping is not copied onto the Deployment"
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
    update_function(&fns, "busy", |f| {
        f.spec.horizontal_pod_autoscaler = json!({})
    })
    .await;
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
    // A malformed handler never gets stored: the CRD schema refuses it.
    let mut bad = function("bad", "x = 1\n");
    bad.spec.handler = "nodot".into();
    match fns.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "{s:?}");
            assert!(s.message.contains("spec.handler"), "{}", s.message);
        }
        other => panic!("the API server stored a malformed handler: {other:?}"),
    }
    // What only the runtime catalogue can tell (an unknown runtime) is a
    // condition, not a crash loop.
    bad.spec.handler = "hello.hello".into();
    bad.spec.runtime = "cobol85".into();
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
    assert!(st.message.contains("cobol85"), "{}", st.message);
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

/// The CRD schema refuses what `kubeless_api::validate` refuses for the
/// fields a pattern can check (the samples of the unit test
/// `crd::tests::patterns_follow_the_validators`, from
/// `kubeless-api/tests/fixtures/function-field-samples.json`), and accepts the rest:
/// objects applied with kubectl are checked too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crd_schema_refuses_malformed_fields() {
    let Some(c) = client().await else { return };
    k8s_support::install_crds(&c).await;
    let ns = format!("t-schema-{}", std::process::id());
    k8s_support::namespace(&c, &ns).await;
    let fns: Api<Function> = Api::namespaced(c.clone(), &ns);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let samples: Vec<(String, String, bool)> = serde_json::from_str(include_str!(
        "../../kubeless-api/tests/fixtures/function-field-samples.json"
    ))
    .expect("samples");
    for (field, value, ok) in samples {
        let mut v = serde_json::to_value(function("sample", "x = 1\n")).expect("json");
        v["spec"][field.as_str()] = json!(value);
        let f: Function = serde_json::from_value(v).expect("function");
        match (fns.create(&dry, &f).await, ok) {
            (Ok(_), true) => {}
            (Err(kube::Error::Api(s)), false) => {
                assert_eq!(s.code, 422, "{field}={value:?}: {s:?}");
                assert!(
                    s.message.contains(&format!("spec.{field}")),
                    "{field}={value:?}: {}",
                    s.message
                );
            }
            (r, _) => panic!("{field}={value:?}: expected accepted={ok}, got {r:?}"),
        }
    }
    let https: Api<HttpTrigger> = Api::namespaced(c.clone(), &ns);
    for (gateway, ok) in [
        ("", true),
        ("nginx", true),
        ("kong", true),
        ("envoy", false),
    ] {
        let t: HttpTrigger = serde_json::from_value(json!({
            "apiVersion": "kubeless.io/v1beta1", "kind": "HTTPTrigger",
            "metadata": {"name": "sample"},
            "spec": {"function-name": "f", "gateway": gateway}
        }))
        .expect("trigger");
        assert_eq!(
            https.create(&dry, &t).await.is_ok(),
            ok,
            "gateway {gateway:?}"
        );
    }
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(c)
        .delete(&ns, &DeleteParams::default())
        .await;
}

/// Every example manifest of Kubeless (tests/fixtures/kubeless: a Function
/// of each content type, zip and URL ones included, and one trigger of
/// each kind) is accepted by the installed CRDs as written, and nothing
/// the user wrote is pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeless_example_manifests_are_accepted_by_the_crds() {
    let Some(c) = client().await else { return };
    k8s_support::install_crds(&c).await;
    let ns = format!("t-examples-{}", std::process::id());
    k8s_support::namespace(&c, &ns).await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kubeless");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let mut kinds = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("fixture");
        let doc: Value = serde_yaml::from_str(&text).expect("yaml");
        let kind = doc["kind"].as_str().expect("kind").to_string();
        let plural = format!("{}s", kind.to_ascii_lowercase());
        let gvk = GroupVersionKind::gvk("kubeless.io", "v1beta1", &kind);
        let api: Api<DynamicObject> = Api::namespaced_with(
            c.clone(),
            &ns,
            &ApiResource::from_gvk_with_plural(&gvk, &plural),
        );
        let obj: DynamicObject = serde_json::from_value(doc.clone()).expect("object");
        let stored = api
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("{} refused: {e}", path.display()));
        let stored = serde_json::to_value(&stored).expect("json");
        // The user's fields come back as written (embedded objects are kept
        // whole; only nulls, which mean "unset", may be dropped).
        for (k, v) in doc["spec"].as_object().expect("spec") {
            if !v.is_object() {
                assert_eq!(&stored["spec"][k], v, "{} spec.{k}", path.display());
            }
        }
        if kind == "Function" {
            let d = &stored["spec"]["deployment"]["spec"]["template"]["spec"]["containers"][0];
            if doc["spec"].get("deployment").is_some() {
                assert_eq!(d["imagePullPolicy"], "Always", "{}", path.display());
            }
        }
        kinds.push(kind);
    }
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "CronJobTrigger",
            "Function",
            "HTTPTrigger",
            "KafkaTrigger",
            "KinesisTrigger",
            "NATSTrigger"
        ]
    );
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(c)
        .delete(&ns, &DeleteParams::default())
        .await;
}

/// A child deleted behind the controller's back comes back within
/// seconds (the controller watches ConfigMaps, Services, Deployments and
/// HPAs it owns), not at the next 5-minute requeue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_children_come_back_at_once() {
    let Some(env) = Env::start("t", "children").await else {
        return;
    };
    let fns: Api<Function> = env.api();
    let mut f = function("kept", "def hello(e, c):\n    return 'x'\n");
    f.spec.horizontal_pod_autoscaler = json!({
        "metadata": {"name": "kept"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "kept"},
                 "minReplicas": 1, "maxReplicas": 2,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 50}}]}
    });
    fns.create(&PostParams::default(), &f)
        .await
        .expect("create");
    let svcs: Api<Service> = env.api();
    let cms: Api<ConfigMap> = env.api();
    let hpas: Api<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler> = env.api();
    let deps: Api<Deployment> = env.api();
    eventually("the children", 30, || async {
        let ok = deps.get_opt("kept").await.ok()??;
        hpas.get_opt("kept").await.ok()??;
        Some(ok)
    })
    .await;
    let uid = |m: &kube::core::ObjectMeta| m.uid.clone().unwrap_or_default();
    let old_svc = uid(&svcs.get("kept").await.expect("svc").metadata);
    let old_cm = uid(&cms.get("kept").await.expect("cm").metadata);
    let old_hpa = uid(&hpas.get("kept").await.expect("hpa").metadata);
    svcs.delete("kept", &DeleteParams::default())
        .await
        .expect("delete service");
    cms.delete("kept", &DeleteParams::default())
        .await
        .expect("delete configmap");
    hpas.delete("kept", &DeleteParams::default())
        .await
        .expect("delete hpa");
    eventually("the Service, ConfigMap and HPA to be back", 15, || async {
        let s = svcs.get_opt("kept").await.ok()??;
        let c = cms.get_opt("kept").await.ok()??;
        let h = hpas.get_opt("kept").await.ok()??;
        (uid(&s.metadata) != old_svc && uid(&c.metadata) != old_cm && uid(&h.metadata) != old_hpa)
            .then_some(())
    })
    .await;
    // An edit of a child is undone as promptly.
    cms.patch(
        "kept",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"hello.py": "tampered"}})),
    )
    .await
    .expect("edit configmap");
    eventually("the ConfigMap to be restored", 15, || async {
        let c = cms.get("kept").await.ok()?;
        c.data
            .unwrap_or_default()
            .get("hello.py")
            .is_some_and(|v| v.contains("return 'x'"))
            .then_some(())
    })
    .await;
    env.stop().await;
}

/// HTTP and cron triggers follow the Function they name: a new Service
/// port reaches the Ingress, a new timeout and port the CronJob, within
/// seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_follow_their_function() {
    let Some(env) = Env::start("t", "follow").await else {
        return;
    };
    let fns: Api<Function> = env.api();
    fns.create(
        &PostParams::default(),
        &function("dep", "def hello(e, c):\n    return 'ok'\n"),
    )
    .await
    .expect("create");
    let t: HttpTrigger = serde_json::from_value(json!({
        "apiVersion": "kubeless.io/v1beta1", "kind": "HTTPTrigger",
        "metadata": {"name": "dep-http"},
        "spec": {"function-name": "dep", "host-name": "dep.example.com", "gateway": "nginx"}
    }))
    .expect("trigger");
    env.api::<HttpTrigger>()
        .create(&PostParams::default(), &t)
        .await
        .expect("http trigger");
    let c: CronJobTrigger = serde_json::from_value(json!({
        "apiVersion": "kubeless.io/v1beta1", "kind": "CronJobTrigger",
        "metadata": {"name": "dep-cron"},
        "spec": {"function-name": "dep", "schedule": "0 0 * * *"}
    }))
    .expect("cron");
    env.api::<CronJobTrigger>()
        .create(&PostParams::default(), &c)
        .await
        .expect("cron trigger");
    let ings: Api<Ingress> = env.api();
    let cjs: Api<CronJob> = env.api();
    let ingress_port = |i: &Ingress| {
        serde_json::to_value(i).expect("json")["spec"]["rules"][0]["http"]["paths"][0]["backend"]
            ["service"]["port"]["number"]
            .as_i64()
    };
    let cron_deadline = |c: &CronJob| {
        serde_json::to_value(c).expect("json")["spec"]["jobTemplate"]["spec"]
            ["activeDeadlineSeconds"]
            .as_i64()
    };
    eventually("the Ingress and CronJob", 30, || async {
        let i = ings.get_opt("dep-http").await.ok()??;
        let c = cjs.get_opt("trigger-dep-cron").await.ok()??;
        (ingress_port(&i) == Some(8080) && cron_deadline(&c) == Some(30)).then_some(())
    })
    .await;
    update_function(&fns, "dep", |f| {
        f.spec.timeout = "45".into();
        f.spec.service["ports"][0]["port"] = json!(9090);
    })
    .await;
    eventually("the Ingress and CronJob to follow", 15, || async {
        let i = ings.get("dep-http").await.ok()?;
        let c = cjs.get("trigger-dep-cron").await.ok()?;
        let url = serde_json::to_value(&c).ok()?["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            ["containers"][0]["command"][3]
            .as_str()?
            .to_string();
        (ingress_port(&i) == Some(9090) && cron_deadline(&c) == Some(45) && url.ends_with(":9090"))
            .then_some(())
    })
    .await;
    env.stop().await;
}

/// A `kubeless-config` change is picked up without a restart and
/// re-renders existing Functions; an invalid change is ignored (the last
/// good settings stay) and the watch goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_rerender_existing_functions() {
    let Some(env) = Env::start("t", "config").await else {
        return;
    };
    let fns: Api<Function> = env.api();
    fns.create(
        &PostParams::default(),
        &function("conf", "def hello(e, c):\n    return 'ok'\n"),
    )
    .await
    .expect("create");
    let deps: Api<Deployment> = env.api();
    let pod =
        |d: &Deployment| serde_json::to_value(d).expect("json")["spec"]["template"]["spec"].clone();
    eventually("the Deployment", 30, || async {
        deps.get_opt("conf").await.ok()?
    })
    .await;
    let cms: Api<ConfigMap> = env.api();
    let set = |data: Value| {
        let cms = cms.clone();
        async move {
            cms.patch(
                "kubeless-config",
                &PatchParams::default(),
                &Patch::Merge(json!({ "data": data })),
            )
            .await
            .expect("patch kubeless-config");
        }
    };
    set(json!({
        "deployment": "{\"spec\": {\"template\": {\"spec\": {\"nodeSelector\": {\"disk\": \"ssd\"}}}}}",
        "provision-image": "example.com/prepare:2",
    }))
    .await;
    eventually("the Deployment to be re-rendered", 30, || async {
        let p = pod(&deps.get("conf").await.ok()?);
        (p["nodeSelector"] == json!({"disk": "ssd"})
            && p["initContainers"][0]["image"] == "example.com/prepare:2")
            .then_some(())
    })
    .await;
    // Invalid (a misspelt Deployment field): nothing of it applies.
    set(json!({
        "deployment": "{\"spec\": {\"replica\": 3}}",
        "provision-image": "example.com/prepare:3",
    }))
    .await;
    // A bounded look for a change that must not happen.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = pod(&deps.get("conf").await.expect("get"));
    assert_eq!(p["initContainers"][0]["image"], "example.com/prepare:2");
    // A valid one afterwards still applies: the watch goes on.
    set(json!({
        "deployment": "{}",
        "provision-image": "example.com/prepare:4",
    }))
    .await;
    eventually("the next valid config", 30, || async {
        let p = pod(&deps.get("conf").await.ok()?);
        (p.get("nodeSelector").is_none()
            && p["initContainers"][0]["image"] == "example.com/prepare:4")
            .then_some(())
    })
    .await;
    env.stop().await;
}

/// With controller-manager gone, a Function deleted (after its finalizer
/// is removed, as `kubeless uninstall` does) takes its children with it:
/// kube-controller-manager's garbage collector follows their owner
/// references.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collector_removes_the_children_of_a_deleted_function() {
    let Some(mut env) = Env::start("t", "gc").await else {
        return;
    };
    let fns: Api<Function> = env.api();
    fns.create(
        &PostParams::default(),
        &function("orphan", "def hello(e, c):\n    return 'ok'\n"),
    )
    .await
    .expect("create");
    let deps: Api<Deployment> = env.api();
    let svcs: Api<Service> = env.api();
    let cms: Api<ConfigMap> = env.api();
    eventually("the children", 30, || async {
        deps.get_opt("orphan").await.ok()??;
        svcs.get_opt("orphan").await.ok()??;
        cms.get_opt("orphan").await.ok()?
    })
    .await;
    eventually("the finalizer", 30, || async {
        let f = fns.get("orphan").await.ok()?;
        (!f.metadata.finalizers.unwrap_or_default().is_empty()).then_some(())
    })
    .await;
    env.stop_controller().await;
    fns.patch(
        "orphan",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove the finalizer");
    fns.delete("orphan", &DeleteParams::background())
        .await
        .expect("delete");
    eventually("the Function to be gone", 30, || async {
        matches!(fns.get_opt("orphan").await, Ok(None)).then_some(())
    })
    .await;
    eventually(
        "the garbage collector to remove the children",
        90,
        || async {
            let d = deps.get_opt("orphan").await.ok()?;
            let s = svcs.get_opt("orphan").await.ok()?;
            let c = cms.get_opt("orphan").await.ok()?;
            (d.is_none() && s.is_none() && c.is_none()).then_some(())
        },
    )
    .await;
    env.stop().await;
}

/// controller-manager started while the API server cannot be reached
/// waits for it (retrying with backoff) instead of exiting, then works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_waits_for_the_api_server_at_start() {
    let Some(admin) = client().await else { return };
    let mut cfg = Config::infer().await.expect("kubeconfig");
    let upstream = format!(
        "{}:{}",
        cfg.cluster_url.host().unwrap_or("127.0.0.1"),
        cfg.cluster_url.port_u16().unwrap_or(443)
    );
    // A port nobody listens on yet.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    cfg.cluster_url = format!("https://127.0.0.1:{}", addr.port())
        .parse()
        .expect("url");
    cfg.read_timeout = Some(Duration::from_secs(5));
    let controller = Client::try_from(cfg).expect("client");
    let env = Env::start_with(admin, controller, "t", "late").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !env.task.is_finished(),
        "controller-manager exited instead of waiting for the API server"
    );
    let fns: Api<Function> = env.api();
    fns.create(&PostParams::default(), &function("late", "x = 1\n"))
        .await
        .expect("create");
    // The API server becomes reachable: the controller starts and catches up.
    let listener = TcpListener::bind(addr).await.expect("bind");
    let cut = CancellationToken::new();
    let link = tokio::spawn(proxy(listener, upstream, cut.clone()));
    let deps: Api<Deployment> = env.api();
    eventually(
        "the Deployment once the API server is reachable",
        60,
        || async { deps.get_opt("late").await.ok().flatten() },
    )
    .await;
    env.stop().await;
    cut.cancel();
    let _ = link.await;
}

/// controller-manager works with nothing but its ServiceAccount's rights
/// (deploy/kubeless.yaml's ClusterRole, and its leader-election Role):
/// a Function with an autoscaler, an HTTP, a cron and a Kafka trigger are
/// reconciled, their statuses written, and deleting the Function cleans
/// up. Rights it does not need are not granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_runs_with_its_service_account() {
    let Some(admin) = client().await else { return };
    k8s_support::install_crds(&admin).await;
    let ns = format!("t-rbac-{}", std::process::id());
    k8s_support::namespace(&admin, &ns).await;
    // The leader-election Role of the install, in the test's namespace
    // (where this controller keeps its Lease), bound to the same account.
    let role = kubeless_controller::install::manifests("img")
        .into_iter()
        .find(|o| o["kind"] == "Role")
        .expect("the install has a Role");
    let mut role = role;
    role["metadata"]["namespace"] = json!(ns);
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": role["metadata"]["name"], "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": role["metadata"]["name"]},
        "subjects": [{"kind": "ServiceAccount", "name": "controller-acct", "namespace": "kubeless"}]
    });
    for (o, plural) in [(&role, "roles"), (&binding, "rolebindings")] {
        let gvk = GroupVersionKind::gvk(
            "rbac.authorization.k8s.io",
            "v1",
            o["kind"].as_str().expect("kind"),
        );
        let api: Api<DynamicObject> = Api::namespaced_with(
            admin.clone(),
            &ns,
            &ApiResource::from_gvk_with_plural(&gvk, plural),
        );
        let obj: DynamicObject = serde_json::from_value(o.clone()).expect("object");
        api.patch(
            obj.metadata.name.as_deref().expect("name"),
            &PatchParams::apply("test").force(),
            &Patch::Apply(&obj),
        )
        .await
        .expect("apply rbac");
    }
    let sa = k8s_support::service_account_client(&admin, "kubeless", "controller-acct").await;
    // Least privilege: what the controller never uses is refused. It reads
    // pods (why a function cannot run) but never changes them.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(sa.clone(), &ns);
    assert!(
        pods.list(&ListParams::default()).await.is_ok(),
        "the controller's account lists pods"
    );
    assert!(
        matches!(pods.delete("any", &Default::default()).await, Err(kube::Error::Api(s)) if s.code == 403),
        "the controller's account can delete pods"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(sa.clone());
    assert!(
        matches!(crds.get("functions.kubeless.io").await, Err(kube::Error::Api(s)) if s.code == 403),
        "the controller's account can read CRDs"
    );
    let env = Env::start_with_options(admin, sa, "t", "rbac", |o| {
        o.leader_election = Some(kubeless_controller::lease::Timing::default());
    })
    .await;
    assert_eq!(env.ns, ns);
    let fns: Api<Function> = env.api();
    let mut f = function("ruled", "def hello(e, c):\n    return 'ok'\n");
    f.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("topic".into(), "orders".into());
    f.spec.horizontal_pod_autoscaler = json!({
        "metadata": {"name": "ruled"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ruled"},
                 "minReplicas": 1, "maxReplicas": 2,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 50}}]}
    });
    fns.create(&PostParams::default(), &f)
        .await
        .expect("create");
    let http: HttpTrigger = serde_json::from_value(json!({
        "apiVersion": "kubeless.io/v1beta1", "kind": "HTTPTrigger",
        "metadata": {"name": "ruled"},
        "spec": {"function-name": "ruled", "host-name": "ruled.example.com"}
    }))
    .expect("http");
    env.api::<HttpTrigger>()
        .create(&PostParams::default(), &http)
        .await
        .expect("http trigger");
    let cron: CronJobTrigger = serde_json::from_value(json!({
        "apiVersion": "kubeless.io/v1beta1", "kind": "CronJobTrigger",
        "metadata": {"name": "ruled"},
        "spec": {"function-name": "ruled", "schedule": "0 0 * * *"}
    }))
    .expect("cron");
    env.api::<CronJobTrigger>()
        .create(&PostParams::default(), &cron)
        .await
        .expect("cron trigger");
    let kafka: kubeless_controller::resources::KafkaTrigger = serde_json::from_value(json!({
        "apiVersion": "kubeless.io/v1beta1", "kind": "KafkaTrigger",
        "metadata": {"name": "ruled"},
        "spec": {"topic": "orders", "functionSelector": {"matchLabels": {"topic": "orders"}}}
    }))
    .expect("kafka");
    let kafkas: Api<kubeless_controller::resources::KafkaTrigger> = env.api();
    kafkas
        .create(&PostParams::default(), &kafka)
        .await
        .expect("kafka trigger");
    let deps: Api<Deployment> = env.api();
    let hpas: Api<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler> = env.api();
    let ings: Api<Ingress> = env.api();
    let cjs: Api<CronJob> = env.api();
    eventually(
        "every object, written with the account's rights",
        60,
        || async {
            deps.get_opt("ruled").await.ok()??;
            env.api::<Service>().get_opt("ruled").await.ok()??;
            env.api::<ConfigMap>().get_opt("ruled").await.ok()??;
            hpas.get_opt("ruled").await.ok()??;
            ings.get_opt("ruled").await.ok()??;
            cjs.get_opt("trigger-ruled").await.ok()?
        },
    )
    .await;
    eventually("the statuses", 60, || async {
        let f = fns.get("ruled").await.ok()?;
        let h = env.api::<HttpTrigger>().get("ruled").await.ok()?;
        let c = env.api::<CronJobTrigger>().get("ruled").await.ok()?;
        let k = kafkas.get("ruled").await.ok()?;
        (f.status.is_some_and(|s| s.observed_generation == 1)
            && h.status.is_some_and(|s| s.state == "Ready")
            && c.status.is_some_and(|s| s.state == "Ready")
            && k.status.is_some_and(|s| !s.state.is_empty()))
        .then_some(())
    })
    .await;
    // The Lease was taken with the Role's rights.
    let lease: Api<k8s_openapi::api::coordination::v1::Lease> = env.api();
    let held = lease
        .get(kubeless_controller::LEASE_NAME)
        .await
        .expect("the lease");
    assert_eq!(
        held.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("t-test-rbac")
    );
    fns.delete("ruled", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the cleanup", 60, || async {
        let gone = fns.get_opt("ruled").await.ok()?.is_none()
            && deps.get_opt("ruled").await.ok()?.is_none()
            && ings.get_opt("ruled").await.ok()?.is_none()
            && cjs.get_opt("trigger-ruled").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    env.stop().await;
}
