//! Image references: `[host[:port]/]path[:tag][@sha256:<hex>]`, checked
//! against the Distribution reference grammar before any request is sent.
//!
//! A first component with a `.` or `:`, or `localhost`, is a registry host;
//! otherwise the reference is on Docker Hub (`docker.io`, single names under
//! `library/`), as every container tool reads it.

use std::fmt;

use crate::BuildError;

/// Docker Hub's name in references and its API host.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// `host[:port]` as written (`docker.io` for Docker Hub).
    pub host: String,
    /// Repository path, e.g. `kubeless/hello`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parse and validate a reference.
    pub fn parse(s: &str) -> Result<ImageRef, BuildError> {
        let bad = |reason: &str| BuildError::Reference {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() || s.len() > 4096 {
            return Err(bad("empty or too long"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                validate_digest(d).map_err(|r| bad(&r))?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let (host, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), rest.to_string()),
        };
        validate_host(&host).map_err(|r| bad(&r))?;
        // A tag follows the last ':' after the last '/'.
        let last = path.rsplit('/').next().unwrap_or("");
        let (repository, tag) = match last.rsplit_once(':') {
            Some((_, tag)) => {
                let repo = &path[..path.len() - tag.len() - 1];
                validate_tag(tag).map_err(|r| bad(&r))?;
                (repo.to_string(), Some(tag.to_string()))
            }
            None => (path.clone(), None),
        };
        validate_repository(&repository).map_err(|r| bad(&r))?;
        let repository = if host == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        Ok(ImageRef {
            host,
            repository,
            tag,
            digest,
        })
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<ImageRef, BuildError> {
        validate_tag(tag).map_err(|reason| BuildError::Reference {
            reference: format!("{}/{}:{tag}", self.host, self.repository),
            reason,
        })?;
        Ok(ImageRef {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// What to ask the registry for: the digest when pinned, else the tag,
    /// else `latest`.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The host the Distribution API is served on.
    pub fn api_host(&self) -> &str {
        api_host(&self.host)
    }
}

/// The API host of a registry name (`docker.io` → `registry-1.docker.io`).
pub fn api_host(host: &str) -> &str {
    if host == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        host
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A registry and repository prefix functions are pushed under, as given to
/// `--registry HOST[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub host: String,
    /// Repository prefix without slashes at the ends; may be empty.
    pub prefix: String,
}

impl Destination {
    pub fn parse(s: &str) -> Result<Destination, BuildError> {
        let bad = |reason: String| BuildError::Reference {
            reference: s.to_string(),
            reason,
        };
        let s2 = s.trim_end_matches('/');
        let (host, prefix) = s2.split_once('/').unwrap_or((s2, ""));
        validate_host(host).map_err(bad)?;
        if !prefix.is_empty() {
            validate_repository(prefix).map_err(bad)?;
        }
        Ok(Destination {
            host: host.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The image reference of a function: `<host>/<prefix>/<namespace>-<name>:<tag>`
    /// (the namespace keeps two namespaces' functions apart).
    pub fn function_image(
        &self,
        namespace: &str,
        name: &str,
        tag: &str,
    ) -> Result<ImageRef, BuildError> {
        let leaf = format!("{namespace}-{name}").to_ascii_lowercase();
        let repository = if self.prefix.is_empty() {
            leaf
        } else {
            format!("{}/{leaf}", self.prefix)
        };
        ImageRef::parse(&format!("{}/{repository}:{tag}", self.host))
    }

    /// Where this registry keeps copies of base images that live on other
    /// registries: `<host>/<prefix>/kubeless_base_cache:sha256-<hex>`, the
    /// base's (platform) manifest tagged by its own digest. One repository
    /// holds every base: blobs and tags are content-addressed, so two bases
    /// never clash, and a single path component under the prefix suits
    /// registries that allow no deeper names (Docker Hub). The `_` keeps it
    /// apart from function repositories (`<namespace>-<name>`, DNS labels
    /// that never hold one).
    pub fn base_cache(&self, base_digest: &str) -> Result<ImageRef, BuildError> {
        let hex = base_digest
            .strip_prefix("sha256:")
            .ok_or_else(|| BuildError::Reference {
                reference: base_digest.to_string(),
                reason: "a base digest must be sha256:<hex>".into(),
            })?;
        let repository = if self.prefix.is_empty() {
            BASE_CACHE.to_string()
        } else {
            format!("{}/{BASE_CACHE}", self.prefix)
        };
        ImageRef::parse(&format!("{}/{repository}:sha256-{hex}", self.host))
    }
}

/// The last path component of the base cache repository
/// ([`Destination::base_cache`]).
pub const BASE_CACHE: &str = "kubeless_base_cache";

fn validate_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if let Some(p) = port
        && p.parse::<u16>().map(|p| p == 0).unwrap_or(true)
    {
        return Err(format!("registry port {p:?} is not a port number"));
    }
    let ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("registry host {name:?} is not a valid host name"))
    }
}

/// Path components: lowercase alphanumerics separated by `.`, `_`, `__` or
/// runs of `-`.
fn validate_repository(repo: &str) -> Result<(), String> {
    if repo.is_empty() {
        return Err("the repository name is empty".into());
    }
    if repo.len() > 255 {
        return Err("the repository name is longer than 255 characters".into());
    }
    for comp in repo.split('/') {
        if !component_ok(comp) {
            return Err(format!(
                "repository component {comp:?} must be lowercase letters and digits separated by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    if !c
        .chars()
        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-'))
    {
        return false;
    }
    // Separators: '.', '_', '__', or any run of '-'.
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_alphanumeric() {
            let start = i;
            while i < b.len() && !b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let sep = &c[start..i];
            if !(sep == "." || sep == "_" || sep == "__" || sep.chars().all(|ch| ch == '-')) {
                return false;
            }
        } else {
            i += 1;
        }
    }
    true
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} must be 1-128 letters, digits, '_', '.' or '-' and not start with '.' or '-'"
        ))
    }
}

fn validate_digest(d: &str) -> Result<(), String> {
    match d.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "digest {d:?} must be sha256:<64 lowercase hex digits>"
        )),
    }
}

/// Whether a string is a valid `sha256:<hex>` digest.
pub fn is_digest(d: &str) -> bool {
    validate_digest(d).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registry_references() {
        let r = ImageRef::parse("127.0.0.1:5000/kubeless/base-python:3.11").unwrap();
        assert_eq!(r.host, "127.0.0.1:5000");
        assert_eq!(r.repository, "kubeless/base-python");
        assert_eq!(r.tag.as_deref(), Some("3.11"));
        assert_eq!(r.to_string(), "127.0.0.1:5000/kubeless/base-python:3.11");
        let r = ImageRef::parse("python").unwrap();
        assert_eq!(
            (r.host.as_str(), r.repository.as_str()),
            ("docker.io", "library/python")
        );
        assert_eq!(r.manifest_reference(), "latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("localhost/x@{d}")).unwrap();
        assert_eq!(r.manifest_reference(), d);
    }

    #[test]
    fn refuses_invalid_names() {
        for bad in [
            "",
            "127.0.0.1:5000/Upper/case",
            "host:99999/x",
            "host.io/a//b",
            "host.io/x:-tag",
            "host.io/x@sha256:short",
            "host.io/x_-y",
            "host.io/-x",
        ] {
            let e = ImageRef::parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("invalid image reference"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn destinations_name_function_images() {
        let d = Destination::parse("127.0.0.1:5000/team/fns/").unwrap();
        let r = d.function_image("default", "hello", "abc").unwrap();
        assert_eq!(r.to_string(), "127.0.0.1:5000/team/fns/default-hello:abc");
        let d = Destination::parse("registry.local").unwrap();
        assert_eq!(
            d.function_image("ns", "f", "t").unwrap().to_string(),
            "registry.local/ns-f:t"
        );
        assert!(Destination::parse("bad host/x").is_err());
    }

    #[test]
    fn base_cache_is_one_repository_tagged_by_digest() {
        let hex = "ab".repeat(32);
        let d = Destination::parse("registry.local:5000/team").unwrap();
        let c = d.base_cache(&format!("sha256:{hex}")).unwrap();
        assert_eq!(
            c.to_string(),
            format!("registry.local:5000/team/kubeless_base_cache:sha256-{hex}")
        );
        let d = Destination::parse("registry.local").unwrap();
        let c = d.base_cache(&format!("sha256:{hex}")).unwrap();
        assert_eq!(c.repository, "kubeless_base_cache");
        // Never a function's repository: those are `<namespace>-<name>`.
        let f = d.function_image("kubeless", "base-cache", "t").unwrap();
        assert_ne!(f.repository, c.repository);
        assert!(d.base_cache("md5:x").is_err());
    }
}
