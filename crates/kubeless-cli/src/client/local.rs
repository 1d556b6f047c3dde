//! [`Backend`] over the embedded server's local HTTP API
//! (docs/local-api.md): bearer token on every request, Kubernetes-shaped
//! paths, `Status` errors. Function calls go to the gateway instead.

use std::io::Write;
use std::time::Duration;

use kubeless_api::Kind;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;

use super::{ApiStatus, Backend, CallRequest, CallResponse, ClientError, ServerConfig};
use crate::config::ClientConfig;

/// Requests to the API may carry large code archives: be generous.
const API_TIMEOUT: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `function top` waits at most this long for a function's metrics.
const METRICS_TIMEOUT: Duration = Duration::from_secs(5);

/// The local backend.
pub struct LocalBackend {
    config: ClientConfig,
    http: Client,
}

impl LocalBackend {
    /// A backend for the server described by `config`.
    pub fn new(config: ClientConfig) -> Result<LocalBackend, ClientError> {
        // No overall timeout on the client: `logs -f` and function calls
        // last as long as they need; API requests set their own.
        let http = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(None)
            .build()
            .map_err(|e| ClientError::Other(format!("cannot build HTTP client: {e}")))?;
        Ok(LocalBackend { config, http })
    }

    fn collection_url(&self, kind: Kind, namespace: &str) -> String {
        match kind {
            Kind::Secret => format!(
                "{}/api/v1/namespaces/{}/secrets",
                self.config.server, namespace
            ),
            _ => format!(
                "{}/apis/kubeless.io/v1beta1/namespaces/{}/{}",
                self.config.server,
                namespace,
                kind.plural()
            ),
        }
    }

    fn object_url(&self, kind: Kind, namespace: &str, name: &str) -> String {
        format!("{}/{}", self.collection_url(kind, namespace), name)
    }

    fn authed(&self, rb: RequestBuilder) -> RequestBuilder {
        match &self.config.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Send a request to the API; non-2xx answers become errors.
    fn send(&self, rb: RequestBuilder, timeout: Option<Duration>) -> Result<Response, ClientError> {
        let rb = self.authed(rb);
        let rb = match timeout {
            Some(t) => rb.timeout(t),
            None => rb,
        };
        let resp = rb
            .send()
            .map_err(|e| self.transport_error(&self.config.server, e))?;
        check(resp)
    }

    fn send_json(&self, rb: RequestBuilder) -> Result<Value, ClientError> {
        let resp = self.send(rb, Some(API_TIMEOUT))?;
        let bytes = resp
            .bytes()
            .map_err(|e| ClientError::Other(format!("cannot read the server's answer: {e}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Other(format!("the server answered invalid JSON: {e}")))
    }

    fn transport_error(&self, target: &str, e: reqwest::Error) -> ClientError {
        if e.is_connect() {
            ClientError::Unreachable {
                server: target.to_string(),
                cause: connect_cause(&e),
            }
        } else if e.is_timeout() {
            ClientError::Other(format!("no answer from {target}: timed out"))
        } else {
            ClientError::Other(format!("request to {target} failed: {}", root_cause(&e)))
        }
    }
}

/// Turn a non-2xx answer into the matching error.
fn check(resp: Response) -> Result<Response, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    if status.as_u16() == 401 {
        return Err(ClientError::Unauthorized);
    }
    let body = resp.bytes().map(|b| b.to_vec()).unwrap_or_default();
    Err(match ApiStatus::parse(&body) {
        Some(s) => ClientError::Status(s),
        None => ClientError::Status(ApiStatus {
            code: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error").to_string(),
            message: first_line(&String::from_utf8_lossy(&body)).to_string(),
            causes: Vec::new(),
        }),
    })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("").trim()
}

/// The innermost error message of a chain.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A short reason for a failed connection ("connection refused").
fn connect_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                std::io::ErrorKind::TimedOut => "connection timed out".to_string(),
                _ => io.to_string(),
            };
        }
        cur = err.source();
    }
    root_cause(e)
}

impl Backend for LocalBackend {
    fn server_config(&self) -> Result<ServerConfig, ClientError> {
        let url = format!("{}/api/v1/config", self.config.server);
        let v = self.send_json(self.http.get(url))?;
        serde_json::from_value(v)
            .map_err(|e| ClientError::Other(format!("unexpected server config: {e}")))
    }

    fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Value, ClientError> {
        self.send_json(self.http.get(self.object_url(kind, namespace, name)))
    }

    fn list(
        &self,
        kind: Kind,
        namespace: &str,
        selector: Option<&str>,
    ) -> Result<Vec<Value>, ClientError> {
        let mut rb = self.http.get(self.collection_url(kind, namespace));
        if let Some(sel) = selector {
            rb = rb.query(&[("labelSelector", sel)]);
        }
        let mut v = self.send_json(rb)?;
        match v.get_mut("items").map(Value::take) {
            Some(Value::Array(items)) => Ok(items),
            Some(Value::Null) | None => Ok(Vec::new()),
            Some(_) => Err(ClientError::Other(
                "the server answered a list without items".to_string(),
            )),
        }
    }

    fn create(&self, kind: Kind, namespace: &str, object: &Value) -> Result<Value, ClientError> {
        self.send_json(
            self.http
                .post(self.collection_url(kind, namespace))
                .json(object),
        )
    }

    fn replace(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        object: &Value,
    ) -> Result<Value, ClientError> {
        self.send_json(
            self.http
                .put(self.object_url(kind, namespace, name))
                .json(object),
        )
    }

    fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Result<Value, ClientError> {
        self.send_json(self.http.delete(self.object_url(kind, namespace, name)))
    }

    fn function_logs(
        &self,
        namespace: &str,
        name: &str,
        follow: bool,
        out: &mut dyn Write,
    ) -> Result<(), ClientError> {
        let url = format!("{}/log", self.object_url(Kind::Function, namespace, name));
        let mut rb = self.http.get(url);
        if follow {
            rb = rb.query(&[("follow", "true")]);
        }
        let mut resp = self.send(rb, if follow { None } else { Some(API_TIMEOUT) })?;
        let mut buf = [0u8; 8192];
        loop {
            let n = std::io::Read::read(&mut resp, &mut buf)
                .map_err(|e| ClientError::Other(format!("log stream broken: {e}")))?;
            if n == 0 {
                break;
            }
            // Flush every chunk so `logs -f` shows lines as they come.
            match out.write_all(&buf[..n]).and_then(|_| out.flush()) {
                Ok(()) => {}
                // The reader went away (`logs -f | head`): done.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(ClientError::Other(format!("cannot write logs: {e}"))),
            }
        }
        Ok(())
    }

    fn function_metrics(&self, namespace: &str, name: &str) -> Result<String, ClientError> {
        let url = format!(
            "{}/metrics",
            self.object_url(Kind::Function, namespace, name)
        );
        let resp = self.send(self.http.get(url), Some(METRICS_TIMEOUT))?;
        resp.text()
            .map_err(|e| ClientError::Other(format!("cannot read metrics: {e}")))
    }

    fn call_function(
        &self,
        namespace: &str,
        name: &str,
        request: &CallRequest,
    ) -> Result<CallResponse, ClientError> {
        let url = format!("{}/{}/{}", self.config.gateway, namespace, name);
        let mut rb = match &request.body {
            None => self.http.get(&url),
            Some(body) => self.http.post(&url).body(body.clone()),
        };
        for (k, v) in &request.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        let resp = rb.send().map_err(|e| match self.transport_error(&self.config.gateway, e) {
            ClientError::Unreachable { server, cause } => ClientError::Other(format!(
                "cannot reach the kubeless gateway at {server}: {cause}. Start it with 'kubeless server'"
            )),
            other => other,
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .map_err(|e| ClientError::Other(format!("cannot read the function's answer: {e}")))?
            .to_vec();
        Ok(CallResponse { status, body })
    }
}
