//! [`Backend`] over a Kubernetes cluster running Kubeless (spec 1.0–1.5).
//!
//! The kubeconfig is found as kubectl finds it (`KUBECONFIG` colon list,
//! else `~/.kube/config`, current context). Objects are the `kubeless.io`
//! custom resources, read and written as JSON so no field is lost. Function
//! calls and metrics go through the API server's service proxy, logs come
//! from the first ready pod labelled `function=<name>` (else from one that
//! crashed, else from a failed init container: [`log_target`]), the server
//! config from the `kubeless-config` ConfigMap.
//!
//! The CLI is synchronous; kube-rs is async. The backend owns a small
//! current-thread tokio runtime and blocks on it for each request (several
//! threads may block on it at once: `function top` does).
//!
//! Deciding the shape of a request (path, headers, body) is done by pure
//! functions tested below; `call` and `logs` need a running pod, which only
//! a real cluster has, so their IO path is exercised only there.

use std::io::Write;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use kube::config::Kubeconfig;
use kube::{Client, Config};
use kubeless_api::Kind;
use kubeless_plan::images::RuntimeImages;
use serde_json::{Value, json};

use super::{ApiStatus, Backend, CallRequest, CallResponse, ClientError, ServerConfig};

/// `function top` waits at most this long for a function's metrics.
const METRICS_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests to the API may carry large code archives: be generous.
const API_TIMEOUT: Duration = Duration::from_secs(300);
const CRD_FUNCTIONS: &str = "functions.kubeless.io";
const DEFAULT_INSTALL_NAMESPACE: &str = "kubeless";
const DEFAULT_CONFIG_NAME: &str = "kubeless-config";

/// Where Kubeless is installed, as the user overrides it
/// (`KUBELESS_NAMESPACE`, `KUBELESS_CONFIG`).
#[derive(Debug, Clone, Default)]
pub struct KubeOptions {
    pub install_namespace: Option<String>,
    pub config_name: Option<String>,
}

/// The Kubernetes backend.
pub struct KubeBackend {
    rt: tokio::runtime::Runtime,
    client: Client,
    server: String,
    options: KubeOptions,
}

/// The namespace of the kubeconfig's current context, read without
/// connecting; `None` when there is none (the caller falls back to
/// `default`).
pub fn context_namespace() -> Option<String> {
    let kc = Kubeconfig::read().ok()?;
    let current = kc.current_context.as_deref()?;
    kc.contexts
        .iter()
        .find(|c| c.name == current)?
        .context
        .as_ref()?
        .namespace
        .clone()
        .filter(|ns| !ns.is_empty())
}

impl KubeBackend {
    /// Load the kubeconfig and build a client (no request is sent yet).
    pub fn new(options: KubeOptions) -> Result<KubeBackend, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                ClientError::Other(format!("cannot start the kube client runtime: {e}"))
            })?;
        let (client, server) = rt.block_on(async {
            let config = Config::infer()
                .await
                .map_err(|e| ClientError::Other(format!("cannot load the kubeconfig: {e}")))?;
            let server = config.cluster_url.to_string();
            let client = Client::try_from(config)
                .map_err(|e| ClientError::Other(format!("cannot build the kube client: {e}")))?;
            Ok::<_, ClientError>((client, server))
        })?;
        Ok(KubeBackend {
            rt,
            client,
            server,
            options,
        })
    }

    /// Send one request; answers status and body, whatever the status.
    async fn send(
        &self,
        req: Request<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let exchange = async {
            let resp = self
                .client
                .send(req.map(Body::from))
                .await
                .map_err(|e| self.transport_error(&e))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| {
                    ClientError::Other(format!("cannot read the API server's answer: {e}"))
                })?
                .to_bytes()
                .to_vec();
            Ok((status, body))
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, exchange).await.map_err(|_| {
                ClientError::Other(format!("no answer from {}: timed out", self.server))
            })?,
            None => exchange.await,
        }
    }

    fn transport_error(&self, e: &kube::Error) -> ClientError {
        ClientError::Other(format!(
            "cannot reach the Kubernetes API server at {}: {}",
            self.server,
            root_cause(e)
        ))
    }

    /// A JSON request whose non-2xx answers become errors.
    fn json(&self, req: Request<Vec<u8>>) -> Result<Value, ClientError> {
        let (status, body) = self.rt.block_on(self.send(req, Some(API_TIMEOUT)))?;
        check(status, &body)?;
        serde_json::from_slice(&body)
            .map_err(|e| ClientError::Other(format!("the API server answered invalid JSON: {e}")))
    }

    fn get_path(&self, path: &str) -> Result<Value, ClientError> {
        self.json(request(Method::GET, path, None)?)
    }

    /// Items of a list answer.
    fn list_path(&self, path: &str) -> Result<Vec<Value>, ClientError> {
        let mut v = self.get_path(path)?;
        match v.get_mut("items").map(Value::take) {
            Some(Value::Array(items)) => Ok(items),
            Some(Value::Null) | None => Ok(Vec::new()),
            Some(_) => Err(ClientError::Other(
                "the API server answered a list without items".to_string(),
            )),
        }
    }

    /// A Function the controller has not reported on yet gets its STATUS
    /// from the Deployment's ready replicas.
    fn fill_status(&self, namespace: &str, f: &mut Value) {
        if f.get("status").is_some_and(|s| !s.is_null()) {
            return;
        }
        let Some(name) = f.pointer("/metadata/name").and_then(Value::as_str) else {
            return;
        };
        let path = format!("/apis/apps/v1/namespaces/{namespace}/deployments/{name}");
        if let Ok(d) = self.get_path(&path)
            && let Some(st) = status_from_deployment(&d)
        {
            f["status"] = st;
        }
    }

    fn service(&self, namespace: &str, name: &str) -> Result<Value, ClientError> {
        self.get_path(&format!("/api/v1/namespaces/{namespace}/services/{name}"))
            .map_err(|e| {
                if e.is_not_found() {
                    ClientError::Other(format!("Unable to find the service for {name}"))
                } else {
                    e
                }
            })
    }
}

/// Build a request with a JSON body (when given).
fn request(
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Request<Vec<u8>>, ClientError> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::ACCEPT, "application/json");
    let bytes = match body {
        Some(v) => {
            b = b.header(http::header::CONTENT_TYPE, "application/json");
            serde_json::to_vec(v)
                .map_err(|e| ClientError::Other(format!("cannot encode object: {e}")))?
        }
        None => Vec::new(),
    };
    b.body(bytes)
        .map_err(|e| ClientError::Other(format!("invalid request {path}: {e}")))
}

/// Turn a non-2xx answer into the matching error.
fn check(status: StatusCode, body: &[u8]) -> Result<(), ClientError> {
    if status.is_success() {
        return Ok(());
    }
    if status == StatusCode::UNAUTHORIZED {
        return Err(ClientError::Other(
            "the API server refused the credentials (401): check the kubeconfig".to_string(),
        ));
    }
    Err(ClientError::Status(ApiStatus::parse(body).unwrap_or_else(
        || {
            ApiStatus {
                code: status.as_u16(),
                reason: status.canonical_reason().unwrap_or("Error").to_string(),
                message: String::from_utf8_lossy(body)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string(),
                causes: Vec::new(),
            }
        },
    )))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// API version of a kind's objects.
fn api_version(kind: Kind) -> &'static str {
    match kind {
        Kind::Secret => "v1",
        _ => "kubeless.io/v1beta1",
    }
}

/// Collection path of a kind in a namespace.
pub fn collection_path(kind: Kind, namespace: &str) -> String {
    match kind {
        Kind::Secret => format!("/api/v1/namespaces/{namespace}/secrets"),
        _ => format!(
            "/apis/kubeless.io/v1beta1/namespaces/{namespace}/{}",
            kind.plural()
        ),
    }
}

fn object_path(kind: Kind, namespace: &str, name: &str) -> String {
    format!("{}/{name}", collection_path(kind, namespace))
}

/// `?labelSelector=` with the selector percent-encoded.
fn selector_query(selector: &str) -> String {
    let mut out = String::from("?labelSelector=");
    for b in selector.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The object as sent: `apiVersion`/`kind` filled in when missing.
fn with_type(kind: Kind, object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(m) = o.as_object_mut() {
        m.entry("apiVersion")
            .or_insert_with(|| json!(api_version(kind)));
        m.entry("kind").or_insert_with(|| json!(kind.name()));
    }
    o
}

/// A Function status made from its Deployment (`None` without counts).
fn status_from_deployment(d: &Value) -> Option<Value> {
    let replicas = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let ready = d
        .pointer("/status/readyReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let phase = if ready > 0 { "Ready" } else { "Starting" };
    Some(json!({"phase": phase, "replicas": replicas, "readyReplicas": ready}))
}

/// The port segment of a service proxy path: the first port's name, else
/// its number (spec 1.1 `call`).
pub fn port_segment(service: &Value) -> Option<String> {
    let port = service.pointer("/spec/ports/0")?;
    match port.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => Some(n.to_string()),
        _ => port
            .get("port")
            .and_then(Value::as_i64)
            .map(|p| p.to_string()),
    }
}

/// The service proxy request of `function call`: GET without body, POST
/// with the data, both to `.../proxy/`. The trailing slash matters: current
/// API servers answer `.../proxy` with a 301 to `.../proxy/` (Kubeless's
/// CLI sent the GET without it, which a user saw as "the function answered
/// 301"), and a redirect would drop a POST's body.
pub fn call_request(
    namespace: &str,
    name: &str,
    port: &str,
    call: &CallRequest,
) -> Result<Request<Vec<u8>>, ClientError> {
    let base = format!("/api/v1/namespaces/{namespace}/services/{name}:{port}/proxy");
    let (method, uri, body) = match &call.body {
        None => (Method::GET, format!("{base}/"), Vec::new()),
        Some(b) => (Method::POST, format!("{base}/"), b.clone().into_bytes()),
    };
    let mut rb = Request::builder().method(method).uri(uri);
    for (k, v) in &call.headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    rb.body(body)
        .map_err(|e| ClientError::Other(format!("invalid call request: {e}")))
}

/// The metrics path of a function (`function top`: the first port's number).
pub fn metrics_path(namespace: &str, name: &str, service: &Value) -> Option<String> {
    let port = service.pointer("/spec/ports/0/port")?.as_i64()?;
    Some(format!(
        "/api/v1/namespaces/{namespace}/services/{name}:{port}/proxy/metrics"
    ))
}

/// The first pod whose containers are all ready.
pub fn ready_pod(pods: &[Value]) -> Option<String> {
    pods.iter()
        .find(|p| {
            p.pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    !cs.is_empty()
                        && cs
                            .iter()
                            .all(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                })
        })
        .and_then(|p| p.pointer("/metadata/name")?.as_str())
        .map(str::to_string)
}

/// Whose log `function logs` shows: the function's container in the first
/// ready pod; else in a pod where it has run (a crash loop: the kubelet
/// answers the last run's log); else an init container that failed (the
/// dependencies that would not install). `None`: nothing has run yet.
pub fn log_target(pods: &[Value], function: &str) -> Option<(String, String)> {
    let name = |p: &Value| {
        p.pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if let Some(pod) = ready_pod(pods) {
        return Some((pod, function.to_string()));
    }
    let statuses = |p: &Value, key: &str| {
        p.pointer(&format!("/status/{key}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let has_run = |c: &Value| {
        c.pointer("/state/running").is_some()
            || c.pointer("/state/terminated").is_some()
            || c.pointer("/lastState/terminated").is_some()
    };
    let failed = |c: &Value| {
        [
            "/state/terminated/exitCode",
            "/lastState/terminated/exitCode",
        ]
        .iter()
        .any(|k| c.pointer(k).and_then(Value::as_i64).is_some_and(|e| e != 0))
    };
    let live = pods
        .iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none());
    for p in live.clone() {
        let ran = statuses(p, "containerStatuses")
            .iter()
            .any(|c| c.get("name").and_then(Value::as_str) == Some(function) && has_run(c));
        if ran {
            return Some((name(p)?, function.to_string()));
        }
    }
    live.into_iter().find_map(|p| {
        let init = statuses(p, "initContainerStatuses")
            .into_iter()
            .find(|c| failed(c))?;
        Some((name(p)?, init.get("name")?.as_str()?.to_string()))
    })
}

/// The log path of the function's container in a pod.
pub fn log_path(namespace: &str, pod: &str, container: &str, follow: bool) -> String {
    let mut p = format!("/api/v1/namespaces/{namespace}/pods/{pod}/log?container={container}");
    if follow {
        p.push_str("&follow=true");
    }
    p
}

/// Where the kubeless ConfigMap is (spec 1.0): env, else the annotations of
/// the `functions.kubeless.io` CRD, else `kubeless/kubeless-config`.
pub fn install_location(options: &KubeOptions, crd: Option<&Value>) -> (String, String) {
    let annotation = |key: &str| {
        crd.and_then(|c| c.pointer("/metadata/annotations")?.get(key)?.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let ns = options
        .install_namespace
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| annotation("kubeless.io/namespace"))
        .unwrap_or_else(|| DEFAULT_INSTALL_NAMESPACE.to_string());
    let name = options
        .config_name
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| annotation("kubeless.io/config"))
        .unwrap_or_else(|| DEFAULT_CONFIG_NAME.to_string());
    (ns, name)
}

impl Backend for KubeBackend {
    fn server_config(&self) -> Result<ServerConfig, ClientError> {
        // The CRD is only needed for its annotations: without rights to
        // read it, the defaults apply.
        let crd = self
            .get_path(&format!(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_FUNCTIONS}"
            ))
            .ok();
        let (ns, name) = install_location(&self.options, crd.as_ref());
        let cm = self
            .get_path(&format!("/api/v1/namespaces/{ns}/configmaps/{name}"))
            .map_err(|e| {
                ClientError::Other(format!("Unable to read the configmap {ns}/{name}: {e}"))
            })?;
        let images = match cm.pointer("/data/runtime-images").and_then(Value::as_str) {
            Some(text) => RuntimeImages::parse(text).map_err(|e| {
                ClientError::Other(format!("runtime-images of {ns}/{name} is invalid: {e}"))
            })?,
            None => RuntimeImages::defaults(),
        };
        Ok(ServerConfig {
            runtimes: images.names(),
            gateway: self.server.clone(),
            ..ServerConfig::default()
        })
    }

    fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Value, ClientError> {
        let mut v = self.get_path(&object_path(kind, namespace, name))?;
        if kind == Kind::Function {
            self.fill_status(namespace, &mut v);
        }
        Ok(v)
    }

    fn list(
        &self,
        kind: Kind,
        namespace: &str,
        selector: Option<&str>,
    ) -> Result<Vec<Value>, ClientError> {
        let mut path = collection_path(kind, namespace);
        if let Some(sel) = selector {
            path.push_str(&selector_query(sel));
        }
        let mut items = self.list_path(&path)?;
        for item in &mut items {
            // A list's items carry no apiVersion/kind; `-o yaml` shows them.
            *item = with_type(kind, item);
            if kind == Kind::Function {
                self.fill_status(namespace, item);
            }
        }
        Ok(items)
    }

    fn create(&self, kind: Kind, namespace: &str, object: &Value) -> Result<Value, ClientError> {
        self.json(request(
            Method::POST,
            &collection_path(kind, namespace),
            Some(&with_type(kind, object)),
        )?)
    }

    fn replace(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        object: &Value,
    ) -> Result<Value, ClientError> {
        self.json(request(
            Method::PUT,
            &object_path(kind, namespace, name),
            Some(&with_type(kind, object)),
        )?)
    }

    fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Result<Value, ClientError> {
        self.json(request(
            Method::DELETE,
            &object_path(kind, namespace, name),
            None,
        )?)
    }

    fn function_logs(
        &self,
        namespace: &str,
        name: &str,
        follow: bool,
        out: &mut dyn Write,
    ) -> Result<(), ClientError> {
        let pods = self.list_path(&format!(
            "/api/v1/namespaces/{namespace}/pods{}",
            selector_query(&format!("function={name}"))
        ))?;
        let Some((pod, container)) = log_target(&pods, name) else {
            return Err(ClientError::Other(
                "No function pod is running: there is no pod ready".to_string(),
            ));
        };
        if container != name {
            crate::log::info(format!(
                "the function has not started: the log of init container {container} of pod {pod}"
            ));
        }
        let req = request(
            Method::GET,
            &log_path(namespace, &pod, &container, follow),
            None,
        )?;
        self.rt.block_on(async {
            let resp = self
                .client
                .send(req.map(Body::from))
                .await
                .map_err(|e| self.transport_error(&e))?;
            let status = resp.status();
            let mut body = resp.into_body();
            if !status.is_success() {
                let bytes = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes().to_vec())
                    .unwrap_or_default();
                return check(status, &bytes);
            }
            while let Some(frame) = body.frame().await {
                let frame =
                    frame.map_err(|e| ClientError::Other(format!("log stream broken: {e}")))?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                // Flush every chunk so `logs -f` shows lines as they come.
                match out.write_all(&data).and_then(|_| out.flush()) {
                    Ok(()) => {}
                    // The reader went away (`logs -f | head`): done.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(ClientError::Other(format!("cannot write logs: {e}"))),
                }
            }
            Ok(())
        })
    }

    fn function_metrics(&self, namespace: &str, name: &str) -> Result<String, ClientError> {
        let svc = self.service(namespace, name)?;
        let path = metrics_path(namespace, name, &svc)
            .ok_or_else(|| ClientError::Other(format!("the service {name} has no port")))?;
        let (status, body) = self
            .rt
            .block_on(self.send(request(Method::GET, &path, None)?, Some(METRICS_TIMEOUT)))?;
        check(status, &body)?;
        String::from_utf8(body).map_err(|e| ClientError::Other(format!("cannot read metrics: {e}")))
    }

    fn call_function(
        &self,
        namespace: &str,
        name: &str,
        request: &CallRequest,
    ) -> Result<CallResponse, ClientError> {
        let svc = self.service(namespace, name)?;
        let port = port_segment(&svc)
            .ok_or_else(|| ClientError::Other(format!("the service {name} has no port")))?;
        let req = call_request(namespace, name, &port, request)?;
        let (status, body) = self.rt.block_on(self.send(req, None))?;
        Ok(CallResponse {
            status: status.as_u16(),
            body,
        })
    }

    fn list_autoscalers(&self, namespace: &str) -> Result<Vec<Value>, ClientError> {
        self.list_path(&format!(
            "/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers{}",
            selector_query("created-by=kubeless")
        ))
        .map(|items| {
            items
                .into_iter()
                .map(|mut h| {
                    if let Some(m) = h.as_object_mut() {
                        m.insert("apiVersion".into(), json!("autoscaling/v2"));
                        m.insert("kind".into(), json!("HorizontalPodAutoscaler"));
                    }
                    h
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(r: &Request<Vec<u8>>) -> Vec<(String, String)> {
        r.headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect()
    }

    #[test]
    fn call_without_data_is_a_get_to_the_proxy() {
        let call = crate::commands::function::call_request(None);
        let r = call_request("ns1", "hello", "http-function-port", &call).expect("request");
        assert_eq!(r.method(), Method::GET);
        assert_eq!(
            r.uri().to_string(),
            "/api/v1/namespaces/ns1/services/hello:http-function-port/proxy/"
        );
        assert!(r.body().is_empty());
        let h = headers(&r);
        assert!(
            h.iter()
                .all(|(k, _)| k != "content-type" && k != "event-type")
        );
        assert!(h.contains(&("event-namespace".into(), "cli.kubeless.io".into())));
        assert!(h.iter().any(|(k, v)| k == "event-id" && v.len() == 15));
        assert!(h.iter().any(|(k, v)| k == "event-time" && v.ends_with('Z')));
    }

    #[test]
    fn call_with_data_posts_to_the_proxy_with_a_trailing_slash() {
        let call = crate::commands::function::call_request(Some(r#"{"a":1}"#));
        let r = call_request("default", "hello", "8080", &call).expect("request");
        assert_eq!(r.method(), Method::POST);
        assert_eq!(
            r.uri().to_string(),
            "/api/v1/namespaces/default/services/hello:8080/proxy/"
        );
        assert_eq!(r.body(), br#"{"a":1}"#);
        let h = headers(&r);
        assert!(h.contains(&("content-type".into(), "application/json".into())));
        assert!(h.contains(&("event-type".into(), "application/json".into())));

        let call = crate::commands::function::call_request(Some("plain"));
        let r = call_request("default", "hello", "8080", &call).expect("request");
        let h = headers(&r);
        assert!(h.contains(&(
            "content-type".into(),
            "application/x-www-form-urlencoded".into()
        )));
    }

    #[test]
    fn port_segment_prefers_the_name() {
        let named = json!({"spec": {"ports": [{"name": "http-function-port", "port": 8080}]}});
        let unnamed = json!({"spec": {"ports": [{"name": "", "port": 8080}]}});
        assert_eq!(port_segment(&named).as_deref(), Some("http-function-port"));
        assert_eq!(port_segment(&unnamed).as_deref(), Some("8080"));
        assert_eq!(port_segment(&json!({"spec": {}})), None);
        assert_eq!(
            metrics_path("ns", "f", &named).as_deref(),
            Some("/api/v1/namespaces/ns/services/f:8080/proxy/metrics")
        );
    }

    #[test]
    fn logs_come_from_the_first_fully_ready_pod() {
        let pods = vec![
            json!({"metadata": {"name": "p0"}, "status": {}}),
            json!({"metadata": {"name": "p1"}, "status": {"containerStatuses": [{"ready": true}, {"ready": false}]}}),
            json!({"metadata": {"name": "p2"}, "status": {"containerStatuses": [{"ready": true}]}}),
        ];
        assert_eq!(ready_pod(&pods).as_deref(), Some("p2"));
        assert_eq!(ready_pod(&pods[..2]), None);
        assert_eq!(
            log_path("ns", "p2", "hello", true),
            "/api/v1/namespaces/ns/pods/p2/log?container=hello&follow=true"
        );
        assert_eq!(
            selector_query("function=hello"),
            "?labelSelector=function%3Dhello"
        );
    }

    #[test]
    fn logs_of_a_function_that_does_not_run() {
        let crashing = json!({"metadata": {"name": "p1"}, "status": {
            "initContainerStatuses": [{"name": "prepare", "state": {"terminated": {"exitCode": 0}}}],
            "containerStatuses": [{"name": "f", "ready": false,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 3}}}]}});
        let init_failed = json!({"metadata": {"name": "p2"}, "status": {
            "initContainerStatuses": [{"name": "prepare", "state": {"terminated": {"exitCode": 0}}},
                {"name": "install", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1}}}],
            "containerStatuses": [{"name": "f", "ready": false,
                "state": {"waiting": {"reason": "PodInitializing"}}}]}});
        let pulling = json!({"metadata": {"name": "p3"}, "status": {
            "containerStatuses": [{"name": "f", "ready": false,
                "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}});
        let ready = json!({"metadata": {"name": "p4"}, "status": {
            "containerStatuses": [{"name": "f", "ready": true, "state": {"running": {}}}]}});
        let target = |pods: &[Value]| log_target(pods, "f");
        let pair = |p: &str, c: &str| Some((p.to_string(), c.to_string()));
        assert_eq!(
            target(&[init_failed.clone(), crashing.clone(), ready]),
            pair("p4", "f")
        );
        assert_eq!(
            target(&[init_failed.clone(), crashing.clone()]),
            pair("p1", "f")
        );
        assert_eq!(
            target(&[pulling.clone(), init_failed]),
            pair("p2", "install")
        );
        assert_eq!(target(&[pulling]), None);
    }

    #[test]
    fn install_location_rules() {
        let crd = json!({"metadata": {"annotations": {"kubeless.io/namespace": "kl", "kubeless.io/config": "cfg"}}});
        let none = KubeOptions::default();
        assert_eq!(
            install_location(&none, None),
            ("kubeless".to_string(), "kubeless-config".to_string())
        );
        assert_eq!(
            install_location(&none, Some(&crd)),
            ("kl".to_string(), "cfg".to_string())
        );
        let env = KubeOptions {
            install_namespace: Some("envns".into()),
            config_name: Some("envcfg".into()),
        };
        assert_eq!(
            install_location(&env, Some(&crd)),
            ("envns".to_string(), "envcfg".to_string())
        );
    }

    #[test]
    fn status_from_a_deployment() {
        let d = json!({"spec": {"replicas": 2}, "status": {"readyReplicas": 1}});
        assert_eq!(
            status_from_deployment(&d),
            Some(json!({"phase": "Ready", "replicas": 2, "readyReplicas": 1}))
        );
        let d = json!({"spec": {}});
        assert_eq!(
            status_from_deployment(&d),
            Some(json!({"phase": "Starting", "replicas": 1, "readyReplicas": 0}))
        );
    }
}
