//! A client for the Distribution (OCI registry) HTTP API, enough to push and
//! pull images without a daemon.
//!
//! - **Auth**: a request goes out without credentials until the registry
//!   answers 401; its `WWW-Authenticate` challenge decides: `Basic` sends the
//!   docker config's user and password from then on, `Bearer` fetches a
//!   token for the request's scopes from the named realm (with the same
//!   credentials). A second 401 is a clear error naming the registry and
//!   the user.
//! - **Retries**: connection errors, timeouts and 5xx answers are retried
//!   with exponential backoff, [`RetryPolicy::attempts`] times in all, then
//!   reported naming the registry. Nothing else is retried.
//! - **TLS**: hosts listed as insecure are spoken to over plain HTTP (what
//!   `function-registry-tls-verify: "false"` means); all others over HTTPS,
//!   verified against the system's CA roots as `rustls-native-certs` finds
//!   them (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set, else the
//!   distribution's bundle, e.g. `/etc/ssl/certs/ca-certificates.crt`), plus
//!   any [`ExtraRoots`] given (a private registry's CA). No roots are
//!   compiled in: like docker and skopeo, the machine's trust store decides.
//!
//! [`RegistryClient::stats`] counts blob uploads and mounts, so callers and
//! tests can prove that an unchanged rebuild uploads nothing.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::auth::{Credentials, DockerConfig};
use crate::oci::{self, Fetched, MANIFEST_ACCEPT, Manifest};
use crate::reference::{ImageRef, api_host};
use crate::{BuildError, sha256_digest};

/// Largest manifest or config accepted.
const MAX_SMALL: u64 = 4 * 1024 * 1024;

/// How often and how patiently a failing request is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Settings of a client, validated by the caller before use.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub credentials: DockerConfig,
    /// Registry hosts (`host[:port]`) spoken to over plain HTTP.
    pub insecure: BTreeSet<String>,
    pub retry: RetryPolicy,
}

/// CA certificates trusted in addition to the system's roots, e.g. the CA
/// of a private registry (`kubeless function build --ca-file`).
#[derive(Debug, Clone, Default)]
pub struct ExtraRoots {
    certs: Vec<reqwest::Certificate>,
    files: Vec<PathBuf>,
}

impl ExtraRoots {
    /// Read a PEM file holding one or more certificates; a file with none
    /// is refused, so a wrong path or format is caught before any request.
    pub fn load(path: &Path) -> Result<ExtraRoots, BuildError> {
        let mut roots = ExtraRoots::default();
        roots.add_file(path)?;
        Ok(roots)
    }

    pub fn add_file(&mut self, path: &Path) -> Result<(), BuildError> {
        let pem = std::fs::read(path).map_err(BuildError::io("read CA file", path))?;
        let bad = |reason: String| BuildError::CaFile {
            path: path.to_path_buf(),
            reason,
        };
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("it holds no PEM certificate".into()));
        }
        self.certs.extend(certs);
        self.files.push(path.to_path_buf());
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The files the certificates came from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// Counters of what a client sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Blobs uploaded (each one a full upload).
    pub uploads: u64,
    pub uploaded_bytes: u64,
    /// Blobs mounted from another repository of the same registry.
    pub mounts: u64,
    pub manifests_pushed: u64,
}

#[derive(Debug, Clone)]
enum HostAuth {
    Basic,
    /// Tokens per scope set.
    Bearer {
        tokens: HashMap<String, String>,
    },
}

/// What a mount request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    Mounted,
    /// The registry could not mount and opened an upload session instead.
    NotMounted,
}

/// A fetched manifest.
#[derive(Debug, Clone)]
pub struct RawManifest {
    pub body: Bytes,
    pub media_type: String,
    pub digest: String,
}

/// The Distribution API client. Cheap to share by reference; one per build.
pub struct RegistryClient {
    http: reqwest::Client,
    opts: ClientOptions,
    auth: Mutex<HashMap<String, HostAuth>>,
    uploads: AtomicU64,
    uploaded_bytes: AtomicU64,
    mounts: AtomicU64,
    manifests: AtomicU64,
}

impl RegistryClient {
    /// A client trusting the system's CA roots.
    pub fn new(opts: ClientOptions) -> Result<RegistryClient, BuildError> {
        RegistryClient::with_extra_roots(opts, ExtraRoots::default())
    }

    /// A client trusting the system's CA roots and `extra`.
    pub fn with_extra_roots(
        opts: ClientOptions,
        extra: ExtraRoots,
    ) -> Result<RegistryClient, BuildError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .user_agent(concat!("kubeless-builder/", env!("CARGO_PKG_VERSION")))
            // The workspace's reqwest also carries the compiled-in Mozilla
            // roots (webpki-roots) for other crates; registries are trusted
            // through the system's store only, as container tools do.
            .tls_built_in_webpki_certs(false)
            .tls_built_in_native_certs(true);
        for cert in extra.certs {
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|source| BuildError::HttpClient { source })?;
        Ok(RegistryClient {
            http,
            opts,
            auth: Mutex::default(),
            uploads: AtomicU64::new(0),
            uploaded_bytes: AtomicU64::new(0),
            mounts: AtomicU64::new(0),
            manifests: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> Stats {
        Stats {
            uploads: self.uploads.load(Ordering::Relaxed),
            uploaded_bytes: self.uploaded_bytes.load(Ordering::Relaxed),
            mounts: self.mounts.load(Ordering::Relaxed),
            manifests_pushed: self.manifests.load(Ordering::Relaxed),
        }
    }

    fn base_url(&self, host: &str) -> String {
        let scheme = if self.opts.insecure.contains(host) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", api_host(host))
    }

    fn credentials(&self, host: &str) -> Option<&Credentials> {
        self.opts.credentials.get(host)
    }

    /// Send a request built by `make` (given the base URL), with auth and
    /// retries as described in the module docs.
    async fn send(
        &self,
        host: &str,
        repository: &str,
        scopes: &[String],
        action: &'static str,
        make: &(dyn Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder + Sync),
    ) -> Result<reqwest::Response, BuildError> {
        let base = self.base_url(host);
        let policy = self.opts.retry;
        let attempts = policy.attempts.max(1);
        let mut attempt = 0;
        let mut challenged = false;
        let mut backoff = policy.initial_backoff;
        loop {
            attempt += 1;
            let mut rb = make(&self.http, &base);
            if let Some(h) = self.auth_header(host, scopes) {
                rb = rb.header(AUTHORIZATION, h);
            }
            let retry_reason = match rb.send().await {
                Err(e) => {
                    if attempt >= attempts {
                        return Err(BuildError::Unreachable {
                            registry: host.to_string(),
                            action,
                            attempts: attempt,
                            source: e,
                        });
                    }
                    format!("{e}")
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    if challenged {
                        return Err(self.unauthorized(host, repository));
                    }
                    challenged = true;
                    let challenge = resp
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    self.answer_challenge(host, repository, &challenge, scopes)
                        .await?;
                    // Answering a challenge is not a failed attempt.
                    attempt -= 1;
                    continue;
                }
                Ok(resp) if resp.status() == StatusCode::FORBIDDEN => {
                    return Err(BuildError::Forbidden {
                        registry: host.to_string(),
                        repository: repository.to_string(),
                        action,
                    });
                }
                Ok(resp) if resp.status().is_server_error() => {
                    if attempt >= attempts {
                        return Err(BuildError::ServerError {
                            registry: host.to_string(),
                            action,
                            status: resp.status().as_u16(),
                            attempts: attempt,
                        });
                    }
                    format!("{}", resp.status())
                }
                Ok(resp) => return Ok(resp),
            };
            tracing::debug!(registry = host, action, attempt, reason = %retry_reason, "retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(policy.max_backoff);
        }
    }

    fn unauthorized(&self, host: &str, repository: &str) -> BuildError {
        let (user, hint) = match self.credentials(host) {
            Some(c) => (
                format!(" of user {:?}", c.username),
                "; check the user and password for this registry in the docker config".to_string(),
            ),
            None => (
                String::new(),
                format!(
                    "; the registry needs credentials and the docker config has none for {host}"
                ),
            ),
        };
        BuildError::Unauthorized {
            registry: host.to_string(),
            repository: repository.to_string(),
            user,
            hint,
        }
    }

    fn auth_header(&self, host: &str, scopes: &[String]) -> Option<String> {
        let map = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(host)? {
            HostAuth::Basic => self.credentials(host).map(basic),
            HostAuth::Bearer { tokens } => {
                tokens.get(&scopes.join(" ")).map(|t| format!("Bearer {t}"))
            }
        }
    }

    async fn answer_challenge(
        &self,
        host: &str,
        repository: &str,
        challenge: &str,
        scopes: &[String],
    ) -> Result<(), BuildError> {
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("bearer") {
            let realm = params
                .get("realm")
                .cloned()
                .ok_or_else(|| self.unauthorized(host, repository))?;
            let service = params.get("service").cloned();
            let token = self
                .fetch_token(host, repository, &realm, service.as_deref(), scopes)
                .await?;
            let mut map = self.auth.lock().unwrap_or_else(|p| p.into_inner());
            let entry = map.entry(host.to_string()).or_insert(HostAuth::Bearer {
                tokens: HashMap::new(),
            });
            if let HostAuth::Bearer { tokens } = entry {
                tokens.insert(scopes.join(" "), token);
            }
            Ok(())
        } else {
            // Basic, or a challenge we cannot read: send the credentials.
            if self.credentials(host).is_none() {
                return Err(self.unauthorized(host, repository));
            }
            let mut map = self.auth.lock().unwrap_or_else(|p| p.into_inner());
            map.insert(host.to_string(), HostAuth::Basic);
            Ok(())
        }
    }

    async fn fetch_token(
        &self,
        host: &str,
        repository: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, BuildError> {
        let mut url = reqwest::Url::parse(realm).map_err(|e| BuildError::Registry {
            registry: host.to_string(),
            action: "token request",
            status: 401,
            body: format!("the token realm {realm:?} is not a URL: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let mut rb = self.http.get(url);
        if let Some(c) = self.credentials(host) {
            rb = rb.basic_auth(&c.username, Some(&c.password));
        }
        let resp = rb.send().await.map_err(|e| BuildError::Unreachable {
            registry: host.to_string(),
            action: "token request",
            attempts: 1,
            source: e,
        })?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(self.unauthorized(host, repository));
        }
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        if !status.is_success() {
            return Err(registry_error(host, "token request", status, &body));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
        }
        let t: Token = serde_json::from_slice(&body).map_err(|_| {
            registry_error(
                host,
                "token request",
                status,
                b"the token answer is not JSON",
            )
        })?;
        Ok(if t.token.is_empty() {
            t.access_token
        } else {
            t.token
        })
    }

    /// Fetch a manifest (image or index); `None` when it does not exist.
    pub async fn get_manifest(&self, image: &ImageRef) -> Result<Option<RawManifest>, BuildError> {
        let path = format!(
            "/v2/{}/manifests/{}",
            image.repository,
            image.manifest_reference()
        );
        let scopes = [pull_scope(&image.repository)];
        let resp = self
            .send(
                &image.host,
                &image.repository,
                &scopes,
                "manifest fetch",
                &|c, base| {
                    c.get(format!("{base}{path}"))
                        .header(ACCEPT, MANIFEST_ACCEPT)
                },
            )
            .await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = read_limited(
            resp,
            MAX_SMALL,
            &format!("manifest of {image}"),
            &image.host,
        )
        .await?;
        if !status.is_success() {
            return Err(registry_error(&image.host, "manifest fetch", status, &body));
        }
        let digest = sha256_digest(&body);
        if let Some(want) = &image.digest
            && want != &digest
        {
            return Err(BuildError::DigestMismatch {
                registry: image.host.clone(),
                digest: want.clone(),
                actual: digest,
            });
        }
        Ok(Some(RawManifest {
            body,
            media_type,
            digest,
        }))
    }

    /// Resolve a reference to an image manifest for this platform: an index
    /// is followed to the entry for Linux on this architecture.
    pub async fn resolve(&self, image: &ImageRef) -> Result<(Manifest, RawManifest), BuildError> {
        let raw = self
            .get_manifest(image)
            .await?
            .ok_or_else(|| BuildError::NotFound {
                reference: image.to_string(),
            })?;
        let (fetched, media) = oci::parse_manifest(&raw.body, &raw.media_type, &image.to_string())?;
        match fetched {
            Fetched::Image(m) => Ok((
                *m,
                RawManifest {
                    media_type: media,
                    ..raw
                },
            )),
            Fetched::Index(index) => {
                let platform = oci::host_platform();
                let entry = oci::select_platform(&index, &platform).ok_or_else(|| {
                    BuildError::Manifest {
                        reference: image.to_string(),
                        reason: format!(
                            "the index has no image for {}/{}",
                            platform.os, platform.architecture
                        ),
                    }
                })?;
                let pinned = ImageRef {
                    digest: Some(entry.digest.clone()),
                    ..image.clone()
                };
                let raw =
                    self.get_manifest(&pinned)
                        .await?
                        .ok_or_else(|| BuildError::NotFound {
                            reference: pinned.to_string(),
                        })?;
                let (fetched, media) =
                    oci::parse_manifest(&raw.body, &raw.media_type, &pinned.to_string())?;
                match fetched {
                    Fetched::Image(m) => Ok((
                        *m,
                        RawManifest {
                            media_type: media,
                            ..raw
                        },
                    )),
                    Fetched::Index(_) => Err(BuildError::Manifest {
                        reference: pinned.to_string(),
                        reason: "an index inside an index is not supported".into(),
                    }),
                }
            }
        }
    }

    /// Whether a blob is in a repository (HEAD).
    pub async fn blob_exists(
        &self,
        host: &str,
        repository: &str,
        digest: &str,
    ) -> Result<bool, BuildError> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let scopes = [push_scope(repository)];
        let resp = self
            .send(host, repository, &scopes, "blob check", &|c, base| {
                c.head(format!("{base}{path}"))
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(registry_error(host, "blob check", s, b"")),
        }
    }

    /// Ask the registry to link a blob from another repository of its own.
    pub async fn mount_blob(
        &self,
        host: &str,
        repository: &str,
        digest: &str,
        from: &str,
    ) -> Result<Mount, BuildError> {
        let path = format!("/v2/{repository}/blobs/uploads/");
        let scopes = [push_scope(repository), pull_scope(from)];
        let resp = self
            .send(host, repository, &scopes, "blob mount", &|c, base| {
                c.request(Method::POST, format!("{base}{path}"))
                    .query(&[("mount", digest), ("from", from)])
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(Vec::new())
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => {
                self.mounts.fetch_add(1, Ordering::Relaxed);
                Ok(Mount::Mounted)
            }
            // An upload session we do not use; it expires on its own.
            StatusCode::ACCEPTED => Ok(Mount::NotMounted),
            s => {
                let body = resp.bytes().await.unwrap_or_default();
                Err(registry_error(host, "blob mount", s, &body))
            }
        }
    }

    /// Upload a blob in one request (POST for a session, PUT with the digest).
    pub async fn upload_blob(
        &self,
        host: &str,
        repository: &str,
        digest: &str,
        blob: Bytes,
    ) -> Result<(), BuildError> {
        let path = format!("/v2/{repository}/blobs/uploads/");
        let scopes = [push_scope(repository)];
        let resp = self
            .send(
                host,
                repository,
                &scopes,
                "blob upload start",
                &|c, base| {
                    c.post(format!("{base}{path}"))
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .body(Vec::new())
                },
            )
            .await?;
        let status = resp.status();
        if status != StatusCode::ACCEPTED {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(registry_error(host, "blob upload start", status, &body));
        }
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                registry_error(host, "blob upload start", status, b"no Location header")
            })?;
        let base = self.base_url(host);
        let mut url = if location.starts_with("http://") || location.starts_with("https://") {
            reqwest::Url::parse(&location)
        } else {
            reqwest::Url::parse(&format!("{base}{location}"))
        }
        .map_err(|e| {
            registry_error(
                host,
                "blob upload start",
                status,
                format!("bad Location: {e}").as_bytes(),
            )
        })?;
        url.query_pairs_mut().append_pair("digest", digest);
        let len = blob.len() as u64;
        let resp = self
            .send(host, repository, &scopes, "blob upload", &|c, _| {
                c.put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(blob.clone())
            })
            .await?;
        let status = resp.status();
        if status != StatusCode::CREATED {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(registry_error(host, "blob upload", status, &body));
        }
        self.uploads.fetch_add(1, Ordering::Relaxed);
        self.uploaded_bytes.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Download a blob (at most `limit` bytes) and verify its digest.
    pub async fn get_blob(
        &self,
        host: &str,
        repository: &str,
        digest: &str,
        limit: u64,
    ) -> Result<Bytes, BuildError> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let scopes = [pull_scope(repository)];
        let resp = self
            .send(host, repository, &scopes, "blob fetch", &|c, base| {
                c.get(format!("{base}{path}"))
            })
            .await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Err(BuildError::NotFound {
                reference: format!("{host}/{repository}@{digest}"),
            });
        }
        let body = read_limited(resp, limit, &format!("blob {digest}"), host).await?;
        if !status.is_success() {
            return Err(registry_error(host, "blob fetch", status, &body));
        }
        let actual = sha256_digest(&body);
        if actual != digest {
            return Err(BuildError::DigestMismatch {
                registry: host.to_string(),
                digest: digest.to_string(),
                actual,
            });
        }
        Ok(body)
    }

    /// A small JSON blob (an image config).
    pub async fn get_config(
        &self,
        host: &str,
        repository: &str,
        digest: &str,
    ) -> Result<serde_json::Value, BuildError> {
        let body = self.get_blob(host, repository, digest, MAX_SMALL).await?;
        serde_json::from_slice(&body).map_err(|e| BuildError::Manifest {
            reference: format!("{host}/{repository}@{digest}"),
            reason: format!("the image config is not JSON: {e}"),
        })
    }

    /// Put a manifest under a tag; returns its digest.
    pub async fn put_manifest(
        &self,
        image: &ImageRef,
        media_type: &str,
        body: Bytes,
    ) -> Result<String, BuildError> {
        let path = format!(
            "/v2/{}/manifests/{}",
            image.repository,
            image.manifest_reference()
        );
        let scopes = [push_scope(&image.repository)];
        let resp = self
            .send(
                &image.host,
                &image.repository,
                &scopes,
                "manifest push",
                &|c, base| {
                    c.put(format!("{base}{path}"))
                        .header(CONTENT_TYPE, media_type)
                        .body(body.clone())
                },
            )
            .await?;
        let status = resp.status();
        if status != StatusCode::CREATED {
            let text = resp.bytes().await.unwrap_or_default();
            return Err(registry_error(&image.host, "manifest push", status, &text));
        }
        self.manifests.fetch_add(1, Ordering::Relaxed);
        Ok(sha256_digest(&body))
    }
}

fn basic(c: &Credentials) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password))
    )
}

fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

fn registry_error(host: &str, action: &'static str, status: StatusCode, body: &[u8]) -> BuildError {
    let mut text = String::from_utf8_lossy(body).trim().to_string();
    if text.len() > 300 {
        let mut cut = 300;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    BuildError::Registry {
        registry: host.to_string(),
        action,
        status: status.as_u16(),
        body: text,
    }
}

async fn read_limited(
    mut resp: reqwest::Response,
    limit: u64,
    what: &str,
    host: &str,
) -> Result<Bytes, BuildError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(BuildError::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() as u64 + chunk.len() as u64 > limit {
                    return Err(BuildError::TooLarge {
                        what: what.to_string(),
                        limit,
                    });
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Bytes::from(out)),
            Err(e) => {
                return Err(BuildError::Unreachable {
                    registry: host.to_string(),
                    action: "download",
                    attempts: 1,
                    source: e,
                });
            }
        }
    }
}

/// `Bearer realm="x",service="y"` → ("Bearer", {realm: x, service: y}).
fn parse_challenge(h: &str) -> (String, HashMap<String, String>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    // Bounded by the header length: every iteration consumes characters.
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => break,
                    c => v.push(c),
                }
            }
            v
        } else {
            chars.by_ref().take_while(|c| *c != ',').collect()
        };
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/python:pull""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/python:pull");
        let (s, p) = parse_challenge(r#"Basic realm="test""#);
        assert_eq!((s.as_str(), p["realm"].as_str()), ("Basic", "test"));
        assert!(parse_challenge("").1.is_empty());
    }
}
