//! Golden tests of the pure render: Function → ConfigMap/Service/Deployment/HPA,
//! HTTPTrigger → Ingress, CronJobTrigger → CronJob. `UPDATE_GOLDEN=1`
//! rewrites the files under tests/golden/.

use std::collections::BTreeMap;

use kubeless_api::{CronJobTrigger, Function, HttpTrigger};
use kubeless_controller::render::{self, RenderError};
use kubeless_controller::settings::{Settings, default_config_data};
use serde_json::{Value, json};

fn function(v: Value) -> Function {
    serde_json::from_value(v).expect("valid function json")
}

fn python() -> Function {
    function(json!({
        "apiVersion": "kubeless.io/v1beta1", "kind": "Function",
        "metadata": {"name": "get-python", "namespace": "default", "uid": "uid-1", "generation": 1,
                     "labels": {"created-by": "kubeless", "function": "get-python", "team": "a"}},
        "spec": {
            "handler": "helloget.foo",
            "function": "def foo(event, context):\n    return 'hello world'\n",
            "function-content-type": "text",
            "checksum": "sha256:4e0f8b6b4c3b5ad0b0d3a1f7d2b8a9c1e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0",
            "runtime": "python3.11",
            "timeout": "30",
            "deps": "requests==2.31.0\n",
            "deployment": {"spec": {"template": {"spec": {
                "containers": [{"name": "", "imagePullPolicy": "Always",
                                "env": [{"name": "FOO", "value": "bar"},
                                        {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                                "resources": {"limits": {"memory": "128Mi", "cpu": "0"}, "requests": {"memory": "128Mi", "cpu": "0"}},
                                "volumeMounts": [{"name": "creds-vol", "mountPath": "/creds"}]}],
                "volumes": [{"name": "creds-vol", "secret": {"secretName": "creds"}}]}}}},
            "service": {"ports": [{"name": "http-function-port", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 0}],
                        "selector": {"created-by": "kubeless", "function": "get-python"}, "type": "ClusterIP"},
            "horizontalPodAutoscaler": {
                "apiVersion": "autoscaling/v2beta1", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "get-python", "namespace": "default"},
                "spec": {"scaleTargetRef": {"apiVersion": "apps/v1beta1", "kind": "Deployment", "name": "get-python"},
                         "minReplicas": 3, "maxReplicas": 3,
                         "metrics": [{"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": 10}}]}}
        }
    }))
}

fn nodejs_zip_url() -> Function {
    function(json!({
        "metadata": {"name": "node-zip", "namespace": "fns", "uid": "uid-2"},
        "spec": {
            "handler": "index.handler",
            "function": "https://example.com/code.zip?x=1",
            "function-content-type": "url+zip",
            "checksum": "",
            "runtime": "nodejs20",
            "deps": "{\"dependencies\": {\"lodash\": \"^4\"}}",
            "deployment": {}, "service": {}, "horizontalPodAutoscaler": {}
        }
    }))
}

fn custom_image() -> Function {
    function(json!({
        "metadata": {"name": "custom", "namespace": "default", "uid": "uid-3"},
        "spec": {
            "handler": "", "function": "", "runtime": "",
            "deployment": {"spec": {"template": {"spec": {"containers": [{"image": "example/fn:1"}]}}}},
            "service": {"ports": [{"name": "http-function-port", "port": 9000, "targetPort": 9000}]}
        }
    }))
}

fn yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| serde_yaml::to_string(o).expect("yaml"))
        .collect::<Vec<_>>()
        .join("---\n")
}

fn golden(name: &str, got: &str) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).expect("write golden");
    }
    let want = std::fs::read_to_string(&path).expect("golden exists (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(got, want, "{name} differs from the golden file");
}

fn render_all(f: &Function, s: &Settings) -> String {
    let o = render::function_objects(f, s).expect("renders");
    let mut v = vec![
        serde_json::to_value(&o.config_map).expect("json"),
        serde_json::to_value(&o.service).expect("json"),
        serde_json::to_value(&o.deployment).expect("json"),
    ];
    if let Some(h) = &o.hpa {
        v.push(serde_json::to_value(h).expect("json"));
    }
    let mut out = yaml(&v);
    if !o.warnings.is_empty() {
        out.push_str(&format!("# warnings: {:?}\n", o.warnings));
    }
    out
}

#[test]
fn python_function_matches_golden() {
    golden("python.yaml", &render_all(&python(), &Settings::default()));
}

#[test]
fn nodejs_url_zip_matches_golden() {
    golden(
        "nodejs-url-zip.yaml",
        &render_all(&nodejs_zip_url(), &Settings::default()),
    );
}

#[test]
fn custom_image_matches_golden() {
    golden(
        "custom-image.yaml",
        &render_all(&custom_image(), &Settings::default()),
    );
}

#[test]
fn runtime_images_and_deployment_from_config() {
    let mut data: BTreeMap<String, String> = default_config_data();
    data.insert(
        "runtime-images".into(),
        r#"[{"ID": "python", "depName": "requirements.txt", "fileNameSuffix": ".py",
             "versions": [{"name": "python38", "version": "3.8",
               "images": [{"phase": "installation", "image": "python:3.8",
                           "command": "pip install --prefix=$KUBELESS_INSTALL_VOLUME -r $KUBELESS_DEPS_FILE"},
                          {"phase": "runtime", "image": "kubeless/python@sha256:abc",
                           "env": {"PYTHONPATH": "$(KUBELESS_INSTALL_VOLUME)/lib/python3.8/site-packages:$(KUBELESS_INSTALL_VOLUME)"}}],
               "imagePullSecrets": [{"ImageSecret": "regcred"}]}]}]"#
            .into(),
    );
    data.insert(
        "deployment".into(),
        r#"{"spec": {"replicas": 2, "template": {"spec": {"containers": [{"env": [{"name": "FROM_CONFIG", "value": "1"}]}], "nodeSelector": {"disk": "ssd"}}}}}"#.into(),
    );
    data.insert("provision-image-secret".into(), "provision-secret".into());
    let s = Settings::from_config_map(&data).expect("settings");
    let mut f = python();
    f.spec.runtime = "python3.8".into();
    golden("python-config.yaml", &render_all(&f, &s));
    // A runtime the configured catalogue does not have is a clear error.
    let e = render::function_objects(&python(), &s).expect_err("python3.11 unknown");
    assert!(e.to_string().contains("python3.8"), "{e}");
}

#[test]
fn bad_functions_are_errors_not_panics() {
    let s = Settings::default();
    let mut f = python();
    f.spec.handler = "nodot".into();
    assert!(matches!(
        render::function_objects(&f, &s),
        Err(RenderError::Plan(_))
    ));
    let mut f = python();
    f.spec.checksum = "md5:abc".into();
    assert!(matches!(
        render::function_objects(&f, &s),
        Err(RenderError::Checksum(_))
    ));
    let mut f = python();
    f.spec.function_content_type = "weird".into();
    assert!(matches!(
        render::function_objects(&f, &s),
        Err(RenderError::ContentType(_))
    ));
}

#[test]
fn prepare_script_follows_kubeless() {
    let hex = "a".repeat(64);
    assert_eq!(
        render::prepare_script(
            "x",
            "base64+zip",
            &format!("sha256:{hex}"),
            "mod",
            "requirements.txt"
        )
        .expect("script"),
        format!(
            "base64 -d < /src/mod > /tmp/func.decoded && echo '{hex}  /tmp/func.decoded' > /tmp/func.sha256 && sha256sum -c /tmp/func.sha256 && unzip -o /tmp/func.decoded -d /kubeless && cp /src/requirements.txt /kubeless"
        )
    );
    assert_eq!(
        render::prepare_script(
            "https://h/x.tgz",
            "url+compressedtar+deps",
            "",
            "mod",
            "package.json"
        )
        .expect("script"),
        "curl https://h/x.tgz -L --silent --output /tmp/func.fromurl && tar xf /tmp/func.fromurl -C /kubeless"
    );
}

fn http_trigger(spec: Value) -> HttpTrigger {
    serde_json::from_value(json!({
        "metadata": {"name": "get-python-http", "namespace": "default", "uid": "uid-h",
                     "labels": {"created-by": "kubeless"},
                     "annotations": {"example.com/extra": "yes"}},
        "spec": spec,
    }))
    .expect("trigger")
}

#[test]
fn ingress_matches_golden() {
    let nginx = http_trigger(
        json!({"function-name": "get-python", "host-name": "fn.example.com",
        "path": "hello", "gateway": "nginx", "cors-enable": true, "basic-auth-secret": "htpasswd", "tls": true}),
    );
    let traefik = http_trigger(
        json!({"function-name": "get-python", "host-name": "fn.example.com",
        "gateway": "traefik", "tls-secret": "fn-cert"}),
    );
    let kong_acme = http_trigger(
        json!({"function-name": "get-python", "host-name": "fn.example.com",
        "gateway": "kong", "tls": true}),
    );
    let v = [
        serde_json::to_value(render::ingress(&nginx, 80).expect("nginx")).expect("json"),
        serde_json::to_value(render::ingress(&traefik, 8080).expect("traefik")).expect("json"),
        serde_json::to_value(render::ingress(&kong_acme, 8080).expect("kong")).expect("json"),
    ];
    golden("ingress.yaml", &yaml(&v));
    // ACME TLS: each gateway gets its own HTTP→HTTPS redirect, never
    // another gateway's annotation.
    let redirects = |gateway: &str| -> BTreeMap<String, String> {
        let t = http_trigger(json!({"function-name": "f", "host-name": "f.example.com",
                                    "gateway": gateway, "tls": true}));
        let ing = render::ingress(&t, 80).expect("renders");
        let ann = ing.metadata.annotations.unwrap_or_default();
        assert_eq!(
            ann.get("kubernetes.io/tls-acme").map(String::as_str),
            Some("true")
        );
        ann.into_iter()
            .filter(|(k, _)| k.contains("redirect") || k.starts_with("konghq.com/"))
            .collect()
    };
    let m = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        redirects("nginx"),
        m(&[("nginx.ingress.kubernetes.io/ssl-redirect", "true")])
    );
    assert_eq!(
        redirects("traefik"),
        m(&[("ingress.kubernetes.io/ssl-redirect", "true")])
    );
    assert_eq!(
        redirects("kong"),
        m(&[
            ("konghq.com/https-redirect-status-code", "301"),
            ("konghq.com/protocols", "https")
        ])
    );
    // Without TLS there is no redirect.
    let plain = http_trigger(json!({"function-name": "f", "gateway": "nginx"}));
    let ann = render::ingress(&plain, 80)
        .expect("renders")
        .metadata
        .annotations
        .unwrap_or_default();
    assert!(!ann.keys().any(|k| k.contains("redirect")), "{ann:?}");
    let kong =
        http_trigger(json!({"function-name": "f", "gateway": "kong", "basic-auth-secret": "x"}));
    assert!(render::ingress(&kong, 80).is_err());
    let both = http_trigger(json!({"function-name": "f", "tls": true, "tls-secret": "x"}));
    assert!(render::ingress(&both, 80).is_err());
}

#[test]
fn cron_job_matches_golden() {
    let t = |name: &str, payload: Value| -> CronJobTrigger {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": "uid-c", "labels": {"created-by": "kubeless"}},
            "spec": {"schedule": "*/5 * * * *", "function-name": "get-python", "payload": payload},
        }))
        .expect("trigger")
    };
    let s = Settings::default();
    let v = [
        serde_json::to_value(
            render::cron_job(&t("get-python", Value::Null), &python(), &s).expect("get"),
        )
        .expect("json"),
        serde_json::to_value(
            render::cron_job(&t("with-payload", json!({"a": 1})), &python(), &s).expect("post"),
        )
        .expect("json"),
    ];
    golden("cronjob.yaml", &yaml(&v));
}

#[test]
fn labels_are_not_part_of_the_pod_template() {
    let s = Settings::default();
    let a = render::function_objects(&python(), &s).expect("renders");
    let mut relabelled = python();
    relabelled.metadata.labels.insert("team".into(), "b".into());
    relabelled.metadata.labels.insert("tier".into(), "x".into());
    let b = render::function_objects(&relabelled, &s).expect("renders");
    let template = |o: &render::FunctionObjects| {
        serde_json::to_value(&o.deployment.spec.as_ref().expect("spec").template).expect("json")
    };
    assert_eq!(
        template(&a),
        template(&b),
        "a label change leaves the pods alone"
    );
    let labels = b.deployment.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("tier").map(String::as_str), Some("x"));
    assert_eq!(
        b.service.spec.as_ref().and_then(|s| s.selector.clone()),
        Some(BTreeMap::from([
            ("created-by".to_string(), "kubeless".to_string()),
            ("function".to_string(), "get-python".to_string()),
        ]))
    );
    // A selector equal to the Function's labels (what `function deploy`
    // writes) selects by the selector labels; another one is kept.
    let mut f = python();
    f.spec.service["selector"] = json!(f.metadata.labels);
    let o = render::function_objects(&f, &s).expect("renders");
    let sel = o.service.spec.and_then(|s| s.selector).unwrap_or_default();
    assert!(!sel.contains_key("team"), "{sel:?}");
    let mut f = python();
    f.spec.service["selector"] = json!({"app": "mine"});
    let o = render::function_objects(&f, &s).expect("renders");
    let sel = o.service.spec.and_then(|s| s.selector).unwrap_or_default();
    assert_eq!(sel.get("app").map(String::as_str), Some("mine"));
}

/// Pods copy their code from the ConfigMap once, at start: whatever
/// changes it must change the pod template, checksum or not.
#[test]
fn code_changes_roll_the_pods_without_a_checksum() {
    let s = Settings::default();
    let template = |f: &Function| {
        let o = render::function_objects(f, &s).expect("renders");
        serde_json::to_value(&o.deployment.spec.expect("spec").template).expect("json")
    };
    let mut base = python();
    base.spec.checksum = String::new();
    let before = template(&base);
    let hash = &before["metadata"]["annotations"][render::CODE_HASH_ANNOTATION];
    assert_eq!(hash.as_str().map(str::len), Some(64), "{before}");
    for change in [
        |f: &mut Function| f.spec.function.push_str("# v2\n"),
        |f: &mut Function| f.spec.deps = "requests==2.32.0\n".into(),
        |f: &mut Function| f.spec.handler = "helloget.bar".into(),
        |f: &mut Function| f.spec.function_content_type = "base64".into(),
    ] {
        let mut f = base.clone();
        change(&mut f);
        if f.spec.function_content_type == "base64" {
            f.spec.function = "ZGVmIGZvbygpOiBwYXNz".into();
        }
        let after = template(&f);
        assert_ne!(
            after["metadata"]["annotations"][render::CODE_HASH_ANNOTATION],
            *hash,
            "the code hash follows the ConfigMap"
        );
    }
    // kubectl's bookkeeping (which holds the whole object) never reaches
    // children; other annotations reach the Deployment and its pods.
    let mut f = base.clone();
    f.metadata.annotations.insert(
        "kubectl.kubernetes.io/last-applied-configuration".into(),
        "{\"spec\": {\"function\": \"...\"}}".into(),
    );
    assert_eq!(
        template(&f),
        before,
        "kubectl apply alone does not roll the pods"
    );
    let o = render::function_objects(&f, &s).expect("renders");
    assert!(
        o.deployment
            .metadata
            .annotations
            .is_none_or(|a| a.is_empty())
    );
    f.metadata
        .annotations
        .insert("sidecar.istio.io/inject".into(), "false".into());
    let after = template(&f);
    assert_eq!(
        after["metadata"]["annotations"]["sidecar.istio.io/inject"],
        "false"
    );
    assert!(
        after["metadata"]["annotations"]
            .get("kubectl.kubernetes.io/last-applied-configuration")
            .is_none()
    );
    // A custom image does not read the ConfigMap: no code hash.
    let o = render::function_objects(&custom_image(), &s).expect("renders");
    let ann = o
        .deployment
        .spec
        .expect("spec")
        .template
        .metadata
        .and_then(|m| m.annotations);
    assert!(
        !ann.unwrap_or_default()
            .contains_key(render::CODE_HASH_ANNOTATION)
    );
}

#[test]
fn build_job_and_built_image_deployment() {
    let mut data = default_config_data();
    data.insert("function-registry-tls-verify".into(), "false".into());
    data.insert(
        "builder-image".into(),
        "kubeless/function-image-builder:latest".into(),
    );
    let s = Settings::from_config_map(&data).expect("settings");
    assert_eq!(
        s.builder_image,
        kubeless_controller::settings::default_image()
    );
    let mut objects = render::function_objects(&python(), &s).expect("renders");
    let inputs = objects
        .build
        .clone()
        .expect("a runtime-image function can be built");
    assert!(
        inputs.runtime_image.contains("runtime-python"),
        "{}",
        inputs.runtime_image
    );
    let tag = "0123456789abcdef".repeat(4);
    let job = render::build_job(&objects.deployment, &tag, "{\"x\":1}", &s).expect("job");
    let job = serde_json::to_value(&job).expect("json");
    assert_eq!(job["metadata"]["name"], "build-get-python-0123456789");
    assert_eq!(
        job["metadata"]["labels"],
        json!({"created-by": "kubeless", "function": "get-python"})
    );
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "Function");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "OnFailure");
    let inits: Vec<&str> = pod["initContainers"]
        .as_array()
        .expect("init containers")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(inits, ["prepare", "install"]);
    let c = &pod["containers"][0];
    assert_eq!(c["command"], json!(["kubeless"]));
    assert_eq!(
        c["args"],
        json!([
            "build-image",
            "--layer-dir",
            "/kubeless",
            "--docker-config",
            "/docker/.dockerconfigjson",
            "--insecure"
        ])
    );
    assert_eq!(
        c["env"][0],
        json!({"name": "KUBELESS_BUILD_REQUEST", "value": "{\"x\":1}"})
    );
    assert!(
        pod["volumes"]
            .as_array()
            .expect("volumes")
            .contains(&json!({"name": "registry-credentials", "secret": {"secretName": "kubeless-registry-credentials"}}))
    );
    assert_eq!(
        render::build_job_name(&"f".repeat(63), &tag).len(),
        63,
        "long names are shortened to a valid label value"
    );

    render::use_image(&mut objects, "r.io/u/default-get-python:abc");
    let dep = serde_json::to_value(&objects.deployment).expect("json");
    let pod = &dep["spec"]["template"]["spec"];
    assert!(pod.get("initContainers").is_none(), "{pod}");
    assert_eq!(
        pod["containers"][0]["image"],
        "r.io/u/default-get-python:abc"
    );
    let volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .expect("the user's volume stays")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(volumes, ["creds-vol"]);
    assert!(
        pod["imagePullSecrets"]
            .as_array()
            .expect("pull secrets")
            .contains(&json!({"name": "kubeless-registry-credentials"}))
    );
    // A function with an image of its own has nothing to build.
    let o = render::function_objects(&custom_image(), &s).expect("renders");
    assert!(o.build.is_none());
}

/// The init containers' scripts of a rendered function, by name.
fn init_scripts(f: &Function) -> BTreeMap<String, String> {
    let o = render::function_objects(f, &Settings::default()).expect("renders");
    let pod = serde_json::to_value(&o.deployment.spec.expect("spec").template.spec).expect("json");
    pod["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["command"][2].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn go_dependencies_are_resolved_by_the_compile_step() {
    let mut f = python();
    f.spec.runtime = "go1.26".into();
    f.spec.handler = "handler.Hello".into();
    f.spec.checksum = String::new();
    f.spec.deps = "module function\n\nrequire github.com/google/uuid v1.6.0\n".into();
    let scripts = init_scripts(&f);
    // no install container: Go has no installation image, and no error
    assert_eq!(
        scripts.keys().collect::<Vec<_>>(),
        ["compile", "prepare"],
        "{scripts:?}"
    );
    assert!(
        scripts["prepare"].ends_with("cp /src/go.mod /kubeless"),
        "{scripts:?}"
    );
    assert!(
        scripts["compile"].starts_with("echo '")
            && scripts["compile"].contains(
                "/kubeless/go.mod' > /tmp/deps.sha256 && sha256sum -c /tmp/deps.sha256 && "
            ),
        "{scripts:?}"
    );
}

#[test]
fn an_empty_dependency_file_is_not_copied() {
    let mut f = python();
    f.spec.runtime = "nodejs20".into();
    f.spec.deps = String::new();
    let scripts = init_scripts(&f);
    assert_eq!(
        scripts.keys().collect::<Vec<_>>(),
        ["prepare"],
        "{scripts:?}"
    );
    assert!(!scripts["prepare"].contains("package.json"), "{scripts:?}");
}
