//! OCI and Docker schema 2 manifests and image configs, and the pure
//! decisions of a build: the tag, the new config and the new manifest.
//!
//! The new image keeps the base's manifest format (OCI or Docker schema 2)
//! so its layer media types stay consistent. The base config is kept as a
//! JSON value and only the fields we own are changed, so whatever else the
//! base set (user, volumes, history) survives. `serde_json` maps are sorted,
//! so the same inputs always serialise to the same bytes and digests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::BuildError;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// What a manifest GET accepts.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Version of the image layout this builder produces; part of every tag, so
/// a change in how images are assembled gives new tags.
pub const FORMAT: &str = "kubeless-image/1";

/// Config labels the builder writes.
pub const LABEL_BUILD_KEY: &str = "io.kubeless.build-key";
pub const LABEL_FUNCTION: &str = "io.kubeless.function";
pub const LABEL_RUNTIME: &str = "io.kubeless.runtime";
pub const LABEL_ARTIFACT: &str = "io.kubeless.artifact-key";
pub const LABEL_BASE: &str = "io.kubeless.base-digest";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// The platform this process runs on, in OCI terms.
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    Platform {
        architecture: architecture.to_string(),
        os: "linux".to_string(),
        variant: None,
    }
}

/// Pick the entry of an index for `platform`.
pub fn select_platform<'a>(index: &'a Index, platform: &Platform) -> Option<&'a Descriptor> {
    index.manifests.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == platform.os && p.architecture == platform.architecture)
    })
}

/// Everything that decides a function image's content, hashed into its tag.
#[derive(Debug, Clone, Serialize)]
pub struct TagInputs<'a> {
    pub format: &'a str,
    /// The plan's artifact key: code, dependencies, content type, module,
    /// runtime language (and for Go the handler).
    pub artifact_key: &'a str,
    /// Digest of the base image manifest.
    pub base_digest: &'a str,
    /// The full runtime string (`python3.11`).
    pub runtime: &'a str,
    /// The environment written into the image config, in order.
    pub env: &'a [(String, String)],
    pub entrypoint: &'a [String],
    pub working_dir: &'a str,
}

/// The tag of a function image: lowercase hex SHA-256 of the canonical
/// JSON of [`TagInputs`]. Stricter than Kubeless's `sha256(function + deps)`:
/// a new base image, runtime or environment also gives a new tag.
pub fn tag_for(inputs: &TagInputs<'_>) -> String {
    // Serialising a struct of strings cannot fail; an empty vector would
    // still hash to a stable value.
    let bytes = serde_json::to_vec(inputs).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// What the new image config says about the function.
#[derive(Debug, Clone)]
pub struct ConfigChanges<'a> {
    pub env: &'a [(String, String)],
    pub entrypoint: &'a [String],
    pub working_dir: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub diff_id: &'a str,
    /// What the history entry says, e.g. `kubeless function build default/hello`.
    pub created_by: &'a str,
}

/// The new image config: the base's, with the function's environment merged
/// over the base's (same name replaced in place), the entrypoint set and
/// the command cleared, the working directory, labels, one more diff id and
/// one more history entry. `created` is fixed so the config is reproducible.
pub fn derive_config(base: &Value, c: &ConfigChanges<'_>) -> Result<Value, String> {
    let mut cfg = base.clone();
    let obj = cfg
        .as_object_mut()
        .ok_or("the base image config is not a JSON object")?;
    let created = obj
        .get("created")
        .cloned()
        .unwrap_or(json!("1970-01-01T00:00:00Z"));
    obj.entry("architecture")
        .or_insert(json!(host_platform().architecture));
    obj.entry("os").or_insert(json!("linux"));
    let config = obj
        .entry("config")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("the base image config's \"config\" is not an object")?;
    let mut env: Vec<(String, String)> = config
        .get("Env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| {
                    let (k, v) = s.split_once('=').unwrap_or((s, ""));
                    (k.to_string(), v.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    for (k, v) in c.env {
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    config.insert(
        "Env".into(),
        Value::Array(env.iter().map(|(k, v)| json!(format!("{k}={v}"))).collect()),
    );
    config.insert("Entrypoint".into(), json!(c.entrypoint));
    config.insert("Cmd".into(), Value::Null);
    config.insert("WorkingDir".into(), json!(c.working_dir));
    let labels = config.entry("Labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    if let Some(l) = labels.as_object_mut() {
        for (k, v) in c.labels {
            l.insert(k.clone(), json!(v));
        }
    }
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}))
        .as_object_mut()
        .ok_or("the base image config's \"rootfs\" is not an object")?;
    match rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
        Some(ids) => ids.push(json!(c.diff_id)),
        None => {
            rootfs.insert("diff_ids".into(), json!([c.diff_id]));
        }
    }
    let history = obj.entry("history").or_insert_with(|| json!([]));
    if let Some(h) = history.as_array_mut() {
        h.push(json!({"created": created, "created_by": c.created_by}));
    }
    Ok(cfg)
}

/// The new manifest: the base's layers plus the function layer, in the
/// base manifest's format.
pub fn derive_manifest(
    base: &Manifest,
    base_media_type: &str,
    config_digest: &str,
    config_size: u64,
    layer_digest: &str,
    layer_size: u64,
    annotations: BTreeMap<String, String>,
) -> Manifest {
    let docker = base_media_type == DOCKER_MANIFEST;
    let mut layers = base.layers.clone();
    layers.push(Descriptor {
        media_type: if docker {
            DOCKER_LAYER_GZIP
        } else {
            OCI_LAYER_GZIP
        }
        .to_string(),
        digest: layer_digest.to_string(),
        size: layer_size,
        platform: None,
        annotations: None,
        urls: None,
    });
    Manifest {
        schema_version: 2,
        media_type: Some(
            if docker {
                DOCKER_MANIFEST
            } else {
                OCI_MANIFEST
            }
            .to_string(),
        ),
        config: Descriptor {
            media_type: if docker { DOCKER_CONFIG } else { OCI_CONFIG }.to_string(),
            digest: config_digest.to_string(),
            size: config_size,
            platform: None,
            annotations: None,
            urls: None,
        },
        layers,
        // Docker schema 2 has no annotations.
        annotations: (!docker && !annotations.is_empty()).then_some(annotations),
    }
}

/// A fetched manifest: an image or an index of images.
pub enum Fetched {
    Image(Box<Manifest>),
    Index(Index),
}

/// Parse a manifest body by its media type (the body's own `mediaType`,
/// else the response header, else its shape); returns the media type too.
pub fn parse_manifest(
    body: &[u8],
    header_type: &str,
    reference: &str,
) -> Result<(Fetched, String), BuildError> {
    let bad = |reason: String| BuildError::Manifest {
        reference: reference.to_string(),
        reason,
    };
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("manifest is not JSON: {e}")))?;
    let media = v
        .get("mediaType")
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            header_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        });
    let media = if media.is_empty() || media == "application/json" {
        // OCI manifests may omit mediaType; tell them apart by shape.
        if v.get("manifests").is_some() {
            OCI_INDEX
        } else {
            OCI_MANIFEST
        }
        .to_string()
    } else {
        media
    };
    match media.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => serde_json::from_value(v)
            .map(|m| (Fetched::Image(Box::new(m)), media.clone()))
            .map_err(|e| bad(format!("malformed manifest: {e}"))),
        OCI_INDEX | DOCKER_LIST => serde_json::from_value(v)
            .map(|i| (Fetched::Index(i), media.clone()))
            .map_err(|e| bad(format!("malformed index: {e}"))),
        other => Err(bad(format!(
            "unsupported manifest type {other:?} (schema 1 images are not supported; push the base image again with a current client)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base_config() -> Value {
        json!({
            "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/usr/bin", "LANG=C.UTF-8"], "Cmd": ["python3"], "User": "1000"},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]},
            "history": [{"created_by": "base"}]
        })
    }

    #[test]
    fn config_merges_env_and_appends_the_layer() {
        let env = vec![
            ("FUNC_HANDLER".to_string(), "foo".to_string()),
            ("PATH".to_string(), "/usr/local/bin:/usr/bin".to_string()),
        ];
        let labels = BTreeMap::from([(LABEL_BUILD_KEY.to_string(), "t".to_string())]);
        let ep = vec!["/usr/local/bin/kubeless-runtime".to_string()];
        let changes = ConfigChanges {
            env: &env,
            entrypoint: &ep,
            working_dir: "/kubeless",
            labels: &labels,
            diff_id: "sha256:bb",
            created_by: "kubeless function build default/hello",
        };
        let c = derive_config(&base_config(), &changes).unwrap();
        assert_eq!(
            c["config"]["Env"],
            json!([
                "PATH=/usr/local/bin:/usr/bin",
                "LANG=C.UTF-8",
                "FUNC_HANDLER=foo"
            ])
        );
        assert_eq!(
            c["config"]["Entrypoint"],
            json!(["/usr/local/bin/kubeless-runtime"])
        );
        assert_eq!(c["config"]["Cmd"], Value::Null);
        assert_eq!(c["config"]["User"], json!("1000"));
        assert_eq!(c["config"]["Labels"][LABEL_BUILD_KEY], json!("t"));
        assert_eq!(c["rootfs"]["diff_ids"], json!(["sha256:aa", "sha256:bb"]));
        assert_eq!(c["history"][1]["created"], json!("2024-01-01T00:00:00Z"));
        // Reproducible bytes.
        let again = derive_config(&base_config(), &changes).unwrap();
        assert_eq!(
            serde_json::to_vec(&c).unwrap(),
            serde_json::to_vec(&again).unwrap()
        );
    }

    #[test]
    fn tag_changes_with_every_input() {
        let env = vec![("A".to_string(), "1".to_string())];
        let ep = vec!["/x".to_string()];
        let base = TagInputs {
            format: FORMAT,
            artifact_key: "k",
            base_digest: "sha256:1",
            runtime: "python3.11",
            env: &env,
            entrypoint: &ep,
            working_dir: "/kubeless",
        };
        let t = tag_for(&base);
        assert_eq!(t.len(), 64);
        assert_eq!(t, tag_for(&base.clone()));
        let env2 = vec![("A".to_string(), "2".to_string())];
        for other in [
            TagInputs {
                artifact_key: "k2",
                ..base.clone()
            },
            TagInputs {
                base_digest: "sha256:2",
                ..base.clone()
            },
            TagInputs {
                runtime: "python3.12",
                ..base.clone()
            },
            TagInputs {
                env: &env2,
                ..base.clone()
            },
        ] {
            assert_ne!(tag_for(&other), t);
        }
    }

    #[test]
    fn manifest_keeps_the_base_format() {
        let base = Manifest {
            schema_version: 2,
            media_type: Some(DOCKER_MANIFEST.into()),
            config: Descriptor {
                media_type: DOCKER_CONFIG.into(),
                digest: "sha256:c".into(),
                size: 1,
                platform: None,
                annotations: None,
                urls: None,
            },
            layers: vec![],
            annotations: None,
        };
        let m = derive_manifest(
            &base,
            DOCKER_MANIFEST,
            "sha256:n",
            2,
            "sha256:l",
            3,
            BTreeMap::new(),
        );
        assert_eq!(m.layers[0].media_type, DOCKER_LAYER_GZIP);
        assert_eq!(m.config.media_type, DOCKER_CONFIG);
        let m = derive_manifest(
            &base,
            OCI_MANIFEST,
            "sha256:n",
            2,
            "sha256:l",
            3,
            BTreeMap::from([("a".into(), "b".into())]),
        );
        assert_eq!(m.media_type.as_deref(), Some(OCI_MANIFEST));
        assert!(m.annotations.is_some());
    }

    #[test]
    fn schema1_is_refused_clearly() {
        let body = br#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        let e = parse_manifest(body, "", "r").err().unwrap().to_string();
        assert!(e.contains("schema 1"), "{e}");
    }
}
