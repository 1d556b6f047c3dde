//! The Kubernetes half of the catalogue: which image runs each phase
//! (`installation`, `compilation`, `runtime`) of a runtime version, in the
//! `runtime-images` format of the `kubeless-config` ConfigMap.
//!
//! Kubeless decoded `runtime-images` into Go structs without JSON tags, so
//! keys matched **case-insensitively** and unknown keys were ignored; this
//! parser does the same (`ID`, `id` and `Id` are one key). Values that are
//! Kubernetes objects (`livenessProbeInfo`) or maps of environment variable
//! names (`env`) keep their keys as written.
//!
//! [`RuntimeImages::defaults`] names the project's own images: one image per
//! language and version that carries the runtime host and the language, used
//! for both the install step and the runtime. A phase without a `command`
//! runs the install or compile command of the [`FunctionPlan`](crate::FunctionPlan),
//! so both modes install and compile the same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalogue::{Catalogue, Language, RuntimeEntry};

/// Where the project's images are published; a `runtime-images` entry in
/// the ConfigMap overrides any of them.
pub const IMAGE_REPOSITORY: &str = "ghcr.io/kubeless-rs";

/// One phase image of a runtime version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseImage {
    /// `installation`, `compilation` or `runtime`.
    pub phase: String,
    pub image: String,
    /// Shell command (`sh -c`); empty = the plan's command.
    pub command: String,
    /// Extra environment, in name order.
    pub env: BTreeMap<String, String>,
    /// Secrets mounted read-only at `/var/run/secrets/kubeless.io/<name>`.
    pub secrets: Vec<String>,
}

/// One version of a runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeVersion {
    pub name: String,
    pub version: String,
    pub images: Vec<PhaseImage>,
    pub image_pull_secrets: Vec<String>,
}

impl RuntimeVersion {
    /// The image of a phase, if the version has one.
    pub fn phase(&self, phase: &str) -> Option<&PhaseImage> {
        self.images
            .iter()
            .find(|i| i.phase.eq_ignore_ascii_case(phase))
    }
}

/// One runtime id with its versions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuntimeImage {
    pub id: String,
    pub versions: Vec<RuntimeVersion>,
    pub dep_name: String,
    pub file_name_suffix: String,
    /// A Kubernetes Probe object, used instead of `GET /healthz`.
    pub liveness_probe_info: Option<Value>,
}

/// The `runtime-images` catalogue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuntimeImages {
    pub runtimes: Vec<RuntimeImage>,
}

/// `runtime-images` that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImagesError {
    #[error("runtime-images is not a JSON or YAML array: {0}")]
    Syntax(String),
    #[error("runtime-images[{index}]: {message}")]
    Entry { index: usize, message: String },
}

/// Look a key up case-insensitively, as Go's encoding/json does for
/// untagged fields.
fn field<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn string(obj: &Value, key: &str) -> String {
    match field(obj, key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn array<'a>(obj: &'a Value, key: &str) -> &'a [Value] {
    field(obj, key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

impl RuntimeImages {
    /// Parse the ConfigMap value (JSON, or YAML as Kubeless accepted).
    pub fn parse(text: &str) -> Result<RuntimeImages, ImagesError> {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(json_err) => {
                serde_yaml::from_str(text).map_err(|_| ImagesError::Syntax(json_err.to_string()))?
            }
        };
        let Value::Array(items) = value else {
            return Err(ImagesError::Syntax("expected an array".to_string()));
        };
        let mut runtimes = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            if !item.is_object() {
                return Err(ImagesError::Entry {
                    index,
                    message: "expected an object".to_string(),
                });
            }
            let id = string(item, "ID");
            if id.is_empty() {
                return Err(ImagesError::Entry {
                    index,
                    message: "ID is empty".to_string(),
                });
            }
            let versions = array(item, "versions")
                .iter()
                .map(|v| RuntimeVersion {
                    name: string(v, "name"),
                    version: string(v, "version"),
                    images: array(v, "images")
                        .iter()
                        .map(|i| PhaseImage {
                            phase: string(i, "phase"),
                            image: string(i, "image"),
                            command: string(i, "command"),
                            env: field(i, "env")
                                .and_then(Value::as_object)
                                .map(|m| {
                                    m.iter()
                                        .map(|(k, v)| {
                                            let v = match v {
                                                Value::String(s) => s.clone(),
                                                other => other.to_string(),
                                            };
                                            (k.clone(), v)
                                        })
                                        .collect()
                                })
                                .unwrap_or_default(),
                            secrets: array(i, "secrets")
                                .iter()
                                .map(|s| string(s, "name"))
                                .filter(|s| !s.is_empty())
                                .collect(),
                        })
                        .collect(),
                    image_pull_secrets: array(v, "imagePullSecrets")
                        .iter()
                        .map(|s| string(s, "imageSecret"))
                        .filter(|s| !s.is_empty())
                        .collect(),
                })
                .collect();
            runtimes.push(RuntimeImage {
                id,
                versions,
                dep_name: string(item, "depName"),
                file_name_suffix: string(item, "fileNameSuffix"),
                liveness_probe_info: field(item, "livenessProbeInfo")
                    .filter(|v| v.is_object())
                    .cloned(),
            });
        }
        Ok(RuntimeImages { runtimes })
    }

    /// The project's own runtime images: every version of the embedded
    /// catalogue, one image per language and version.
    pub fn defaults() -> RuntimeImages {
        let embedded = Catalogue::embedded();
        RuntimeImages {
            runtimes: embedded
                .runtimes
                .iter()
                // A custom runtime is the function's own image
                // (`--runtime-image`) on Kubernetes.
                .filter(|r| r.language != Language::Custom)
                .map(|r| {
                    let (dep, suffix) = r.language.files();
                    RuntimeImage {
                        id: r.id.clone(),
                        dep_name: dep.to_string(),
                        file_name_suffix: suffix.to_string(),
                        liveness_probe_info: None,
                        versions: r
                            .versions
                            .iter()
                            .map(|v| {
                                let image = format!(
                                    "{IMAGE_REPOSITORY}/runtime-{}:{v}",
                                    r.language.as_str()
                                );
                                let phase = |p: &str| PhaseImage {
                                    phase: p.to_string(),
                                    image: image.clone(),
                                    ..PhaseImage::default()
                                };
                                let mut images = Vec::new();
                                if r.language.install_command(&[]).is_some() {
                                    images.push(phase("installation"));
                                }
                                if r.language.compile_command("m", "f").is_some() {
                                    images.push(phase("compilation"));
                                }
                                images.push(phase("runtime"));
                                RuntimeVersion {
                                    name: format!("{}{v}", r.id),
                                    version: v.clone(),
                                    images,
                                    image_pull_secrets: Vec::new(),
                                }
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    }

    /// Every `ID + version`, in catalogue order (`get-server-config`).
    pub fn names(&self) -> Vec<String> {
        self.runtimes
            .iter()
            .flat_map(|r| {
                r.versions
                    .iter()
                    .map(move |v| format!("{}{}", r.id, v.version))
            })
            .collect()
    }

    /// The runtime and version of a runtime string (exact `ID + version`).
    pub fn resolve(&self, runtime: &str) -> Option<(&RuntimeImage, &RuntimeVersion)> {
        self.runtimes.iter().find_map(|r| {
            let version = runtime.strip_prefix(r.id.as_str())?;
            r.versions
                .iter()
                .find(|v| v.version == version)
                .map(|v| (r, v))
        })
    }

    /// The plan catalogue for these images: every id whose language the
    /// runtime host speaks (its leading letters name it: `python`,
    /// `nodejs`, `nodejs_distroless`, ...). Other ids (`dotnetcore`,
    /// `ballerina`) are returned by name: they cannot be planned.
    pub fn catalogue(&self) -> (Catalogue, Vec<String>) {
        let mut runtimes = Vec::new();
        let mut unsupported = Vec::new();
        for r in &self.runtimes {
            match language_of(&r.id) {
                Some(language) => runtimes.push(RuntimeEntry {
                    id: r.id.clone(),
                    versions: r.versions.iter().map(|v| v.version.clone()).collect(),
                    language,
                }),
                None => unsupported.push(r.id.clone()),
            }
        }
        (
            Catalogue {
                runtimes,
                ..Catalogue::default()
            },
            unsupported,
        )
    }
}

/// The language a runtime id names (`nodejs_distroless` is Node.js).
pub fn language_of(id: &str) -> Option<Language> {
    let id = id.to_ascii_lowercase();
    [
        Language::Python,
        Language::Nodejs,
        Language::Ruby,
        Language::Php,
        Language::Java,
        Language::Go,
    ]
    .into_iter()
    .find(|l| id.starts_with(l.as_str()))
    .filter(|l| *l != Language::Go || id == "go" || id.starts_with("go_") || id.starts_with("go-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_case_insensitively() {
        let text = r#"[{"ID": "python", "depName": "requirements.txt", "FILENAMESUFFIX": ".py",
            "versions": [{"Name": "python38", "VERSION": "3.8",
              "images": [{"Phase": "installation", "image": "python:3.8", "command": "pip install",
                          "ENV": {"PIP_INDEX_URL": "x"}, "secrets": [{"NAME": "pip-creds"}]},
                         {"phase": "runtime", "Image": "kubeless/python", "env": {"PYTHONPATH": "$(KUBELESS_INSTALL_VOLUME)"}}],
              "imagePullSecrets": [{"ImageSecret": "regcred"}]}],
            "livenessProbeInfo": {"exec": {"command": ["true"]}, "initialDelaySeconds": 5},
            "unknown": 1}]"#;
        let images = RuntimeImages::parse(text).expect("parses");
        let (r, v) = images.resolve("python3.8").expect("resolves");
        assert_eq!(r.file_name_suffix, ".py");
        assert_eq!(v.image_pull_secrets, ["regcred"]);
        let inst = v.phase("installation").expect("installation phase");
        assert_eq!(inst.env.get("PIP_INDEX_URL").map(String::as_str), Some("x"));
        assert_eq!(inst.secrets, ["pip-creds"]);
        assert_eq!(
            r.liveness_probe_info
                .as_ref()
                .and_then(|p| p.get("initialDelaySeconds")),
            Some(&serde_json::json!(5))
        );
        assert!(images.resolve("python3.9").is_none());
        assert_eq!(images.names(), ["python3.8"]);
    }

    #[test]
    fn yaml_is_accepted_and_errors_are_clear() {
        let images = RuntimeImages::parse("- id: nodejs\n  versions:\n  - version: '20'\n")
            .expect("yaml parses");
        assert_eq!(images.names(), ["nodejs20"]);
        assert!(matches!(
            RuntimeImages::parse("{}"),
            Err(ImagesError::Syntax(_))
        ));
        assert!(matches!(
            RuntimeImages::parse("[{\"versions\": []}]"),
            Err(ImagesError::Entry { index: 0, .. })
        ));
    }

    #[test]
    fn defaults_cover_the_embedded_catalogue() {
        let d = RuntimeImages::defaults();
        let embedded: Vec<String> = Catalogue::embedded()
            .names()
            .into_iter()
            .filter(|n| n != "custom")
            .collect();
        assert_eq!(d.names(), embedded);
        let (_, py) = d.resolve("python3.11").expect("python3.11");
        assert_eq!(
            py.phase("runtime").map(|p| p.image.as_str()),
            Some("ghcr.io/kubeless-rs/runtime-python:3.11")
        );
        assert!(py.phase("installation").is_some());
        let (_, go) = d.resolve("go1.22").expect("go1.22");
        assert!(go.phase("compilation").is_some());
        let (cat, unsupported) = d.catalogue();
        assert!(unsupported.is_empty());
        assert_eq!(cat.names(), embedded);
        assert_eq!(language_of("nodejs_distroless"), Some(Language::Nodejs));
        assert_eq!(language_of("dotnetcore"), None);
    }
}
