//! `kubeless --backend kubernetes` against a real kube-apiserver (the
//! tools/k8s-harness control plane that scripts/test.sh starts): the built
//! `kubeless` binary deploys, lists, describes, updates and deletes
//! functions, manages HTTP triggers and autoscalers, and reads the server
//! config from the ConfigMap of deploy/kubeless.yaml. An in-process
//! controller-manager scoped to the test namespace turns the Function into
//! its Deployment and HPA.
//!
//! `function call` and `top` through the service proxy are tested in
//! k8s_proxy.rs; `logs` needs a kubelet, which this control plane cannot
//! have: its request shape is unit-tested in
//! crates/kubeless-cli/src/client/kube.rs.
//!
//! Without `KUBECONFIG` the tests are skipped, except when `REQUIRE_K8S=1`
//! or `CI` is set: then they fail.

mod k8s_support;

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_support::{Env, client, eventually, install_crds, kubeless};
use kube::api::{Api, DeleteParams, PostParams};
use kubeless_controller::resources::{Function, HttpTrigger};
use serde_json::{Value, json};

/// Run and require success; answers stdout and stderr.
async fn ok(args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let out = kubeless(args, env).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "kubeless {args:?} failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    (stdout, stderr)
}

/// A kubeconfig like `KUBECONFIG` whose current context names `ns`.
fn kubeconfig_with_namespace(dir: &Path, ns: &str) -> PathBuf {
    let path = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let text = std::fs::read_to_string(&path).expect("kubeconfig");
    let mut kc: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig yaml");
    let current = kc["current-context"].as_str().expect("context").to_string();
    let contexts = kc["contexts"].as_sequence_mut().expect("contexts");
    for c in contexts {
        if c["name"].as_str() == Some(current.as_str()) {
            c["context"]["namespace"] = serde_yaml::Value::String(ns.to_string());
        }
    }
    let out = dir.join("kubeconfig");
    std::fs::write(&out, serde_yaml::to_string(&kc).expect("yaml")).expect("write kubeconfig");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_functions_triggers_and_autoscalers() {
    let Some(env) = Env::start("cli", "crud").await else {
        return;
    };
    let ns = env.ns.as_str();
    let dir = tempfile::tempdir().expect("tmp");
    let code = dir.path().join("hello.py");
    std::fs::write(&code, "def hello(event, context):\n    return 'hi'\n").expect("code");
    let code = code.to_str().expect("utf-8 path");

    // Deploy: the runtime is checked against kubeless/kubeless-config
    // (deploy/kubeless.yaml), the Function is created, the controller
    // renders its Deployment.
    let (_, err) = ok(
        &[
            "function",
            "deploy",
            "hello",
            "--runtime",
            "python3.11",
            "--handler",
            "hello.hello",
            "--from-file",
            code,
            "--label",
            "team=a",
            "-n",
            ns,
        ],
        &[],
    )
    .await;
    assert!(err.contains("Deploying function..."), "{err}");
    let fns: Api<Function> = env.api();
    let f = fns.get("hello").await.expect("the Function exists");
    assert_eq!(f.spec.handler, "hello.hello");
    assert_eq!(
        f.metadata
            .labels
            .unwrap_or_default()
            .get("team")
            .map(String::as_str),
        Some("a")
    );
    let deps: Api<Deployment> = env.api();
    eventually("the Deployment", 60, || async {
        deps.get_opt("hello").await.ok().flatten()
    })
    .await;

    // ls/describe read it back; STATUS comes from the status (no kubelet:
    // never ready).
    let (out, _) = ok(&["function", "ls", "-n", ns], &[]).await;
    let row = out.lines().find(|l| l.starts_with("hello")).expect("row");
    assert!(
        row.contains("python3.11") && row.contains("NOT READY"),
        "{out}"
    );
    let (out, _) = ok(&["function", "ls", "-n", ns, "-o", "json"], &[]).await;
    let listed: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(listed[0]["metadata"]["name"], "hello");
    let (out, _) = ok(&["function", "describe", "hello", "-n", ns], &[]).await;
    assert!(out.contains("hello.hello") && out.contains(ns), "{out}");

    // Without -n, the current context's namespace applies (spec 1.0).
    let kc = kubeconfig_with_namespace(dir.path(), ns);
    let (out, _) = ok(
        &["function", "ls"],
        &[("KUBECONFIG", kc.to_str().expect("path"))],
    )
    .await;
    assert!(out.lines().any(|l| l.starts_with("hello")), "{out}");

    // Update changes the stored spec.
    ok(
        &[
            "function",
            "update",
            "hello",
            "--handler",
            "hello.hello2",
            "-n",
            ns,
        ],
        &[],
    )
    .await;
    let f = fns.get("hello").await.expect("get");
    assert_eq!(f.spec.handler, "hello.hello2");

    // HTTP trigger CRUD.
    ok(
        &[
            "trigger",
            "http",
            "create",
            "web",
            "--function-name",
            "hello",
            "--hostname",
            "hello.example.com",
            "-n",
            ns,
        ],
        &[],
    )
    .await;
    let hts: Api<HttpTrigger> = env.api();
    let ht = hts.get("web").await.expect("the HTTPTrigger exists");
    assert_eq!(ht.spec.function_name, "hello");
    let (out, _) = ok(&["trigger", "http", "ls", "-n", ns], &[]).await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("web") && l.contains("hello")),
        "{out}"
    );
    ok(&["trigger", "http", "delete", "web", "-n", ns], &[]).await;
    eventually("the HTTPTrigger to be gone", 30, || async {
        matches!(hts.get_opt("web").await, Ok(None)).then_some(())
    })
    .await;

    // Autoscale: stored in the Function, rendered as an autoscaling/v2 HPA.
    let (_, err) = ok(
        &[
            "autoscale",
            "create",
            "hello",
            "--min",
            "2",
            "--max",
            "4",
            "--value",
            "60",
            "-n",
            ns,
        ],
        &[],
    )
    .await;
    assert!(
        err.contains("Autoscaling rule for hello submitted for deployment"),
        "{err}"
    );
    let hpas: Api<HorizontalPodAutoscaler> = env.api();
    let hpa = eventually("the HPA", 60, || async {
        hpas.get_opt("hello").await.ok().flatten()
    })
    .await;
    let v = serde_json::to_value(&hpa).expect("json");
    assert_eq!(
        v["spec"]["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "hello"})
    );
    assert_eq!(
        (
            v["spec"]["minReplicas"].clone(),
            v["spec"]["maxReplicas"].clone()
        ),
        (json!(2), json!(4))
    );
    assert_eq!(
        v["spec"]["metrics"][0]["resource"]["target"],
        json!({"type": "Utilization", "averageUtilization": 60})
    );
    let (out, _) = ok(&["autoscale", "list", "-n", ns], &[]).await;
    let row = out
        .lines()
        .find(|l| l.starts_with("hello"))
        .expect("hpa row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        ["hello", ns, "hello", "2", "4", "cpu", "60"],
        "{out}"
    );
    let (out, _) = ok(&["autoscale", "ls", "-n", ns, "-o", "json"], &[]).await;
    let listed: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(listed["apiVersion"], "autoscaling/v2");
    let bad = kubeless(
        &[
            "autoscale",
            "create",
            "hello",
            "--min",
            "0",
            "--value",
            "1",
            "-n",
            ns,
        ],
        &[],
    )
    .await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("min can't be negative or zero"));
    ok(&["autoscale", "delete", "hello", "-n", ns], &[]).await;
    eventually("the HPA to be gone", 60, || async {
        matches!(hpas.get_opt("hello").await, Ok(None)).then_some(())
    })
    .await;
    let again = kubeless(&["autoscale", "delete", "hello", "-n", ns], &[]).await;
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("Not found an autoscale definition for hello")
    );

    // Delete: the Function goes (the controller's finalizer cleans up).
    ok(&["function", "delete", "hello", "-n", ns], &[]).await;
    eventually("the Function to be gone", 60, || async {
        matches!(fns.get_opt("hello").await, Ok(None)).then_some(())
    })
    .await;
    let missing = kubeless(&["function", "describe", "hello", "-n", ns], &[]).await;
    assert!(!missing.status.success());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_server_config_reads_the_configmap() {
    let Some(c) = client().await else {
        return;
    };
    install_crds(&c).await;
    // kubeless/kubeless-config from deploy/kubeless.yaml.
    let (_, err) = ok(&["get-server-config"], &[]).await;
    assert!(err.contains("Current Server Config:"), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("Supported Runtimes are:"))
        .expect("runtimes line");
    assert!(line.contains("python3.11"), "{line}");

    // KUBELESS_NAMESPACE/KUBELESS_CONFIG point elsewhere.
    let ns = format!("cli-cfg-{}", std::process::id());
    let nss: Api<Namespace> = Api::all(c.clone());
    let _ = nss
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
        )
        .await;
    let images = json!([{"ID": "custom", "versions": [{"name": "c1", "version": "9",
        "images": [{"phase": "runtime", "image": "example/custom:9"}]}],
        "depName": "", "fileNameSuffix": ".c"}]);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "my-config"},
        "data": {"runtime-images": images.to_string()}}))
    .expect("cm");
    Api::<ConfigMap>::namespaced(c.clone(), &ns)
        .create(&PostParams::default(), &cm)
        .await
        .expect("create config map");
    let (_, err) = ok(
        &["get-server-config"],
        &[
            ("KUBELESS_NAMESPACE", &ns),
            ("KUBELESS_CONFIG", "my-config"),
        ],
    )
    .await;
    assert!(err.contains("Supported Runtimes are: custom9"), "{err}");
    let missing = kubeless(
        &["get-server-config"],
        &[("KUBELESS_NAMESPACE", &ns), ("KUBELESS_CONFIG", "absent")],
    )
    .await;
    assert!(!missing.status.success());
    let _ = nss.delete(&ns, &DeleteParams::default()).await;
}

/// Run and require failure; answers stderr.
async fn fails(args: &[&str]) -> String {
    let out = kubeless(args, &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "kubeless {args:?} succeeded\nstderr: {stderr}"
    );
    stderr
}

/// Bad input never reaches the cluster: `function deploy/update` and
/// `apply -f` check objects as the embedded server does, with its
/// messages, before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_refuses_invalid_objects_before_sending() {
    let Some(env) = Env::start("cli", "invalid").await else {
        return;
    };
    let ns = env.ns.as_str();
    let dir = tempfile::tempdir().expect("tmp");
    let code = dir.path().join("hello.py");
    std::fs::write(&code, "def hello(event, context):\n    return 'hi'\n").expect("code");
    let code = code.to_str().expect("utf-8 path");
    let fns: Api<Function> = env.api();

    let err = fails(&[
        "function",
        "deploy",
        "bad",
        "--runtime",
        "python3.11",
        "--handler",
        "nodot",
        "--from-file",
        code,
        "-n",
        ns,
    ])
    .await;
    assert!(err.contains("Failed to deploy bad. Received:"), "{err}");
    assert!(
        err.contains(r#"spec.handler: \"nodot\" must be exactly <module>.<function> with one dot"#),
        "{err}"
    );
    assert!(!err.contains("Deploying function..."), "{err}");
    assert!(fns.get_opt("bad").await.expect("get").is_none());

    ok(
        &[
            "function",
            "deploy",
            "good",
            "--runtime",
            "python3.11",
            "--handler",
            "hello.hello",
            "--from-file",
            code,
            "-n",
            ns,
        ],
        &[],
    )
    .await;
    let err = fails(&["function", "update", "good", "--timeout", "soon", "-n", ns]).await;
    assert!(err.contains("Failed to update good. Received:"), "{err}");
    assert!(
        err.contains(r#"spec.timeout: \"soon\" must be a positive whole number of seconds"#),
        "{err}"
    );
    assert_eq!(fns.get("good").await.expect("get").spec.timeout, "180");

    // apply -f: every object is checked first; one bad one and nothing is
    // applied, the good trigger before it included.
    let manifest = dir.path().join("objects.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: kubeless.io/v1beta1\nkind: HTTPTrigger\nmetadata: {name: first}\nspec: {function-name: good}\n---\napiVersion: kubeless.io/v1beta1\nkind: Function\nmetadata: {name: broken}\nspec: {handler: a.b, runtime: cobol85, function: x, checksum: 'sha256:abc'}\n",
    )
    .expect("manifest");
    let err = fails(&["apply", "-f", manifest.to_str().expect("path"), "-n", ns]).await;
    assert!(
        err.contains(
            r#"error applying function.kubeless.io/broken: Function \"broken\" is invalid:"#
        ),
        "{err}"
    );
    assert!(
        err.contains(r#"spec.runtime: unknown runtime \"cobol85\""#),
        "{err}"
    );
    assert!(err.contains("spec.checksum: "), "{err}");
    assert!(
        env.api::<HttpTrigger>()
            .get_opt("first")
            .await
            .expect("get")
            .is_none(),
        "nothing is applied when one object is invalid"
    );
    env.stop().await;
}

/// The Kubeless example manifests (tests/fixtures/kubeless) go through
/// `kubeless apply -f` as they are, and the trigger lists read back what
/// was applied, for every kind; Kinesis triggers are managed by the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeless_examples_apply_and_list() {
    let Some(env) = Env::start("cli", "examples").await else {
        return;
    };
    let ns = env.ns.as_str();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kubeless");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in &files {
        let (out, _) = ok(&["apply", "-f", f.to_str().expect("path"), "-n", ns], &[]).await;
        assert!(out.contains(" created"), "{}: {out}", f.display());
    }
    let (out, _) = ok(&["function", "ls", "-n", ns], &[]).await;
    for name in [
        "get-python",
        "get-ruby",
        "get-nodejs-zip",
        "get-php-tgz",
        "get-python-url",
        "get-go-url-zip",
    ] {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} in\n{out}"
        );
    }
    let rows = |out: &str| -> Vec<Vec<String>> {
        out.lines()
            .skip(1)
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .filter(|r: &Vec<String>| !r.is_empty())
            .collect()
    };
    let (out, _) = ok(&["trigger", "http", "ls", "-n", ns], &[]).await;
    assert_eq!(rows(&out), [["get-python", ns, "get-python"]], "{out}");
    let (out, _) = ok(&["trigger", "cronjob", "ls", "-n", ns], &[]).await;
    assert_eq!(
        rows(&out),
        [[
            "scheduled-get-python",
            ns,
            "*/5",
            "*",
            "*",
            "*",
            "*",
            "get-python"
        ]],
        "{out}"
    );
    let (out, _) = ok(&["trigger", "kafka", "ls", "-n", ns], &[]).await;
    assert_eq!(
        rows(&out),
        [[
            "s3-python-kafka-trigger",
            ns,
            "s3-python",
            "created-by=kubeless,topic=s3-python"
        ]],
        "{out}"
    );
    let (out, _) = ok(&["trigger", "nats", "ls", "-n", ns], &[]).await;
    assert_eq!(
        rows(&out),
        [[
            "pubsub-python-nats",
            ns,
            "test",
            "created-by=kubeless,topic=nats-topic-test"
        ]],
        "{out}"
    );
    let (out, _) = ok(&["trigger", "kinesis", "ls", "-n", ns], &[]).await;
    assert!(
        out.starts_with("NAME") && out.contains("REGION") && out.contains("SHARD"),
        "{out}"
    );
    assert_eq!(
        rows(&out),
        [[
            "kinesis-trigger",
            ns,
            "us-west-2",
            "my-kinesis-stream",
            "shardId-000000000000",
            "get-python"
        ]],
        "{out}"
    );

    // trigger kinesis create/update/delete: the function and the secret
    // must exist.
    let kinesis = [
        "trigger",
        "kinesis",
        "create",
        "orders",
        "--function-name",
        "get-python",
        "--aws-region",
        "eu-west-1",
        "--shard-id",
        "shardId-000000000001",
        "--stream",
        "orders",
        "--secret",
        "aws-keys",
        "-n",
        ns,
    ];
    let err = fails(&kinesis).await;
    assert!(err.contains("Unable to find Secret aws-keys"), "{err}");
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "aws-keys"},
        "stringData": {"aws_access_key_id": "id", "aws_secret_access_key": "key"}
    }))
    .expect("secret");
    env.api::<k8s_openapi::api::core::v1::Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let (_, err) = ok(&kinesis, &[]).await;
    assert!(
        err.contains(&format!(
            "Kinesis trigger orders created in namespace {ns} successfully!"
        )),
        "{err}"
    );
    ok(
        &[
            "trigger",
            "kinesis",
            "update",
            "orders",
            "--stream",
            "orders-v2",
            "-n",
            ns,
        ],
        &[],
    )
    .await;
    let (out, _) = ok(&["trigger", "kinesis", "ls", "-n", ns], &[]).await;
    assert!(
        rows(&out).contains(&vec![
            "orders".to_string(),
            ns.to_string(),
            "eu-west-1".to_string(),
            "orders-v2".to_string(),
            "shardId-000000000001".to_string(),
            "get-python".to_string()
        ]),
        "{out}"
    );
    ok(&["trigger", "kinesis", "delete", "orders", "-n", ns], &[]).await;
    let (out, _) = ok(&["trigger", "kinesis", "ls", "-n", ns], &[]).await;
    assert!(!out.contains("orders"), "{out}");
    let err = fails(&[
        "trigger",
        "kinesis",
        "publish",
        "--stream",
        "orders",
        "--records",
        "x",
    ])
    .await;
    assert_eq!(err.lines().count(), 1, "one line saying why: {err}");
    assert!(err.contains("does not talk to AWS"), "{err}");
    let err = fails(&["trigger", "kinesis", "create-stream", "--stream-name", "s"]).await;
    assert!(err.contains("does not talk to AWS"), "{err}");
    env.stop().await;
}
