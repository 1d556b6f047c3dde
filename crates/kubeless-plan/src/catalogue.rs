//! The runtimes this build can run, and how each language installs its
//! dependencies and finds them at run time.
//!
//! Runtime strings keep Kubeless's `<id><version>` shape (`python3.8`,
//! `nodejs14`) so existing manifests deploy unchanged. In embedded mode every
//! version of a language runs on the interpreter installed on the machine;
//! the version is kept for Kubernetes mode, where it picks the image.

use serde::{Deserialize, Serialize};

use crate::{CommandLine, EnvVar};

/// A language the runtime host has a worker for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Python,
    Nodejs,
}

impl Language {
    /// The name the runtime host knows the language by.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Nodejs => "nodejs",
        }
    }

    /// The dependency file name (`depName`) and code file suffix.
    pub fn files(self) -> (&'static str, &'static str) {
        match self {
            Language::Python => ("requirements.txt", ".py"),
            Language::Nodejs => ("package.json", ".js"),
        }
    }

    /// The environment the runtime needs to find installed dependencies.
    pub fn runtime_env(self) -> Vec<EnvVar> {
        let (name, value) = match self {
            Language::Python => (
                "PYTHONPATH",
                "$(KUBELESS_INSTALL_VOLUME)/.python_packages:$(KUBELESS_INSTALL_VOLUME)",
            ),
            Language::Nodejs => ("NODE_PATH", "$(KUBELESS_INSTALL_VOLUME)/node_modules"),
        };
        vec![EnvVar {
            name: name.to_string(),
            value: value.to_string(),
        }]
    }

    /// The dependency install command, run in `$(KUBELESS_INSTALL_VOLUME)`.
    /// `$(KUBELESS_PYTHON)` and `$(KUBELESS_NPM)` name the local tools.
    pub fn install_command(self, user_env: &[EnvVar]) -> Option<CommandLine> {
        let env = |k: &str| {
            user_env
                .iter()
                .find(|e| e.name == k)
                .map(|e| e.value.clone())
                .filter(|v| !v.is_empty())
        };
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Some(match self {
            Language::Python => CommandLine {
                program: "$(KUBELESS_PYTHON)".to_string(),
                args: args(&[
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--no-warn-script-location",
                    "--target",
                    "$(KUBELESS_INSTALL_VOLUME)/.python_packages",
                    "-r",
                    "$(KUBELESS_INSTALL_VOLUME)/requirements.txt",
                ]),
            },
            Language::Nodejs => {
                let mut a = args(&[
                    "install",
                    "--omit=dev",
                    "--no-audit",
                    "--no-fund",
                    "--no-package-lock",
                    "--prefix",
                    "$(KUBELESS_INSTALL_VOLUME)",
                ]);
                // Kubeless's install script honoured NPM_REGISTRY and NPM_SCOPE.
                if let Some(registry) = env("NPM_REGISTRY") {
                    match env("NPM_SCOPE") {
                        Some(scope) => a.push(format!("--{scope}:registry={registry}")),
                        None => a.push(format!("--registry={registry}")),
                    }
                }
                CommandLine {
                    program: "$(KUBELESS_NPM)".to_string(),
                    args: a,
                }
            }
        })
    }
}

/// A runtime string resolved against the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedRuntime {
    /// The full runtime string, e.g. `python3.8`.
    pub runtime: String,
    pub id: String,
    pub version: String,
    pub language: Language,
    /// Code file suffix, e.g. `.py`.
    pub suffix: String,
    /// Dependency file name, e.g. `requirements.txt`.
    pub dep_name: Option<String>,
}

/// One runtime id with its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeEntry {
    pub id: String,
    pub versions: Vec<String>,
    pub language: Language,
}

/// The runtimes a platform offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalogue {
    pub runtimes: Vec<RuntimeEntry>,
}

impl Catalogue {
    /// The runtimes of embedded mode: every Kubeless version of each
    /// language, and the current ones.
    pub fn embedded() -> Catalogue {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        Catalogue {
            runtimes: vec![
                RuntimeEntry {
                    id: "python".into(),
                    versions: v(&["3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]),
                    language: Language::Python,
                },
                RuntimeEntry {
                    id: "nodejs".into(),
                    versions: v(&["10", "12", "14", "16", "18", "20", "22"]),
                    language: Language::Nodejs,
                },
            ],
        }
    }

    /// Only the entries whose language is in `available`.
    pub fn restricted_to(mut self, available: &[Language]) -> Catalogue {
        self.runtimes.retain(|r| available.contains(&r.language));
        self
    }

    /// Every valid runtime string, in catalogue order.
    pub fn names(&self) -> Vec<String> {
        self.runtimes
            .iter()
            .flat_map(|r| r.versions.iter().map(move |v| format!("{}{}", r.id, v)))
            .collect()
    }

    /// Resolve a runtime string (exact match on `<id><version>`).
    pub fn resolve(&self, runtime: &str) -> Option<ResolvedRuntime> {
        self.runtimes.iter().find_map(|r| {
            let version = runtime.strip_prefix(r.id.as_str())?;
            if !r.versions.iter().any(|v| v == version) {
                return None;
            }
            let (dep, suffix) = r.language.files();
            Some(ResolvedRuntime {
                runtime: runtime.to_string(),
                id: r.id.clone(),
                version: version.to_string(),
                language: r.language,
                suffix: suffix.to_string(),
                dep_name: Some(dep.to_string()),
            })
        })
    }
}
