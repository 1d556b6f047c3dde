//! The local API: HTTP+JSON on loopback, every route but `/healthz` behind a
//! bearer token. Paths mirror the Kubernetes API (docs/local-api.md) so both
//! CLI backends speak one shape.
//!
//! Every write is validated in full (all problems with their field paths)
//! before it touches the store, so nothing is ever stored half-way. Errors
//! are Kubernetes `Status` objects.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use kubeless_api::validate::{self, ValidationErrors};
use kubeless_api::{Function, Kind, Secret};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Ctx;
use crate::store::StoreError;

/// Largest request body the API accepts.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Clone)]
pub struct ApiState {
    pub ctx: Arc<Ctx>,
    pub token: Arc<String>,
    pub gateway_url: String,
    pub http: reqwest::Client,
}

/// An API error as a Kubernetes `Status`.
#[derive(Debug)]
pub struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
    causes: Vec<Value>,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            causes: Vec::new(),
        }
    }
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NotFound", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match &e {
            StoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
            StoreError::AlreadyExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "AlreadyExists", e.to_string())
            }
            StoreError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "Conflict", e.to_string())
            }
            StoreError::NoName => ApiError::bad_request(e.to_string()),
            _ => {
                tracing::error!(error = %e, "store failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    format!("store failure: {e}"),
                )
            }
        }
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(e: ValidationErrors) -> ApiError {
        ApiError {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            reason: "Invalid",
            message: e.to_string(),
            causes: e
                .iter()
                .map(|c| json!({"field": c.field, "message": c.message}))
                .collect(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "code": self.code.as_u16(), "reason": self.reason, "message": self.message,
        });
        if !self.causes.is_empty() {
            body["details"] = json!({"causes": self.causes});
        }
        (self.code, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The API router.
pub fn router(state: ApiState) -> Router {
    let objects = Router::new()
        .route("/version", get(version))
        .route("/api/v1/config", get(config))
        .route("/apis/kubeless.io/v1beta1/{plural}", get(list_all))
        .route(
            "/apis/kubeless.io/v1beta1/namespaces/{ns}/{plural}",
            get(list_ns).post(create),
        )
        .route(
            "/apis/kubeless.io/v1beta1/namespaces/{ns}/{plural}/{name}",
            get(read).put(replace).delete(remove),
        )
        .route(
            "/apis/kubeless.io/v1beta1/namespaces/{ns}/functions/{name}/log",
            get(function_log),
        )
        .route(
            "/apis/kubeless.io/v1beta1/namespaces/{ns}/functions/{name}/metrics",
            get(function_metrics),
        )
        .route(
            "/api/v1/namespaces/{ns}/secrets",
            get(secret_list).post(secret_create),
        )
        .route(
            "/api/v1/namespaces/{ns}/secrets/{name}",
            get(secret_read).put(secret_replace).delete(secret_remove),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(trigger_metrics))
        .merge(objects)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn same_token(a: &[u8], b: &[u8]) -> bool {
    // Constant-time compare: the token is the only thing between a local
    // user and running code as this server.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same_token(given.as_bytes(), st.token.as_bytes()) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "missing or wrong token: use the token in $KUBELESS_HOME/config.json",
        )
        .into_response();
    }
    next.run(req).await
}

async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

async fn config(State(st): State<ApiState>) -> Json<Value> {
    // `runtimes` stays the list a Kubeless client checks against; the
    // runtimes that would need a toolchain installed come separately, with
    // how to install it, so a client can say so instead of "Invalid runtime".
    let catalogue = &st.ctx.catalogue;
    let unavailable: Vec<Value> = catalogue
        .unavailable
        .iter()
        .map(|r| {
            json!({
                "language": r.language.as_str(),
                "runtimes": r.versions.iter().map(|v| format!("{}{v}", r.id)).collect::<Vec<_>>(),
                "hint": r.language.toolchain_hint(),
            })
        })
        .collect();
    let installed: serde_json::Map<String, Value> = catalogue
        .installed
        .iter()
        .map(|(l, v)| (l.as_str().to_string(), json!(v)))
        .collect();
    Json(json!({
        "runtimes": catalogue.names(),
        "unavailableRuntimes": unavailable,
        "installedToolchains": installed,
        "gateway": st.gateway_url,
        "home": st.ctx.home.to_string_lossy(),
        "memoryLimitsEnforced": st.ctx.instance.limits.enforced(),
        "kafkaBrokers": st.ctx.triggers.kafka_brokers,
        "natsUrl": st.ctx.triggers.nats_url,
    }))
}

/// The server's own metrics (per-trigger delivery counters), Prometheus
/// text, without a token like `/healthz`.
async fn trigger_metrics(State(st): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.ctx.triggers.stats.render(),
    )
        .into_response()
}

fn kubeless_kind(plural: &str) -> ApiResult<Kind> {
    match Kind::from_plural(plural) {
        Some(Kind::Secret) | None => Err(ApiError::not_found(format!(
            "the server has no resource type {plural:?}"
        ))),
        Some(k) => Ok(k),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        })?
        .map_err(ApiError::from)
}

fn list_body(kind: Kind, items: Vec<Value>) -> Json<Value> {
    Json(
        json!({"apiVersion": kind.api_version(), "kind": format!("{}List", kind.name()), "items": items}),
    )
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "labelSelector")]
    label_selector: Option<String>,
}

fn filter_labels(items: Vec<Value>, selector: Option<&str>) -> ApiResult<Vec<Value>> {
    let Some(sel) = selector.filter(|s| !s.is_empty()) else {
        return Ok(items);
    };
    let mut want = Vec::new();
    for part in sel.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            ApiError::bad_request(format!("labelSelector {sel:?}: expected key=value pairs"))
        })?;
        want.push((
            k.trim().to_string(),
            v.trim_start_matches('=').trim().to_string(),
        ));
    }
    Ok(items
        .into_iter()
        .filter(|o| {
            want.iter().all(|(k, v)| {
                o.pointer("/metadata/labels")
                    .and_then(|l| l.get(k))
                    .and_then(Value::as_str)
                    == Some(v)
            })
        })
        .collect())
}

async fn list_all(
    State(st): State<ApiState>,
    Path(plural): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let kind = kubeless_kind(&plural)?;
    let store = st.ctx.store.clone();
    let items = blocking(move || store.list(kind, None)).await?;
    Ok(list_body(
        kind,
        filter_labels(items, q.label_selector.as_deref())?,
    ))
}

async fn list_ns(
    State(st): State<ApiState>,
    Path((ns, plural)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let kind = kubeless_kind(&plural)?;
    let store = st.ctx.store.clone();
    let items = blocking(move || store.list(kind, Some(&ns))).await?;
    Ok(list_body(
        kind,
        filter_labels(items, q.label_selector.as_deref())?,
    ))
}

async fn read(
    State(st): State<ApiState>,
    Path((ns, plural, name)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let kind = kubeless_kind(&plural)?;
    get_one(&st, kind, ns, name).await.map(Json)
}

async fn get_one(st: &ApiState, kind: Kind, ns: String, name: String) -> ApiResult<Value> {
    let store = st.ctx.store.clone();
    let (n2, name2) = (ns.clone(), name.clone());
    blocking(move || store.get(kind, &n2, &name2))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{kind} {ns}/{name} not found")))
}

/// Parse, default and validate an object of `kind` for namespace `ns`.
fn admit(
    st: &ApiState,
    kind: Kind,
    ns: &str,
    name: Option<&str>,
    body: &Bytes,
) -> ApiResult<Value> {
    let mut obj: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not a valid {kind} object: {e}"
        ))
    })?;
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "the request body is not a {kind} object"
        )));
    }
    if let Some(k) = obj
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        && !k.eq_ignore_ascii_case(kind.name())
    {
        return Err(ApiError::bad_request(format!(
            "the object is a {k}, not a {kind}"
        )));
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    let meta_ns = obj["metadata"]
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !meta_ns.is_empty() && meta_ns != ns {
        return Err(ApiError::bad_request(format!(
            "metadata.namespace {meta_ns:?} does not match the namespace {ns:?} of the request"
        )));
    }
    obj["metadata"]["namespace"] = json!(ns);
    if let Some(name) = name {
        let meta_name = obj["metadata"]
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !meta_name.is_empty() && meta_name != name {
            return Err(ApiError::bad_request(format!(
                "metadata.name {meta_name:?} does not match {name:?}"
            )));
        }
        obj["metadata"]["name"] = json!(name);
    }
    let parse_err = |e: serde_json::Error| {
        ApiError::bad_request(format!("the {kind} object is malformed: {e}"))
    };
    match kind {
        Kind::Function => {
            let mut f: Function = serde_json::from_value(obj).map_err(parse_err)?;
            // Kubeless's Deployment selector needs both labels; always set them.
            let name = f.metadata.name.clone();
            f.metadata
                .labels
                .entry("created-by".into())
                .or_insert_with(|| "kubeless".into());
            f.metadata.labels.entry("function".into()).or_insert(name);
            // A known runtime whose toolchain is missing gets how to install
            // it, not "unknown runtime" (functions running from an image
            // bring their own runtime).
            if f.spec
                .deployment
                .pointer("/spec/template/spec/containers/0/image")
                .is_none()
                && let Some(reason) = st.ctx.catalogue.unavailable_reason(&f.spec.runtime)
            {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    reason,
                ));
            }
            validate::validate_function(&f, &st.ctx.catalogue.names())?;
            obj = serde_json::to_value(&f).map_err(parse_err)?;
        }
        Kind::HTTPTrigger => {
            validate::validate_http_trigger(
                &serde_json::from_value(obj.clone()).map_err(parse_err)?,
            )?;
        }
        Kind::CronJobTrigger => {
            validate::validate_cronjob_trigger(
                &serde_json::from_value(obj.clone()).map_err(parse_err)?,
            )?;
        }
        Kind::KafkaTrigger | Kind::NATSTrigger => {
            validate::validate_topic_trigger(
                &serde_json::from_value(obj.clone()).map_err(parse_err)?,
            )?;
        }
        Kind::KinesisTrigger => {
            validate::validate_kinesis_trigger(
                &serde_json::from_value(obj.clone()).map_err(parse_err)?,
            )?;
        }
        Kind::Secret => {
            let mut s: Secret = serde_json::from_value(obj).map_err(parse_err)?;
            for (k, v) in std::mem::take(&mut s.string_data) {
                s.data
                    .insert(k, base64::engine::general_purpose::STANDARD.encode(v));
            }
            for (k, v) in &s.data {
                if base64::engine::general_purpose::STANDARD
                    .decode(v.trim())
                    .is_err()
                {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        format!(
                            "Secret {:?} is invalid: data[{k:?}]: not base64",
                            s.metadata.name
                        ),
                    ));
                }
            }
            validate::validate_secret(&s)?;
            obj = serde_json::to_value(&s).map_err(parse_err)?;
        }
    }
    Ok(obj)
}

async fn create(
    State(st): State<ApiState>,
    Path((ns, plural)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let kind = kubeless_kind(&plural)?;
    create_kind(&st, kind, ns, body).await
}

async fn create_kind(
    st: &ApiState,
    kind: Kind,
    ns: String,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let obj = admit(st, kind, &ns, None, &body)?;
    let store = st.ctx.store.clone();
    let created = blocking(move || store.create(kind, obj)).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn replace(
    State(st): State<ApiState>,
    Path((ns, plural, name)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let kind = kubeless_kind(&plural)?;
    replace_kind(&st, kind, ns, name, body).await
}

async fn replace_kind(
    st: &ApiState,
    kind: Kind,
    ns: String,
    name: String,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let obj = admit(st, kind, &ns, Some(&name), &body)?;
    let store = st.ctx.store.clone();
    Ok(Json(blocking(move || store.replace(kind, obj)).await?))
}

async fn remove(
    State(st): State<ApiState>,
    Path((ns, plural, name)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let kind = kubeless_kind(&plural)?;
    let store = st.ctx.store.clone();
    let deleted = blocking(move || {
        let deleted = store.delete(kind, &ns, &name)?;
        if kind == Kind::Function {
            // As Kubeless's trigger controllers did: triggers naming a deleted
            // function go with it.
            for tk in [Kind::HTTPTrigger, Kind::CronJobTrigger] {
                for t in store.list(tk, Some(&ns))? {
                    if t.pointer("/spec/function-name").and_then(Value::as_str)
                        == Some(name.as_str())
                        && let Some(tn) = t.pointer("/metadata/name").and_then(Value::as_str)
                    {
                        store.delete(tk, &ns, tn)?;
                    }
                }
            }
        }
        Ok(deleted)
    })
    .await?;
    Ok(Json(deleted))
}

async fn secret_list(State(st): State<ApiState>, Path(ns): Path<String>) -> ApiResult<Json<Value>> {
    let store = st.ctx.store.clone();
    let items = blocking(move || store.list(Kind::Secret, Some(&ns))).await?;
    Ok(list_body(Kind::Secret, items))
}

async fn secret_create(
    State(st): State<ApiState>,
    Path(ns): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    create_kind(&st, Kind::Secret, ns, body).await
}

async fn secret_read(
    State(st): State<ApiState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    get_one(&st, Kind::Secret, ns, name).await.map(Json)
}

async fn secret_replace(
    State(st): State<ApiState>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    replace_kind(&st, Kind::Secret, ns, name, body).await
}

async fn secret_remove(
    State(st): State<ApiState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let store = st.ctx.store.clone();
    Ok(Json(
        blocking(move || store.delete(Kind::Secret, &ns, &name)).await?,
    ))
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    follow: bool,
    tail: Option<usize>,
}

async fn function_log(
    State(st): State<ApiState>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    get_one(&st, Kind::Function, ns.clone(), name.clone()).await?;
    let (lines, rx) = st.ctx.logs.snapshot(&ns, &name, q.tail);
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !q.follow {
        let body: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied()).collect();
        return Ok((headers, body).into_response());
    }
    let history = futures_util::stream::iter(lines.into_iter().map(Ok::<_, std::io::Error>));
    let live = futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(line) => Some((Ok(line), rx)),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                let note = bytes::Bytes::from(format!(
                    "kubeless: {n} log lines skipped (reader too slow)\n"
                ));
                Some((Ok(note), rx))
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
        }
    });
    use futures_util::StreamExt;
    Ok((headers, Body::from_stream(history.chain(live))).into_response())
}

async fn function_metrics(
    State(st): State<ApiState>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    get_one(&st, Kind::Function, ns.clone(), name.clone()).await?;
    let addrs = st
        .ctx
        .routes
        .get(&ns, &name)
        .map(|r| r.instances.clone())
        .unwrap_or_default();
    if addrs.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            format!("function {ns}/{name} has no ready instance"),
        ));
    }
    let mut out = String::new();
    for addr in addrs {
        let url = format!("http://{addr}/metrics");
        match st
            .http
            .get(&url)
            .timeout(Duration::from_secs(4))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => out.push_str(&r.text().await.unwrap_or_default()),
            Ok(r) => tracing::debug!(%url, status = %r.status(), "instance metrics"),
            Err(e) => tracing::debug!(%url, error = %e, "instance metrics"),
        }
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok((headers, out).into_response())
}
