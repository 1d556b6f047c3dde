//! Embedded mode: the whole platform in one process.
//!
//! [`server::serve`] wires the pieces together:
//! - [`store`]: durable, versioned objects (the CRDs' embedded twin);
//! - [`api`]: the token-protected local API the CLI talks to;
//! - [`reconcile`] and [`function`]: one worker per Function turning its
//!   plan into running instances, with status;
//! - [`artifact`]: code decoded and dependencies installed once per checksum;
//! - [`image`]: functions run from an OCI image (pulled, unpacked, sandboxed);
//! - [`instance`]: a supervised `kubeless-runtime` process, with
//!   [`limits`] (memory cgroups) and [`secrets`] (secret files);
//! - [`gateway`]: routes `/<namespace>/<function>` and HTTP triggers to
//!   ready instances;
//! - [`triggers`]: HTTP trigger routes, the cron scheduler and the NATS and
//!   Kafka consumers (from `kubeless-events`), with per-trigger counters;
//! - [`logs`]: bounded per-function logs with follow.

pub mod api;
pub mod artifact;
pub mod function;
pub mod gateway;
pub mod image;
pub mod instance;
pub mod limits;
pub mod logs;
pub mod reconcile;
pub mod secrets;
pub mod server;
pub mod store;
pub mod triggers;

use std::path::PathBuf;

use kubeless_plan::{Catalogue, Settings};

pub use server::{ServerOptions, serve};

/// What the engine's parts share.
pub struct Ctx {
    pub home: PathBuf,
    pub store: store::Store,
    pub routes: gateway::RouteTable,
    pub logs: logs::LogHub,
    pub artifacts: artifact::ArtifactCache,
    pub catalogue: Catalogue,
    pub settings: Settings,
    pub instance: instance::InstanceCtx,
    pub triggers: triggers::TriggerShared,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid server configuration: {0}")]
    Config(String),
    #[error("open the store")]
    Store(#[from] store::StoreError),
    #[error(
        "listen on {addr} (is another kubeless server running? pick another address with {flag})"
    )]
    Bind {
        addr: std::net::SocketAddr,
        flag: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serve the local API")]
    Serve(#[source] std::io::Error),
}
