//! Where the local backend finds the embedded server: the client config file
//! `$KUBELESS_HOME/config.json` written by `kubeless server`, overridden
//! field by field by `KUBELESS_SERVER`, `KUBELESS_TOKEN` and
//! `KUBELESS_GATEWAY` (env > file > default).
//!
//! The environment is read through [`Env`] so tests pass a map.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Deserialize;

/// Default API address of `kubeless server`.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8079";
/// Default gateway address of `kubeless server`.
pub const DEFAULT_GATEWAY: &str = "http://127.0.0.1:8080";

/// Source of environment variables.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned().filter(|v| !v.is_empty())
    }
}

/// The client config file's fields (all optional).
#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
}

/// Resolved connection settings for the local backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub server: String,
    pub token: Option<String>,
    pub gateway: String,
}

/// `$KUBELESS_HOME`, defaulting to `~/.kubeless`.
pub fn kubeless_home(env: &dyn Env) -> PathBuf {
    if let Some(home) = env.var("KUBELESS_HOME") {
        return PathBuf::from(home);
    }
    let user_home = env
        .var("HOME")
        .or_else(|| env.var("USERPROFILE"))
        .unwrap_or_else(|| String::from("."));
    PathBuf::from(user_home).join(".kubeless")
}

impl ClientConfig {
    /// Read the config file (a missing file is not an error: the defaults
    /// then point at a server that is not running, which the first request
    /// reports clearly) and apply the env overrides.
    pub fn load(env: &dyn Env) -> anyhow::Result<ClientConfig> {
        let path = kubeless_home(env).join("config.json");
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<FileConfig>(&bytes)
                .with_context(|| format!("invalid client config {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileConfig::default(),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        Ok(Self::resolve(env, file))
    }

    fn resolve(env: &dyn Env, file: FileConfig) -> ClientConfig {
        let server = env
            .var("KUBELESS_SERVER")
            .or(file.server)
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        let token = env.var("KUBELESS_TOKEN").or(file.token);
        let gateway = env
            .var("KUBELESS_GATEWAY")
            .or(file.gateway)
            .unwrap_or_else(|| DEFAULT_GATEWAY.to_string());
        ClientConfig {
            server: server.trim_end_matches('/').to_string(),
            token,
            gateway: gateway.trim_end_matches('/').to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_then_env_override() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"server":"http://127.0.0.1:9000/","token":"abc","gateway":"http://127.0.0.1:9001"}"#,
        )
        .expect("write");
        let home = dir.path().to_string_lossy().to_string();
        let c = ClientConfig::load(&env(&[("KUBELESS_HOME", &home)])).expect("load");
        assert_eq!(c.server, "http://127.0.0.1:9000");
        assert_eq!(c.token.as_deref(), Some("abc"));
        assert_eq!(c.gateway, "http://127.0.0.1:9001");

        let c = ClientConfig::load(&env(&[
            ("KUBELESS_HOME", &home),
            ("KUBELESS_TOKEN", "xyz"),
            ("KUBELESS_GATEWAY", "http://gw"),
        ]))
        .expect("load");
        assert_eq!(c.token.as_deref(), Some("xyz"));
        assert_eq!(c.gateway, "http://gw");
        assert_eq!(c.server, "http://127.0.0.1:9000");
    }

    #[test]
    fn missing_file_gives_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().to_string_lossy().to_string();
        let c = ClientConfig::load(&env(&[("KUBELESS_HOME", &home)])).expect("load");
        assert_eq!(c.server, DEFAULT_SERVER);
        assert_eq!(c.gateway, DEFAULT_GATEWAY);
        assert_eq!(c.token, None);
    }

    #[test]
    fn home_defaults_to_dot_kubeless() {
        assert_eq!(
            kubeless_home(&env(&[("HOME", "/home/u")])),
            PathBuf::from("/home/u/.kubeless")
        );
    }
}
