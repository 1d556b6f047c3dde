//! One module per command group; each exposes clap `Args`/`Subcommand`
//! types and a `run` taking the shared [`Context`].

pub mod apply;
pub mod autoscale;
pub mod build;
pub mod completion;
pub mod controller;
pub mod function;
pub mod install;
pub mod push_rootfs;
pub mod secret;
pub mod server_config;
pub mod topic;
pub mod trigger;
pub mod uninstall;

use std::sync::{Arc, OnceLock};

use anyhow::bail;
use clap::ValueEnum;

use crate::client::Backend;
use crate::client::kube::{KubeBackend, KubeOptions};
use crate::client::local::LocalBackend;
use crate::config::{ClientConfig, ProcessEnv};

/// Namespace used when `-n` is not given and no kubeconfig context names
/// one (the local backend has no context).
pub const DEFAULT_NAMESPACE: &str = "default";

/// The current kubeconfig context's namespace, set once at start with the
/// Kubernetes backend (spec 1.0: `-n`, else the context's, else `default`).
static CONTEXT_NAMESPACE: OnceLock<String> = OnceLock::new();

/// Which platform the CLI talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// The embedded server started by `kubeless server`.
    Local,
    /// A Kubernetes cluster running Kubeless (current kubeconfig context).
    Kubernetes,
}

/// What every command gets.
pub struct Context {
    pub backend_kind: BackendKind,
}

impl Context {
    /// The context for `kind`; with Kubernetes, the default namespace is
    /// taken from the kubeconfig's current context.
    pub fn new(backend_kind: BackendKind) -> Context {
        if backend_kind == BackendKind::Kubernetes
            && let Some(ns) = crate::client::kube::context_namespace()
        {
            let _ = CONTEXT_NAMESPACE.set(ns);
        }
        Context { backend_kind }
    }

    /// Connect to the selected backend (no request is sent yet).
    pub fn backend(&self) -> anyhow::Result<Arc<dyn Backend>> {
        match self.backend_kind {
            BackendKind::Local => {
                let config = ClientConfig::load(&ProcessEnv)?;
                Ok(Arc::new(LocalBackend::new(config)?))
            }
            BackendKind::Kubernetes => {
                let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
                Ok(Arc::new(KubeBackend::new(KubeOptions {
                    install_namespace: env("KUBELESS_NAMESPACE"),
                    config_name: env("KUBELESS_CONFIG"),
                })?))
            }
        }
    }
}

/// The namespace flag's value, or the default.
pub fn namespace(flag: &Option<String>) -> String {
    match flag {
        Some(ns) if !ns.is_empty() => ns.clone(),
        _ => CONTEXT_NAMESPACE
            .get()
            .cloned()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
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
