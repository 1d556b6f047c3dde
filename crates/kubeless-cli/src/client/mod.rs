//! How commands talk to a Kubeless platform.
//!
//! [`Backend`] is the one seam: commands only see objects (as JSON values,
//! so no field a user wrote is lost), logs, metrics text and function calls.
//! [`local::LocalBackend`] speaks the embedded server's local API
//! (docs/local-api.md); [`kube::KubeBackend`] implements the same trait
//! against a kube-apiserver. Typed helpers ([`get_as`], [`list_as`]) sit on
//! top of the trait so implementations stay small.

pub mod kube;
pub mod local;

use std::io::Write;

use kubeless_api::Kind;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A failed request, classified so the user sees one clear line.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached at all.
    #[error(
        "cannot reach the kubeless server at {server}: {cause}. Start it with 'kubeless server'"
    )]
    Unreachable { server: String, cause: String },
    /// The token was refused.
    #[error(
        "the server refused the token (401): check KUBELESS_TOKEN or $KUBELESS_HOME/config.json"
    )]
    Unauthorized,
    /// The server answered with a Kubernetes-style `Status`.
    #[error("{}", .0.render())]
    Status(ApiStatus),
    /// Anything else (unexpected body, broken connection mid-way).
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    /// True for a `NotFound` (404) answer.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Status(s) if s.code == 404)
    }
}

impl From<kubeless_api::ValidationErrors> for ClientError {
    /// The `Invalid` status the embedded server answers for the same
    /// object, so a check made in the CLI reads exactly like the server's.
    fn from(e: kubeless_api::ValidationErrors) -> ClientError {
        ClientError::Status(ApiStatus {
            code: 422,
            reason: "Invalid".to_string(),
            message: e.to_string(),
            causes: e
                .iter()
                .map(|c| StatusCause {
                    field: c.field.clone(),
                    message: c.message.clone(),
                })
                .collect(),
        })
    }
}

/// A cause of an `Invalid` status.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct StatusCause {
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
struct StatusDetails {
    #[serde(default)]
    causes: Vec<StatusCause>,
}

/// The subset of a Kubernetes `Status` the CLI shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiStatus {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub causes: Vec<StatusCause>,
}

impl ApiStatus {
    /// Parse a `Status` body; `None` when the body is not one.
    pub fn parse(body: &[u8]) -> Option<ApiStatus> {
        #[derive(serde::Deserialize)]
        struct Raw {
            #[serde(default)]
            kind: String,
            #[serde(default)]
            code: u16,
            #[serde(default)]
            reason: String,
            #[serde(default)]
            message: String,
            #[serde(default)]
            details: Option<StatusDetails>,
        }
        let raw: Raw = serde_json::from_slice(body).ok()?;
        if raw.kind != "Status" {
            return None;
        }
        Some(ApiStatus {
            code: raw.code,
            reason: raw.reason,
            message: raw.message,
            causes: raw.details.map(|d| d.causes).unwrap_or_default(),
        })
    }

    /// The message, then each cause on its own line. The server's message
    /// already lists the causes after "is invalid:", so only its head is
    /// kept when causes follow.
    pub fn render(&self) -> String {
        let mut out = if self.message.is_empty() {
            format!("{} ({})", self.reason, self.code)
        } else {
            self.message.clone()
        };
        if !self.causes.is_empty() {
            const INVALID: &str = " is invalid";
            if let Some(i) = out.find(INVALID) {
                out.truncate(i + INVALID.len());
                out.push(':');
            }
        }
        for c in &self.causes {
            out.push('\n');
            if c.field.is_empty() {
                out.push_str(&c.message);
            } else {
                out.push_str(&format!("{}: {}", c.field, c.message));
            }
        }
        out
    }
}

/// What `GET /api/v1/config` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct ServerConfig {
    #[serde(default)]
    pub runtimes: Vec<String>,
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub home: String,
    #[serde(default, rename = "kafkaBrokers")]
    pub kafka_brokers: String,
    #[serde(default, rename = "natsUrl")]
    pub nats_url: String,
    /// Known runtimes this server cannot run until a toolchain is installed.
    #[serde(default, rename = "unavailableRuntimes")]
    pub unavailable: Vec<UnavailableRuntimes>,
}

/// One language whose toolchain the server did not find.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct UnavailableRuntimes {
    #[serde(default)]
    pub language: String,
    #[serde(default)]
    pub runtimes: Vec<String>,
    /// How to install it, e.g. `install Ruby (apt-get install ruby ...)`.
    #[serde(default)]
    pub hint: String,
}

impl ServerConfig {
    /// Why a runtime the platform knows cannot run here, if it cannot.
    pub fn unavailable_reason(&self, runtime: &str) -> Option<String> {
        self.unavailable
            .iter()
            .find(|u| u.runtimes.iter().any(|r| r == runtime))
            .map(|u| {
                format!(
                    "runtime {runtime} is not available on this machine: {}",
                    u.hint
                )
            })
    }
}

/// A call of a function (`kubeless function call`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRequest {
    /// `None` = GET without body; `Some` = POST with this body.
    pub body: Option<String>,
    /// Extra headers (`event-*`, `Content-Type`).
    pub headers: Vec<(String, String)>,
}

/// What a function answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A Kubeless platform, as the CLI sees it. `Send + Sync` so `top` can
/// fetch metrics from several threads.
pub trait Backend: Send + Sync {
    /// Runtimes and gateway of the platform.
    fn server_config(&self) -> Result<ServerConfig, ClientError>;
    /// One object.
    fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Value, ClientError>;
    /// Objects of a namespace, optionally filtered by a label selector.
    fn list(
        &self,
        kind: Kind,
        namespace: &str,
        selector: Option<&str>,
    ) -> Result<Vec<Value>, ClientError>;
    /// Create; fails with `AlreadyExists` when the name is taken.
    fn create(&self, kind: Kind, namespace: &str, object: &Value) -> Result<Value, ClientError>;
    /// Replace the whole object (a `metadata.resourceVersion` must match).
    fn replace(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        object: &Value,
    ) -> Result<Value, ClientError>;
    /// Delete; answers the deleted object.
    fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Result<Value, ClientError>;
    /// Copy the function's logs to `out` (until the server closes the
    /// stream when `follow`).
    fn function_logs(
        &self,
        namespace: &str,
        name: &str,
        follow: bool,
        out: &mut dyn Write,
    ) -> Result<(), ClientError>;
    /// Prometheus text of the function's instances.
    fn function_metrics(&self, namespace: &str, name: &str) -> Result<String, ClientError>;
    /// Call the function; any HTTP status is a successful call here.
    fn call_function(
        &self,
        namespace: &str,
        name: &str,
        request: &CallRequest,
    ) -> Result<CallResponse, ClientError>;
    /// Autoscalers of a namespace (`kubeless autoscale list`). By default
    /// the ones stored in the Functions' `spec.horizontalPodAutoscaler`; a
    /// cluster lists its HorizontalPodAutoscaler objects instead.
    fn list_autoscalers(&self, namespace: &str) -> Result<Vec<Value>, ClientError> {
        Ok(self
            .list(Kind::Function, namespace, None)?
            .into_iter()
            .filter_map(|f| {
                let h = f.pointer("/spec/horizontalPodAutoscaler")?;
                let named = h.pointer("/metadata/name")?.as_str()?;
                (!named.is_empty()).then(|| h.clone())
            })
            .collect())
    }
}

fn decode<T: DeserializeOwned>(v: Value) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|e| ClientError::Other(format!("unexpected object: {e}")))
}

/// Encode a typed object for the backend.
pub fn encode<T: Serialize>(t: &T) -> Result<Value, ClientError> {
    serde_json::to_value(t).map_err(|e| ClientError::Other(format!("cannot encode object: {e}")))
}

/// [`Backend::get`] decoded into `T`.
pub fn get_as<T: DeserializeOwned>(
    b: &dyn Backend,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Result<T, ClientError> {
    decode(b.get(kind, namespace, name)?)
}

/// [`Backend::list`] decoded into `T`s.
pub fn list_as<T: DeserializeOwned>(
    b: &dyn Backend,
    kind: Kind,
    namespace: &str,
) -> Result<Vec<T>, ClientError> {
    b.list(kind, namespace, None)?
        .into_iter()
        .map(decode)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_renders_causes_on_lines() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":422,
            "reason":"Invalid","message":"Function \"x\" is invalid: [spec.handler: must be a.b, spec.runtime: unknown]",
            "details":{"causes":[{"field":"spec.handler","message":"must be a.b"},{"field":"spec.runtime","message":"unknown"}]}}"#;
        let s = ApiStatus::parse(body).expect("status");
        assert_eq!(
            s.render(),
            "Function \"x\" is invalid:\nspec.handler: must be a.b\nspec.runtime: unknown"
        );
        assert!(ApiStatus::parse(b"{\"kind\":\"Function\"}").is_none());
        assert!(ApiStatus::parse(b"hello").is_none());
    }
}
