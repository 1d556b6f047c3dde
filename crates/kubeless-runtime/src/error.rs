//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can stop the runtime host.
///
/// Variants are named after the action that failed; the underlying cause
/// rides in `source()` so callers can print a "caused by" chain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An environment value was missing or malformed.
    #[error("invalid {var}: {reason}")]
    InvalidConfig { var: &'static str, reason: String },

    /// The user's module or handler could not be loaded by the first worker.
    /// `main` turns this into exit code 3.
    #[error("cannot load handler {module}.{function}: {reason}")]
    LoadHandler {
        module: String,
        function: String,
        reason: String,
    },

    /// Creating the runtime directory or writing a worker script failed.
    #[error("prepare runtime directory {path}")]
    PrepareRuntimeDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Starting a worker process (or its socket) failed.
    #[error("start {language} worker with {program}")]
    SpawnWorker {
        language: &'static str,
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// A worker exited or answered something that is not the protocol.
    #[error("worker {pid} failed: {reason}")]
    Worker { pid: u32, reason: String },

    /// A build step of `kubeless-runtime compile` failed; the tool's own
    /// output went to stderr before this.
    #[error("{step} failed: {reason}")]
    Compile { step: String, reason: String },

    /// Binding the HTTP port failed.
    #[error("bind {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// Shutdown began before the first worker had loaded the handler.
    #[error("stopped while starting")]
    Stopped,

    /// Binding the Unix socket of `KUBELESS_SOCKET` failed.
    #[error("bind unix socket {path}")]
    BindSocket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
