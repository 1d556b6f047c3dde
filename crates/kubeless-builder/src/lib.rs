//! Daemonless OCI image builds for functions, and the pieces needed to run
//! such an image without a container runtime.
//!
//! An image is the runtime's base image plus one layer holding `/kubeless`
//! (the function's decoded code, installed dependencies and compiled
//! artefact, as the artifact cache prepares them) and an image config with
//! the function's environment and the runtime host as entrypoint. Nothing
//! here runs a daemon: images are assembled in memory and pushed over the
//! Distribution HTTP API.
//!
//! The pure parts decide; the registry client does:
//! - [`reference`]: image references (`host[:port]/path[:tag][@digest]`),
//!   validated with the Distribution grammar;
//! - [`oci`]: manifest, index and config types, the new image's config and
//!   manifest derived from the base's, and the tag rule ([`oci::tag_for`]);
//! - [`layer`]: a deterministic `tar.gz` layer from a directory (fixed
//!   timestamps, owners and ordering, so equal input gives equal digests);
//! - [`auth`]: credentials from a docker config JSON
//!   (`.dockerconfigjson`, `~/.docker/config.json`);
//! - [`registry`]: the HTTP client: Basic and Bearer token auth, bounded
//!   retries on 5xx and connection errors, HTTPS against the system's CA
//!   roots, blob existence checks, cross-repository mounts, uploads,
//!   manifests;
//! - [`function`]: a function image's environment and entrypoint from its
//!   plan, and the build request a Kubernetes build Job receives;
//! - [`build`]: resolve a build (base manifest, tag), check what the
//!   registry already has, push blobs first and the manifest last, base
//!   layers mounted (from the base's repository, or from the registry's
//!   base cache when the base lives on another registry) rather than sent;
//! - [`unpack`]: apply image layers to a directory safely (no `..`, no
//!   absolute paths, no writes through links, whiteouts honoured).

pub mod auth;
pub mod build;
pub mod function;
pub mod layer;
pub mod oci;
pub mod reference;
pub mod registry;
pub mod unpack;

use std::path::PathBuf;

/// Why a build, a push, a pull or an unpack failed. Every variant names the
/// registry or the file involved, so a user sees what to fix.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid build request: {0}")]
    Request(String),
    #[error("invalid image reference {reference:?}: {reason}")]
    Reference { reference: String, reason: String },
    #[error("CA file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("create the HTTPS client (system CA roots)")]
    HttpClient {
        #[source]
        source: reqwest::Error,
    },
    #[error("read docker config {path}: {reason}")]
    DockerConfig { path: String, reason: String },
    #[error(
        "registry {registry} refused the credentials{user} for {repository} (401 Unauthorized){hint}"
    )]
    Unauthorized {
        registry: String,
        repository: String,
        /// ` of user "x"` or empty.
        user: String,
        hint: String,
    },
    #[error("registry {registry} denied {action} on {repository} (403 Forbidden)")]
    Forbidden {
        registry: String,
        repository: String,
        action: &'static str,
    },
    #[error("registry {registry} is unreachable ({action}, {attempts} attempts)")]
    Unreachable {
        registry: String,
        action: &'static str,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    #[error("registry {registry} keeps failing ({action}: {status} after {attempts} attempts)")]
    ServerError {
        registry: String,
        action: &'static str,
        status: u16,
        attempts: u32,
    },
    #[error("registry {registry}: {action} answered {status}: {body}")]
    Registry {
        registry: String,
        action: &'static str,
        status: u16,
        body: String,
    },
    #[error("image {reference} does not exist")]
    NotFound { reference: String },
    #[error("image {reference}: {reason}")]
    Manifest { reference: String, reason: String },
    #[error("blob {digest} from {registry} has digest {actual}")]
    DigestMismatch {
        registry: String,
        digest: String,
        actual: String,
    },
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error(
        "tag {reference} already exists with different content ({reason}); refusing to overwrite it"
    )]
    TagCollision { reference: String, reason: String },
    #[error("layer entry {entry:?} refused: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    #[error("read image layer {digest}")]
    LayerRead {
        digest: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| BuildError::Io {
            action,
            path,
            source,
        }
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
