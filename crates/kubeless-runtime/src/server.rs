//! The HTTP side: routing, body limits, CORS, request log, metrics, and the
//! translation between HTTP and worker frames.
//!
//! Routes: `GET|HEAD /healthz`, `GET|HEAD /metrics`, CORS preflights
//! (`OPTIONS` with `Access-Control-Request-Method`) are answered by the
//! host; every other method and path goes to the function.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use time::OffsetDateTime;
use tokio::net::{TcpListener, UnixListener};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access_log;
use crate::frame::{Outcome, RequestHead};
use crate::log::Log;
use crate::metrics::Metrics;
use crate::pool::{CallError, Pool};

/// Body of the 408 answer; Kubeless clients and tests look for this text.
pub const TIMEOUT_BODY: &str = "Timeout while processing the function";

/// An over-limit body with a declared length up to this size is read and
/// discarded before answering 413: closing a socket with unread data makes
/// the kernel send a reset, and many clients then lose the 413 itself.
const DRAIN_CAP: u64 = 8 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Response headers a handler may not set because the host owns framing.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Shared state of the HTTP side.
pub struct App {
    pub pool: Arc<Pool>,
    pub metrics: Metrics,
    pub body_limit: u64,
    pub timeout: Duration,
    /// Where invocations run, so shutdown waits for them.
    pub tracker: TaskTracker,
    /// The request log, written by [`access_log::flush_loop`].
    pub access: Arc<access_log::Batch>,
    /// Where diagnostics (and the flushed request log) go.
    pub log: Log,
}

/// Accepts connections until `shutdown` fires, then asks every open
/// connection to finish its current request and close. Connection tasks
/// run on `tracker`, so the caller can wait for the drain.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failed(&app.log, &e).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        spawn_connection(stream, peer.ip(), &app, &tracker, &shutdown);
    }
}

/// [`serve`] for the Unix socket (`KUBELESS_SOCKET`). Its only client is
/// the local gateway, so the request log names the loopback address.
pub async fn serve_unix(
    listener: UnixListener,
    app: Arc<App>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(&app.log, &e).await;
                    continue;
                }
            },
        };
        spawn_connection(stream, peer, &app, &tracker, &shutdown);
    }
}

async fn accept_failed(log: &Log, e: &std::io::Error) {
    // Typically EMFILE: back off instead of spinning.
    log.note(&format!("accept: {e}"));
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn spawn_connection<S>(
    stream: S,
    peer: IpAddr,
    app: &Arc<App>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let app = Arc::clone(app);
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        let service = service_fn(move |req| {
            let app = Arc::clone(&app);
            async move { Ok::<_, Infallible>(handle(&app, req, peer).await) }
        });
        let conn = http1::Builder::new()
            .keep_alive(true)
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    });
}

/// Answers one request: the host's own routes, or the function. The
/// embedded server's gateway calls this directly for hosts it runs in
/// process; `peer` is the client address for the request log.
pub async fn handle(app: &App, req: Request<Incoming>, peer: IpAddr) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let version = version_text(req.version());
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().to_string(), |p| p.as_str().to_owned());
    let referer = req.headers().get(header::REFERER).cloned();
    let user_agent = req.headers().get(header::USER_AGENT).cloned();

    let path = req.uri().path();
    let mut response = if (method == Method::GET || method == Method::HEAD) && path == "/healthz" {
        text(StatusCode::OK, "OK")
    } else if (method == Method::GET || method == Method::HEAD) && path == "/metrics" {
        let mut r = text(StatusCode::OK, app.metrics.render());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        r
    } else if method == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        preflight(req.headers())
    } else {
        let started = Instant::now();
        let (response, failed) = invoke(app, req).await;
        app.metrics
            .observe(method.as_str(), started.elapsed(), failed);
        response
    };

    response
        .headers_mut()
        .entry(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .or_insert(HeaderValue::from_static("*"));

    let line = access_log::format(&access_log::Entry {
        remote: peer,
        time: OffsetDateTime::now_utc(),
        method: method.as_str(),
        target: &target,
        version,
        status: response.status().as_u16(),
        body_bytes: hyper::body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(0),
        referer: referer.as_ref().map(HeaderValue::as_bytes),
        user_agent: user_agent.as_ref().map(HeaderValue::as_bytes),
    });
    app.access.push(&line);
    response
}

fn version_text(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn preflight(request: &HeaderMap) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    let headers = r.headers_mut();
    if let Some(m) = request.get(header::ACCESS_CONTROL_REQUEST_METHOD) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, m.clone());
    }
    if let Some(h) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone());
    }
    r
}

/// Calls the function; returns the response and whether it counts as a
/// failure in the metrics.
async fn invoke(app: &App, req: Request<Incoming>) -> (Response<Full<Bytes>>, bool) {
    let (parts, mut body) = req.into_parts();

    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > app.body_limit) {
        if declared.is_some_and(|len| len <= DRAIN_CAP) {
            drain(&mut body).await;
        }
        return (too_large(app.body_limit), true);
    }
    let body = match read_body(&mut body, app.body_limit).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            drain(&mut body).await;
            return (too_large(app.body_limit), true);
        }
        Err(BodyError::Read(e)) => {
            let mut r = text(
                StatusCode::BAD_REQUEST,
                format!("Cannot read request body: {e}"),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return (r, true);
        }
    };

    // The invocation runs as a tracked task rather than inside this future:
    // hyper drops the service future when the client disconnects, and that
    // must not kill a healthy worker halfway through a request.
    let pool = Arc::clone(&app.pool);
    let deadline = Instant::now() + app.timeout;
    let task = app.tracker.spawn(async move {
        let head = RequestHead {
            id: 0,
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes()))
                .collect(),
        };
        let result = pool.call(head, &body, deadline).await;
        (parts, result)
    });
    let (parts, result) = match task.await {
        Ok(done) => done,
        Err(e) => {
            app.log.note(&format!("invocation task failed: {e}"));
            return (
                text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
                true,
            );
        }
    };
    match result {
        Ok(answer) => match answer.outcome {
            Outcome::Ok => (
                function_response(&app.log, answer.status, answer.headers, answer.body),
                false,
            ),
            Outcome::HandlerError => (
                text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
                true,
            ),
            Outcome::BadRequest => (text(StatusCode::BAD_REQUEST, answer.error), true),
        },
        Err(CallError::Timeout { killed }) => {
            let what = if killed {
                "; its worker was replaced"
            } else {
                " while waiting for a free worker"
            };
            app.log.note(&format!(
                "{} {} timed out after {} s{what}",
                parts.method,
                parts.uri.path(),
                app.timeout.as_secs_f64()
            ));
            (text(StatusCode::REQUEST_TIMEOUT, TIMEOUT_BODY), true)
        }
        Err(CallError::WorkerFailed(reason)) => {
            app.log.note(&format!(
                "{} {} failed: {reason}; worker replaced",
                parts.method,
                parts.uri.path()
            ));
            (
                text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
                true,
            )
        }
        Err(CallError::Unavailable(reason)) => {
            app.log.note(&format!(
                "no worker for {} {}: {reason}",
                parts.method,
                parts.uri.path()
            ));
            (
                text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
                true,
            )
        }
        Err(CallError::ShuttingDown) => {
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            (r, true)
        }
    }
}

fn function_response(
    log: &Log,
    status: u16,
    headers: Vec<(String, Bytes)>,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let status = match StatusCode::from_u16(status) {
        Ok(s) if s.as_u16() >= 200 => s,
        _ => {
            log.note(&format!(
                "the function answered invalid status {status}; sending 500"
            ));
            return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str()) {
            continue;
        }
        match (
            HeaderName::from_bytes(lower.as_bytes()),
            HeaderValue::from_maybe_shared(value),
        ) {
            (Ok(n), Ok(v)) => {
                r.headers_mut().append(n, v);
            }
            _ => log.note(&format!(
                "dropping invalid response header {name:?} set by the function"
            )),
        }
    }
    r
}

fn too_large(limit: u64) -> Response<Full<Bytes>> {
    let mut r = text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "Payload Too Large: the request body exceeds {} bytes (REQ_MB_LIMIT)",
            limit
        ),
    );
    // The rest of the body is not read, so the connection cannot be reused.
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

enum BodyError {
    TooLarge,
    Read(hyper::Error),
}

async fn read_body(body: &mut Incoming, limit: u64) -> Result<Bytes, BodyError> {
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len() as u64;
        if total > limit {
            return Err(BodyError::TooLarge);
        }
        // Most bodies arrive in one chunk: keep it without copying.
        match &first {
            None if rest.is_empty() => first = Some(data),
            _ => {
                if let Some(f) = first.take() {
                    rest.extend_from_slice(&f);
                }
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| rest.freeze()))
}

/// Reads and discards up to `DRAIN_CAP` bytes for at most `DRAIN_TIME`.
async fn drain(body: &mut Incoming) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen: u64 = 0;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len() as u64;
                if seen > DRAIN_CAP {
                    break;
                }
            }
        }
    })
    .await;
}
