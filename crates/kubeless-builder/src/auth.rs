//! Registry credentials from a docker config JSON: the `.dockerconfigjson`
//! key of a `kubernetes.io/dockerconfigjson` secret (Kubeless's
//! `kubeless-registry-credentials`) or `~/.docker/config.json`.
//!
//! Shape: `{"auths": {"<key>": {"auth": base64("user:pass")}}}`, or
//! `username`/`password` fields instead of `auth`. Keys are matched by host:
//! `https://index.docker.io/v1/`, `http://127.0.0.1:5000/v2` and
//! `127.0.0.1:5000` all name a host, and Docker Hub's key names `docker.io`.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

use crate::BuildError;
use crate::reference::DOCKER_HUB;

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Credentials per registry host, from a docker config JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    pub auths: BTreeMap<String, Credentials>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawAuth>,
}

#[derive(Deserialize)]
struct RawAuth {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

impl DockerConfig {
    /// Parse a docker config; `origin` names it in errors (a path or a
    /// secret).
    pub fn parse(json: &[u8], origin: &str) -> Result<DockerConfig, BuildError> {
        let bad = |reason: String| BuildError::DockerConfig {
            path: origin.to_string(),
            reason,
        };
        let raw: RawConfig = serde_json::from_slice(json)
            .map_err(|e| bad(format!("not a docker config JSON: {e}")))?;
        let mut auths = BTreeMap::new();
        for (key, a) in raw.auths {
            let host =
                host_of_key(&key).ok_or_else(|| bad(format!("auths key {key:?} names no host")))?;
            let creds = if !a.auth.is_empty() {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(a.auth.trim())
                    .map_err(|e| bad(format!("auths.{key:?}.auth is not base64: {e}")))?;
                let text = String::from_utf8(decoded)
                    .map_err(|_| bad(format!("auths.{key:?}.auth is not UTF-8")))?;
                let (u, p) = text.split_once(':').ok_or_else(|| {
                    bad(format!("auths.{key:?}.auth is not base64 of user:password"))
                })?;
                Credentials {
                    username: u.to_string(),
                    password: p.to_string(),
                }
            } else if !a.username.is_empty() {
                Credentials {
                    username: a.username,
                    password: a.password,
                }
            } else {
                continue;
            };
            auths.insert(host, creds);
        }
        Ok(DockerConfig { auths })
    }

    /// Read and parse a docker config file.
    pub fn load(path: &std::path::Path) -> Result<DockerConfig, BuildError> {
        let bytes = std::fs::read(path).map_err(|e| BuildError::DockerConfig {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        DockerConfig::parse(&bytes, &path.display().to_string())
    }

    /// The credentials for a registry host (as written in references).
    pub fn get(&self, host: &str) -> Option<&Credentials> {
        self.auths.get(host)
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://h:5000/v2` →
/// `h:5000`; `h:5000` → `h:5000`.
fn host_of_key(key: &str) -> Option<String> {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or("").to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some(match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_key_shape() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let json = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "http://127.0.0.1:5000/v2": {{"auth": "{}"}},
                "registry.local:443": {{"username": "u", "password": "p"}},
                "empty.local": {{}}
            }}}}"#,
            b64("hub:secret"),
            b64("alice:pa:ss")
        );
        let c = DockerConfig::parse(json.as_bytes(), "test").unwrap();
        assert_eq!(c.get("docker.io").unwrap().username, "hub");
        let local = c.get("127.0.0.1:5000").unwrap();
        assert_eq!(
            (local.username.as_str(), local.password.as_str()),
            ("alice", "pa:ss")
        );
        assert_eq!(c.get("registry.local:443").unwrap().password, "p");
        assert!(c.get("empty.local").is_none());
        assert!(!format!("{local:?}").contains("pa:ss"));
    }

    #[test]
    fn bad_configs_say_where() {
        let e = DockerConfig::parse(br#"{"auths": {"h": {"auth": "!!"}}}"#, "/x/config.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/x/config.json") && e.contains("not base64"),
            "{e}"
        );
        assert!(DockerConfig::parse(b"\"text\"", "s").is_err());
    }
}
