//! One module per command group; each exposes clap `Args`/`Subcommand`
//! types and a `run` taking the shared [`Context`].

pub mod apply;
pub mod completion;
pub mod controller;
pub mod function;
pub mod install;
pub mod secret;
pub mod server_config;
pub mod topic;
pub mod trigger;

use std::sync::Arc;

use anyhow::bail;
use clap::ValueEnum;

use crate::client::Backend;
use crate::client::local::LocalBackend;
use crate::config::{ClientConfig, ProcessEnv};

/// Namespace used when `-n` is not given (the local backend has no
/// kubeconfig context to take one from).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Which platform the CLI talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// The embedded server started by `kubeless server`.
    Local,
    /// A Kubernetes cluster running Kubeless (not in this build).
    Kubernetes,
}

/// What every command gets.
pub struct Context {
    pub backend_kind: BackendKind,
}

impl Context {
    /// Connect to the selected backend (no request is sent yet).
    pub fn backend(&self) -> anyhow::Result<Arc<dyn Backend>> {
        match self.backend_kind {
            BackendKind::Local => {
                let config = ClientConfig::load(&ProcessEnv)?;
                Ok(Arc::new(LocalBackend::new(config)?))
            }
            BackendKind::Kubernetes => bail!(
                "the Kubernetes backend is not available in this build: use the embedded server ('kubeless server') with --backend local"
            ),
        }
    }
}

/// The namespace flag's value, or the default.
pub fn namespace(flag: &Option<String>) -> String {
    match flag {
        Some(ns) if !ns.is_empty() => ns.clone(),
        _ => DEFAULT_NAMESPACE.to_string(),
    }
}

/// The single positional name, with Kubeless's message otherwise.
pub fn one_name<'a>(names: &'a [String], what: &str) -> anyhow::Result<&'a str> {
    match names {
        [name] => Ok(name),
        _ => bail!("Need exactly one argument - {what}"),
    }
}

/// Read a local file or download an `http(s)://` URL (plain GET, no auth).
pub fn read_source(path: &str) -> anyhow::Result<Vec<u8>> {
    if is_url(path) {
        let resp = reqwest::blocking::get(path)
            .map_err(|e| anyhow::anyhow!("Unable to download {path}: {e}"))?;
        if !resp.status().is_success() {
            bail!("Unable to download {path}: {}", resp.status());
        }
        let bytes = resp
            .bytes()
            .map_err(|e| anyhow::anyhow!("Unable to download {path}: {e}"))?;
        Ok(bytes.to_vec())
    } else {
        std::fs::read(path).map_err(|e| anyhow::anyhow!("Unable to read file {path}: {e}"))
    }
}

/// True for `http://` and `https://` arguments.
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}
