//! Pure rendering: Function (+ its plan) → ConfigMap, Service, Deployment,
//! optional HorizontalPodAutoscaler; HTTPTrigger → Ingress; CronJobTrigger →
//! CronJob. No IO; golden-tested (`tests/golden/`).
//!
//! The names, labels, owner references, init containers and environment
//! follow the Kubeless contract (compatibility spec section 3) with current
//! APIs (apps/v1, autoscaling/v2, networking.k8s.io/v1, batch/v1). What the
//! function *is* (handler, runtime, env order, port, timeout, memory limit,
//! install and compile commands) comes from [`kubeless_plan::plan`], the same
//! plan embedded mode executes; this module only decides how Kubernetes
//! expresses it. Fixed Kubeless quirks are marked "Fix:".

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kubeless_api::Function;
use kubeless_plan::expand::expand;
use kubeless_plan::images::{PhaseImage, RuntimeImage, RuntimeVersion};
use kubeless_plan::{CommandLine, FunctionPlan, PlanError};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::settings::Settings;

/// Label every object created by Kubeless carries.
pub const CREATED_BY: (&str, &str) = ("created-by", "kubeless");
/// Where code and dependencies live in the pod.
pub const INSTALL_VOLUME: &str = "/kubeless";
/// Service port name (the `http-` prefix is for Istio).
pub const PORT_NAME: &str = "http-function-port";
/// Pod-template annotation holding a hash of what the pods read from the
/// function's ConfigMap (code, dependencies, handler, content type): a
/// code change always rolls the pods, with or without `spec.checksum`.
pub const CODE_HASH_ANNOTATION: &str = "kubeless.io/code-sha256";
/// Prefix of the annotations kubectl keeps for itself
/// (`kubectl.kubernetes.io/last-applied-configuration` carries the whole
/// object, code included). They are never copied onto children.
pub const KUBECTL_ANNOTATIONS: &str = "kubectl.kubernetes.io/";

/// A Kubeless object's annotations as copied onto its children: all but
/// kubectl's bookkeeping ([`KUBECTL_ANNOTATIONS`]).
pub fn copied_annotations(a: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    a.iter()
        .filter(|(k, _)| !k.starts_with(KUBECTL_ANNOTATIONS))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The value of [`CODE_HASH_ANNOTATION`]: SHA-256 of the ConfigMap data
/// the pods copy at start and of the content type that says how.
pub fn code_hash(content_type: &str, data: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    // Length-prefixed fields, so no two inputs share an encoding.
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    };
    field(content_type);
    for (k, v) in data {
        field(k);
        field(v);
    }
    hex::encode(h.finalize())
}

/// The objects of one Function.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionObjects {
    pub config_map: ConfigMap,
    pub service: Service,
    pub deployment: Deployment,
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// A prometheus-operator ServiceMonitor (`monitoring.coreos.com/v1`)
    /// for an autoscaler on an `Object` metric (`qps`), which needs the
    /// function's metrics scraped.
    pub service_monitor: Option<Value>,
    /// Things that could not be honoured, for the status.
    pub warnings: Vec<String>,
    /// What an image build needs, when the Function runs on a runtime image
    /// (not on a custom image of its own): the plan and the runtime image.
    pub build: Option<BuildInputs>,
}

/// The inputs of a Function's image build (`enable-build-step`).
#[derive(Debug, Clone, PartialEq)]
pub struct BuildInputs {
    pub plan: FunctionPlan,
    /// The runtime phase image: the base the function layer goes on.
    pub runtime_image: String,
}

/// Why a Function or trigger cannot be rendered. Shown in its status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error(
        "runtime {runtime:?} does not have a valid image for HTTP based functions; available runtimes are: {available}"
    )]
    NoRuntimeImage { runtime: String, available: String },
    #[error("unable to install dependencies for the runtime {0}: it has no installation image")]
    NoInstallImage(String),
    #[error("unable to prepare function of type {0}: unknown format")]
    ContentType(String),
    #[error("unable to verify checksum {0}: unknown format")]
    Checksum(String),
    #[error("runtime secret volume {0:?} conflicts with a volume of another type")]
    SecretVolume(String),
    #[error("{what} is not a valid {kind}: {message}")]
    Invalid {
        what: String,
        kind: &'static str,
        message: String,
    },
    #[error("{0}")]
    Trigger(String),
}

fn typed<T: DeserializeOwned>(v: Value, what: &str, kind: &'static str) -> Result<T, RenderError> {
    serde_json::from_value(v).map_err(|e| RenderError::Invalid {
        what: what.to_string(),
        kind,
        message: e.to_string(),
    })
}

/// The owner reference of a Kubeless object (no controller or
/// blockOwnerDeletion flags, as Kubeless).
pub fn owner_ref(kind: &str, name: &str, uid: &str) -> Value {
    json!({"apiVersion": kubeless_api::API_VERSION, "kind": kind, "name": name, "uid": uid})
}

/// Function labels: the user's, plus `created-by: kubeless` and
/// `function: <name>` (Fix: always set, so the selector always matches).
pub fn function_labels(f: &Function) -> BTreeMap<String, String> {
    let mut labels = f.metadata.labels.clone();
    labels.insert(CREATED_BY.0.into(), CREATED_BY.1.into());
    labels.insert("function".into(), f.metadata.name.clone());
    labels
}

fn selector_labels(name: &str) -> Value {
    json!({"created-by": "kubeless", "function": name})
}

fn obj(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

fn at<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Value {
    let mut cur = v;
    for key in path {
        cur = obj(cur).entry(key.to_string()).or_insert(Value::Null);
    }
    cur
}

fn arr(v: &mut Value) -> &mut Vec<Value> {
    if !v.is_array() {
        *v = Value::Array(Vec::new());
    }
    match v {
        Value::Array(a) => a,
        _ => unreachable!("just made an array"),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Merge `defaults` under `target`: the target's values win, empty fields
/// are filled; containers are merged by index, other lists (env,
/// volumeMounts, ports, volumes) are appended, as Kubeless did.
pub fn merge_under(target: &mut Value, defaults: &Value) {
    match (target, defaults) {
        (t @ Value::Object(_), Value::Object(d)) => {
            let t = obj(t);
            for (k, dv) in d {
                match t.get_mut(k) {
                    Some(tv) if !is_empty(tv) => {
                        if k == "containers" || k == "initContainers" {
                            if let (Value::Array(ta), Value::Array(da)) = (&mut *tv, dv) {
                                for (i, dc) in da.iter().enumerate() {
                                    match ta.get_mut(i) {
                                        Some(tc) => merge_under(tc, dc),
                                        None => ta.push(dc.clone()),
                                    }
                                }
                            }
                        } else {
                            merge_under(tv, dv);
                        }
                    }
                    _ => {
                        t.insert(k.clone(), dv.clone());
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(d)) => t.extend(d.iter().cloned()),
        _ => {}
    }
}

fn env_var(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

/// Quote a word for `sh`.
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The plan's install or compile command as a shell line for the runtime
/// images, where the tools are on `PATH`.
fn shell_command(cmd: &CommandLine) -> String {
    let lookup = |name: &str| {
        Some(
            match name {
                "KUBELESS_INSTALL_VOLUME" => INSTALL_VOLUME,
                "KUBELESS_PYTHON" => "python3",
                "KUBELESS_NPM" => "npm",
                "KUBELESS_BUNDLE" => "bundle",
                "KUBELESS_COMPOSER" => "composer",
                "KUBELESS_RUNTIME_BIN" => "kubeless-runtime",
                "KUBELESS_GO" => "go",
                "KUBELESS_JAVAC" => "javac",
                "KUBELESS_MVN" => "mvn",
                _ => return None,
            }
            .to_string(),
        )
    };
    std::iter::once(&cmd.program)
        .chain(cmd.args.iter())
        .map(|w| sh_quote(&expand(w, lookup)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The code file name in the ConfigMap: the module, plus the runtime's
/// suffix for single files (`text`, ``, `url`, `base64`).
pub fn code_file_name(module: &str, content_type: &str, suffix: &str) -> String {
    match content_type {
        "text" | "" | "url" | "base64" => format!("{module}{suffix}"),
        _ => module.to_string(),
    }
}

/// The `prepare` script (Kubeless's, step for step): decode or download,
/// verify the checksum, unpack or copy, copy the dependency file.
pub fn prepare_script(
    function: &str,
    content_type: &str,
    checksum: &str,
    file_name: &str,
    dep_name: &str,
) -> Result<String, RenderError> {
    let mut steps = Vec::new();
    let src = format!("/src/{file_name}");
    let work = if content_type.contains("base64") {
        steps.push(format!("base64 -d < {src} > /tmp/func.decoded"));
        "/tmp/func.decoded".to_string()
    } else if content_type.contains("url") {
        steps.push(format!(
            "curl {} -L --silent --output /tmp/func.fromurl",
            sh_quote(function)
        ));
        "/tmp/func.fromurl".to_string()
    } else if content_type.contains("text") || content_type.is_empty() {
        src
    } else {
        return Err(RenderError::ContentType(content_type.to_string()));
    };
    if !checksum.is_empty() {
        let Some(hex) = checksum
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
        else {
            return Err(RenderError::Checksum(checksum.to_string()));
        };
        steps.push(format!("echo '{hex}  {work}' > /tmp/func.sha256"));
        steps.push("sha256sum -c /tmp/func.sha256".to_string());
    }
    if content_type.contains("zip") {
        steps.push(format!("unzip -o {work} -d {INSTALL_VOLUME}"));
    } else if content_type.contains("compressedtar") {
        steps.push(format!("tar xf {work} -C {INSTALL_VOLUME}"));
    } else {
        steps.push(format!("cp {work} {INSTALL_VOLUME}/{file_name}"));
    }
    if !dep_name.is_empty() && !content_type.contains("deps") {
        steps.push(format!("cp /src/{dep_name} {INSTALL_VOLUME}"));
    }
    Ok(steps.join(" && "))
}

/// The Service target port and port of a function (8080 by default).
fn ports(service: &Value) -> (i64, i64) {
    let num = |v: Option<&Value>| {
        v.and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .filter(|p| *p > 0)
    };
    let target = num(service.pointer("/ports/0/targetPort")).unwrap_or(8080);
    let port = num(service.pointer("/ports/0/port")).unwrap_or(target);
    (target, port)
}

/// Render a Function. `f.metadata.uid` must be set (owner references).
pub fn function_objects(f: &Function, settings: &Settings) -> Result<FunctionObjects, RenderError> {
    let name = f.metadata.name.as_str();
    let ns = f.metadata.namespace.as_str();
    let labels = function_labels(f);
    let owners = json!([owner_ref("Function", name, &f.metadata.uid)]);
    let mut warnings = Vec::new();

    // spec.deployment with kubeless-config's `deployment` merged under it.
    let mut dep = f.spec.deployment.clone();
    if !dep.is_object() {
        dep = json!({});
    }
    if settings.deployment.is_object() {
        merge_under(&mut dep, &settings.deployment);
    }
    let c0_image = dep
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);

    // What the function is: the shared plan (not for custom images, which
    // the plan cannot describe: their image is the whole runtime).
    let resolved: Option<(FunctionPlan, &RuntimeImage, &RuntimeVersion)> = if c0_image.is_none() {
        let mut for_plan = f.clone();
        for_plan.spec.deployment = dep.clone();
        let plan = kubeless_plan::plan(&for_plan, &settings.catalogue, &Default::default())?;
        let (rt, version) = settings
            .runtime_images
            .resolve(&f.spec.runtime)
            .filter(|(_, v)| v.phase("runtime").is_some())
            .ok_or_else(|| RenderError::NoRuntimeImage {
                runtime: f.spec.runtime.clone(),
                available: settings.runtimes().join(", "),
            })?;
        warnings.extend(
            plan.warnings
                .iter()
                .filter(|w| !w.contains("embedded mode"))
                .cloned(),
        );
        Some((plan, rt, version))
    } else {
        None
    };
    let (target_port, _) = ports(&f.spec.service);
    let timeout = kubeless_plan::parse_timeout(&f.spec.timeout)?;

    // ConfigMap.
    let mut data = BTreeMap::new();
    let mut file_name = String::new();
    let mut dep_name = String::new();
    if !f.spec.handler.is_empty() {
        let (module, _) = kubeless_plan::split_handler(&f.spec.handler)?;
        let (suffix, dn) = match &resolved {
            Some((_, rt, _)) => (rt.file_name_suffix.clone(), rt.dep_name.clone()),
            None => match settings.runtime_images.resolve(&f.spec.runtime) {
                Some((rt, _)) => (rt.file_name_suffix.clone(), rt.dep_name.clone()),
                None => (String::new(), String::new()),
            },
        };
        file_name = code_file_name(&module, &f.spec.function_content_type, &suffix);
        dep_name = dn;
        data.insert("handler".to_string(), f.spec.handler.clone());
        data.insert(file_name.clone(), f.spec.function.clone());
        if !dep_name.is_empty() {
            data.insert(dep_name.clone(), f.spec.deps.clone());
        }
    }
    let config_map = typed(
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": owners},
            "data": data,
        }),
        "the ConfigMap",
        "ConfigMap",
    )?;

    // Service.
    let mut svc_spec = f.spec.service.clone();
    let has_ports = svc_spec
        .get("ports")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    if !has_ports {
        svc_spec = json!({
            "ports": [{"name": PORT_NAME, "protocol": "TCP", "port": 8080, "targetPort": 8080}],
            "selector": selector_labels(name),
            "type": "ClusterIP",
        });
    }
    // The Service selects pods by their selector labels. A selector equal
    // to the Function's labels (what `kubeless function deploy` writes) is
    // read as that; any other selector the user wrote is kept.
    if svc_spec.get("selector").is_none_or(is_empty)
        || svc_spec.get("selector") == Some(&json!(labels))
    {
        *at(&mut svc_spec, &["selector"]) = selector_labels(name);
    }
    // nodePort 0 is what the Kubeless CLI writes; it means "unset".
    if let Some(ps) = svc_spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ps {
            if p.get("nodePort").and_then(Value::as_i64) == Some(0)
                && let Some(m) = p.as_object_mut()
            {
                m.remove("nodePort");
            }
        }
    }
    let service = typed(
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": owners},
            "spec": svc_spec,
        }),
        "spec.service",
        "ServiceSpec",
    )?;

    // Deployment.
    let tmpl_labels = dep
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    let tmpl_annotations = dep
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or(json!({}));
    {
        let meta = at(&mut dep, &["metadata"]);
        let mut dl = tmpl_labels.clone();
        merge_over(&mut dl, &json!(labels));
        let mut da = tmpl_annotations.clone();
        merge_over(&mut da, &json!(copied_annotations(&f.metadata.annotations)));
        *meta = json!({"name": name, "namespace": ns, "labels": dl, "ownerReferences": owners});
        if da.as_object().is_some_and(|m| !m.is_empty()) {
            meta["annotations"] = da;
        }
    }
    obj(&mut dep).remove("status");
    dep["apiVersion"] = json!("apps/v1");
    dep["kind"] = json!("Deployment");
    // Fix: the selector is always created-by=kubeless,function=<name>.
    *at(&mut dep, &["spec", "selector"]) = json!({"matchLabels": selector_labels(name)});
    *at(&mut dep, &["spec", "strategy"]) =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}});
    {
        let tmeta = at(&mut dep, &["spec", "template", "metadata"]);
        // Fix: pods carry the selector labels, not every Function label,
        // so changing a Function's labels does not restart its pods.
        let l = at(tmeta, &["labels"]);
        merge_over(l, &selector_labels(name));
        // The Function's annotations reach the pods (as in Kubeless: it is
        // how a manifest sets e.g. sidecar injection), so changing one
        // restarts them; kubectl's bookkeeping is left out, so `kubectl
        // apply` of a label change does not.
        let a = at(tmeta, &["annotations"]);
        merge_over(a, &json!(copied_annotations(&f.metadata.annotations)));
        merge_over(
            a,
            &json!({"prometheus.io/scrape": "true", "prometheus.io/path": "/metrics",
                    "prometheus.io/port": target_port.to_string()}),
        );
        // Pods copy the ConfigMap at start: a change of it must roll them
        // (Fix: Kubeless rolled only when `spec.checksum` changed, so a
        // Function without one kept running the old code). A custom image
        // does not read the ConfigMap.
        if resolved.is_some() {
            a[CODE_HASH_ANNOTATION] = json!(code_hash(&f.spec.function_content_type, &data));
        }
        if let Some(m) = tmeta.as_object_mut() {
            m.remove("creationTimestamp");
        }
    }
    let pod = at(&mut dep, &["spec", "template", "spec"]);
    if pod.get("containers").is_none_or(is_empty) {
        pod["containers"] = json!([{}]);
    }
    let user_env: Vec<Value> = pod
        .pointer("/containers/0/env")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let init_resources = pod.pointer("/initContainers/0/resources").cloned();
    let mut pull_secrets: Vec<String> = [
        &settings.provision_image_secret,
        &settings.builder_image_secret,
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .cloned()
    .collect();

    let mut env: Vec<Value> = user_env.clone();
    let mut build = None;
    match &resolved {
        Some((plan, rt, version)) => {
            // Kubeless order: user env, FUNC_*, KUBELESS_INSTALL_VOLUME, the
            // runtime's env. The plan's list starts with the user env (as
            // values only), so take what follows it and keep the user's
            // entries as written (valueFrom included).
            let tail = 7 + plan.runtime.language.runtime_env().len();
            let start = plan.env.len().saturating_sub(tail);
            for e in &plan.env[start..] {
                env.push(env_var(&e.name, &e.value));
            }
            let runtime_phase = version.phase("runtime");
            if let Some(p) = runtime_phase {
                for (k, v) in &p.env {
                    set_env(&mut env, k, v);
                }
            }
            let runtime_image = runtime_phase.map(|p| p.image.clone()).unwrap_or_default();
            build = Some(BuildInputs {
                plan: plan.clone(),
                runtime_image: runtime_image.clone(),
            });
            for s in &version.image_pull_secrets {
                if !pull_secrets.contains(s) {
                    pull_secrets.push(s.clone());
                }
            }

            // Volumes and init containers.
            let volumes = arr(at(pod, &["volumes"]));
            volumes.push(json!({"name": name, "emptyDir": {}}));
            volumes.push(json!({"name": format!("{name}-deps"), "configMap": {"name": name}}));
            let runtime_mount = json!({"name": name, "mountPath": INSTALL_VOLUME});
            let mut inits = Vec::new();
            if !f.spec.function.is_empty() {
                // An empty dependency file is not copied: Node.js 12 and
                // later refuse to load a handler beside an empty
                // package.json (Kubeless copied it, from Node.js 6 days).
                let copied_deps = if f.spec.deps.is_empty() {
                    ""
                } else {
                    &dep_name
                };
                let script = prepare_script(
                    &f.spec.function,
                    &f.spec.function_content_type,
                    &f.spec.checksum,
                    &file_name,
                    copied_deps,
                )?;
                inits.push(json!({
                    "name": "prepare", "image": settings.provision_image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", script],
                    "volumeMounts": [runtime_mount, {"name": format!("{name}-deps"), "mountPath": "/src"}],
                }));
            }
            // Go and Java have no installation step: their compile step
            // resolves go.mod / pom.xml (as embedded mode does), so the
            // dependency file is verified there instead.
            let compiles_deps =
                version.phase("installation").is_none() && version.phase("compilation").is_some();
            let has_deps = !f.spec.deps.is_empty() || f.spec.function_content_type.contains("deps");
            let deps_check = (!f.spec.deps.is_empty()).then(|| {
                let sum = hex::encode(Sha256::digest(f.spec.deps.as_bytes()));
                format!(
                    "echo '{sum}  {INSTALL_VOLUME}/{dep_name}' > /tmp/deps.sha256 && sha256sum -c /tmp/deps.sha256"
                )
            });
            if has_deps && !compiles_deps {
                let phase = version
                    .phase("installation")
                    .ok_or_else(|| RenderError::NoInstallImage(f.spec.runtime.clone()))?;
                let mut script = Vec::new();
                script.extend(deps_check.clone());
                let mut env = user_env.clone();
                env.push(env_var("KUBELESS_INSTALL_VOLUME", INSTALL_VOLUME));
                env.push(env_var(
                    "KUBELESS_DEPS_FILE",
                    &format!("{INSTALL_VOLUME}/{dep_name}"),
                ));
                match (&phase.command, &plan.install) {
                    (c, _) if !c.is_empty() => script.push(c.clone()),
                    (_, Some(cmd)) => {
                        script.push(shell_command(cmd));
                        for e in &cmd.env {
                            set_env(&mut env, &e.name, &e.value);
                        }
                    }
                    (_, None) => return Err(RenderError::NoInstallImage(f.spec.runtime.clone())),
                }
                for (k, v) in &phase.env {
                    set_env(&mut env, k, v);
                }
                inits.push(init_container(
                    "install",
                    phase,
                    script.join(" && "),
                    env,
                    &runtime_mount,
                ));
            }
            if let Some(phase) = version.phase("compilation") {
                let mut env = user_env.clone();
                env.push(env_var("KUBELESS_INSTALL_VOLUME", INSTALL_VOLUME));
                env.push(env_var("KUBELESS_FUNC_NAME", &plan.function_name));
                env.push(env_var("MOD_NAME", &plan.module));
                let mut command = if !phase.command.is_empty() {
                    phase.command.clone()
                } else {
                    plan.compile.as_ref().map(shell_command).unwrap_or_default()
                };
                if compiles_deps && let Some(check) = &deps_check {
                    command = format!("{check} && {command}");
                }
                for (k, v) in &phase.env {
                    set_env(&mut env, k, v);
                }
                inits.push(init_container(
                    "compile",
                    phase,
                    command,
                    env,
                    &runtime_mount,
                ));
            }
            // Runtime-config secrets of a phase, mounted read-only in its
            // init container.
            for (container, phase) in [("install", "installation"), ("compile", "compilation")] {
                let Some(p) = version.phase(phase) else {
                    continue;
                };
                for secret in &p.secrets {
                    let vols = arr(at(pod, &["volumes"]));
                    match vols.iter().find(|v| v.get("name") == Some(&json!(secret))) {
                        Some(v) if v.get("secret").is_none() => {
                            return Err(RenderError::SecretVolume(secret.clone()));
                        }
                        Some(_) => {}
                        None => {
                            vols.push(json!({"name": secret, "secret": {"secretName": secret}}))
                        }
                    }
                    if let Some(c) = inits.iter_mut().find(|c| c["name"] == container) {
                        arr(at(c, &["volumeMounts"])).push(json!({
                            "name": secret, "readOnly": true,
                            "mountPath": format!("/var/run/secrets/kubeless.io/{secret}"),
                        }));
                    }
                }
            }
            if let Some(r) = &init_resources {
                for c in &mut inits {
                    c["resources"] = r.clone();
                }
            }
            pod["initContainers"] = Value::Array(inits);
            let c0 = &mut pod["containers"][0];
            c0["image"] = json!(runtime_image);
            arr(at(c0, &["volumeMounts"])).push(runtime_mount);
            if c0.get("livenessProbe").is_none_or(is_empty) {
                c0["livenessProbe"] = rt.liveness_probe_info.clone().unwrap_or_else(|| {
                    json!({"httpGet": {"path": "/healthz", "port": target_port},
                           "initialDelaySeconds": 3, "periodSeconds": 30})
                });
            }
        }
        None => {
            // Custom image: no volumes or init containers.
            if !f.spec.handler.is_empty() && !f.spec.function.is_empty() {
                let (module, function) = kubeless_plan::split_handler(&f.spec.handler)?;
                let memory = pod
                    .pointer("/containers/0/resources/limits/memory")
                    .and_then(Value::as_str)
                    .unwrap_or("0")
                    .to_string();
                env.push(env_var("FUNC_HANDLER", &function));
                env.push(env_var("MOD_NAME", &module));
                env.push(env_var("FUNC_TIMEOUT", &timeout.to_string()));
                env.push(env_var("FUNC_RUNTIME", &f.spec.runtime));
                env.push(env_var("FUNC_MEMORY_LIMIT", &memory));
            } else {
                warnings.push(
                    "expected a non-empty handler and function content: only FUNC_PORT is set"
                        .to_string(),
                );
            }
            env.push(env_var("FUNC_PORT", &target_port.to_string()));
            let c0 = &mut pod["containers"][0];
            if c0.get("livenessProbe").is_none_or(is_empty) {
                c0["livenessProbe"] = json!({"httpGet": {"path": "/healthz", "port": target_port},
                                             "initialDelaySeconds": 3, "periodSeconds": 30});
            }
        }
    }
    {
        let c0 = &mut pod["containers"][0];
        c0["name"] = json!(name);
        c0["env"] = Value::Array(env);
        let ports = arr(at(c0, &["ports"]));
        if !ports
            .iter()
            .any(|p| p.get("containerPort") == Some(&json!(target_port)))
        {
            ports.push(json!({"containerPort": target_port}));
        }
        // Fix: a readiness probe, so Ready means the function answers.
        if c0.get("readinessProbe").is_none_or(is_empty) {
            c0["readinessProbe"] =
                json!({"httpGet": {"path": "/healthz", "port": target_port}, "periodSeconds": 5});
        }
        if let Some(m) = c0.as_object_mut()
            && m.get("resources").is_some_and(is_empty)
        {
            m.remove("resources");
        }
    }
    if !pull_secrets.is_empty() {
        let list = arr(at(pod, &["imagePullSecrets"]));
        for s in pull_secrets {
            let entry = json!({"name": s});
            if !list.contains(&entry) {
                list.push(entry);
            }
        }
    }
    if pod.get("securityContext").is_none_or(is_empty) {
        pod["securityContext"] = json!({"runAsUser": 1000, "fsGroup": 1000});
    }
    if pod.get("affinity").is_none_or(is_empty) {
        pod["affinity"] = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {"labelSelector": {"matchLabels": selector_labels(name)},
                                "topologyKey": "kubernetes.io/hostname"}}]}});
    }
    let deployment = typed(dep, "spec.deployment", "Deployment")?;

    let hpa = hpa(f, &labels, &owners)?;
    let service_monitor = hpa
        .as_ref()
        .and_then(|h| h.spec.metrics.as_ref())
        .and_then(|m| m.first())
        .filter(|m| m.type_ == "Object")
        .map(|_| {
            let port = f
                .spec
                .service
                .pointer("/ports/0/name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(PORT_NAME);
            service_monitor(f, port, &owners)
        });
    warnings.dedup();
    Ok(FunctionObjects {
        config_map,
        service,
        deployment,
        hpa,
        service_monitor,
        warnings,
        build,
    })
}

fn init_container(
    name: &str,
    phase: &PhaseImage,
    script: String,
    env: Vec<Value>,
    mount: &Value,
) -> Value {
    json!({
        "name": name, "image": phase.image, "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script], "workingDir": INSTALL_VOLUME,
        "env": env, "volumeMounts": [mount],
    })
}

fn set_env(env: &mut Vec<Value>, name: &str, value: &str) {
    match env.iter_mut().find(|e| e.get("name") == Some(&json!(name))) {
        Some(e) => *e = env_var(name, value),
        None => env.push(env_var(name, value)),
    }
}

fn merge_over(target: &mut Value, over: &Value) {
    if let Some(o) = over.as_object() {
        let t = obj(target);
        for (k, v) in o {
            t.insert(k.clone(), v.clone());
        }
    }
}

/// Name of a Function's build Job: `build-<function>-<tag[0:10]>`, the
/// function part shortened so the name stays a valid label value (63).
pub fn build_job_name(function: &str, tag: &str) -> String {
    let short: String = function.chars().take(63 - 17).collect();
    let short = short.trim_end_matches(['-', '.']);
    format!("build-{short}-{}", &tag[..tag.len().min(10)])
}

/// Where the build Job mounts the registry credentials.
pub const REGISTRY_SECRET: &str = "kubeless-registry-credentials";

/// Point a rendered Deployment at the function image built from it: the
/// image holds `/kubeless`, so the pods need no init containers and no
/// runtime volumes; the registry credentials become a pull secret.
pub fn use_image(objects: &mut FunctionObjects, image: &str) {
    let name = objects.deployment.metadata.name.clone().unwrap_or_default();
    let deps = format!("{name}-deps");
    let Some(pod) = objects
        .deployment
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
    else {
        return;
    };
    pod.init_containers = None;
    if let Some(v) = pod.volumes.as_mut() {
        v.retain(|v| v.name != name && v.name != deps);
    }
    if pod.volumes.as_ref().is_some_and(Vec::is_empty) {
        pod.volumes = None;
    }
    if let Some(c) = pod.containers.first_mut() {
        c.image = Some(image.to_string());
        if let Some(m) = c.volume_mounts.as_mut() {
            m.retain(|m| m.name != name);
        }
        if c.volume_mounts.as_ref().is_some_and(Vec::is_empty) {
            c.volume_mounts = None;
        }
    }
    let secrets = pod.image_pull_secrets.get_or_insert_with(Vec::new);
    if !secrets.iter().any(|s| s.name == REGISTRY_SECRET) {
        secrets.push(k8s_openapi::api::core::v1::LocalObjectReference {
            name: REGISTRY_SECRET.to_string(),
        });
    }
}

/// The build Job of a Function: the init containers of its Deployment
/// (prepare, install, compile) fill `/kubeless`, then `kubeless
/// build-image` pushes it as one layer on the runtime image, under the tag
/// the controller planned (`request` is a
/// `kubeless_builder::function::Request` as JSON). `normal` is the
/// Deployment as rendered without an image.
pub fn build_job(
    normal: &Deployment,
    tag: &str,
    request: &str,
    settings: &Settings,
) -> Result<Job, RenderError> {
    let name = normal.metadata.name.clone().unwrap_or_default();
    let ns = normal.metadata.namespace.clone().unwrap_or_default();
    let mut pod = serde_json::to_value(
        normal
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.clone())
            .unwrap_or_default(),
    )
    .map_err(|e| RenderError::Invalid {
        what: "the Deployment".into(),
        kind: "PodSpec",
        message: e.to_string(),
    })?;
    let mut spec = json!({});
    for key in [
        "volumes",
        "initContainers",
        "imagePullSecrets",
        "securityContext",
        "serviceAccountName",
        "nodeSelector",
        "tolerations",
    ] {
        if let Some(v) = obj(&mut pod).remove(key) {
            spec[key] = v;
        }
    }
    arr(at(&mut spec, &["volumes"]))
        .push(json!({"name": "registry-credentials", "secret": {"secretName": REGISTRY_SECRET}}));
    let pull = arr(at(&mut spec, &["imagePullSecrets"]));
    for s in [&settings.builder_image_secret, &REGISTRY_SECRET.to_string()] {
        let entry = json!({"name": s});
        if !s.is_empty() && !pull.contains(&entry) {
            pull.push(entry);
        }
    }
    let mut args = vec![
        "build-image".to_string(),
        "--layer-dir".to_string(),
        INSTALL_VOLUME.to_string(),
        "--docker-config".to_string(),
        "/docker/.dockerconfigjson".to_string(),
    ];
    if !settings.registry_tls_verify {
        args.push("--insecure".to_string());
    }
    spec["restartPolicy"] = json!("OnFailure");
    spec["containers"] = json!([{
        "name": "build",
        "image": settings.builder_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["kubeless"],
        "args": args,
        "env": [{"name": "KUBELESS_BUILD_REQUEST", "value": request}],
        "volumeMounts": [
            {"name": name, "mountPath": INSTALL_VOLUME},
            {"name": "registry-credentials", "mountPath": "/docker", "readOnly": true},
        ],
    }]);
    let labels = selector_labels(&name);
    let owners = normal.metadata.owner_references.clone().unwrap_or_default();
    typed(
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": build_job_name(&name, tag), "namespace": ns,
                         "labels": labels, "ownerReferences": owners},
            "spec": {
                "backoffLimit": 3,
                "template": {"metadata": {"labels": labels}, "spec": spec},
            },
        }),
        "the build Job",
        "Job",
    )
}

/// `spec.horizontalPodAutoscaler` as an autoscaling/v2 object, when it names
/// itself and its target. v2beta1 metrics (`targetAverageUtilization`,
/// `metricName`/`targetValue`) are converted.
/// The ServiceMonitor of a Function autoscaled on its request rate
/// (Kubeless's, on `monitoring.coreos.com/v1` instead of the removed
/// `v1alpha1`): scrape the function's Service port `/metrics`.
fn service_monitor(f: &Function, port: &str, owners: &Value) -> Value {
    let name = &f.metadata.name;
    json!({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": name, "namespace": f.metadata.namespace,
                     "labels": {"service-monitor": "function", "created-by": "kubeless"},
                     "ownerReferences": owners},
        "spec": {
            "selector": {"matchLabels": {"function": name}},
            "endpoints": [{"port": port, "path": "/metrics"}],
        },
    })
}

fn hpa(
    f: &Function,
    labels: &BTreeMap<String, String>,
    owners: &Value,
) -> Result<Option<HorizontalPodAutoscaler>, RenderError> {
    let h = &f.spec.horizontal_pod_autoscaler;
    let named = h
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    let target = h
        .pointer("/spec/scaleTargetRef/name")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !named || !target {
        return Ok(None);
    }
    let name = &f.metadata.name;
    let spec = &h["spec"];
    let metrics: Vec<Value> = spec
        .get("metrics")
        .and_then(Value::as_array)
        .map(|ms| ms.iter().map(|m| metric_v2(m, name)).collect())
        .unwrap_or_default();
    let mut out = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": f.metadata.namespace, "labels": labels, "ownerReferences": owners},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "maxReplicas": spec.get("maxReplicas").cloned().unwrap_or(json!(1)),
            "metrics": metrics,
        },
    });
    if let Some(min) = spec.get("minReplicas") {
        out["spec"]["minReplicas"] = min.clone();
    }
    if let Some(b) = spec.get("behavior") {
        out["spec"]["behavior"] = b.clone();
    }
    typed(
        out,
        "spec.horizontalPodAutoscaler",
        "HorizontalPodAutoscaler",
    )
    .map(Some)
}

fn metric_v2(m: &Value, function: &str) -> Value {
    match m.get("type").and_then(Value::as_str) {
        Some("Resource") => {
            let r = &m["resource"];
            if r.get("target").is_some() {
                return m.clone();
            }
            let target = match (
                r.get("targetAverageUtilization"),
                r.get("targetAverageValue"),
            ) {
                (Some(u), _) => json!({"type": "Utilization", "averageUtilization": u}),
                (None, Some(v)) => json!({"type": "AverageValue", "averageValue": v}),
                _ => json!({"type": "Utilization", "averageUtilization": 80}),
            };
            json!({"type": "Resource", "resource": {"name": r.get("name").cloned().unwrap_or(json!("cpu")), "target": target}})
        }
        Some("Object") => {
            let o = &m["object"];
            if o.get("describedObject").is_some() {
                return m.clone();
            }
            json!({"type": "Object", "object": {
                "metric": {"name": o.get("metricName").cloned().unwrap_or(json!("function_calls"))},
                "describedObject": {"apiVersion": "v1", "kind": "Service",
                                    "name": o.pointer("/target/name").cloned().unwrap_or(json!(function))},
                "target": {"type": "Value", "value": o.get("targetValue").cloned().unwrap_or(json!("1"))},
            }})
        }
        _ => m.clone(),
    }
}

/// Render an HTTPTrigger's Ingress. `service_port` is the function
/// Service's port (Fix: Kubeless used the target port).
pub fn ingress(t: &kubeless_api::HttpTrigger, service_port: i64) -> Result<Ingress, RenderError> {
    let s = &t.spec;
    let name = &t.metadata.name;
    let gateway = if s.gateway.is_empty() {
        "nginx"
    } else {
        s.gateway.as_str()
    };
    let mut ann: BTreeMap<String, String> = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        ann.insert(k.to_string(), v.to_string());
    };
    match gateway {
        "nginx" => put("nginx.ingress.kubernetes.io/rewrite-target", "/"),
        "traefik" | "kong" => {}
        other => return Err(RenderError::Trigger(format!("unsupported gateway {other}"))),
    }
    if s.cors_enable {
        match gateway {
            "nginx" => put("nginx.ingress.kubernetes.io/enable-cors", "true"),
            _ => put("ingress.kubernetes.io/enable-cors", "true"),
        }
    }
    if !s.basic_auth_secret.is_empty() {
        match gateway {
            "nginx" => {
                put(
                    "nginx.ingress.kubernetes.io/auth-secret",
                    &s.basic_auth_secret,
                );
                put("nginx.ingress.kubernetes.io/auth-type", "basic");
            }
            "traefik" => {
                put("ingress.kubernetes.io/auth-secret", &s.basic_auth_secret);
                put("ingress.kubernetes.io/auth-type", "basic");
            }
            _ => {
                return Err(RenderError::Trigger(
                    "setting basic authentication with Kong is not yet supported".to_string(),
                ));
            }
        }
    }
    if s.tls && !s.tls_secret.is_empty() {
        return Err(RenderError::Trigger(
            "cannot specify both tls (ACME) and tls-secret".to_string(),
        ));
    }
    let hosts = if s.host_name.is_empty() {
        json!([])
    } else {
        json!([s.host_name])
    };
    let tls = if s.tls {
        put("kubernetes.io/tls-acme", "true");
        // Fix: Kubeless added nginx's redirect annotation for every
        // gateway; each gateway gets its own way to send HTTP to HTTPS
        // (traefik's in the `ingress.kubernetes.io/` family its auth
        // annotations use; kong redirects when a route is HTTPS-only).
        match gateway {
            "nginx" => put("nginx.ingress.kubernetes.io/ssl-redirect", "true"),
            "traefik" => put("ingress.kubernetes.io/ssl-redirect", "true"),
            _ => {
                put("konghq.com/protocols", "https");
                put("konghq.com/https-redirect-status-code", "301");
            }
        }
        json!([{"hosts": hosts, "secretName": format!("{name}-tls")}])
    } else if !s.tls_secret.is_empty() {
        json!([{"hosts": hosts, "secretName": s.tls_secret}])
    } else {
        Value::Null
    };
    ann.extend(copied_annotations(&t.metadata.annotations));
    // The legacy class annotation cannot be combined with ingressClassName.
    ann.remove("kubernetes.io/ingress.class");
    let mut rule = json!({"http": {"paths": [{
        "path": format!("/{}", s.path.trim_start_matches('/')),
        "pathType": "Prefix",
        "backend": {"service": {"name": s.function_name, "port": {"number": service_port}}},
    }]}});
    if !s.host_name.is_empty() {
        rule["host"] = json!(s.host_name);
    }
    let mut labels = t.metadata.labels.clone();
    labels.insert(CREATED_BY.0.into(), CREATED_BY.1.into());
    let mut out = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": t.metadata.namespace, "labels": labels,
                     "annotations": ann,
                     "ownerReferences": [owner_ref("HTTPTrigger", name, &t.metadata.uid)]},
        "spec": {"ingressClassName": gateway, "rules": [rule]},
    });
    if !tls.is_null() {
        out["spec"]["tls"] = tls;
    }
    typed(out, "the Ingress", "Ingress")
}

/// Name of a CronJobTrigger's CronJob. Fix: named after the trigger, so two
/// triggers of one function no longer share one CronJob; `function deploy
/// --schedule` names its trigger like the function, so that case keeps
/// Kubeless's `trigger-<function>`.
pub fn cron_job_name(trigger: &str) -> String {
    format!("trigger-{trigger}")
}

/// Render a CronJobTrigger's CronJob. The job runs the project's own image:
/// `kubeless cron-invoke` sends the spec 4.2 cron headers (`event-id` = pod
/// UID, `event-time`, `event-namespace: cronjobtrigger.kubeless.io`), a GET
/// for a null payload and a POST of the JSON payload otherwise.
pub fn cron_job(
    t: &kubeless_api::CronJobTrigger,
    f: &Function,
    settings: &Settings,
) -> Result<CronJob, RenderError> {
    let name = cron_job_name(&t.metadata.name);
    let timeout = kubeless_plan::parse_timeout(&f.spec.timeout)?;
    let (_, port) = ports(&f.spec.service);
    let mut labels = f.metadata.labels.clone();
    labels.extend(t.metadata.labels.clone());
    labels.insert(CREATED_BY.0.into(), CREATED_BY.1.into());
    let mut annotations = copied_annotations(&f.metadata.annotations);
    annotations.extend(copied_annotations(&t.metadata.annotations));
    let url = format!(
        "http://{}.{}.svc.cluster.local:{port}",
        f.metadata.name, f.metadata.namespace
    );
    let mut command = vec![
        "kubeless".to_string(),
        "cron-invoke".to_string(),
        "--url".to_string(),
        url,
    ];
    if !t.spec.payload.is_null() {
        command.push("--payload".to_string());
        command.push(t.spec.payload.to_string());
    }
    let pull: Vec<Value> = [&settings.provision_image_secret]
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(|s| json!({"name": s}))
        .collect();
    let out = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": t.metadata.namespace, "labels": labels,
                     "annotations": annotations,
                     "ownerReferences": [owner_ref("CronJobTrigger", &t.metadata.name, &t.metadata.uid)]},
        "spec": {
            "schedule": t.spec.schedule,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1,
            "concurrencyPolicy": "Allow",
            "jobTemplate": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "activeDeadlineSeconds": timeout,
                    "backoffLimit": 0,
                    "template": {
                        "metadata": {"labels": labels, "annotations": annotations},
                        "spec": {
                            "restartPolicy": "Never",
                            "imagePullSecrets": pull,
                            "containers": [{
                                "name": "trigger",
                                "image": settings.invoker_image,
                                "imagePullPolicy": "IfNotPresent",
                                "command": command,
                                "env": [{"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}],
                                "resources": {"limits": {"memory": "64Mi", "cpu": "100m"},
                                              "requests": {"memory": "16Mi", "cpu": "10m"}},
                            }],
                        },
                    },
                },
            },
        },
    });
    typed(out, "the CronJob", "CronJob")
}
