//! The `kubeless-config` ConfigMap, parsed and validated.
//!
//! Every key is read and checked before the controller acts on it: a bad
//! value makes [`Settings::from_config_map`] fail with the key named, and the
//! controller keeps the last good settings (at start it refuses to run).
//! Missing keys take the defaults of [`Settings::default`]. The controller
//! watches the ConfigMap, so a change applies without a restart.

use std::collections::BTreeMap;

use kubeless_plan::Catalogue;
use kubeless_plan::images::{ImagesError, RuntimeImages};
use serde_json::Value;

/// Name of the ConfigMap (`KUBELESS_CONFIG` overrides it, as in Kubeless).
pub const CONFIG_MAP: &str = "kubeless-config";
/// The namespace Kubeless is installed in by default.
pub const INSTALL_NAMESPACE: &str = "kubeless";

/// The project's image: the `kubeless` binary with the tools the `prepare`
/// step uses (sh, base64, sha256sum, curl, unzip, tar). It prepares code and
/// invokes functions from CronJobs.
pub fn default_image() -> String {
    format!(
        "{}/kubeless:{}",
        kubeless_plan::images::IMAGE_REPOSITORY,
        env!("CARGO_PKG_VERSION")
    )
}

/// What the controller reads from `kubeless-config`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub runtime_images: RuntimeImages,
    /// Plan catalogue derived from `runtime_images`.
    pub catalogue: Catalogue,
    /// Runtime ids that have images but no language the runtime host speaks.
    pub unsupported_runtimes: Vec<String>,
    /// A Deployment merged under every function's `spec.deployment`.
    pub deployment: Value,
    /// Image of the `prepare` init container.
    pub provision_image: String,
    /// Image CronJobs run to invoke a function (`kubeless cron-invoke`).
    pub invoker_image: String,
    pub provision_image_secret: String,
    /// Image of the build Job (`kubeless build-image`).
    pub builder_image: String,
    pub builder_image_secret: String,
    pub enable_build_step: bool,
    /// `function-registry-tls-verify`: `false` = plain HTTP to the registry.
    pub registry_tls_verify: bool,
    /// Only Functions and triggers of this namespace (empty = all).
    pub functions_namespace: String,
}

impl Default for Settings {
    fn default() -> Self {
        let runtime_images = RuntimeImages::defaults();
        let (catalogue, unsupported_runtimes) = runtime_images.catalogue();
        Settings {
            runtime_images,
            catalogue,
            unsupported_runtimes,
            deployment: Value::Null,
            provision_image: default_image(),
            invoker_image: default_image(),
            provision_image_secret: String::new(),
            builder_image: default_image(),
            builder_image_secret: String::new(),
            enable_build_step: false,
            registry_tls_verify: true,
            functions_namespace: String::new(),
        }
    }
}

/// A `kubeless-config` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("kubeless-config key runtime-images")]
    RuntimeImages(#[source] ImagesError),
    #[error("kubeless-config key deployment: {0}")]
    Deployment(String),
    #[error("kubeless-config key {key}: {message}")]
    Value { key: String, message: String },
}

fn boolean(
    data: &BTreeMap<String, String>,
    key: &str,
    default: bool,
) -> Result<bool, SettingsError> {
    match data.get(key).map(|s| s.trim()) {
        None | Some("") => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(SettingsError::Value {
            key: key.to_string(),
            message: format!("{other:?} is not \"true\" or \"false\""),
        }),
    }
}

impl Settings {
    /// Parse the ConfigMap's `data`.
    pub fn from_config_map(data: &BTreeMap<String, String>) -> Result<Settings, SettingsError> {
        let mut s = Settings::default();
        if let Some(text) = data.get("runtime-images").filter(|t| !t.trim().is_empty()) {
            s.runtime_images = RuntimeImages::parse(text).map_err(SettingsError::RuntimeImages)?;
            let (catalogue, unsupported) = s.runtime_images.catalogue();
            s.catalogue = catalogue;
            s.unsupported_runtimes = unsupported;
        }
        if let Some(text) = data.get("deployment").filter(|t| !t.trim().is_empty()) {
            // Through serde_yaml's own Value, which refuses duplicate keys
            // (serde_json's would keep the last one silently).
            let yaml: serde_yaml::Value =
                serde_yaml::from_str(text).map_err(|e| SettingsError::Deployment(e.to_string()))?;
            let v: Value =
                serde_json::to_value(yaml).map_err(|e| SettingsError::Deployment(e.to_string()))?;
            match &v {
                Value::Object(m) if m.is_empty() => {}
                Value::Object(_) => {
                    // Parsed strictly as an apps/v1 Deployment, as Kubeless
                    // did (spec 3.2): a misspelt field is an error, not a
                    // setting silently ignored. Duplicate keys are already
                    // refused by the YAML parser.
                    let typed =
                        serde_json::from_value::<k8s_openapi::api::apps::v1::Deployment>(v.clone())
                            .map_err(|e| SettingsError::Deployment(e.to_string()))?;
                    let known = serde_json::to_value(&typed)
                        .map_err(|e| SettingsError::Deployment(e.to_string()))?;
                    let mut unknown = Vec::new();
                    unknown_fields(&v, &known, "", &mut unknown);
                    if !unknown.is_empty() {
                        return Err(SettingsError::Deployment(format!(
                            "unknown field{} {}",
                            if unknown.len() == 1 { "" } else { "s" },
                            unknown.join(", ")
                        )));
                    }
                    s.deployment = v;
                }
                Value::Null => {}
                _ => {
                    return Err(SettingsError::Deployment(
                        "expected a Deployment object".to_string(),
                    ));
                }
            }
        }
        let image = |key: &str, default: String| {
            data.get(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or(default)
        };
        s.provision_image = image("provision-image", default_image());
        s.invoker_image = image("invoker-image", default_image());
        s.provision_image_secret = image("provision-image-secret", String::new());
        s.builder_image = image("builder-image", default_image());
        // Kubeless's builder image (skopeo scripts) cannot run our build
        // Job; a kubeless-config carried over from Kubeless names it.
        if s.builder_image
            .starts_with("kubeless/function-image-builder")
        {
            s.builder_image = default_image();
        }
        s.builder_image_secret = image("builder-image-secret", String::new());
        s.enable_build_step = boolean(data, "enable-build-step", false)?;
        s.registry_tls_verify = boolean(data, "function-registry-tls-verify", true)?;
        s.functions_namespace = image("functions-namespace", String::new());
        Ok(s)
    }

    /// Every runtime string offered (`get-server-config`).
    pub fn runtimes(&self) -> Vec<String> {
        self.runtime_images.names()
    }
}

/// Fields of `given` that did not survive a round trip through the typed
/// object `known` (the same value decoded and encoded again): the fields
/// the type does not have. Null values are skipped (a decoded `null` is
/// simply absent).
fn unknown_fields(given: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (given, known) {
        (Value::Object(g), Value::Object(k)) => {
            for (key, value) in g {
                if value.is_null() {
                    continue;
                }
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => unknown_fields(value, kv, &here, out),
                    None => out.push(here),
                }
            }
        }
        (Value::Array(g), Value::Array(k)) => {
            for (i, (gv, kv)) in g.iter().zip(k).enumerate() {
                unknown_fields(gv, kv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The default `kubeless-config` data written by `kubeless install`.
pub fn default_config_data() -> BTreeMap<String, String> {
    let images = serde_json::to_string_pretty(&images_json(&RuntimeImages::defaults()))
        .unwrap_or_else(|_| "[]".to_string());
    [
        ("deployment", "{}".to_string()),
        ("runtime-images", images),
        ("enable-build-step", "false".to_string()),
        ("function-registry-tls-verify", "true".to_string()),
        ("provision-image", default_image()),
        ("provision-image-secret", String::new()),
        ("invoker-image", default_image()),
        ("builder-image", default_image()),
        ("builder-image-secret", String::new()),
        ("ingress-enabled", "false".to_string()),
        ("service-type", "ClusterIP".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `runtime-images` in the Kubeless JSON shape.
pub fn images_json(images: &RuntimeImages) -> Value {
    Value::Array(
        images
            .runtimes
            .iter()
            .map(|r| {
                let mut o = serde_json::json!({
                    "ID": r.id,
                    "depName": r.dep_name,
                    "fileNameSuffix": r.file_name_suffix,
                    "versions": r.versions.iter().map(|v| serde_json::json!({
                        "name": v.name,
                        "version": v.version,
                        "images": v.images.iter().map(|i| {
                            let mut p = serde_json::json!({"phase": i.phase, "image": i.image});
                            if !i.command.is_empty() { p["command"] = i.command.clone().into(); }
                            if !i.env.is_empty() { p["env"] = serde_json::json!(i.env); }
                            p
                        }).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                });
                if let Some(p) = &r.liveness_probe_info {
                    o["livenessProbeInfo"] = p.clone();
                }
                o
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_data_round_trips() {
        let s = Settings::from_config_map(&default_config_data()).expect("defaults parse");
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut d = default_config_data();
        d.insert("enable-build-step".into(), "yes".into());
        let e = Settings::from_config_map(&d).expect_err("rejected");
        assert!(e.to_string().contains("enable-build-step"), "{e}");
        let mut d = default_config_data();
        d.insert(
            "deployment".into(),
            "{\"spec\": {\"replicas\": \"x\"}}".into(),
        );
        assert!(matches!(
            Settings::from_config_map(&d),
            Err(SettingsError::Deployment(_))
        ));
        // Strict, as Kubeless: unknown fields and duplicate keys are errors,
        // at any depth; known fields (YAML or JSON) pass.
        for (text, field) in [
            ("{\"spec\": {\"replica\": 2}}", "spec.replica"),
            (
                "spec:\n  template:\n    spec:\n      containers:\n      - name: x\n        imagePullPolicy: Always\n        envv: []\n",
                "spec.template.spec.containers[0].envv",
            ),
            (
                "{\"metadata\": {\"label\": {\"a\": \"b\"}}}",
                "metadata.label",
            ),
            ("{\"spek\": {}}", "spek"),
        ] {
            let mut d = default_config_data();
            d.insert("deployment".into(), text.into());
            let e = Settings::from_config_map(&d).expect_err(text);
            assert!(
                matches!(&e, SettingsError::Deployment(m) if m.contains(field)),
                "{text}: {e}"
            );
            assert!(
                e.to_string().starts_with("kubeless-config key deployment"),
                "{e}"
            );
        }
        let mut d = default_config_data();
        d.insert(
            "deployment".into(),
            "spec:\n  replicas: 2\n  replicas: 3\n".into(),
        );
        assert!(matches!(
            Settings::from_config_map(&d),
            Err(SettingsError::Deployment(_))
        ));
        let mut d = default_config_data();
        d.insert(
            "deployment".into(),
            r#"{"metadata": {"annotations": {"a": "b"}, "creationTimestamp": null},
                "spec": {"replicas": 2, "selector": null, "template": {"metadata": {"labels": {"x": "y"}},
                  "spec": {"containers": [{"name": "", "resources": {"limits": {"cpu": 1, "memory": "128Mi"}},
                    "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 8080}]}],
                    "tolerations": [{"key": "k", "operator": "Exists"}],
                    "nodeSelector": {"disk": "ssd"}}}}}"#
                .into(),
        );
        let s = Settings::from_config_map(&d).expect("a valid Deployment passes");
        assert_eq!(s.deployment["spec"]["replicas"], 2);
        let mut d = default_config_data();
        d.insert("runtime-images".into(), "{}".into());
        assert!(matches!(
            Settings::from_config_map(&d),
            Err(SettingsError::RuntimeImages(_))
        ));
    }
}
