//! Deploy/update flags → `Function` object. Pure: the command reads files
//! and URLs first and hands over their encoded content.
//!
//! The object has the shape the original `kubeless function deploy` wrote
//! (spec 1.1): labels `created-by`/`function`, one container in
//! `spec.deployment` carrying image, pull policy, env, resources and secret
//! mounts, a ClusterIP `spec.service` with port `http-function-port`.
//!
//! Deliberate difference from Kubeless: `update` starts from the stored
//! Function and changes only what a flag was given for. Kubeless recomputed
//! timeout, image pull policy, service port/targetPort and the headless flag
//! from flag defaults, so an update without `--port` silently reset a
//! custom port to 8080. Here every unspecified setting (port, service port,
//! timeout, image pull policy, env, resources, headless, node selectors,
//! service account) is kept, and `--secrets` already mounted are not
//! mounted twice.

use std::collections::BTreeMap;

use anyhow::bail;
use kubeless_api::content::Encoded;
use kubeless_api::{API_VERSION, Function, FunctionSpec, ObjectMeta};
use serde_json::{Map, Value, json};

/// Defaults of `kubeless function deploy`.
pub const DEFAULT_TIMEOUT: &str = "180";
pub const DEFAULT_PORT: i32 = 8080;
pub const DEFAULT_PULL_POLICY: &str = "Always";

/// The flags of deploy/update, `None` when not given on the command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunctionFlags {
    pub name: String,
    pub namespace: String,
    pub runtime: Option<String>,
    pub handler: Option<String>,
    /// Encoded `--from-file` content.
    pub code: Option<Encoded>,
    /// Inlined `--dependencies` content.
    pub deps: Option<String>,
    /// `--label` items (already CSV-split).
    pub labels: Vec<String>,
    /// `--secrets` names.
    pub secrets: Vec<String>,
    /// `--env` items; `Some` replaces the whole env.
    pub env: Option<Vec<String>>,
    /// `--node-selectors` items; `Some` replaces the node selector.
    pub node_selectors: Option<Vec<String>>,
    pub service_account: Option<String>,
    pub memory: Option<String>,
    pub cpu: Option<String>,
    pub runtime_image: Option<String>,
    pub image_pull_policy: Option<String>,
    pub timeout: Option<String>,
    pub headless: Option<bool>,
    pub port: Option<i32>,
    pub service_port: Option<i32>,
}

/// Split a cobra StringSlice value on commas (CSV: double quotes protect
/// commas). An empty value gives no item.
pub fn split_csv(value: &str) -> Vec<String> {
    if value.is_empty() {
        return Vec::new();
    }
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' if quoted => quoted = false,
            '"' if cur.is_empty() => quoted = true,
            ',' if !quoted => items.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    items.push(cur);
    items
}

/// All items of a repeated slice flag, each value CSV-split.
pub fn split_all(values: &[String]) -> Vec<String> {
    values.iter().flat_map(|v| split_csv(v)).collect()
}

/// `k=v` or `k:v`, split on the first `=` or `:`; no separator gives an
/// empty value.
pub fn parse_key_value(item: &str) -> (String, String) {
    match item.find(['=', ':']) {
        Some(i) => (item[..i].to_string(), item[i + 1..].to_string()),
        None => (item.to_string(), String::new()),
    }
}

/// Items parsed into a map (later items win).
pub fn parse_map(items: &[String]) -> BTreeMap<String, String> {
    items.iter().map(|i| parse_key_value(i)).collect()
}

/// Flag checks that need nothing but the flags, in Kubeless's order (after
/// the runtime and schedule checks, which the command does).
pub fn validate(flags: &FunctionFlags, deploying: bool) -> anyhow::Result<()> {
    if let Some(p) = &flags.image_pull_policy
        && !matches!(p.as_str(), "IfNotPresent" | "Always" | "Never")
    {
        bail!("image-pull-policy must be {{IfNotPresent|Always|Never}}");
    }
    if let Some(port) = flags.port
        && !(1..=65535).contains(&port)
    {
        bail!("Invalid port number {port} specified");
    }
    if let Some(sp) = flags.service_port
        && !(0..=65535).contains(&sp)
    {
        bail!("Invalid servicePort number {sp} specified");
    }
    if deploying {
        let runtime = flags.runtime.as_deref().unwrap_or("");
        let image = flags.runtime_image.as_deref().unwrap_or("");
        if runtime.is_empty() && image.is_empty() {
            bail!("Either `--runtime` or `--runtime-image` flag must be specified.");
        }
        if !runtime.is_empty() && flags.handler.as_deref().unwrap_or("").is_empty() {
            bail!("You must specify handler for the runtime.");
        }
    }
    Ok(())
}

/// The Function `kubeless function deploy` creates.
pub fn new_function(flags: &FunctionFlags) -> Function {
    let mut labels = BTreeMap::from([
        ("created-by".to_string(), "kubeless".to_string()),
        ("function".to_string(), flags.name.clone()),
    ]);
    labels.extend(parse_map(&flags.labels));
    let code = flags.code.clone().unwrap_or(Encoded {
        content_type: String::new(),
        function: String::new(),
        checksum: String::new(),
    });
    let mut f = Function {
        api_version: API_VERSION.to_string(),
        kind: "Function".to_string(),
        metadata: ObjectMeta {
            name: flags.name.clone(),
            namespace: flags.namespace.clone(),
            labels,
            ..ObjectMeta::default()
        },
        spec: FunctionSpec {
            handler: flags.handler.clone().unwrap_or_default(),
            function: code.function,
            function_content_type: code.content_type,
            checksum: code.checksum,
            runtime: flags.runtime.clone().unwrap_or_default(),
            timeout: flags
                .timeout
                .clone()
                .unwrap_or_else(|| DEFAULT_TIMEOUT.to_string()),
            deps: flags.deps.clone().unwrap_or_default(),
            deployment: json!({
                "metadata": {},
                "spec": {"template": {"metadata": {}, "spec": {"containers": [{
                    "name": "",
                    "imagePullPolicy": DEFAULT_PULL_POLICY,
                    "resources": {}
                }]}}}
            }),
            service: json!({"type": "ClusterIP"}),
            horizontal_pod_autoscaler: json!({}),
        },
        status: None,
    };
    apply_pod_flags(&mut f, flags);
    apply_service_flags(&mut f, flags, true);
    f
}

/// The Function `kubeless function update` stores: `previous` with only the
/// given flags applied (see the module docs).
pub fn updated_function(previous: &Function, flags: &FunctionFlags) -> Function {
    let mut f = previous.clone();
    f.status = None;
    if f.api_version.is_empty() {
        f.api_version = API_VERSION.to_string();
    }
    if f.kind.is_empty() {
        f.kind = "Function".to_string();
    }
    f.metadata.labels.extend(parse_map(&flags.labels));
    if let Some(h) = &flags.handler {
        f.spec.handler = h.clone();
    }
    if let Some(code) = &flags.code {
        f.spec.function = code.function.clone();
        f.spec.function_content_type = code.content_type.clone();
        f.spec.checksum = code.checksum.clone();
    }
    if let Some(d) = &flags.deps {
        f.spec.deps = d.clone();
    }
    if let Some(r) = &flags.runtime {
        f.spec.runtime = r.clone();
    }
    if let Some(t) = &flags.timeout {
        f.spec.timeout = t.clone();
    }
    if !f.spec.deployment.is_object() {
        f.spec.deployment = json!({});
    }
    if !f.spec.service.is_object() {
        f.spec.service = json!({"type": "ClusterIP"});
    }
    apply_pod_flags(&mut f, flags);
    apply_service_flags(&mut f, flags, !flags.labels.is_empty());
    f
}

/// `obj[key]` as an object, created (or replaced when not an object).
fn child<'a>(obj: &'a mut Value, key: &str) -> &'a mut Value {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    // Indexing an object by a missing key inserts `null`: no panic.
    let slot = &mut obj[key];
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot
}

/// `obj[key]` as an array, created when missing.
fn array<'a>(obj: &'a mut Value, key: &str) -> &'a mut Vec<Value> {
    let slot = child_any(obj, key);
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(a) => a,
        _ => unreachable!("made an array just above"),
    }
}

fn child_any<'a>(obj: &'a mut Value, key: &str) -> &'a mut Value {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    &mut obj[key]
}

fn set(obj: &mut Value, key: &str, value: Value) {
    if let Value::Object(m) = obj {
        m.insert(key.to_string(), value);
    }
}

fn apply_pod_flags(f: &mut Function, flags: &FunctionFlags) {
    let pod = child(
        child(child(&mut f.spec.deployment, "spec"), "template"),
        "spec",
    );
    if let Some(sa) = &flags.service_account {
        set(pod, "serviceAccountName", json!(sa));
    }
    if let Some(ns) = &flags.node_selectors {
        set(pod, "nodeSelector", json!(parse_map(ns)));
    }
    for s in &flags.secrets {
        let vol = format!("{s}-vol");
        let volumes = array(pod, "volumes");
        if !volumes.iter().any(|v| v["name"] == json!(vol)) {
            volumes.push(json!({"name": vol, "secret": {"secretName": s}}));
        }
    }
    let containers = array(pod, "containers");
    if containers.is_empty() {
        containers.push(json!({"name": "", "resources": {}}));
    }
    let c = &mut containers[0];
    if !c.is_object() {
        *c = json!({"name": ""});
    }
    if let Some(p) = &flags.image_pull_policy {
        set(c, "imagePullPolicy", json!(p));
    }
    if let Some(img) = &flags.runtime_image {
        set(c, "image", json!(img));
    }
    if let Some(env) = &flags.env {
        let vars: Vec<Value> = env
            .iter()
            .map(|item| {
                let (k, v) = parse_key_value(item);
                if v.is_empty() {
                    json!({"name": k})
                } else {
                    json!({"name": k, "value": v})
                }
            })
            .collect();
        if vars.is_empty() {
            if let Value::Object(m) = c {
                m.remove("env");
            }
        } else {
            set(c, "env", Value::Array(vars));
        }
    }
    if flags.memory.is_some() || flags.cpu.is_some() {
        // Kubeless sets both keys when either flag is given (the other
        // becomes "0"); a key the stored Function already has is kept.
        let resources = child(c, "resources");
        for part in ["limits", "requests"] {
            let r = child(resources, part);
            for (key, flag) in [("memory", &flags.memory), ("cpu", &flags.cpu)] {
                match flag {
                    Some(q) => set(r, key, json!(q)),
                    None if r.get(key).is_none() => set(r, key, json!("0")),
                    None => {}
                }
            }
        }
    } else if c.get("resources").is_none() {
        set(c, "resources", json!({}));
    }
    for s in &flags.secrets {
        let vol = format!("{s}-vol");
        let mounts = array(c, "volumeMounts");
        if !mounts.iter().any(|m| m["name"] == json!(vol)) {
            mounts.push(json!({"name": vol, "mountPath": format!("/{s}")}));
        }
    }
}

fn int_of(v: Option<&Value>) -> Option<i32> {
    v.and_then(Value::as_i64)
        .and_then(|i| i32::try_from(i).ok())
}

fn apply_service_flags(f: &mut Function, flags: &FunctionFlags, set_selector: bool) {
    let labels = f.metadata.labels.clone();
    let svc = &mut f.spec.service;
    if !svc.is_object() {
        *svc = json!({});
    }
    let prev = svc
        .get("ports")
        .and_then(Value::as_array)
        .and_then(|p| p.first())
        .cloned();
    let prev_target = prev.as_ref().and_then(|p| int_of(p.get("targetPort")));
    let prev_port = prev.as_ref().and_then(|p| int_of(p.get("port")));
    let target = flags.port.or(prev_target).unwrap_or(DEFAULT_PORT);
    let port = match (flags.service_port, prev_port) {
        (Some(sp), _) if sp > 0 => sp,
        (Some(_), _) => target,
        // The service port followed the target port: keep following it.
        (None, Some(pp)) if Some(pp) != prev_target => pp,
        (None, _) => target,
    };
    if prev.is_none() || flags.port.is_some() || flags.service_port.is_some() {
        let mut p = prev.unwrap_or_else(|| json!({}));
        if !p.is_object() {
            p = json!({});
        }
        if p.get("name").is_none() {
            set(&mut p, "name", json!("http-function-port"));
        }
        if p.get("protocol").is_none() {
            set(&mut p, "protocol", json!("TCP"));
        }
        set(&mut p, "port", json!(port));
        set(&mut p, "targetPort", json!(target));
        let ports = array(svc, "ports");
        if ports.is_empty() {
            ports.push(p);
        } else {
            ports[0] = p;
        }
    }
    if set_selector || svc.get("selector").is_none() {
        set(svc, "selector", json!(labels));
    }
    if svc.get("type").is_none() {
        set(svc, "type", json!("ClusterIP"));
    }
    match flags.headless {
        Some(true) => set(svc, "clusterIP", json!("None")),
        Some(false) if svc.get("clusterIP") == Some(&json!("None")) => {
            if let Value::Object(m) = svc {
                m.remove("clusterIP");
            }
        }
        Some(false) => {}
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::to_yaml;

    fn python_flags() -> FunctionFlags {
        FunctionFlags {
            name: "get-python".into(),
            namespace: "default".into(),
            runtime: Some("python3.8".into()),
            handler: Some("helloget.foo".into()),
            code: Some(kubeless_api::content::encode_file(
                "helloget.py",
                b"def foo(event, context):\n    return 'hello world'\n",
            )),
            ..FunctionFlags::default()
        }
    }

    #[test]
    fn golden_python_deploy() {
        let f = new_function(&python_flags());
        let yaml = to_yaml(&f).expect("yaml");
        let expected = "\
apiVersion: kubeless.io/v1beta1
kind: Function
metadata:
  labels:
    created-by: kubeless
    function: get-python
  name: get-python
  namespace: default
spec:
  checksum: sha256:e4dbac2b5cf1a0f5b2b2b3bbbe4ee1ef6c62785bb7e48bbd33ad4c8ec54a7e3c
  deployment:
    metadata: {}
    spec:
      template:
        metadata: {}
        spec:
          containers:
          - imagePullPolicy: Always
            name: ''
            resources: {}
  deps: ''
  function: |
    def foo(event, context):
        return 'hello world'
  function-content-type: text
  handler: helloget.foo
  horizontalPodAutoscaler: {}
  runtime: python3.8
  service:
    ports:
    - name: http-function-port
      port: 8080
      protocol: TCP
      targetPort: 8080
    selector:
      created-by: kubeless
      function: get-python
    type: ClusterIP
  timeout: '180'
";
        let checksum = kubeless_api::content::sha256_checksum(
            b"def foo(event, context):\n    return 'hello world'\n",
        );
        let expected = expected.replace(
            "sha256:e4dbac2b5cf1a0f5b2b2b3bbbe4ee1ef6c62785bb7e48bbd33ad4c8ec54a7e3c",
            &checksum,
        );
        assert_eq!(yaml, expected);
    }

    /// `kubeless function deploy get-python --runtime python3.8 --handler
    /// helloget.foo --from-file helloget.py --dryrun -o json` (spec 2.1).
    #[test]
    fn golden_python_deploy_json() {
        let f = new_function(&FunctionFlags {
            code: Some(kubeless_api::content::encode_file(
                "helloget.py",
                b"def foo(event, context):\n    return \"hello world\"\n",
            )),
            ..python_flags()
        });
        let json = crate::output::to_json(&f, 4).expect("json") + "\n";
        assert_eq!(json, include_str!("golden/deploy-get-python.json"));
    }

    #[test]
    fn golden_json_is_4_space() {
        let f = new_function(&FunctionFlags {
            name: "f".into(),
            namespace: "ns".into(),
            runtime_image: Some("img:1".into()),
            ..FunctionFlags::default()
        });
        let json = crate::output::to_json(&f, 4).expect("json");
        assert!(json.starts_with(
            "{\n    \"apiVersion\": \"kubeless.io/v1beta1\",\n    \"kind\": \"Function\",\n"
        ));
        assert!(json.contains("\"image\": \"img:1\""));
        // Spec fields are always present, even empty.
        for key in [
            "\"handler\": \"\"",
            "\"function-content-type\": \"\"",
            "\"deps\": \"\"",
        ] {
            assert!(json.contains(key), "{key} missing in {json}");
        }
    }

    #[test]
    fn all_flags_deploy() {
        let flags = FunctionFlags {
            labels: split_all(&[
                "a=1,b:2".into(),
                "foobar".into(),
                "function=override".into(),
            ]),
            secrets: vec!["s1".into()],
            env: Some(split_all(&["K=V,X:Y:Z".into(), "E".into()])),
            node_selectors: Some(vec!["disk=ssd".into()]),
            service_account: Some("sa".into()),
            memory: Some("128Mi".into()),
            timeout: Some("10".into()),
            image_pull_policy: Some("IfNotPresent".into()),
            headless: Some(true),
            port: Some(9090),
            service_port: Some(80),
            deps: Some("requests\n".into()),
            ..python_flags()
        };
        let f = new_function(&flags);
        let v = serde_json::to_value(&f).expect("value");
        assert_eq!(
            v["metadata"]["labels"],
            json!({"a": "1", "b": "2", "foobar": "", "created-by": "kubeless", "function": "override"})
        );
        let pod = &v["spec"]["deployment"]["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], json!("sa"));
        assert_eq!(pod["nodeSelector"], json!({"disk": "ssd"}));
        assert_eq!(
            pod["volumes"],
            json!([{"name": "s1-vol", "secret": {"secretName": "s1"}}])
        );
        let c = &pod["containers"][0];
        assert_eq!(c["imagePullPolicy"], json!("IfNotPresent"));
        assert_eq!(
            c["env"],
            json!([{"name": "K", "value": "V"}, {"name": "X", "value": "Y:Z"}, {"name": "E"}])
        );
        assert_eq!(
            c["resources"],
            json!({"limits": {"memory": "128Mi", "cpu": "0"}, "requests": {"memory": "128Mi", "cpu": "0"}})
        );
        assert_eq!(
            c["volumeMounts"],
            json!([{"name": "s1-vol", "mountPath": "/s1"}])
        );
        let svc = &v["spec"]["service"];
        assert_eq!(svc["ports"][0]["port"], json!(80));
        assert_eq!(svc["ports"][0]["targetPort"], json!(9090));
        assert_eq!(svc["clusterIP"], json!("None"));
        assert_eq!(svc["selector"], v["metadata"]["labels"]);
        assert_eq!(v["spec"]["timeout"], json!("10"));
        assert_eq!(v["spec"]["deps"], json!("requests\n"));
    }

    #[test]
    fn update_keeps_unspecified_settings() {
        let mut prev = new_function(&FunctionFlags {
            env: Some(vec!["A=1".into()]),
            timeout: Some("30".into()),
            image_pull_policy: Some("Never".into()),
            headless: Some(true),
            port: Some(9000),
            service_port: Some(90),
            memory: Some("64Mi".into()),
            secrets: vec!["s".into()],
            ..python_flags()
        });
        prev.metadata.resource_version = "7".into();
        prev.status = Some(Default::default());
        let f = updated_function(
            &prev,
            &FunctionFlags {
                name: "get-python".into(),
                namespace: "default".into(),
                handler: Some("helloget.bar".into()),
                labels: vec!["x=y".into()],
                secrets: vec!["s".into()],
                ..FunctionFlags::default()
            },
        );
        let v = serde_json::to_value(&f).expect("value");
        let pv = serde_json::to_value(&prev).expect("value");
        assert_eq!(v["spec"]["handler"], json!("helloget.bar"));
        assert_eq!(v["spec"]["timeout"], json!("30"));
        assert_eq!(v["spec"]["runtime"], json!("python3.8"));
        assert_eq!(v["spec"]["function"], pv["spec"]["function"]);
        assert_eq!(v["metadata"]["resourceVersion"], json!("7"));
        assert_eq!(v["metadata"]["labels"]["x"], json!("y"));
        assert!(v.get("status").is_none());
        let c = &v["spec"]["deployment"]["spec"]["template"]["spec"]["containers"][0];
        let pc = &pv["spec"]["deployment"]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], json!("Never"));
        assert_eq!(c["env"], pc["env"]);
        assert_eq!(c["resources"], pc["resources"]);
        assert_eq!(c["volumeMounts"].as_array().map(Vec::len), Some(1));
        let svc = &v["spec"]["service"];
        assert_eq!(svc["ports"][0]["port"], json!(90));
        assert_eq!(svc["ports"][0]["targetPort"], json!(9000));
        assert_eq!(svc["clusterIP"], json!("None"));
        assert_eq!(svc["selector"]["x"], json!("y"));
    }

    #[test]
    fn update_changes_given_settings() {
        let prev = new_function(&python_flags());
        let f = updated_function(
            &prev,
            &FunctionFlags {
                port: Some(9000),
                timeout: Some("5".into()),
                env: Some(vec!["B=2".into()]),
                cpu: Some("100m".into()),
                headless: Some(false),
                ..FunctionFlags::default()
            },
        );
        let v = serde_json::to_value(&f).expect("value");
        let svc = &v["spec"]["service"];
        // The service port followed the target port before; it still does.
        assert_eq!(svc["ports"][0]["port"], json!(9000));
        assert_eq!(svc["ports"][0]["targetPort"], json!(9000));
        assert_eq!(v["spec"]["timeout"], json!("5"));
        let c = &v["spec"]["deployment"]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["env"], json!([{"name": "B", "value": "2"}]));
        assert_eq!(c["resources"]["limits"]["cpu"], json!("100m"));
        assert_eq!(c["imagePullPolicy"], json!("Always"));
    }

    #[test]
    fn key_value_rules() {
        assert_eq!(parse_key_value("a=b"), ("a".into(), "b".into()));
        assert_eq!(parse_key_value("a:b=c"), ("a".into(), "b=c".into()));
        assert_eq!(parse_key_value("a=b:c"), ("a".into(), "b:c".into()));
        assert_eq!(parse_key_value("foobar"), ("foobar".into(), "".into()));
        assert_eq!(parse_key_value("k="), ("k".into(), "".into()));
    }

    #[test]
    fn csv_rules() {
        assert_eq!(split_csv("a=1,b=2"), vec!["a=1", "b=2"]);
        assert_eq!(split_csv("\"a=1,2\",b"), vec!["a=1,2", "b"]);
        assert!(split_csv("").is_empty());
        assert_eq!(split_all(&["x".into(), "y,z".into()]), vec!["x", "y", "z"]);
    }

    #[test]
    fn validation_messages() {
        let mut f = python_flags();
        f.image_pull_policy = Some("Sometimes".into());
        assert_eq!(
            validate(&f, true).expect_err("bad policy").to_string(),
            "image-pull-policy must be {IfNotPresent|Always|Never}"
        );
        let mut f = python_flags();
        f.port = Some(0);
        assert_eq!(
            validate(&f, true).expect_err("bad port").to_string(),
            "Invalid port number 0 specified"
        );
        let f = FunctionFlags::default();
        assert_eq!(
            validate(&f, true).expect_err("no runtime").to_string(),
            "Either `--runtime` or `--runtime-image` flag must be specified."
        );
        let f = FunctionFlags {
            runtime: Some("python3.8".into()),
            ..FunctionFlags::default()
        };
        assert_eq!(
            validate(&f, true).expect_err("no handler").to_string(),
            "You must specify handler for the runtime."
        );
        assert!(validate(&FunctionFlags::default(), false).is_ok());
    }
}
