//! A function image build, in three steps so nothing expensive happens
//! when the registry already has the image:
//!
//! 1. [`resolve`]: fetch the base image's manifest and config (small JSON;
//!    base layers are never downloaded here), compute the tag.
//! 2. [`check`]: is the tag already in the target repository? With the
//!    same build key (the tag is written into the image's labels) the image
//!    is up to date and nothing is built or pushed; with another key the tag
//!    was written by something else, and the build is refused rather than
//!    overwriting it.
//! 3. [`push`]: make sure every blob is in the target repository, then put
//!    the manifest last, so a failed push never leaves a tag pointing at
//!    missing blobs. Base layers are never downloaded or uploaded when the
//!    target registry already has them:
//!    - each is checked (`HEAD`) in the function's repository;
//!    - if missing, it is mounted (`POST ?mount=&from=`, no data sent) from
//!      the base's own repository when the base is on the target registry,
//!      else from the registry's base cache
//!      ([`Destination::base_cache`](crate::reference::Destination::base_cache),
//!      `<prefix>/kubeless_base_cache`);
//!    - only a layer the cache does not have yet is downloaded from the
//!      base's registry, uploaded once into the cache and mounted from
//!      there, so the next function on the same base mounts it with no
//!      data sent. The cache also gets the base's config and manifest
//!      (tagged `sha256-<hex>` by its digest) so it is a complete image that
//!      registry garbage collection keeps and skopeo can read;
//!    - a registry that cannot mount gets the layer uploaded into the
//!      function's repository (the only case a base layer is sent twice).
//!
//!    The function layer and config are uploaded if missing.

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
    /// The base manifest exactly as the registry served it (its digest is
    /// `base_digest`), copied as is into the base cache.
    pub base_manifest_raw: Bytes,
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
    /// Blobs uploaded into the function's repository.
    pub uploaded: u64,
    /// Blobs mounted into the function's repository (no data sent).
    pub mounted: u64,
    /// Blobs the function's repository already had.
    pub present: u64,
    /// The base cache used (a base on another registry), e.g.
    /// `reg/team/kubeless_base_cache:sha256-...`.
    pub base_cache: Option<String>,
    /// Blobs of the base downloaded from its registry and uploaded into the
    /// base cache by this push (0 once the cache has the base).
    pub cached: u64,
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
        base_manifest_raw: raw.body,
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

/// Where base layers missing from the function's repository come from.
enum BaseSource {
    /// The base's own repository, on the target registry.
    SameRegistry,
    /// The target registry's base cache (the base is on another registry).
    Cache(ImageRef),
}

impl BaseSource {
    fn of(r: &Resolved) -> Result<BaseSource, BuildError> {
        if r.spec.base.host == r.target.host {
            Ok(BaseSource::SameRegistry)
        } else {
            Ok(BaseSource::Cache(
                r.spec.destination.base_cache(&r.base_digest)?,
            ))
        }
    }

    fn repository<'a>(&'a self, r: &'a Resolved) -> &'a str {
        match self {
            BaseSource::SameRegistry => &r.spec.base.repository,
            BaseSource::Cache(cache) => &cache.repository,
        }
    }
}

/// Step 3: push blobs, then the manifest.
pub async fn push(
    client: &RegistryClient,
    r: &Resolved,
    layer: &Layer,
) -> Result<PushReport, BuildError> {
    let (config, manifest, media_type) = assemble(r, layer)?;
    let host = &r.target.host;
    let repo = &r.target.repository;
    let source = BaseSource::of(r)?;
    let from = source.repository(r);
    let (mut uploaded, mut mounted, mut present, mut cached) = (0, 0, 0, 0);
    for base_layer in &r.base_manifest.layers {
        let digest = &base_layer.digest;
        if client.blob_exists(host, repo, digest).await? {
            present += 1;
            continue;
        }
        if client.mount_blob(host, repo, digest, from).await? == Mount::Mounted {
            mounted += 1;
            continue;
        }
        // The source repository lacks the layer (or the registry cannot
        // mount): the only case its data is downloaded.
        let blob = client
            .get_blob(&r.spec.base.host, &r.spec.base.repository, digest, MAX_COPY)
            .await?;
        if let BaseSource::Cache(cache) = &source {
            client
                .upload_blob(host, &cache.repository, digest, blob.clone())
                .await?;
            cached += 1;
            if client.mount_blob(host, repo, digest, from).await? == Mount::Mounted {
                mounted += 1;
                continue;
            }
        }
        client.upload_blob(host, repo, digest, blob).await?;
        uploaded += 1;
    }
    if let BaseSource::Cache(cache) = &source {
        cached += complete_cache(client, r, cache).await?;
    }
    for (digest, blob) in [
        (&layer.digest, &layer.blob),
        (&sha256_digest(&config), &config),
    ] {
        if client.blob_exists(host, repo, digest).await? {
            present += 1;
        } else {
            client.upload_blob(host, repo, digest, blob.clone()).await?;
            uploaded += 1;
        }
    }
    let manifest_digest = client
        .put_manifest(&r.target, &media_type, manifest)
        .await?;
    Ok(PushReport {
        reference: r.target.to_string(),
        manifest_digest,
        uploaded,
        mounted,
        present,
        base_cache: match &source {
            BaseSource::Cache(cache) => Some(cache.to_string()),
            BaseSource::SameRegistry => None,
        },
        cached,
    })
}

/// Make the base cache hold the base as a complete image: its config blob
/// and its manifest under `sha256-<hex>` (the layers are there already).
/// Returns the blobs uploaded (0 or 1, the config). Done once per base and
/// registry; afterwards one manifest request confirms it.
async fn complete_cache(
    client: &RegistryClient,
    r: &Resolved,
    cache: &ImageRef,
) -> Result<u64, BuildError> {
    if client.get_manifest(cache).await?.is_some() {
        return Ok(0);
    }
    let mut uploaded = 0;
    let config = &r.base_manifest.config.digest;
    if !client
        .blob_exists(&cache.host, &cache.repository, config)
        .await?
    {
        let blob = client
            .get_blob(&r.spec.base.host, &r.spec.base.repository, config, MAX_COPY)
            .await?;
        client
            .upload_blob(&cache.host, &cache.repository, config, blob)
            .await?;
        uploaded += 1;
    }
    client
        .put_manifest(cache, &r.base_media_type, r.base_manifest_raw.clone())
        .await?;
    Ok(uploaded)
}
