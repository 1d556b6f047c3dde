//! The HTTP gateway: the one public door to every function.
//!
//! Routing is kept apart from serving: [`RouteTable`] maps
//! `<namespace>/<function>` to the function's ready instances and is swapped
//! by the reconciler; [`serve`] accepts connections and forwards each request
//! to an instance over a keep-alive connection pool.
//!
//! Guarantees: a request for an unknown function gets 404, for a function
//! with no ready instance 503 with the reason, for an instance that fails
//! mid-request 502, for one that does not answer within the function's
//! timeout plus a grace period 504; a body whose declared length exceeds the
//! function's limit gets 413 before anything is forwarded. The runtime host
//! enforces the function timeout itself (408); the gateway's deadline only
//! guards against a host that cannot answer at all.
//!
//! Shutdown: on cancellation the listener closes and open connections are
//! drained for at most the grace period given to [`serve`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, UnixStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::triggers::http::HttpTriggerTable;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type GatewayBody = BoxBody<Bytes, BoxError>;

/// Extra time the gateway waits beyond a function's own timeout.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(5);

/// Where a function's requests go.
#[derive(Debug)]
pub struct Route {
    pub instances: Vec<SocketAddr>,
    pub timeout: Duration,
    pub body_limit: u64,
    /// Why there is no instance (shown with 503).
    pub unavailable: Option<String>,
    /// uid of the Function this route belongs to.
    pub owner: String,
    /// Per instance, what the forwarding path needs, built once here
    /// instead of on every request.
    upstreams: Vec<Upstream>,
    next: AtomicUsize,
}

/// A ready instance as its function reports it to the gateway.
#[derive(Clone)]
pub struct Endpoint {
    /// Its loopback HTTP address (event deliveries, metrics).
    pub addr: SocketAddr,
    /// A host process's Unix socket, which the gateway prefers to `addr`.
    pub socket: Option<PathBuf>,
    /// A host running inside this server: the gateway hands requests to
    /// it directly, with no connection and no process in between.
    pub host: Option<Arc<kubeless_runtime::App>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("socket", &self.socket)
            .field("in_process", &self.host.is_some())
            .finish()
    }
}

impl Endpoint {
    /// An instance reached over loopback TCP only.
    pub fn tcp(addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            socket: None,
            host: None,
        }
    }
}

/// One instance as the forwarding path sees it.
#[derive(Clone)]
struct Upstream {
    /// `127.0.0.1:<port>`: the URI authority, which is also the key of the
    /// client's connection pool.
    authority: Authority,
    /// The host's Unix socket (`KUBELESS_SOCKET`) and its idle
    /// connections, when it has one.
    socket: Option<Arc<UnixUpstream>>,
    /// The host, when it runs in this process.
    host: Option<Arc<kubeless_runtime::App>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("authority", &self.authority)
            .field("socket", &self.socket)
            .field("in_process", &self.host.is_some())
            .finish()
    }
}

/// Most idle connections kept per instance socket (as the TCP client's
/// `pool_max_idle_per_host`).
const MAX_IDLE_PER_SOCKET: usize = 256;

/// An instance's Unix socket and its keep-alive connections.
///
/// The gateway's own pool rather than hyper-util's general client: a
/// request pops an idle connection (no pool key to hash, no checkout
/// future), and its response body puts the connection back when the
/// body ends ([`PooledBody`]). Against hyper-util's client this cut the
/// gateway's instructions per request by about a sixth.
struct UnixUpstream {
    path: PathBuf,
    idle: Mutex<Vec<SendRequest<Incoming>>>,
}

impl std::fmt::Debug for UnixUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixUpstream")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl UnixUpstream {
    fn new(path: PathBuf) -> UnixUpstream {
        UnixUpstream {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn pop_idle(&self) -> Option<SendRequest<Incoming>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put_idle(&self, sender: SendRequest<Incoming>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_PER_SOCKET {
            idle.push(sender);
        }
    }

    /// A new connection; its driver runs on `tasks` until the last sender
    /// is dropped or the host closes it.
    async fn connect(&self, tasks: &TaskTracker) -> Result<SendRequest<Incoming>, BoxError> {
        let stream = UnixStream::connect(&self.path).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tasks.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "instance connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Sends `req` (origin-form URI) on an idle connection or a new one. A
    /// request that a reused connection refused before sending anything
    /// (the host closed it meanwhile) is retried once on a new connection,
    /// as hyper-util's client does.
    async fn send(
        self: &Arc<Self>,
        tasks: &TaskTracker,
        req: Request<Incoming>,
    ) -> Result<Response<GatewayBody>, BoxError> {
        let (mut sender, reused) = match self.pop_idle() {
            Some(s) => (s, true),
            None => (self.connect(tasks).await?, false),
        };
        // A connection goes back to the pool only once its response body
        // has ended, so it is ready now or within the driver's next poll.
        sender.ready().await?;
        let response = match sender.try_send_request(req).await {
            Ok(r) => r,
            Err(mut e) => match e.take_message() {
                Some(req) if reused => {
                    sender = self.connect(tasks).await?;
                    sender.send_request(req).await?
                }
                _ => return Err(Box::new(e.into_error())),
            },
        };
        Ok(response.map(|body| {
            PooledBody {
                body,
                back: Some((sender, Arc::clone(self))),
            }
            .boxed()
        }))
    }
}

/// A response body that returns its connection to the pool when it ends.
/// Dropped before its end, it drops the connection instead (the rest of
/// the body would be in the way of the next response).
struct PooledBody {
    body: Incoming,
    back: Option<(SendRequest<Incoming>, Arc<UnixUpstream>)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((sender, upstream)) = self.back.take() {
            upstream.put_idle(sender);
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // hyper never polls a body that is empty from the start (HEAD, 204,
        // `Content-Length: 0`); its connection is still reusable.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        polled.map_err(|e| Box::new(e) as BoxError)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Route {
    pub fn new(
        owner: &str,
        endpoints: Vec<Endpoint>,
        timeout: Duration,
        body_limit: u64,
        unavailable: Option<String>,
    ) -> Route {
        let instances = endpoints.iter().map(|e| e.addr).collect();
        let upstreams = endpoints
            .into_iter()
            .filter_map(|e| {
                // A socket address always renders as a valid authority.
                let authority = Authority::try_from(e.addr.to_string()).ok()?;
                Some(Upstream {
                    authority,
                    socket: e.socket.map(|path| Arc::new(UnixUpstream::new(path))),
                    host: e.host,
                })
            })
            .collect();
        Route {
            instances,
            timeout,
            body_limit,
            unavailable,
            owner: owner.to_string(),
            upstreams,
            next: AtomicUsize::new(0),
        }
    }

    /// The next instance, round robin.
    pub fn pick(&self) -> Option<SocketAddr> {
        if self.instances.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.instances.len();
        Some(self.instances[i])
    }

    fn pick_upstream(&self) -> Option<&Upstream> {
        if self.upstreams.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.upstreams.len();
        self.upstreams.get(i)
    }
}

/// Instance sockets by authority, so a route rebuilt for the same
/// instance (every status change rebuilds it) keeps that instance's idle
/// connections.
type SocketPaths = Arc<RwLock<HashMap<Authority, Arc<UnixUpstream>>>>;

/// namespace -> function -> route.
type Routes = HashMap<String, HashMap<String, Arc<Route>>>;

/// The live routing table; readers never wait on a reconcile.
#[derive(Clone, Default)]
pub struct RouteTable {
    /// namespace -> function -> route: two lookups with borrowed keys, so
    /// the request path allocates nothing to find its route.
    inner: Arc<RwLock<Routes>>,
    sockets: SocketPaths,
}

impl RouteTable {
    /// Install or replace a function's route.
    pub fn set(&self, ns: &str, name: &str, mut route: Route) {
        {
            let mut sockets = self.sockets.write().unwrap_or_else(|p| p.into_inner());
            for u in &mut route.upstreams {
                if let Some(socket) = &mut u.socket {
                    match sockets.get(&u.authority) {
                        Some(known) if known.path == socket.path => *socket = Arc::clone(known),
                        _ => {
                            sockets.insert(u.authority.clone(), Arc::clone(socket));
                        }
                    }
                }
            }
        }
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let old = map
            .entry(ns.to_string())
            .or_default()
            .insert(name.to_string(), Arc::new(route));
        drop(map);
        if let Some(old) = old {
            self.forget_sockets(&old);
        }
    }

    /// Remove a function's route, if it still belongs to `owner`.
    pub fn remove(&self, ns: &str, name: &str, owner: &str) {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let Some(functions) = map.get_mut(ns) else {
            return;
        };
        if functions.get(name).is_some_and(|r| r.owner == owner) {
            let old = functions.remove(name);
            if functions.is_empty() {
                map.remove(ns);
            }
            drop(map);
            if let Some(old) = old {
                self.forget_sockets(&old);
            }
        }
    }

    /// Drops the socket paths of a replaced route's instances unless a live
    /// route still uses the same authority with the same path.
    fn forget_sockets(&self, old: &Route) {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let in_use = |a: &Authority, p: &Arc<UnixUpstream>| {
            map.values().flat_map(HashMap::values).any(|r| {
                r.upstreams.iter().any(|u| {
                    u.authority == *a && u.socket.as_ref().is_some_and(|s| Arc::ptr_eq(s, p))
                })
            })
        };
        let stale: Vec<Authority> = {
            let sockets = self.sockets.read().unwrap_or_else(|p| p.into_inner());
            old.upstreams
                .iter()
                .filter(|u| {
                    sockets
                        .get(&u.authority)
                        .is_some_and(|p| !in_use(&u.authority, p))
                })
                .map(|u| u.authority.clone())
                .collect()
        };
        drop(map);
        if !stale.is_empty() {
            let mut sockets = self.sockets.write().unwrap_or_else(|p| p.into_inner());
            for a in stale {
                sockets.remove(&a);
            }
        }
    }

    /// The route of a function.
    pub fn get(&self, ns: &str, name: &str) -> Option<Arc<Route>> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.get(ns)?.get(name).cloned()
    }
}

/// Split `/<ns>/<function>[/rest]` into its parts; the rest keeps its leading
/// slash and defaults to `/`.
pub fn split_path(path: &str) -> Option<(&str, &str, &str)> {
    let p = path.strip_prefix('/')?;
    let (ns, rest) = p.split_once('/')?;
    let (name, sub) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (!ns.is_empty() && !name.is_empty()).then_some((ns, name, sub))
}

/// A declared body over the limit up to this size is read and discarded
/// before the 413 (as the runtime host does): a server that closes a
/// socket with unread data makes the kernel reset it, and the client then
/// loses the 413, usually as a broken pipe while still sending the body.
const DRAIN_CAP: u64 = 8 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// 413 for a body over the limit, without forwarding it. The body is
/// drained first when it is small enough (see [`DRAIN_CAP`]), and the
/// connection is closed after the answer (`Connection: close`), so a
/// client never sends its next request on a connection whose unread body
/// the server is about to drop.
async fn too_large(limit: u64, declared: u64, body: Incoming) -> Response<GatewayBody> {
    if declared <= DRAIN_CAP {
        let mut body = body;
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            while let Some(Ok(_)) = body.frame().await {}
        })
        .await;
    }
    let mut r = plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than the function's limit of {limit} bytes"),
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn plain(status: StatusCode, msg: impl Into<String>) -> Response<GatewayBody> {
    let mut body = msg.into();
    body.push('\n');
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The gateway's request handler, shared by every connection.
#[derive(Clone)]
pub struct Gateway {
    routes: RouteTable,
    triggers: HttpTriggerTable,
    client: Client<HttpConnector, Incoming>,
    /// Drivers of the connections to instances' Unix sockets.
    unix_conns: TaskTracker,
}

fn request_host(req: &Request<Incoming>) -> String {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("");
    // Drop the port (and the brackets of an IPv6 literal).
    let host = match raw.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => raw,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

impl Gateway {
    pub fn new(routes: RouteTable) -> Gateway {
        Gateway::with_triggers(routes, HttpTriggerTable::default())
    }

    /// A gateway that also serves the HTTP triggers in `triggers`.
    pub fn with_triggers(routes: RouteTable, triggers: HttpTriggerTable) -> Gateway {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Gateway {
            routes,
            triggers,
            client,
            unix_conns: TaskTracker::new(),
        }
    }

    /// Forward one request: to the HTTP trigger that claims it, else to
    /// `/<namespace>/<function>` (see [`crate::triggers::http`] for the order).
    pub async fn handle(&self, req: Request<Incoming>, peer: IpAddr) -> Response<GatewayBody> {
        // A clone of the URI shares its bytes: the path stays borrowable
        // after `req` moves on, without a copy.
        let uri = req.uri().clone();
        let path = uri.path();
        let table = self.triggers.load();
        if !table.is_empty() {
            let host = request_host(&req);
            let mut hit = table.find(&host, path, true);
            if hit.is_none() {
                let function_path = split_path(path)
                    .is_some_and(|(ns, name, _)| self.routes.get(ns, name).is_some());
                if !function_path {
                    hit = table.find(&host, path, false);
                }
            }
            drop(table);
            if let Some(t) = hit {
                return self.handle_trigger(req, peer, &t).await;
            }
        } else {
            drop(table);
        }
        let Some((ns, name, sub)) = split_path(path) else {
            return plain(
                StatusCode::NOT_FOUND,
                "call a function at /<namespace>/<function>",
            );
        };
        let Some(route) = self.routes.get(ns, name) else {
            return plain(
                StatusCode::NOT_FOUND,
                format!("function {ns}/{name} not found"),
            );
        };
        let Some(upstream) = route.pick_upstream() else {
            let why = route.unavailable.as_deref().unwrap_or("it is starting");
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("function {ns}/{name} has no ready instance: {why}"),
            );
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = declared.filter(|n| *n > route.body_limit) {
            return too_large(route.body_limit, n, req.into_body()).await;
        }
        let pq = path_and_query(sub, req.uri().query());
        self.forward(req, peer, ns, name, &route, upstream, pq)
            .await
    }

    /// Serve a request an HTTP trigger claimed: basic auth, CORS, then
    /// forward with the path rewritten to `/`.
    async fn handle_trigger(
        &self,
        req: Request<Incoming>,
        peer: IpAddr,
        t: &crate::triggers::http::HttpRoute,
    ) -> Response<GatewayBody> {
        let origin = req.headers().get(header::ORIGIN).cloned();
        if t.cors
            && req.method() == http::Method::OPTIONS
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            let mut r = plain(StatusCode::NO_CONTENT, "");
            *r.body_mut() = Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed();
            add_cors(&mut r, origin.as_ref(), Some(&req));
            return r;
        }
        if let Some(auth) = &t.auth {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if !auth.check(given).await {
                let mut r = plain(StatusCode::UNAUTHORIZED, "authentication required");
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"Authentication Required\""),
                );
                if t.cors {
                    add_cors(&mut r, origin.as_ref(), None);
                }
                return r;
            }
        }
        let (ns, name) = (t.namespace.as_str(), t.function.as_str());
        let Some(route) = self.routes.get(ns, name) else {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("function {ns}/{name} is not running"),
            );
        };
        let Some(upstream) = route.pick_upstream() else {
            let why = route.unavailable.as_deref().unwrap_or("it is starting");
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("function {ns}/{name} has no ready instance: {why}"),
            );
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = declared.filter(|n| *n > route.body_limit) {
            return too_large(route.body_limit, n, req.into_body()).await;
        }
        // As nginx's `rewrite-target: /`: the function is called at `/`.
        let pq = path_and_query("/", req.uri().query());
        let mut r = self
            .forward(req, peer, ns, name, &route, upstream, pq)
            .await;
        if t.cors {
            add_cors(&mut r, origin.as_ref(), None);
        }
        r
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        req: Request<Incoming>,
        peer: IpAddr,
        ns: &str,
        name: &str,
        route: &Route,
        upstream: &Upstream,
        pq: Result<PathAndQuery, http::uri::InvalidUri>,
    ) -> Response<GatewayBody> {
        let (mut parts, body) = req.into_parts();
        let pq = match pq {
            Ok(pq) => pq,
            Err(e) => return plain(StatusCode::BAD_REQUEST, format!("bad request path: {e}")),
        };
        if let Some(host) = &upstream.host {
            // The host answers 408 at the function's timeout; the gateway's
            // deadline below only bounds a client that sends its body
            // slower than that.
            parts.uri = Uri::from(pq);
            let call =
                kubeless_runtime::server::handle(host, Request::from_parts(parts, body), peer);
            return match tokio::time::timeout(route.timeout + TIMEOUT_GRACE, call).await {
                Ok(response) => response.map(|b| b.map_err(|never| match never {}).boxed()),
                Err(_) => plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "function {ns}/{name} did not answer within {} s",
                        route.timeout.as_secs()
                    ),
                ),
            };
        }
        let tcp_uri = match upstream.socket {
            Some(_) => None,
            None => {
                let mut uri = http::uri::Parts::default();
                uri.scheme = Some(http::uri::Scheme::HTTP);
                uri.authority = Some(upstream.authority.clone());
                uri.path_and_query = Some(pq.clone());
                match Uri::from_parts(uri) {
                    Ok(u) => Some(u),
                    Err(e) => {
                        return plain(StatusCode::BAD_REQUEST, format!("bad request path: {e}"));
                    }
                }
            }
        };
        let call = async {
            match (&upstream.socket, tcp_uri) {
                (Some(socket), _) => {
                    // Origin-form, as a client sends it to a server; the
                    // Host header stays the client's (hyper-util's client
                    // adds the instance's address when there is none).
                    parts
                        .headers
                        .entry(header::HOST)
                        .or_insert_with(|| authority_value(&upstream.authority));
                    parts.uri = Uri::from(pq);
                    let upstream_req = Request::from_parts(parts, body);
                    socket.send(&self.unix_conns, upstream_req).await
                }
                (None, uri) => {
                    parts.uri = uri.unwrap_or_default();
                    let upstream_req = Request::from_parts(parts, body);
                    let resp = self.client.request(upstream_req).await?;
                    Ok(resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed()))
                }
            }
        };
        match tokio::time::timeout(route.timeout + TIMEOUT_GRACE, call).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => plain(
                StatusCode::BAD_GATEWAY,
                format!("function {ns}/{name} failed to answer: {e}"),
            ),
            Err(_) => plain(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "function {ns}/{name} did not answer within {} s",
                    route.timeout.as_secs()
                ),
            ),
        }
    }
}

/// `authority` as a Host header value.
fn authority_value(authority: &Authority) -> HeaderValue {
    HeaderValue::from_str(authority.as_str()).unwrap_or(HeaderValue::from_static("localhost"))
}

/// `path` plus `?query`, in one allocation.
fn path_and_query(path: &str, query: Option<&str>) -> Result<PathAndQuery, http::uri::InvalidUri> {
    match query {
        Some(q) => {
            let mut text = String::with_capacity(path.len() + 1 + q.len());
            text.push_str(path);
            text.push('?');
            text.push_str(q);
            PathAndQuery::try_from(text)
        }
        None => PathAndQuery::try_from(path),
    }
}

/// CORS headers as nginx ingress's `enable-cors` sends them; a preflight
/// also gets the allowed methods and headers.
fn add_cors(
    r: &mut Response<GatewayBody>,
    origin: Option<&HeaderValue>,
    preflight: Option<&Request<Incoming>>,
) {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        origin.cloned().unwrap_or(HeaderValue::from_static("*")),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(req) = preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, PUT, POST, DELETE, PATCH, OPTIONS"),
        );
        let allow = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or(HeaderValue::from_static(
                "DNT,X-CustomHeader,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Authorization",
            ));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow);
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("1728000"),
        );
    }
}

/// Serve the gateway on `listener` until `shutdown`, then drain open
/// connections for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: CancellationToken,
    grace: Duration,
) {
    // Connections live in a JoinSet: finished ones are reaped as we go, and
    // whatever outlives the drain is aborted when the set drops.
    let mut conns = JoinSet::new();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "gateway accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let gw = gateway.clone();
        let peer = peer.ip();
        let svc = hyper::service::service_fn(move |req| {
            let gw = gw.clone();
            async move { Ok::<_, Infallible>(gw.handle(req, peer).await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        while conns.try_join_next().is_some() {}
        conns.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "gateway connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => tracing::warn!("gateway drain exceeded {grace:?}; closing open connections"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_namespace_function_and_rest() {
        assert_eq!(
            split_path("/default/hello"),
            Some(("default", "hello", "/"))
        );
        assert_eq!(
            split_path("/default/hello/"),
            Some(("default", "hello", "/"))
        );
        assert_eq!(split_path("/ns/f/a/b"), Some(("ns", "f", "/a/b")));
        assert_eq!(split_path("/default"), None);
        assert_eq!(split_path("/"), None);
        assert_eq!(split_path("//x"), None);
    }

    #[test]
    fn route_round_robins() {
        let a: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let b: SocketAddr = "127.0.0.1:2".parse().expect("addr");
        let r = Route::new(
            "u",
            vec![Endpoint::tcp(a), Endpoint::tcp(b)],
            Duration::from_secs(1),
            10,
            None,
        );
        assert_eq!([r.pick(), r.pick(), r.pick()], [Some(a), Some(b), Some(a)]);
        assert_eq!(
            Route::new("u", vec![], Duration::from_secs(1), 10, None).pick(),
            None
        );
    }
}
