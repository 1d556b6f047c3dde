//! HTTP triggers through a real Ingress controller and autoscaling with a
//! real metrics pipeline, on the one-node cluster of
//! tools/k8s-harness/node-up.sh. That script runs Traefik v3 on loopback
//! (HTTP [`TRAEFIK_HTTP`], HTTPS [`TRAEFIK_HTTPS`]) as the controller of the
//! IngressClasses `traefik` (Traefik's Kubernetes Ingress provider) and
//! `nginx` (Traefik's Ingress-NGINX provider, which reads the
//! `nginx.ingress.kubernetes.io/*` annotations as ingress-nginx does), and
//! metrics-server behind the API server's aggregation layer, which the
//! controller-manager's HPA controller reads.
//!
//! The tests do what a user does: `kubeless function deploy`, `kubeless
//! trigger http create` for each gateway, requests to the gateway with the
//! trigger's host (a Host header over HTTP, SNI over HTTPS), `kubeless
//! autoscale create` and load on the function's Service. Host names end in
//! `.test` and are never resolved: the client sends them to Traefik's
//! loopback address itself. Load goes to the Service's ClusterIP, which
//! kube-proxy sends to pods on the node's bridge.
//!
//! What each gateway honours is asserted, including what it ignores: the
//! Ingress of `gateway: traefik` carries Traefik v1's
//! `ingress.kubernetes.io/auth-*` and `enable-cors` annotations, which
//! Traefik v3 does not read (v3 needs a Middleware object for either), so
//! such a trigger answers without credentials and with only the runtime
//! host's own permissive CORS headers.
//! docs/kubernetes.md has the table.
//!
//! Every test name starts with `real_node_` (scripts/test.sh runs them
//! against the node). Without a cluster that has a Ready node the tests are
//! skipped, except when `REQUIRE_K8S_NODE=1` or `CI` is set: then they fail.

mod k8s_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_support::eventually;
use k8s_support::node::{
    call_until, deploy, diagnose, kubeless_ok, kubeless_try, run, setup, write,
};
use kube::Client;
use kube::api::{Api, PostParams};
use reqwest::StatusCode;

/// Traefik's entry points on the node (tools/k8s-harness/node-up.sh).
const TRAEFIK_HTTP: &str = "127.0.0.1:18080";
const TRAEFIK_HTTPS: &str = "127.0.0.1:18443";

/// Answers the request's method, path, Host and the scheme the gateway
/// saw, so a test can tell which route answered and what the gateway
/// rewrote.
const ECHO_PY: &str = "\
def handler(event, context):
    r = event['extensions']['request']
    return 'gateway %s %s host=%s proto=%s' % (
        r.method, r.path, r.headers.get('host'), r.headers.get('x-forwarded-proto'))
";

/// Spends 50 ms of CPU per call: load on it shows in metrics-server.
const BURN_PY: &str = "\
import time

def handler(event, context):
    end = time.process_time() + 0.05
    n = 0
    while time.process_time() < end:
        n += 1
    return 'burned %d' % n
";

/// One answer from the gateway.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A client of Traefik's HTTP entry point that follows no redirect (the
/// tests look at them).
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// A client that sends `host` to Traefik's HTTPS entry point (SNI = host)
/// and trusts only `cert_pem`: a handshake succeeds only if Traefik picked
/// the trigger's certificate by SNI.
fn https_client(host: &str, cert_pem: &str) -> reqwest::Client {
    let addr: SocketAddr = TRAEFIK_HTTPS.parse().expect("addr");
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("pem"))
        .resolve(host, addr)
        .build()
        .expect("https client")
}

/// GET `https://host/path` through Traefik's HTTPS entry point until the
/// function answers over TLS with the trigger's certificate.
async fn https_until_routed(ns: &str, host: &str, cert_pem: &str, path: &str, secs: u64) {
    let https = https_client(host, cert_pem);
    let port = TRAEFIK_HTTPS.rsplit(':').next().expect("port");
    let url = format!("https://{host}:{port}{path}");
    let want = format!("gateway GET {path} host={host}:{port} proto=https");
    let t = Instant::now();
    let mut last = String::new();
    while t.elapsed() < Duration::from_secs(secs) {
        match https.get(&url).send().await {
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                if status == StatusCode::OK && body.contains(&want) {
                    return;
                }
                last = format!("{status} {body}");
            }
            // a handshake with Traefik's default certificate fails here
            Err(e) => last = format!("{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "{url} did not answer {want:?} within {secs}s; last: {last}\n{}",
        gateway_diagnose(ns).await
    );
}

/// `METHOD http://<Traefik>/<path>` with `Host: host` and extra headers.
async fn request(
    method: reqwest::Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    auth: Option<(&str, &str)>,
) -> Result<Answer, reqwest::Error> {
    let mut req = http_client()
        .request(method, format!("http://{TRAEFIK_HTTP}{path}"))
        .header("Host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some((user, pass)) = auth {
        req = req.basic_auth(user, Some(pass));
    }
    let r = req.send().await?;
    Ok(Answer {
        status: r.status(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap_or_default(),
    })
}

async fn get(host: &str, path: &str) -> Answer {
    request(reqwest::Method::GET, host, path, &[], None)
        .await
        .unwrap_or_else(|e| panic!("GET {host}{path} through Traefik: {e}"))
}

/// GET through Traefik until it answers 200 with `want` in the body (the
/// gateway picks up a new Ingress within seconds); answers the time taken.
async fn until_routed(ns: &str, host: &str, path: &str, want: &str, secs: u64) -> Duration {
    let t = Instant::now();
    let mut last = String::new();
    while t.elapsed() < Duration::from_secs(secs) {
        match request(reqwest::Method::GET, host, path, &[], None).await {
            Ok(a) if a.status == StatusCode::OK && a.body.contains(want) => return t.elapsed(),
            Ok(a) => last = format!("{} {}", a.status, a.body),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "GET {host}{path} through Traefik did not answer {want:?} within {secs}s; last: {last}\n{}",
        gateway_diagnose(ns).await
    );
}

/// GET through Traefik until the status is `want` (a route removed).
async fn until_status(ns: &str, host: &str, path: &str, want: StatusCode, secs: u64) {
    let t = Instant::now();
    let mut last = String::new();
    while t.elapsed() < Duration::from_secs(secs) {
        let a = get(host, path).await;
        if a.status == want {
            return;
        }
        last = format!("{} {}", a.status, a.body);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "GET {host}{path} did not become {want} within {secs}s; last: {last}\n{}",
        gateway_diagnose(ns).await
    );
}

/// The namespace's diagnosis plus its Ingresses and Traefik's log tail.
async fn gateway_diagnose(ns: &str) -> String {
    let ns = ns.to_string();
    tokio::task::spawn_blocking(move || {
        let mut s = diagnose(&ns);
        let (_, out, err) =
            run(Command::new("kubectl").args(["get", "ingress", "-o", "yaml", "-n", &ns]));
        s.push_str(&format!(
            "$ kubectl get ingress -o yaml -n {ns}\n{out}{err}\n"
        ));
        let log = std::env::var("K8S_NODE_RUN").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/k8s-node").to_string()
        }) + "/traefik/traefik.log";
        let (_, out, _) = run(Command::new("tail").args(["-n", "30", &log]));
        s.push_str(&format!("$ tail {log}\n{out}"));
        s
    })
    .await
    .expect("join")
}

async fn create_secret(c: &Client, ns: &str, name: &str, type_: &str, data: &[(&str, &str)]) {
    let string_data: BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some(type_.into()),
        string_data: Some(string_data),
        ..Default::default()
    };
    Api::<Secret>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("create secret {name}: {e}"));
}

/// A `kubernetes.io/tls` secret with a self-signed certificate for `host`;
/// answers the certificate's PEM.
async fn tls_secret(c: &Client, ns: &str, name: &str, host: &str) -> String {
    let ck = rcgen::generate_simple_self_signed(vec![host.to_string()]).expect("cert");
    let cert = ck.cert.pem();
    let key = ck.signing_key.serialize_pem();
    create_secret(
        c,
        ns,
        name,
        "kubernetes.io/tls",
        &[("tls.crt", &cert), ("tls.key", &key)],
    )
    .await;
    cert
}

/// An htpasswd secret (key `auth`, bcrypt as `htpasswd -B` writes), the
/// format ingress-nginx reads for `--basic-auth-secret`.
async fn basic_auth_secret(c: &Client, ns: &str, name: &str, user: &str, pass: &str) {
    let line = format!("{user}:{}", bcrypt::hash(pass, 4).expect("bcrypt"));
    create_secret(c, ns, name, "Opaque", &[("auth", &line)]).await;
}

async fn ingress_annotations(c: &Client, ns: &str, name: &str) -> BTreeMap<String, String> {
    let ings: Api<Ingress> = Api::namespaced(c.clone(), ns);
    eventually(&format!("Ingress {ns}/{name}"), 60, || async {
        ings.get_opt(name).await.ok().flatten()
    })
    .await
    .metadata
    .annotations
    .unwrap_or_default()
}

/// `kubeless trigger http create NAME -n NS --function-name F ARGS...`.
async fn trigger(ns: &str, name: &str, function: &str, args: &[&str]) {
    let mut all = vec![
        "trigger",
        "http",
        "create",
        name,
        "-n",
        ns,
        "--function-name",
        function,
    ];
    all.extend(args);
    kubeless_ok(&all).await;
}

/// Deploy the echo function and wait until it answers through the API
/// server's service proxy.
async fn deploy_echo(ns: &str, dir: &std::path::Path) {
    let f = write(dir, "gw.py", ECHO_PY);
    deploy(ns, "gw", "python3.11", "gw.handler", &f, &[]).await;
    call_until("gw", ns, "ping", "gateway", 300).await;
}

/// `gateway: traefik`: host and path rules and a TLS secret are Traefik's
/// own Ingress features and work; the basic-auth and CORS annotations the
/// controller renders for Traefik are Traefik v1's and Traefik v3 ignores
/// them, which this test shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_node_http_trigger_traefik_gateway() {
    let ns = "node-ingress-traefik";
    let Some((c, dir)) = setup(ns).await else {
        return;
    };
    deploy_echo(ns, dir.path()).await;

    // a host rule and a path rule; Traefik forwards the path unchanged
    let t = Instant::now();
    trigger(
        ns,
        "by-host",
        "gw",
        &["--hostname", "gw.traefik.test", "--gateway", "traefik"],
    )
    .await;
    until_routed(
        ns,
        "gw.traefik.test",
        "/",
        "gateway GET / host=gw.traefik.test",
        120,
    )
    .await;
    let first = t.elapsed();
    eprintln!(
        "traefik gateway: trigger http create -> first answer through the Ingress {:.1}s",
        first.as_secs_f64()
    );
    let a = get("gw.traefik.test", "/deep/path?q=1").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("GET /deep/path "), "{}", a.body);
    // a host no rule names, on a path only the host rule would match
    let a = get("wrong.traefik.test", "/deep/path").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    // host + path (the CLI wants a host for every gateway but nginx): the
    // prefix and what is below it answer, unchanged; other paths do not
    trigger(
        ns,
        "by-path",
        "gw",
        &[
            "--hostname",
            "paths.traefik.test",
            "--path",
            "gw-traefik",
            "--gateway",
            "traefik",
        ],
    )
    .await;
    until_routed(
        ns,
        "paths.traefik.test",
        "/gw-traefik/sub",
        "gateway GET /gw-traefik/sub host=paths.traefik.test",
        120,
    )
    .await;
    let a = get("paths.traefik.test", "/gw-traefik").await;
    assert!(a.body.contains("gateway GET /gw-traefik "), "{}", a.body);
    let a = get("paths.traefik.test", "/elsewhere").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);

    // TLS from a secret: Traefik serves the trigger's certificate by SNI
    let host = "secure.traefik.test";
    let cert = tls_secret(&c, ns, "gw-tls", host).await;
    trigger(
        ns,
        "secure",
        "gw",
        &[
            "--hostname",
            host,
            "--tls-secret",
            "gw-tls",
            "--gateway",
            "traefik",
        ],
    )
    .await;
    https_until_routed(ns, host, &cert, "/tls", 120).await;
    // no redirect: the route answers plain HTTP too
    let a = get(host, "/plain").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("gateway GET /plain "), "{}", a.body);

    // basic auth and CORS: rendered as Traefik v1 annotations, not enforced
    basic_auth_secret(&c, ns, "gw-auth", "alice", "s3cret").await;
    trigger(
        ns,
        "guarded",
        "gw",
        &[
            "--hostname",
            "guarded.traefik.test",
            "--basic-auth-secret",
            "gw-auth",
            "--cors-enable",
            "--gateway",
            "traefik",
        ],
    )
    .await;
    let ann = ingress_annotations(&c, ns, "guarded").await;
    assert_eq!(
        ann.get("ingress.kubernetes.io/auth-type")
            .map(String::as_str),
        Some("basic"),
        "{ann:?}"
    );
    assert_eq!(
        ann.get("ingress.kubernetes.io/enable-cors")
            .map(String::as_str),
        Some("true"),
        "{ann:?}"
    );
    until_routed(ns, "guarded.traefik.test", "/", "gateway GET /", 120).await;
    let a = request(
        reqwest::Method::GET,
        "guarded.traefik.test",
        "/",
        &[("Origin", "https://app.test")],
        None,
    )
    .await
    .expect("GET");
    assert_eq!(
        a.status,
        StatusCode::OK,
        "Traefik v3 now enforces basic auth for gateway traefik: update docs/kubernetes.md"
    );
    // What a browser sees is the runtime host's own permissive CORS
    // (docs/runtime-host.md): `Access-Control-Allow-Origin: *` on every
    // answer, a preflight answered by the host echoing the requested method;
    // nothing from the gateway (which would echo the origin and allow
    // credentials, as the nginx gateway does).
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("*"),
        "{:?}",
        a.headers
    );
    assert_eq!(a.header("access-control-allow-credentials"), None);
    let preflight = request(
        reqwest::Method::OPTIONS,
        "guarded.traefik.test",
        "/",
        &[
            ("Origin", "https://app.test"),
            ("Access-Control-Request-Method", "POST"),
        ],
        None,
    )
    .await
    .expect("OPTIONS");
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("POST"),
        "{:?}",
        preflight.headers
    );
    eprintln!(
        "traefik gateway: basic-auth-secret and cors-enable are not honoured by Traefik v3 \
         (no credentials -> {}; CORS only the function's own: allow-origin *, preflight {} \
         echoing POST)",
        a.status, preflight.status
    );

    // deleting a trigger removes its route
    kubeless_ok(&["trigger", "http", "delete", "by-host", "-n", ns]).await;
    until_status(ns, "gw.traefik.test", "/", StatusCode::NOT_FOUND, 60).await;
    kubeless_ok(&["function", "delete", "gw", "-n", ns]).await;
}

/// `gateway: nginx` (the default) served by Traefik's Ingress-NGINX
/// provider: host and path rules with the rendered `rewrite-target: /`,
/// basic auth from an htpasswd secret, CORS, and a TLS secret with
/// ingress-nginx's default redirect of HTTP to HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_node_http_trigger_nginx_gateway() {
    let ns = "node-ingress-nginx";
    let Some((c, dir)) = setup(ns).await else {
        return;
    };
    deploy_echo(ns, dir.path()).await;

    let t = Instant::now();
    trigger(ns, "by-host", "gw", &["--hostname", "gw.nginx.test"]).await;
    until_routed(
        ns,
        "gw.nginx.test",
        "/",
        "gateway GET / host=gw.nginx.test",
        120,
    )
    .await;
    let first = t.elapsed();
    eprintln!(
        "nginx gateway: trigger http create -> first answer through the Ingress {:.1}s",
        first.as_secs_f64()
    );
    // the path rule's prefix is rewritten to / (rewrite-target), as with ingress-nginx
    trigger(ns, "by-path", "gw", &["--path", "gw-nginx"]).await;
    until_routed(ns, "any.nginx.test", "/gw-nginx", "gateway GET / ", 120).await;
    // Below the prefix, rewrite-target `/` makes `//sub` of `/gw-nginx/sub`
    // (ingress-nginx forwards that); Traefik refuses such a path with 400.
    let a = get("any.nginx.test", "/gw-nginx/sub").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    let a = get("wrong.nginx.test", "/deep/path").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);

    // basic auth from an htpasswd secret
    basic_auth_secret(&c, ns, "gw-auth", "alice", "s3cret").await;
    trigger(
        ns,
        "guarded",
        "gw",
        &[
            "--hostname",
            "guarded.nginx.test",
            "--basic-auth-secret",
            "gw-auth",
        ],
    )
    .await;
    let host = "guarded.nginx.test";
    eventually("basic auth on the guarded route", 120, || async {
        let a = get(host, "/").await;
        (a.status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    let a = request(
        reqwest::Method::GET,
        host,
        "/",
        &[],
        Some(("alice", "nope")),
    )
    .await
    .expect("GET");
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    let a = request(
        reqwest::Method::GET,
        host,
        "/",
        &[],
        Some(("alice", "s3cret")),
    )
    .await
    .expect("GET");
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(
        a.body.contains("gateway GET / host=guarded.nginx.test"),
        "{}",
        a.body
    );

    // CORS: the answer carries the allow headers, a preflight is answered
    trigger(
        ns,
        "cors",
        "gw",
        &["--hostname", "cors.nginx.test", "--cors-enable"],
    )
    .await;
    until_routed(ns, "cors.nginx.test", "/", "gateway GET /", 120).await;
    let origin = [("Origin", "https://app.test")];
    let a = eventually("CORS headers on the cors route", 60, || async {
        let a = request(reqwest::Method::GET, "cors.nginx.test", "/", &origin, None)
            .await
            .ok()?;
        a.header("access-control-allow-origin")
            .is_some()
            .then_some(a)
    })
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // the gateway's answer, not the function's `*`
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://app.test"),
        "{:?}",
        a.headers
    );
    assert_eq!(
        a.header("access-control-allow-credentials"),
        Some("true"),
        "{:?}",
        a.headers
    );
    let preflight = request(
        reqwest::Method::OPTIONS,
        "cors.nginx.test",
        "/",
        &[
            ("Origin", "https://app.test"),
            ("Access-Control-Request-Method", "POST"),
        ],
        None,
    )
    .await
    .expect("OPTIONS");
    assert!(
        preflight.status.is_success(),
        "preflight: {} {:?}",
        preflight.status,
        preflight.headers
    );
    let methods = preflight
        .header("access-control-allow-methods")
        .unwrap_or_default();
    assert!(methods.contains("GET,PUT,POST"), "{:?}", preflight.headers);
    eprintln!(
        "nginx gateway: CORS allow-origin {:?}, preflight {} allow-methods {methods:?}",
        a.header("access-control-allow-origin"),
        preflight.status
    );

    // TLS from a secret, and plain HTTP to that host redirected to HTTPS
    let host = "secure.nginx.test";
    let cert = tls_secret(&c, ns, "gw-tls", host).await;
    trigger(
        ns,
        "secure",
        "gw",
        &["--hostname", host, "--tls-secret", "gw-tls"],
    )
    .await;
    https_until_routed(ns, host, &cert, "/tls", 120).await;
    let a = get(host, "/tls").await;
    assert_eq!(
        a.status,
        StatusCode::PERMANENT_REDIRECT,
        "HTTP to a TLS host: {}",
        a.body
    );
    let location = a.header("location").unwrap_or_default();
    assert!(
        location.starts_with("https://secure.nginx.test"),
        "{location}"
    );

    kubeless_ok(&["trigger", "http", "delete", "by-host", "-n", ns]).await;
    until_status(ns, "gw.nginx.test", "/", StatusCode::NOT_FOUND, 60).await;
    kubeless_ok(&["function", "delete", "gw", "-n", ns]).await;
}

/// The Deployment's desired replicas (what the HPA set).
async fn replicas(deployments: &Api<Deployment>, name: &str) -> i32 {
    deployments
        .get(name)
        .await
        .ok()
        .and_then(|d| d.spec)
        .and_then(|s| s.replicas)
        .unwrap_or(0)
}

/// The average CPU utilisation the HPA last read, in percent of the request.
fn cpu_utilisation(h: HorizontalPodAutoscaler) -> Option<i32> {
    h.status?
        .current_metrics?
        .iter()
        .find_map(|m| m.resource.as_ref()?.current.average_utilization)
}

/// `kubectl top pod` in `ns`: the pod list once metrics-server has a
/// sample of every pod (two scrapes after they start).
fn kubectl_top(ns: &str) -> Option<String> {
    let (ok, out, _) = run(Command::new("kubectl").args(["top", "pod", "-n", ns, "--no-headers"]));
    (ok && !out.trim().is_empty()).then_some(out)
}

/// `kubeless autoscale create` with a CPU target on a function that burns
/// CPU: load on its Service scales the Deployment up, and it scales back to
/// one replica once the load stops. The node's controller-manager
/// re-evaluates HPAs every 5 s and waits 30 s before scaling down
/// (tools/k8s-harness/up.sh), metrics-server scrapes every 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_node_autoscale_on_cpu_with_metrics_server() {
    let ns = "node-hpa-cpu";
    let Some((c, dir)) = setup(ns).await else {
        return;
    };
    // `kubectl top` reads metrics-server through the aggregation layer
    let (ok, out, err) = tokio::task::spawn_blocking(|| {
        run(Command::new("kubectl").args(["top", "pods", "-A", "--no-headers"]))
    })
    .await
    .expect("join");
    assert!(
        ok && !out.trim().is_empty(),
        "kubectl top pods -A: {out}{err}"
    );

    let f = write(dir.path(), "burn.py", BURN_PY);
    // the CPU request (100m, also the limit) is what utilisation is measured against
    deploy(
        ns,
        "burn",
        "python3.11",
        "burn.handler",
        &f,
        &["--cpu", "100m"],
    )
    .await;
    call_until("burn", ns, "ping", "burned", 300).await;
    let top = eventually(
        "metrics-server to report the function's pod",
        120,
        || async {
            let ns = ns.to_string();
            tokio::task::spawn_blocking(move || kubectl_top(&ns))
                .await
                .expect("join")
        },
    )
    .await;
    eprintln!("kubectl top pod -n {ns}:\n{top}");

    kubeless_ok(&[
        "autoscale",
        "create",
        "burn",
        "-n",
        ns,
        "--min",
        "1",
        "--max",
        "3",
        "--metric",
        "cpu",
        "--value",
        "20",
    ])
    .await;
    // the controller makes the HPA; `list` shows the cluster's HPAs
    eventually("autoscale list to show the HPA", 60, || async {
        let (ok, out) = kubeless_try(&["autoscale", "list", "-n", ns]).await;
        (ok && out.contains("burn")).then_some(())
    })
    .await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(c.clone(), ns);
    // the HPA has read a utilisation before any load (metrics flow)
    let idle = eventually(
        "the HPA to read the function's CPU utilisation",
        120,
        || async { cpu_utilisation(hpas.get_opt("burn").await.ok().flatten()?) },
    )
    .await;
    eprintln!("autoscale: CPU utilisation before load {idle}% (target 20%)");

    let svc = Api::<Service>::namespaced(c.clone(), ns)
        .get("burn")
        .await
        .expect("service");
    let spec = svc.spec.expect("service spec");
    let ip = spec.cluster_ip.expect("cluster IP");
    let port = spec
        .ports
        .as_ref()
        .and_then(|p| p.first())
        .map_or(8080, |p| p.port);
    let url = format!("http://{ip}:{port}/");

    // load: 4 clients on the ClusterIP (pods on the node's bridge), bounded
    // in time and count, until the HPA has scaled up
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), ns);
    assert_eq!(replicas(&deployments, "burn").await, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let load_limit = Duration::from_secs(240);
    let max_requests = 20_000;
    let load_start = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, sent, url) = (stop.clone(), sent.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            let mut ok = 0u64;
            while !stop.load(Ordering::Relaxed)
                && load_start.elapsed() < load_limit
                && sent.fetch_add(1, Ordering::Relaxed) < max_requests
            {
                if let Ok(r) = http.get(&url).send().await
                    && r.status().is_success()
                {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut up = None;
    while load_start.elapsed() < load_limit {
        let n = replicas(&deployments, "burn").await;
        if n > 1 {
            up = Some((load_start.elapsed(), n));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut answered = 0;
    for client in clients {
        answered += client.await.expect("load client");
    }
    let load_stop = Instant::now();
    let hpa_state = |h: Option<HorizontalPodAutoscaler>| {
        h.and_then(|h| h.status)
            .map(|s| format!("{s:?}"))
            .unwrap_or_default()
    };
    let Some((scale_up, n)) = up else {
        panic!(
            "no scale-up within {}s of load ({answered} answers); HPA status: {}\n{}",
            load_limit.as_secs(),
            hpa_state(hpas.get_opt("burn").await.ok().flatten()),
            diagnose(ns)
        );
    };
    let busy = hpas
        .get_opt("burn")
        .await
        .ok()
        .flatten()
        .and_then(cpu_utilisation)
        .unwrap_or_default();
    eprintln!(
        "autoscale: load start -> {n} replicas {:.1}s (utilisation read {busy}%, {answered} \
         answers, {} requests)",
        scale_up.as_secs_f64(),
        sent.load(Ordering::Relaxed).min(max_requests)
    );

    // no load: back to one replica after the 30 s stabilisation window
    let mut down = None;
    while load_stop.elapsed() < Duration::from_secs(300) {
        if replicas(&deployments, "burn").await == 1 {
            down = Some(load_stop.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let Some(scale_down) = down else {
        panic!(
            "no scale-down within 300s of the load stopping; HPA status: {}\n{}",
            hpa_state(hpas.get_opt("burn").await.ok().flatten()),
            diagnose(ns)
        );
    };
    eprintln!(
        "autoscale: load stop -> 1 replica {:.1}s",
        scale_down.as_secs_f64()
    );

    kubeless_ok(&["autoscale", "delete", "burn", "-n", ns]).await;
    eventually("the HPA to be removed", 60, || async {
        hpas.get_opt("burn")
            .await
            .ok()
            .and_then(|h| h.is_none().then_some(()))
    })
    .await;
    kubeless_ok(&["function", "delete", "burn", "-n", ns]).await;
}
