//! `kubeless server`: validate the options, then open the store, bind the
//! listeners, write the client config, and run the API, the gateway (and
//! its HTTPS listener for TLS triggers), the reconciler and the trigger
//! supervisor until shutdown.
//!
//! Shutdown is bounded: on cancellation the listeners stop accepting, open
//! API and gateway connections drain for at most `shutdown_grace`, and every
//! function instance gets SIGTERM then SIGKILL after its stop grace.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kubeless_plan::{Catalogue, Language, Settings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::artifact::{ArtifactCache, Tools};
use crate::instance::InstanceCtx;
use crate::{
    Ctx, EngineError, api, gateway, instance, limits, logs, reconcile, secrets, store, triggers,
};

/// Everything `kubeless server` needs, validated before any side effect.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `$KUBELESS_HOME`: client config, store, artifacts.
    pub home: PathBuf,
    pub api_addr: SocketAddr,
    pub gateway_addr: SocketAddr,
    /// Allow listening on a non-loopback address.
    pub allow_remote: bool,
    /// The `kubeless-runtime` host binary.
    pub runtime_bin: PathBuf,
    pub python: Option<String>,
    pub node: Option<String>,
    pub npm: Option<String>,
    /// Toolchains of the other runtimes; `None` means not installed, and
    /// the catalogue then leaves that language out.
    pub toolchains: Toolchains,
    /// bubblewrap, to mount secrets at their Kubernetes paths.
    pub bwrap: Option<PathBuf>,
    pub log_bytes: usize,
    pub shutdown_grace: Duration,
    /// HTTPS listener for HTTP triggers with a TLS secret; none when unset.
    pub gateway_tls_addr: Option<SocketAddr>,
    /// Brokers, retries and backoff of the event triggers.
    pub triggers: triggers::TriggerOptions,
}

impl ServerOptions {
    /// Check the options; returns the languages that can run here.
    pub fn validate(&self) -> Result<Vec<Language>, EngineError> {
        for (what, addr) in [
            ("--api-addr", Some(self.api_addr)),
            ("--gateway-addr", Some(self.gateway_addr)),
            ("--gateway-tls-addr", self.gateway_tls_addr),
        ]
        .into_iter()
        .filter_map(|(w, a)| a.map(|a| (w, a)))
        {
            if !addr.ip().is_loopback() && !self.allow_remote {
                return Err(EngineError::Config(format!(
                    "{what} {addr} is not a loopback address; the server only listens on this machine unless --allow-remote is given"
                )));
            }
        }
        if self.api_addr == self.gateway_addr && self.api_addr.port() != 0 {
            return Err(EngineError::Config(
                "--api-addr and --gateway-addr must differ".into(),
            ));
        }
        self.triggers.validate().map_err(EngineError::Config)?;
        if !self.runtime_bin.is_file() {
            return Err(EngineError::Config(format!(
                "the runtime host {} does not exist; build it with 'cargo build --release' or set KUBELESS_RUNTIME_BIN",
                self.runtime_bin.display()
            )));
        }
        let mut langs = Vec::new();
        if present(&self.python) {
            langs.push(Language::Python);
        }
        if present(&self.node) {
            langs.push(Language::Nodejs);
        }
        langs.extend(self.toolchains.languages());
        if langs.is_empty() {
            return Err(EngineError::Config(
                "neither python3 nor node was found on PATH; install one of them to run functions"
                    .into(),
            ));
        }
        Ok(langs)
    }
}

/// Where the Ruby, PHP, Go and Java toolchains are (found on PATH by the
/// CLI).
#[derive(Debug, Clone, Default)]
pub struct Toolchains {
    pub ruby: Option<String>,
    pub bundle: Option<String>,
    pub php: Option<String>,
    pub composer: Option<String>,
    pub go: Option<String>,
    pub java: Option<String>,
    pub javac: Option<String>,
    pub mvn: Option<String>,
}

impl Toolchains {
    /// The languages whose toolchain is complete. Bundler, composer and
    /// Maven are needed only for dependencies, so their absence shows up
    /// as an install error instead.
    pub fn languages(&self) -> Vec<Language> {
        let mut out = Vec::new();
        if present(&self.ruby) {
            out.push(Language::Ruby);
        }
        if present(&self.php) {
            out.push(Language::Php);
        }
        if present(&self.go) {
            out.push(Language::Go);
        }
        if present(&self.java) && present(&self.javac) {
            out.push(Language::Java);
        }
        out
    }

    /// The interpreter variables the runtime host reads.
    fn host_env(&self) -> Vec<(&'static str, String)> {
        [
            ("KUBELESS_RUBY", &self.ruby),
            ("KUBELESS_PHP", &self.php),
            ("KUBELESS_JAVA", &self.java),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.clone()?)))
        .collect()
    }
}

/// Whether a tool setting names a program that exists. A flag such as
/// `--ruby /opt/ruby/bin/ruby` is taken as given, so a wrong path must make
/// the language unavailable (with how to install it) instead of failing at
/// every deploy; a bare name is looked up on `PATH`.
fn present(tool: &Option<String>) -> bool {
    let Some(tool) = tool.as_deref().filter(|t| !t.is_empty()) else {
        return false;
    };
    if tool.contains('/') {
        return Path::new(tool).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
}

/// The version of each language's installed toolchain, read concurrently
/// with a short bound: it only words the legacy-runtime warning, so a slow
/// or odd `--version` leaves it empty rather than delaying the start.
async fn installed_versions(
    opts: &ServerOptions,
    langs: &[Language],
) -> std::collections::BTreeMap<Language, String> {
    let tool = |l: Language| -> Option<(String, &'static str)> {
        let (program, arg) = match l {
            Language::Python => (opts.python.clone(), "--version"),
            Language::Nodejs => (opts.node.clone(), "--version"),
            Language::Ruby => (opts.toolchains.ruby.clone(), "--version"),
            Language::Php => (opts.toolchains.php.clone(), "--version"),
            Language::Go => (opts.toolchains.go.clone(), "version"),
            Language::Java => (opts.toolchains.java.clone(), "-version"),
            Language::Custom => (None, ""),
        };
        Some((program?, arg))
    };
    let probes = langs.iter().filter_map(|&l| {
        let (program, arg) = tool(l)?;
        Some(async move {
            let run = tokio::process::Command::new(&program)
                .arg(arg)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output();
            let version = match tokio::time::timeout(Duration::from_secs(3), run).await {
                Ok(Ok(out)) => {
                    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
                    text.push('\n');
                    text.push_str(&String::from_utf8_lossy(&out.stderr));
                    parse_version(l, &text)
                }
                _ => String::new(),
            };
            (l, version)
        })
    });
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .collect()
}

/// `Python 3.11.2`, `v18.19.0`, `ruby 3.1.2p20`, `PHP 8.2.7`,
/// `go version go1.26.0`, `openjdk version "17.0.9"` -> `3.11`, `18`,
/// `3.1`, `8.2`, `1.26`, `17`. Node.js and Java are known by their major.
fn parse_version(language: Language, text: &str) -> String {
    let Some(version) = text.split_whitespace().find_map(|token| {
        let t = token.trim_matches('"');
        let t = t
            .strip_prefix("go")
            .or_else(|| t.strip_prefix('v'))
            .unwrap_or(t);
        let digits: String = t
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        digits
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
            .then_some(digits)
    }) else {
        return String::new();
    };
    let parts: Vec<&str> = version.split('.').filter(|p| !p.is_empty()).collect();
    let keep = match language {
        Language::Nodejs => 1,
        // Java 8 calls itself 1.8.0_392.
        Language::Java if parts.first() != Some(&"1") => 1,
        _ => 2,
    };
    parts[..keep.min(parts.len())].join(".")
}

/// Run the embedded server until `shutdown` is cancelled.
pub async fn serve(opts: ServerOptions, shutdown: CancellationToken) -> Result<(), EngineError> {
    let langs = opts.validate()?;
    let versions = {
        let (opts, langs) = (opts.clone(), langs.clone());
        tokio::spawn(async move { installed_versions(&opts, &langs).await })
    };
    let server_dir = opts.home.join("server");
    let run_root = server_dir.join("run");
    for dir in [
        &opts.home,
        &server_dir,
        &server_dir.join("artifacts"),
        &run_root,
        &run_root.join("pids"),
    ] {
        create_private_dir(dir).await?;
    }
    let store = store::Store::open(&server_dir.join("store.redb"))?;
    let token = load_or_create_token(&server_dir.join("token")).await?;
    instance::reap_leftovers(&run_root).await;

    let api_listener =
        TcpListener::bind(opts.api_addr)
            .await
            .map_err(|source| EngineError::Bind {
                addr: opts.api_addr,
                flag: "--api-addr",
                source,
            })?;
    let gw_listener = TcpListener::bind(opts.gateway_addr)
        .await
        .map_err(|source| EngineError::Bind {
            addr: opts.gateway_addr,
            flag: "--gateway-addr",
            source,
        })?;
    let tls_listener = match opts.gateway_tls_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| EngineError::Bind {
                    addr,
                    flag: "--gateway-tls-addr",
                    source,
                })?,
        ),
        None => None,
    };
    let api_addr = api_listener.local_addr().map_err(EngineError::Serve)?;
    let gw_addr = gw_listener.local_addr().map_err(EngineError::Serve)?;
    let gateway_url = format!("http://{gw_addr}");
    let api_url = format!("http://{api_addr}");
    let gateway_tls_url = match &tls_listener {
        Some(l) => Some(format!(
            "https://{}",
            l.local_addr().map_err(EngineError::Serve)?
        )),
        None => None,
    };
    write_client_config(
        &opts.home,
        &api_url,
        &token,
        &gateway_url,
        gateway_tls_url.as_deref(),
    )
    .await?;

    let limits = limits::MemoryLimits::detect().await;
    if !limits.enforced() {
        tracing::warn!(
            "memory cgroups are not writable here: --memory is exported as FUNC_MEMORY_LIMIT but not enforced"
        );
    }
    let python = opts.python.clone().unwrap_or_default();
    let node = opts.node.clone().unwrap_or_default();
    let logs = logs::LogHub::new(opts.log_bytes);
    let ctx = Arc::new(Ctx {
        home: opts.home.clone(),
        store: store.clone(),
        routes: gateway::RouteTable::default(),
        logs: logs.clone(),
        artifacts: ArtifactCache::new(
            server_dir.join("artifacts"),
            Tools {
                python: python.clone(),
                node: node.clone(),
                npm: opts.npm.clone().unwrap_or_else(|| "npm".into()),
                runtime_bin: opts.runtime_bin.to_string_lossy().to_string(),
                bundle: opts.toolchains.bundle.clone().unwrap_or_default(),
                composer: opts.toolchains.composer.clone().unwrap_or_default(),
                go: opts.toolchains.go.clone().unwrap_or_default(),
                javac: opts.toolchains.javac.clone().unwrap_or_default(),
                mvn: opts.toolchains.mvn.clone().unwrap_or_default(),
            },
        ),
        catalogue: {
            let mut catalogue = Catalogue::embedded().restricted_to(&langs);
            catalogue.installed = versions.await.unwrap_or_default();
            for entry in &catalogue.unavailable {
                tracing::info!(
                    "{} runtimes are not available: {}",
                    entry.language.display_name(),
                    entry.language.toolchain_hint()
                );
            }
            catalogue
        },
        settings: Settings::default(),
        instance: InstanceCtx {
            runtime_bin: opts.runtime_bin.clone(),
            python,
            node,
            interpreters: opts.toolchains.host_env(),
            logs,
            run_root,
            secrets: secrets::SecretFiles::new(store),
            limits,
            bwrap: opts.bwrap.clone(),
        },
        triggers: triggers::TriggerShared {
            kafka_brokers: opts.triggers.kafka_brokers.clone(),
            nats_url: opts.triggers.nats_url.clone(),
            ..Default::default()
        },
    });
    let state = api::ApiState {
        ctx: ctx.clone(),
        token: Arc::new(token),
        gateway_url: gateway_url.clone(),
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_default(),
    };
    tracing::info!(api = %api_url, gateway = %gateway_url, home = %opts.home.display(), "kubeless server ready");

    let grace = opts.shutdown_grace;
    let api_token = shutdown.clone();
    let api = async move {
        let stop = api_token.clone();
        let serve = axum::serve(api_listener, api::router(state))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .into_future();
        // A follower of `logs -f` never ends by itself: bound the drain.
        let bound = async {
            api_token.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            r = serve => r.map_err(EngineError::Serve),
            _ = bound => Ok(()),
        }
    };
    let gateway = gateway::Gateway::with_triggers(ctx.routes.clone(), ctx.triggers.http.clone());
    let gw = gateway::serve(gw_listener, gateway.clone(), shutdown.clone(), grace);
    let https = async {
        let Some(listener) = tls_listener else {
            return Ok::<(), EngineError>(());
        };
        let config = triggers::tls::server_config(&ctx.triggers.http)
            .map_err(|e| EngineError::Config(format!("TLS setup: {e}")))?;
        triggers::tls::serve(listener, config, gateway, shutdown.clone(), grace).await;
        Ok(())
    };
    let rec = reconcile::run(ctx.clone(), shutdown.clone());
    let trig = triggers::run(
        ctx.clone(),
        opts.triggers.clone(),
        gateway_tls_url.is_some(),
        shutdown.clone(),
    );
    let (api_result, (), (), (), https_result) = tokio::join!(api, gw, rec, trig, https);
    https_result?;
    tracing::info!("kubeless server stopped");
    api_result
}

async fn create_private_dir(dir: &Path) -> Result<(), EngineError> {
    let io = |source| EngineError::Io {
        path: dir.to_path_buf(),
        source,
    };
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .await
        .map_err(io)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    let io = |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Write a sibling then rename: a reader never sees a half-written file,
    // and the file is 0600 from its first byte.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    std::io::Write::write_all(&mut f, bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

async fn load_or_create_token(path: &Path) -> Result<String, EngineError> {
    if let Ok(t) = tokio::fs::read_to_string(path).await {
        let t = t.trim().to_string();
        if t.len() >= 32 {
            return Ok(t);
        }
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let p = path.to_path_buf();
    let t = token.clone();
    tokio::task::spawn_blocking(move || write_private(&p, t.as_bytes()))
        .await
        .map_err(|e| EngineError::Config(e.to_string()))??;
    Ok(token)
}

async fn write_client_config(
    home: &Path,
    server: &str,
    token: &str,
    gateway: &str,
    gateway_tls: Option<&str>,
) -> Result<(), EngineError> {
    let mut body = serde_json::json!({"server": server, "token": token, "gateway": gateway});
    if let Some(url) = gateway_tls {
        body["gatewayTls"] = serde_json::json!(url);
    }
    let bytes = serde_json::to_vec_pretty(&body).map_err(|e| EngineError::Config(e.to_string()))?;
    let path = home.join("config.json");
    tokio::task::spawn_blocking(move || write_private(&path, &bytes))
        .await
        .map_err(|e| EngineError::Config(e.to_string()))?
}

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn toolchain_versions_are_read_from_their_banners() {
        assert_eq!(parse_version(Language::Python, "Python 3.11.2\n"), "3.11");
        assert_eq!(parse_version(Language::Nodejs, "v18.19.0\n"), "18");
        assert_eq!(
            parse_version(
                Language::Ruby,
                "ruby 3.1.2p20 (2022-04-12 revision 4491bb740a) [x86_64-linux-gnu]"
            ),
            "3.1"
        );
        assert_eq!(
            parse_version(Language::Php, "PHP 8.2.7 (cli) (built: Jun  9 2023)"),
            "8.2"
        );
        assert_eq!(
            parse_version(Language::Go, "go version go1.26.0 linux/amd64"),
            "1.26"
        );
        assert_eq!(
            parse_version(
                Language::Java,
                "openjdk version \"17.0.9\" 2023-10-17\nOpenJDK Runtime"
            ),
            "17"
        );
        assert_eq!(
            parse_version(Language::Java, "java version \"1.8.0_392\""),
            "1.8"
        );
        assert_eq!(parse_version(Language::Ruby, "command not found"), "");
        assert!(!present(&Some("/nonexistent/ruby".into())));
        assert!(present(&Some("sh".into())));
        assert!(!present(&None));
    }
}
