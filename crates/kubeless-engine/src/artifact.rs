//! The artifact cache: a function's code decoded, verified and with its
//! dependencies installed, once per artifact key, shared by every instance
//! and every restart (Kubeless reinstalled dependencies on every pod start).
//!
//! Layout: `<root>/<artifact key>/` holds the code as the runtime host reads
//! it (`KUBELESS_INSTALL_VOLUME`). An artifact is built in a private
//! temporary directory and renamed into place only when complete, so a crash
//! mid-build never leaves a half-prepared artifact that looks ready.
//! Concurrent requests for the same key wait for one build.
//!
//! Steps, in order: decode or download the code, unpack it, run the plan's
//! `install` command when a dependency file is present, then the plan's
//! `compile` command (Go, Java). Install and compile output is kept only on
//! failure, where its tail becomes the error, so a compile error reaches the
//! function's status and `kubeless function describe` instead of starting
//! a process that can only crash.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubeless_api::FunctionSpec;
use kubeless_api::content::{self, ContentError};
use kubeless_plan::FunctionPlan;
use kubeless_plan::expand::expand;
use tokio::io::AsyncReadExt;

/// Largest code download accepted for `url` content types.
const MAX_DOWNLOAD: u64 = 512 * 1024 * 1024;
/// Longest a dependency install or a compile step may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How much installer output a failure message keeps (its tail).
const INSTALL_OUTPUT_TAIL: usize = 4000;
const READY_MARK: &str = ".kubeless-artifact";

/// Why an artifact could not be prepared. Messages are shown to users as the
/// function's status reason.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("download the function code from {url}")]
    Download {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("download the function code from {url}: {reason}")]
    DownloadRefused { url: String, reason: String },
    #[error("prepare the function code: {0}")]
    Content(#[from] ContentError),
    #[error("write the artifact directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("start the dependency installer {program}")]
    InstallerStart {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("dependency installation failed ({status}):\n{output}{hint}")]
    InstallFailed {
        status: String,
        output: String,
        /// What the language's registry situation means for the user,
        /// starting with a newline, or empty.
        hint: String,
    },
    #[error("compilation failed ({status}):\n{output}")]
    CompileFailed { status: String, output: String },
    #[error("{step} took longer than {limit:?}")]
    InstallTimeout { step: &'static str, limit: Duration },
    #[error("artifact preparation was interrupted")]
    Interrupted,
    /// The function runs from an image that could not be prepared.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
}

/// Local tools the install and compile commands name. Empty means "not
/// found"; the plan only names tools of languages that are available.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    pub python: String,
    pub node: String,
    pub npm: String,
    /// `kubeless-runtime`, whose `compile` subcommand builds Go and Java.
    pub runtime_bin: String,
    pub bundle: String,
    pub composer: String,
    pub go: String,
    pub javac: String,
    pub mvn: String,
}

impl Tools {
    fn lookup(&self, name: &str) -> Option<String> {
        let tool = match name {
            "KUBELESS_PYTHON" => &self.python,
            "KUBELESS_NODE" => &self.node,
            "KUBELESS_NPM" => &self.npm,
            "KUBELESS_RUNTIME_BIN" => &self.runtime_bin,
            "KUBELESS_BUNDLE" => &self.bundle,
            "KUBELESS_COMPOSER" => &self.composer,
            "KUBELESS_GO" => &self.go,
            "KUBELESS_JAVAC" => &self.javac,
            "KUBELESS_MVN" => &self.mvn,
            _ => return None,
        };
        Some(tool.clone())
    }
}

/// Which step a command runs, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Install,
    Compile,
}

/// The cache; cheap to clone.
#[derive(Clone)]
pub struct ArtifactCache {
    root: PathBuf,
    tools: Tools,
    http: reqwest::Client,
    building: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl ArtifactCache {
    pub fn new(root: PathBuf, tools: Tools) -> ArtifactCache {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(20))
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap_or_default();
        ArtifactCache {
            root,
            tools,
            http,
            building: Arc::default(),
        }
    }

    /// The directory an artifact key lives in.
    pub fn dir(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Whether an artifact is already prepared.
    pub fn is_ready(&self, key: &str) -> bool {
        self.dir(key).join(READY_MARK).is_file()
    }

    /// Prepare the artifact of a plan (or return the cached one). `note` is
    /// told what is happening, for the function's log.
    pub async fn prepare(
        &self,
        plan: &FunctionPlan,
        note: impl Fn(&str),
    ) -> Result<PathBuf, ArtifactError> {
        let dir = self.dir(&plan.artifact_key);
        if self.is_ready(&plan.artifact_key) {
            return Ok(dir);
        }
        let lock = {
            let mut map = self.building.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(plan.artifact_key.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        if self.is_ready(&plan.artifact_key) {
            return Ok(dir);
        }
        let tmp = self.root.join(format!(
            ".build-{}-{}",
            plan.artifact_key,
            std::process::id()
        ));
        let result = self.build(plan, &tmp, &note).await;
        match result {
            Ok(()) => {
                if dir.exists() {
                    // A leftover without the ready mark from an interrupted rename.
                    remove_dir(&dir).await;
                }
                tokio::fs::rename(&tmp, &dir)
                    .await
                    .map_err(|source| ArtifactError::Io {
                        path: dir.clone(),
                        source,
                    })?;
                Ok(dir)
            }
            Err(e) => {
                remove_dir(&tmp).await;
                Err(e)
            }
        }
    }

    async fn build(
        &self,
        plan: &FunctionPlan,
        tmp: &Path,
        note: &impl Fn(&str),
    ) -> Result<(), ArtifactError> {
        remove_dir(tmp).await;
        tokio::fs::create_dir_all(tmp)
            .await
            .map_err(|source| ArtifactError::Io {
                path: tmp.to_path_buf(),
                source,
            })?;
        let spec = FunctionSpec {
            handler: format!("{}.{}", plan.module, plan.function_name),
            function: plan.code.function.clone(),
            function_content_type: plan.code.content_type.clone(),
            checksum: plan.code.checksum.clone(),
            runtime: plan.runtime.runtime.clone(),
            deps: plan.deps.clone(),
            ..FunctionSpec::default()
        };
        let bytes = match content::decode_inline(&spec) {
            Ok(d) => d.bytes,
            Err(ContentError::NeedsFetch { url }) => {
                note(&format!("downloading function code from {url}"));
                self.download(&url).await?
            }
            Err(e) => return Err(e.into()),
        };
        let suffix = plan.runtime.suffix.clone();
        let dep_name = plan.runtime.dep_name.clone();
        let dest = tmp.to_path_buf();
        let materialized = tokio::task::spawn_blocking(move || {
            content::materialize(
                &spec,
                &bytes,
                &suffix,
                dep_name.as_deref(),
                &dest,
                &content::archive::UnpackLimits::default(),
            )
        })
        .await
        .map_err(|_| ArtifactError::Interrupted)??;
        if materialized.has_deps
            && let Some(cmd) = &plan.install
        {
            note("installing dependencies");
            if let Err(e) = self.run_step(Step::Install, cmd, tmp).await {
                return Err(match e {
                    ArtifactError::InstallFailed { status, output, .. } => {
                        ArtifactError::InstallFailed {
                            status,
                            output,
                            hint: plan
                                .runtime
                                .language
                                .install_hint()
                                .map(|h| format!("\n{h}"))
                                .unwrap_or_default(),
                        }
                    }
                    other => other,
                });
            }
        }
        if let Some(cmd) = &plan.compile {
            note("compiling");
            self.run_step(Step::Compile, cmd, tmp).await?;
        }
        tokio::fs::write(tmp.join(READY_MARK), plan.artifact_key.as_bytes())
            .await
            .map_err(|source| ArtifactError::Io {
                path: tmp.to_path_buf(),
                source,
            })?;
        Ok(())
    }

    async fn download(&self, url: &str) -> Result<Vec<u8>, ArtifactError> {
        let err = |source| ArtifactError::Download {
            url: url.to_string(),
            source,
        };
        let mut resp = self.http.get(url).send().await.map_err(err)?;
        if !resp.status().is_success() {
            return Err(ArtifactError::DownloadRefused {
                url: url.to_string(),
                reason: resp.status().to_string(),
            });
        }
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(err)? {
            if out.len() as u64 + chunk.len() as u64 > MAX_DOWNLOAD {
                return Err(ArtifactError::DownloadRefused {
                    url: url.to_string(),
                    reason: format!("larger than {MAX_DOWNLOAD} bytes"),
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    async fn run_step(
        &self,
        step: Step,
        cmd: &kubeless_plan::CommandLine,
        dir: &Path,
    ) -> Result<(), ArtifactError> {
        let vol = dir.to_string_lossy().to_string();
        let lookup = |name: &str| match name {
            "KUBELESS_INSTALL_VOLUME" => Some(vol.clone()),
            other => self.tools.lookup(other),
        };
        let program = expand(&cmd.program, lookup);
        let args: Vec<String> = cmd.args.iter().map(|a| expand(a, lookup)).collect();
        let step_env: Vec<(String, String)> = cmd
            .env
            .iter()
            .map(|e| (e.name.clone(), expand(&e.value, lookup)))
            .collect();
        // The installer is the user's own tooling: it keeps the server's
        // environment and HOME (registry mirrors, proxies, CA bundles,
        // ~/.npmrc, the npm cache), minus the server's own settings.
        let mut command = tokio::process::Command::new(&program);
        command.args(&args).current_dir(dir);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("KUBELESS_") {
                command.env_remove(k);
            }
        }
        let mut child = command
            .env("npm_config_update_notifier", "false")
            .envs(step_env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .map_err(|source| ArtifactError::InstallerStart {
                program: program.clone(),
                source,
            })?;
        let mut out = child.stdout.take();
        let mut err = child.stderr.take();
        let collect = async {
            let mut a = Vec::new();
            let mut b = Vec::new();
            let ra = async {
                if let Some(o) = out.as_mut() {
                    let _ = o.read_to_end(&mut a).await;
                }
            };
            let rb = async {
                if let Some(e) = err.as_mut() {
                    let _ = e.read_to_end(&mut b).await;
                }
            };
            tokio::join!(ra, rb);
            let status = child.wait().await;
            (status, a, b)
        };
        let (status, stdout, stderr) = tokio::time::timeout(INSTALL_TIMEOUT, collect)
            .await
            .map_err(|_| ArtifactError::InstallTimeout {
                step: match step {
                    Step::Install => "dependency installation",
                    Step::Compile => "compilation",
                },
                limit: INSTALL_TIMEOUT,
            })?;
        let status = status.map_err(|source| ArtifactError::InstallerStart {
            program: program.clone(),
            source,
        })?;
        if status.success() {
            return Ok(());
        }
        let mut output = String::from_utf8_lossy(&stdout).to_string();
        output.push_str(&String::from_utf8_lossy(&stderr));
        let output = tail(output.trim(), INSTALL_OUTPUT_TAIL);
        Err(match step {
            Step::Install => ArtifactError::InstallFailed {
                status: status.to_string(),
                output,
                hint: String::new(),
            },
            Step::Compile => ArtifactError::CompileFailed {
                status: status.to_string(),
                output,
            },
        })
    }
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

async fn remove_dir(p: &Path) {
    if let Err(e) = tokio::fs::remove_dir_all(p).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %p.display(), error = %e, "could not remove a stale artifact directory");
    }
}
