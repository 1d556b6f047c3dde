//! `kubeless push-rootfs` (hidden): push a directory as a one-layer image
//! with no base, without a daemon. `scripts/k8s-images.sh` assembles the
//! project's images from this machine's files and pushes them with it.
//!
//! Flow: validate every flag (reference, `NAME=VALUE` pairs, an absolute
//! working directory, the docker config) before anything is sent; with
//! `--build-key`, read the tag's config from the registry and stop when it
//! carries the same key (`--check` only says so, for callers that want to
//! skip assembling the directory); otherwise make the layer
//! ([`layer::from_root`]), upload the layer and config unless the
//! repository has them, and put the manifest last, so a failed push never
//! leaves a tag pointing at missing blobs.
//!
//! The image is reproducible: the layer is deterministic, and the config
//! and manifest ([`assemble`]) have a fixed creation time and sorted JSON,
//! so the same directory and flags give the same digests. A tag is
//! overwritten when the content changed: these are development images
//! (`kubeless-rs/kubeless:0.1.0` follows the working tree), not the
//! content-addressed function images `kubeless function build` pushes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use kubeless_builder::layer::{self, Layer};
use kubeless_builder::oci::{self, ConfigChanges, Descriptor, Manifest};
use kubeless_builder::reference::ImageRef;
use kubeless_builder::registry::{ClientOptions, ExtraRoots, RegistryClient};
use kubeless_builder::sha256_digest;
use serde_json::{Value, json};

use super::build::{async_runtime, docker_config};
use crate::log;

/// `kubeless push-rootfs`.
#[derive(Debug, Args)]
pub struct PushRootfsArgs {
    /// The image's root filesystem (becomes the one layer)
    #[arg(long, required_unless_present = "check")]
    rootfs: Option<PathBuf>,
    /// Where to push: HOST[:PORT]/REPOSITORY:TAG
    #[arg(long)]
    image: String,
    /// The entrypoint, one word per flag
    #[arg(long, allow_hyphen_values = true)]
    entrypoint: Vec<String>,
    /// NAME=VALUE in the image's environment (repeat, in order)
    #[arg(long)]
    env: Vec<String>,
    /// The working directory (absolute)
    #[arg(long, default_value = "/")]
    workdir: String,
    /// The user the image runs as (`1000`, `65535:65535`); empty for root
    #[arg(long, default_value = "")]
    user: String,
    /// NAME=VALUE label of the image config (repeat)
    #[arg(long = "label")]
    labels: Vec<String>,
    /// A digest of what the image is made from, kept as the label io.kubeless.build-key: a tag holding the same key is up to date and not pushed again
    #[arg(long = "build-key")]
    build_key: Option<String>,
    /// Only print `up-to-date` or `outdated`: whether the tag holds an image with --build-key
    #[arg(long, requires = "build_key", conflicts_with = "rootfs")]
    check: bool,
    /// Speak plain HTTP to the registry
    #[arg(long)]
    insecure: bool,
    /// Docker config JSON with the registry credentials; default ~/.docker/config.json when it exists
    #[arg(long = "docker-config", env = "KUBELESS_DOCKER_CONFIG")]
    docker_config: Option<PathBuf>,
    /// PEM file of CA certificates trusted in addition to the system's roots
    #[arg(long = "ca-file", env = "KUBELESS_REGISTRY_CA_FILE")]
    ca_file: Option<PathBuf>,
}

/// What the image config says, from the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ImageSpec {
    entrypoint: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: String,
    user: String,
    labels: BTreeMap<String, String>,
}

/// `NAME=VALUE` with a non-empty name.
fn pair(flag: &str, s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("--{flag} {s:?} is not NAME=VALUE"),
    }
}

impl ImageSpec {
    fn from_args(a: &PushRootfsArgs) -> anyhow::Result<ImageSpec> {
        let env = a
            .env
            .iter()
            .map(|e| pair("env", e))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut labels = a
            .labels
            .iter()
            .map(|l| pair("label", l))
            .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
        if let Some(key) = &a.build_key {
            if key.is_empty() {
                bail!("--build-key is empty");
            }
            labels.insert(oci::LABEL_BUILD_KEY.to_string(), key.clone());
        }
        if !a.workdir.starts_with('/') {
            bail!("--workdir {:?} is not an absolute path", a.workdir);
        }
        Ok(ImageSpec {
            entrypoint: a.entrypoint.clone(),
            env,
            working_dir: a.workdir.clone(),
            user: a.user.clone(),
            labels,
        })
    }
}

/// The config and manifest (OCI) of a one-layer image, as pushed: pure and
/// deterministic.
fn assemble(spec: &ImageSpec, layer: &Layer) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let mut inner = serde_json::Map::new();
    if !spec.user.is_empty() {
        inner.insert("User".into(), json!(spec.user));
    }
    let scratch = json!({
        "architecture": oci::host_platform().architecture,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": Value::Object(inner),
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    });
    let config = oci::derive_config(
        &scratch,
        &ConfigChanges {
            env: &spec.env,
            entrypoint: &spec.entrypoint,
            working_dir: &spec.working_dir,
            labels: &spec.labels,
            diff_id: &layer.diff_id,
            created_by: "kubeless push-rootfs",
        },
    )
    .map_err(anyhow::Error::msg)?;
    let config = serde_json::to_vec(&config)?;
    let descriptor = |media_type: &str, digest: String, size: usize| Descriptor {
        media_type: media_type.to_string(),
        digest,
        size: size as u64,
        platform: None,
        annotations: None,
        urls: None,
    };
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::OCI_MANIFEST.to_string()),
        config: descriptor(oci::OCI_CONFIG, sha256_digest(&config), config.len()),
        layers: vec![descriptor(
            oci::OCI_LAYER_GZIP,
            layer.digest.clone(),
            layer.blob.len(),
        )],
        annotations: None,
    };
    Ok((config, serde_json::to_vec(&manifest)?))
}

/// The build key of the image under the tag, if there is one.
async fn current_key(client: &RegistryClient, image: &ImageRef) -> anyhow::Result<Option<String>> {
    let Some(raw) = client.get_manifest(image).await? else {
        return Ok(None);
    };
    let (fetched, _) = oci::parse_manifest(&raw.body, &raw.media_type, &image.to_string())?;
    let oci::Fetched::Image(m) = fetched else {
        return Ok(None);
    };
    let config = client
        .get_config(&image.host, &image.repository, &m.config.digest)
        .await?;
    Ok(config
        .pointer(&format!(
            "/config/Labels/{}",
            oci::LABEL_BUILD_KEY.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .map(str::to_string))
}

pub fn run(a: PushRootfsArgs) -> anyhow::Result<()> {
    let image = ImageRef::parse(&a.image)?;
    if image.tag.is_none() || image.digest.is_some() {
        bail!("--image {} must name a tag and no digest", a.image);
    }
    let spec = ImageSpec::from_args(&a)?;
    let rootfs = match &a.rootfs {
        Some(dir) if !dir.is_dir() => bail!("--rootfs {} is not a directory", dir.display()),
        other => other.clone(),
    };
    let extra_roots = match &a.ca_file {
        Some(p) => ExtraRoots::load(p)?,
        None => ExtraRoots::default(),
    };
    let client = RegistryClient::with_extra_roots(
        ClientOptions {
            credentials: docker_config(a.docker_config.as_deref())?,
            insecure: if a.insecure {
                BTreeSet::from([image.host.clone()])
            } else {
                BTreeSet::new()
            },
            retry: Default::default(),
        },
        extra_roots,
    )?;
    async_runtime()?.block_on(async {
        if let Some(key) = &a.build_key {
            let same = current_key(&client, &image).await?.as_deref() == Some(key.as_str());
            if a.check {
                println!("{}", if same { "up-to-date" } else { "outdated" });
                return Ok(());
            }
            if same {
                log::log(
                    log::Level::Info,
                    &format!("Image {image} is up to date (build key {key})"),
                );
                println!("{image}");
                return Ok(());
            }
        }
        let Some(dir) = rootfs else {
            bail!("--rootfs is required");
        };
        let layer = tokio::task::spawn_blocking(move || layer::from_root(&dir))
            .await
            .context("build the layer")??;
        let (config, manifest) = assemble(&spec, &layer)?;
        let (mut uploaded, mut present) = (0, 0);
        for (digest, blob) in [
            (layer.digest.clone(), layer.blob.clone()),
            (sha256_digest(&config), config.into()),
        ] {
            if client
                .blob_exists(&image.host, &image.repository, &digest)
                .await?
            {
                present += 1;
            } else {
                client
                    .upload_blob(&image.host, &image.repository, &digest, blob)
                    .await
                    .with_context(|| format!("push {image}"))?;
                uploaded += 1;
            }
        }
        let digest = client
            .put_manifest(&image, oci::OCI_MANIFEST, manifest.into())
            .await
            .with_context(|| format!("push {image}"))?;
        log::log(
            log::Level::Info,
            &format!(
                "Image {image} pushed ({digest}; layer {} bytes compressed; {uploaded} blobs uploaded, {present} already there)",
                layer.blob.len()
            ),
        );
        println!("{image}");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: PushRootfsArgs,
    }

    fn args(extra: &[&str]) -> anyhow::Result<PushRootfsArgs> {
        let mut argv = vec!["push-rootfs", "--image", "127.0.0.1:5000/kubeless-rs/x:1"];
        argv.extend_from_slice(extra);
        Ok(Cli::try_parse_from(argv)?.args)
    }

    fn layer() -> Layer {
        Layer {
            blob: b"layer bytes".to_vec().into(),
            digest: sha256_digest(b"layer bytes"),
            diff_id: "sha256:0000000000000000000000000000000000000000000000000000000000000001"
                .into(),
        }
    }

    #[test]
    fn config_and_manifest_from_the_flags() {
        let a = args(&[
            "--rootfs",
            "/tmp",
            "--entrypoint",
            "/usr/local/bin/kubeless-runtime",
            "--entrypoint",
            "--flag",
            "--env",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "--env",
            "HOME=/tmp",
            "--env",
            "EMPTY=",
            "--workdir",
            "/kubeless",
            "--user",
            "1000",
            "--label",
            "org.opencontainers.image.source=kubeless",
            "--build-key",
            "abc",
        ])
        .unwrap();
        let spec = ImageSpec::from_args(&a).unwrap();
        let (config, manifest) = assemble(&spec, &layer()).unwrap();
        let c: Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(
            c,
            json!({
                "architecture": oci::host_platform().architecture,
                "os": "linux",
                "created": "1970-01-01T00:00:00Z",
                "config": {
                    "User": "1000",
                    "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "EMPTY="],
                    "Entrypoint": ["/usr/local/bin/kubeless-runtime", "--flag"],
                    "Cmd": null,
                    "WorkingDir": "/kubeless",
                    "Labels": {
                        "io.kubeless.build-key": "abc",
                        "org.opencontainers.image.source": "kubeless",
                    },
                },
                "rootfs": {"type": "layers", "diff_ids": [layer().diff_id]},
                "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "kubeless push-rootfs"}],
            })
        );
        let m: Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(
            m,
            json!({
                "schemaVersion": 2,
                "mediaType": oci::OCI_MANIFEST,
                "config": {
                    "mediaType": oci::OCI_CONFIG,
                    "digest": sha256_digest(&config),
                    "size": config.len(),
                },
                "layers": [{
                    "mediaType": oci::OCI_LAYER_GZIP,
                    "digest": layer().digest,
                    "size": 11,
                }],
            })
        );
        // Reproducible: the same inputs give the same bytes.
        assert_eq!(assemble(&spec, &layer()).unwrap(), (config, manifest));
    }

    #[test]
    fn defaults_run_as_root_in_slash() {
        let spec = ImageSpec::from_args(&args(&["--rootfs", "/tmp"]).unwrap()).unwrap();
        let (config, _) = assemble(&spec, &layer()).unwrap();
        let c: Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(c["config"].get("User"), None);
        assert_eq!(c["config"]["WorkingDir"], "/");
        assert_eq!(c["config"]["Entrypoint"], json!([]));
        assert_eq!(c["config"]["Labels"], json!({}));
    }

    #[test]
    fn bad_flags_are_refused_before_anything_is_sent() {
        let refused = |extra: &[&str]| {
            args(extra)
                .and_then(|a| ImageSpec::from_args(&a))
                .unwrap_err()
                .to_string()
        };
        assert!(refused(&["--rootfs", "/tmp", "--env", "NOVALUE"]).contains("NAME=VALUE"));
        assert!(refused(&["--rootfs", "/tmp", "--label", "=x"]).contains("NAME=VALUE"));
        assert!(refused(&["--rootfs", "/tmp", "--workdir", "rel"]).contains("absolute"));
        assert!(refused(&["--rootfs", "/tmp", "--build-key", ""]).contains("empty"));
        // --check needs a key and reads no directory.
        assert!(args(&["--check"]).is_err());
        assert!(args(&["--check", "--build-key", "k", "--rootfs", "/tmp"]).is_err());
        assert!(args(&["--check", "--build-key", "k"]).is_ok());
        // Without --check a directory is required.
        assert!(args(&[]).is_err());
    }
}
