//! A function image build, in three steps so nothing expensive happens
//! when the registry already has the image:
//!
//! 1. [`resolve`]: fetch the base image's manifest and config (small JSON;
//!    base layers are never downloaded), compute the tag.
//! 2. [`check`]: is the tag already in the target repository? With the
//!    same build key (the tag is written into the image's labels) the image
//!    is up to date and nothing is built or pushed; with another key the tag
//!    was written by something else, and the build is refused rather than
//!    overwriting it.
//! 3. [`push`]: make sure every blob is in the target repository: base
//!    layers are checked (HEAD) and, when missing, mounted from the base's
//!    repository on the same registry (copied only across registries); the
//!    function layer and config are uploaded if missing; the manifest is put
//!    last, so a failed push never leaves a tag pointing at missing blobs.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;

use crate::layer::Layer;
use crate::oci::{self, ConfigChanges, Manifest, TagInputs};
use crate::reference::{Destination, ImageRef};
use crate::registry::{Mount, RegistryClient};
use crate::{BuildError, sha256_digest};

/// Largest base layer copied between two registries (held in memory).
const MAX_COPY: u64 = 2 * 1024 * 1024 * 1024;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub namespace: String,
    pub name: String,
    pub destination: Destination,
    pub base: ImageRef,
    pub artifact_key: String,
    pub runtime: String,
    /// The image config's environment, `$(VAR)` references already expanded.
    pub env: Vec<(String, String)>,
    pub entrypoint: Vec<String>,
    pub working_dir: String,
}

/// A build whose base is known and whose tag is computed.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub spec: BuildSpec,
    pub tag: String,
    pub target: ImageRef,
    pub base_manifest: Manifest,
    pub base_media_type: String,
    pub base_digest: String,
    pub base_config: Value,
}

/// What the registry already has under the tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    Absent,
    /// Built from the same inputs.
    UpToDate {
        digest: String,
    },
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    pub reference: String,
    pub manifest_digest: String,
    pub uploaded: u64,
    pub mounted: u64,
    /// Blobs the target repository already had.
    pub present: u64,
}

/// Step 1: the base manifest and config, and the tag.
pub async fn resolve(client: &RegistryClient, spec: BuildSpec) -> Result<Resolved, BuildError> {
    let (base_manifest, raw) = client.resolve(&spec.base).await?;
    let base_config = client
        .get_config(
            &spec.base.host,
            &spec.base.repository,
            &base_manifest.config.digest,
        )
        .await?;
    let tag = oci::tag_for(&TagInputs {
        format: oci::FORMAT,
        artifact_key: &spec.artifact_key,
        base_digest: &raw.digest,
        runtime: &spec.runtime,
        env: &spec.env,
        entrypoint: &spec.entrypoint,
        working_dir: &spec.working_dir,
    });
    let target = spec
        .destination
        .function_image(&spec.namespace, &spec.name, &tag)?;
    Ok(Resolved {
        spec,
        tag,
        target,
        base_manifest,
        base_media_type: raw.media_type,
        base_digest: raw.digest,
        base_config,
    })
}

/// Step 2: whether the tag exists, and with what.
pub async fn check(client: &RegistryClient, r: &Resolved) -> Result<Existing, BuildError> {
    let Some(raw) = client.get_manifest(&r.target).await? else {
        return Ok(Existing::Absent);
    };
    let collision = |reason: String| BuildError::TagCollision {
        reference: r.target.to_string(),
        reason,
    };
    let (fetched, _) = oci::parse_manifest(&raw.body, &raw.media_type, &r.target.to_string())?;
    let oci::Fetched::Image(m) = fetched else {
        return Err(collision(
            "it is an image index, not a function image".into(),
        ));
    };
    let config = client
        .get_config(&r.target.host, &r.target.repository, &m.config.digest)
        .await?;
    let key = config
        .pointer(&format!(
            "/config/Labels/{}",
            oci::LABEL_BUILD_KEY.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .unwrap_or("");
    if key == r.tag {
        Ok(Existing::UpToDate { digest: raw.digest })
    } else if key.is_empty() {
        Err(collision("it was not built by kubeless".into()))
    } else {
        Err(collision(format!("its build key is {key}")))
    }
}

/// The config and manifest bytes of the new image (pure).
pub fn assemble(r: &Resolved, layer: &Layer) -> Result<(Bytes, Bytes, String), BuildError> {
    let labels = BTreeMap::from([
        (oci::LABEL_BUILD_KEY.to_string(), r.tag.clone()),
        (
            oci::LABEL_FUNCTION.to_string(),
            format!("{}/{}", r.spec.namespace, r.spec.name),
        ),
        (oci::LABEL_RUNTIME.to_string(), r.spec.runtime.clone()),
        (oci::LABEL_ARTIFACT.to_string(), r.spec.artifact_key.clone()),
        (oci::LABEL_BASE.to_string(), r.base_digest.clone()),
    ]);
    let created_by = format!(
        "kubeless function build {}/{}",
        r.spec.namespace, r.spec.name
    );
    let config = oci::derive_config(
        &r.base_config,
        &ConfigChanges {
            env: &r.spec.env,
            entrypoint: &r.spec.entrypoint,
            working_dir: &r.spec.working_dir,
            labels: &labels,
            diff_id: &layer.diff_id,
            created_by: &created_by,
        },
    )
    .map_err(|reason| BuildError::Manifest {
        reference: r.spec.base.to_string(),
        reason,
    })?;
    let config = Bytes::from(
        serde_json::to_vec(&config).map_err(|e| BuildError::Manifest {
            reference: r.spec.base.to_string(),
            reason: e.to_string(),
        })?,
    );
    let manifest = oci::derive_manifest(
        &r.base_manifest,
        &r.base_media_type,
        &sha256_digest(&config),
        config.len() as u64,
        &layer.digest,
        layer.blob.len() as u64,
        BTreeMap::from([(oci::LABEL_BUILD_KEY.to_string(), r.tag.clone())]),
    );
    let media_type = manifest
        .media_type
        .clone()
        .unwrap_or_else(|| oci::OCI_MANIFEST.to_string());
    let manifest =
        Bytes::from(
            serde_json::to_vec(&manifest).map_err(|e| BuildError::Manifest {
                reference: r.target.to_string(),
                reason: e.to_string(),
            })?,
        );
    Ok((config, manifest, media_type))
}

/// Step 3: push blobs, then the manifest.
pub async fn push(
    client: &RegistryClient,
    r: &Resolved,
    layer: &Layer,
) -> Result<PushReport, BuildError> {
    let before = client.stats();
    let (config, manifest, media_type) = assemble(r, layer)?;
    let host = &r.target.host;
    let repo = &r.target.repository;
    let mut present = 0;
    for base_layer in &r.base_manifest.layers {
        if client.blob_exists(host, repo, &base_layer.digest).await? {
            present += 1;
            continue;
        }
        let same_registry = r.spec.base.host == *host;
        if same_registry
            && client
                .mount_blob(host, repo, &base_layer.digest, &r.spec.base.repository)
                .await?
                == Mount::Mounted
        {
            continue;
        }
        // Another registry (or one that cannot mount): copy the blob.
        let blob = client
            .get_blob(
                &r.spec.base.host,
                &r.spec.base.repository,
                &base_layer.digest,
                MAX_COPY,
            )
            .await?;
        client
            .upload_blob(host, repo, &base_layer.digest, blob)
            .await?;
    }
    for (digest, blob) in [
        (&layer.digest, &layer.blob),
        (&sha256_digest(&config), &config),
    ] {
        if client.blob_exists(host, repo, digest).await? {
            present += 1;
        } else {
            client.upload_blob(host, repo, digest, blob.clone()).await?;
        }
    }
    let manifest_digest = client
        .put_manifest(&r.target, &media_type, manifest)
        .await?;
    let after = client.stats();
    Ok(PushReport {
        reference: r.target.to_string(),
        manifest_digest,
        uploaded: after.uploads - before.uploads,
        mounted: after.mounts - before.mounts,
        present,
    })
}
