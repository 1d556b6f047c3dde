//! HTTP triggers in the gateway: routes by host name and path, basic auth,
//! CORS and TLS certificates, rebuilt from the store by the trigger
//! supervisor and read lock-free by every request (an `ArcSwap` of an
//! immutable table).
//!
//! Matching (as an nginx Ingress with `rewrite-target: /`): a trigger with
//! host `h` and path `p` takes requests whose host is `h` (any host when
//! empty) and whose path is `/p` or starts with `/p/`; the function sees
//! the path `/` (the query string is kept). Longer paths win, and a trigger
//! naming a host wins over one for any host. A request for `/<ns>/<fn>`
//! of an existing function goes to that function unless a trigger with a
//! host name claims it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use base64::Engine;
use kubeless_api::{HttpTrigger, Secret};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use super::htpasswd::Htpasswd;

/// Successful basic-auth checks remembered per trigger, so bcrypt runs once
/// per credential rather than once per request.
const AUTH_CACHE: usize = 1024;

/// Basic auth of one trigger.
#[derive(Debug)]
pub struct BasicAuth {
    pub secret: String,
    htpasswd: Htpasswd,
    ok: Mutex<HashSet<[u8; 32]>>,
}

impl BasicAuth {
    /// Check an `Authorization` header value.
    pub async fn check(self: &Arc<Self>, header: Option<&str>) -> bool {
        let Some((user, pass)) = header.and_then(parse_basic) else {
            return false;
        };
        let key: [u8; 32] = Sha256::digest(format!("{user}\0{pass}").as_bytes()).into();
        if self
            .ok
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return true;
        }
        let me = self.clone();
        let good = tokio::task::spawn_blocking(move || me.htpasswd.verify(&user, &pass))
            .await
            .unwrap_or(false);
        if good {
            let mut ok = self.ok.lock().unwrap_or_else(|p| p.into_inner());
            if ok.len() >= AUTH_CACHE {
                ok.clear();
            }
            ok.insert(key);
        }
        good
    }
}

fn parse_basic(h: &str) -> Option<(String, String)> {
    let (scheme, b64) = h.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// One routable HTTP trigger.
#[derive(Debug)]
pub struct HttpRoute {
    pub namespace: String,
    pub trigger: String,
    pub function: String,
    /// Lower-case host name; empty = any host.
    pub host: String,
    /// Path without leading or trailing `/`; empty = every path.
    pub path: String,
    pub auth: Option<Arc<BasicAuth>>,
    pub cors: bool,
}

impl HttpRoute {
    fn path_matches(&self, path: &str) -> bool {
        if self.path.is_empty() {
            return true;
        }
        let p = path.trim_start_matches('/');
        p == self.path
            || p.strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// The table of HTTP trigger routes, most specific first.
#[derive(Debug, Default)]
pub struct HttpRoutes {
    routes: Vec<Arc<HttpRoute>>,
}

impl HttpRoutes {
    /// The trigger for a request: `host_specific` picks among triggers that
    /// name a host, otherwise among those for any host.
    pub fn find(&self, host: &str, path: &str, host_specific: bool) -> Option<Arc<HttpRoute>> {
        let host = host.to_ascii_lowercase();
        self.routes
            .iter()
            .filter(|r| r.host.is_empty() != host_specific)
            .find(|r| (r.host.is_empty() || r.host == host) && r.path_matches(path))
            .cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// Certificates of TLS triggers by host name; `default` answers clients
/// that send no (or an unknown) server name.
#[derive(Debug, Default)]
pub struct Certs {
    by_host: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

/// What the gateway reads on every request; swapped whole.
#[derive(Clone, Default)]
pub struct HttpTriggerTable {
    routes: Arc<ArcSwap<HttpRoutes>>,
    certs: Arc<ArcSwap<Certs>>,
}

impl HttpTriggerTable {
    pub fn load(&self) -> arc_swap::Guard<Arc<HttpRoutes>> {
        self.routes.load()
    }

    pub fn set(&self, routes: HttpRoutes, certs: Certs) {
        self.routes.store(Arc::new(routes));
        self.certs.store(Arc::new(certs));
    }

    /// A rustls certificate resolver reading this table.
    pub fn resolver(&self) -> Arc<CertResolver> {
        Arc::new(CertResolver(self.certs.clone()))
    }
}

/// Picks a TLS trigger's certificate by SNI.
#[derive(Debug)]
pub struct CertResolver(Arc<ArcSwap<Certs>>);

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.0.load();
        hello
            .server_name()
            .and_then(|n| certs.by_host.get(&n.to_ascii_lowercase()).cloned())
            .or_else(|| certs.default.clone())
    }
}

/// How one HTTP trigger came out of [`build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTriggerState {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub ok: bool,
    pub message: String,
}

/// Parse a TLS secret's `tls.crt` and `tls.key` into a certificate.
pub fn certified_key(secret: &Secret) -> Result<CertifiedKey, String> {
    let get = |k: &str| -> Result<Vec<u8>, String> {
        let v = secret
            .data
            .get(k)
            .ok_or_else(|| format!("secret {} has no key {k}", secret.metadata.name))?;
        base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|_| format!("secret {} key {k} is not base64", secret.metadata.name))
    };
    let crt = get("tls.crt")?;
    let key = get("tls.key")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&crt)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "tls.crt of secret {} is not a PEM certificate: {e}",
                secret.metadata.name
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "tls.crt of secret {} holds no PEM certificate",
            secret.metadata.name
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
        format!(
            "tls.key of secret {} is not a PEM private key: {e}",
            secret.metadata.name
        )
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("tls.key of secret {}: {e}", secret.metadata.name))?;
    let ck = CertifiedKey::new(certs, signer);
    ck.keys_match().map_err(|e| {
        format!(
            "tls.key of secret {} does not belong to tls.crt: {e}",
            secret.metadata.name
        )
    })?;
    Ok(ck)
}

fn secret_text(secret: &Secret, key: &str) -> Result<String, String> {
    let v = secret
        .data
        .get(key)
        .ok_or_else(|| format!("secret {} has no key {key:?}", secret.metadata.name))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .map_err(|_| format!("secret {} key {key} is not base64", secret.metadata.name))?;
    String::from_utf8(raw)
        .map_err(|_| format!("secret {} key {key} is not text", secret.metadata.name))
}

/// Build the route table and certificates from the stored triggers and
/// secrets (keyed `<namespace>/<name>`); `functions` holds the
/// `<namespace>/<name>` of existing Functions. Pure; every trigger gets a
/// state saying whether it is served and why not.
pub fn build(
    triggers: &[HttpTrigger],
    secrets: &BTreeMap<String, Secret>,
    functions: &HashSet<String>,
    tls_listener: bool,
) -> (HttpRoutes, Certs, Vec<HttpTriggerState>) {
    let mut routes = Vec::new();
    let mut certs = Certs::default();
    let mut states = Vec::new();
    for t in triggers {
        let ns = &t.metadata.namespace;
        let spec = &t.spec;
        let mut state = HttpTriggerState {
            namespace: ns.clone(),
            name: t.metadata.name.clone(),
            uid: t.metadata.uid.clone(),
            ok: true,
            message: String::new(),
        };
        let result = (|| -> Result<(HttpRoute, Option<CertifiedKey>), String> {
            if !functions.contains(&format!("{ns}/{}", spec.function_name)) {
                return Err(format!("function {} does not exist", spec.function_name));
            }
            let auth = if spec.basic_auth_secret.is_empty() {
                None
            } else {
                let s = secrets
                    .get(&format!("{ns}/{}", spec.basic_auth_secret))
                    .ok_or_else(|| {
                        format!("basic-auth secret {} not found", spec.basic_auth_secret)
                    })?;
                let text = secret_text(s, "auth")?;
                let htpasswd = Htpasswd::parse(&text).map_err(|e| {
                    format!(
                        "key auth of secret {} is not an htpasswd file: {}",
                        spec.basic_auth_secret, e.0
                    )
                })?;
                Some(Arc::new(BasicAuth {
                    secret: spec.basic_auth_secret.clone(),
                    htpasswd,
                    ok: Mutex::new(HashSet::new()),
                }))
            };
            let cert = if spec.tls_secret.is_empty() {
                None
            } else {
                let s = secrets
                    .get(&format!("{ns}/{}", spec.tls_secret))
                    .ok_or_else(|| format!("TLS secret {} not found", spec.tls_secret))?;
                Some(certified_key(s)?)
            };
            Ok((
                HttpRoute {
                    namespace: ns.clone(),
                    trigger: t.metadata.name.clone(),
                    function: spec.function_name.clone(),
                    host: spec.host_name.trim().to_ascii_lowercase(),
                    path: spec.path.trim_matches('/').to_string(),
                    auth,
                    cors: spec.cors_enable,
                },
                cert,
            ))
        })();
        match result {
            Ok((route, cert)) => {
                let mut notes = vec![format!(
                    "routes host {} path /{} to function {}",
                    if route.host.is_empty() {
                        "*"
                    } else {
                        &route.host
                    },
                    route.path,
                    route.function
                )];
                if let Some(c) = cert {
                    let c = Arc::new(c);
                    if route.host.is_empty() {
                        certs.default.get_or_insert(c);
                    } else {
                        certs.by_host.insert(route.host.clone(), c.clone());
                        certs.default.get_or_insert(c);
                    }
                    if tls_listener {
                        notes.push(format!(
                            "HTTPS with the certificate of secret {}",
                            spec.tls_secret
                        ));
                    } else {
                        notes.push("HTTPS is off: start the server with --gateway-tls-addr".into());
                    }
                }
                if spec.tls {
                    notes.push(
                        "ACME certificates (tls: true) are not issued by the embedded server"
                            .into(),
                    );
                }
                state.message = notes.join("; ");
                routes.push(Arc::new(route));
            }
            Err(why) => {
                state.ok = false;
                state.message = why;
            }
        }
        states.push(state);
    }
    // Longer paths first; `find` keeps host-specific and any-host apart.
    routes.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
    (HttpRoutes { routes }, certs, states)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubeless_api::HttpTriggerSpec;

    fn trig(name: &str, host: &str, path: &str, function: &str) -> HttpTrigger {
        let mut t = HttpTrigger::default();
        t.metadata.name = name.into();
        t.metadata.namespace = "default".into();
        t.spec = HttpTriggerSpec {
            function_name: function.into(),
            host_name: host.into(),
            path: path.into(),
            ..Default::default()
        };
        t
    }

    #[test]
    fn routes_match_host_then_longest_path() {
        let fns: HashSet<String> = ["default/a", "default/b", "default/c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (r, _, states) = build(
            &[
                trig("any", "", "api", "a"),
                trig("deep", "", "api/v2", "b"),
                trig("host", "Example.com", "", "c"),
                trig("gone", "", "x", "missing"),
            ],
            &BTreeMap::new(),
            &fns,
            false,
        );
        assert!(states.iter().filter(|s| s.ok).count() == 3);
        assert!(
            states
                .iter()
                .any(|s| !s.ok && s.message.contains("does not exist"))
        );
        let f =
            |host: &str, path: &str, hs: bool| r.find(host, path, hs).map(|x| x.function.clone());
        assert_eq!(f("example.com", "/api", true).as_deref(), Some("c"));
        assert_eq!(f("other", "/api", true), None);
        assert_eq!(f("other", "/api/v2/x", false).as_deref(), Some("b"));
        assert_eq!(f("other", "/api", false).as_deref(), Some("a"));
        assert_eq!(f("other", "/apix", false), None);
        assert_eq!(f("other", "/api/", false).as_deref(), Some("a"));
    }

    #[test]
    fn a_secret_that_is_not_a_certificate_is_reported() {
        let mut t = trig("t", "h", "", "a");
        t.spec.tls_secret = "bad".into();
        let mut s = Secret::default();
        s.metadata.name = "bad".into();
        s.data.insert(
            "tls.crt".into(),
            base64::engine::general_purpose::STANDARD.encode("hello"),
        );
        s.data.insert(
            "tls.key".into(),
            base64::engine::general_purpose::STANDARD.encode("world"),
        );
        let secrets = BTreeMap::from([("default/bad".to_string(), s)]);
        let fns = HashSet::from(["default/a".to_string()]);
        let (_, _, states) = build(&[t], &secrets, &fns, true);
        assert!(!states[0].ok);
        assert!(
            states[0].message.contains("not a PEM certificate")
                || states[0].message.contains("holds no PEM certificate"),
            "{}",
            states[0].message
        );
    }
}
