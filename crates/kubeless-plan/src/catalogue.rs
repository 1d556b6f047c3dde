//! The runtimes this build can run, and how each language installs its
//! dependencies and finds them at run time.
//!
//! Runtime strings keep Kubeless's `<id><version>` shape (`python3.8`,
//! `nodejs14`, `ruby2.6`, `php7.4`, `go1.14`, `java11`) so existing
//! manifests deploy unchanged. In embedded mode every version of a language
//! runs on the toolchain installed on the machine; the version is kept for
//! Kubernetes mode, where it picks the image.
//!
//! Go and Java are compiled once per artifact by `kubeless-runtime compile`
//! ([`Language::compile_command`]); their `go.mod` and `pom.xml`
//! dependencies are fetched by that step, not by an install command.

use serde::{Deserialize, Serialize};

use crate::{CommandLine, EnvVar};

/// A language the runtime host has a worker for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Python,
    Nodejs,
    Ruby,
    Php,
    Go,
    Java,
    /// The function brings its own server (runtime id `custom`): an
    /// executable in the code, named by the handler's module, that listens
    /// on `FUNC_PORT` and answers `/healthz`.
    Custom,
}

impl Language {
    /// The name the runtime host knows the language by.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Nodejs => "nodejs",
            Language::Ruby => "ruby",
            Language::Php => "php",
            Language::Go => "go",
            Language::Java => "java",
            Language::Custom => "custom",
        }
    }

    /// The language as people write it, for messages.
    pub fn display_name(self) -> &'static str {
        match self {
            Language::Python => "Python",
            Language::Nodejs => "Node.js",
            Language::Ruby => "Ruby",
            Language::Php => "PHP",
            Language::Go => "Go",
            Language::Java => "Java",
            Language::Custom => "custom",
        }
    }

    /// How to make a missing toolchain available, for the message of a
    /// runtime that cannot run on this machine.
    pub fn toolchain_hint(self) -> &'static str {
        match self {
            Language::Python => {
                "install Python (apt-get install python3 python3-pip) or point --python at it, and restart kubeless server"
            }
            Language::Nodejs => {
                "install Node.js (apt-get install nodejs npm) or point --node at it, and restart kubeless server"
            }
            Language::Ruby => {
                "install Ruby (apt-get install ruby ruby-bundler) or point --ruby at it, and restart kubeless server"
            }
            Language::Php => {
                "install PHP (apt-get install php-cli composer) or point --php at it, and restart kubeless server"
            }
            Language::Go => {
                "install Go (https://go.dev/dl/ or apt-get install golang-go) or point --go at it, and restart kubeless server"
            }
            Language::Java => {
                "install a JDK (apt-get install openjdk-17-jdk-headless maven) or point --java at it, and restart kubeless server"
            }
            // Nothing to install: the function carries its server.
            Language::Custom => "",
        }
    }

    /// Kubeless's runtime versions that embedded mode runs on whatever
    /// toolchain is installed, which is worth a warning: the code was
    /// written for an older language.
    pub fn is_legacy(self, version: &str) -> bool {
        match self {
            Language::Python => matches!(version, "3.6" | "3.7" | "3.8"),
            Language::Nodejs => matches!(version, "10" | "12" | "14"),
            Language::Ruby => version.starts_with("2."),
            Language::Php => version.starts_with("7."),
            Language::Go => matches!(version, "1.13" | "1.14"),
            Language::Java => matches!(version, "1.8" | "11"),
            Language::Custom => false,
        }
    }

    /// The dependency file name (`depName`) and code file suffix.
    pub fn files(self) -> (&'static str, &'static str) {
        match self {
            Language::Python => ("requirements.txt", ".py"),
            Language::Nodejs => ("package.json", ".js"),
            Language::Ruby => ("Gemfile", ".rb"),
            Language::Php => ("composer.json", ".php"),
            Language::Go => ("go.mod", ".go"),
            Language::Java => ("pom.xml", ".java"),
            // The executable is the module name as is; dependencies come in
            // the archive.
            Language::Custom => ("", ""),
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
            // Gems bundler installed from vendor/cache; the machine's own
            // gems stay on the default GEM_PATH.
            Language::Ruby => ("GEM_HOME", RUBY_GEM_HOME),
            Language::Php | Language::Go | Language::Java | Language::Custom => return Vec::new(),
        };
        vec![EnvVar {
            name: name.to_string(),
            value: value.to_string(),
        }]
    }

    /// What to tell a user whose dependency install failed, beyond the
    /// installer's own output.
    pub fn install_hint(self) -> Option<&'static str> {
        match self {
            Language::Ruby => Some(
                "bundler runs with --local: RubyGems is not reachable from this machine, so only gems already installed here (Debian ruby-* packages) or vendored in the function archive under vendor/cache (`bundle package`) can be used",
            ),
            Language::Php => Some(
                "Packagist is not reachable from this machine: composer can only use packages the function archive carries (a \"path\" repository, with {\"packagist.org\": false} in \"repositories\") and PHP extensions installed here (Debian php-* packages, required as \"ext-<name>\")",
            ),
            _ => None,
        }
    }

    /// The build step of compiled languages, run in
    /// `$(KUBELESS_INSTALL_VOLUME)` after any install, once per artifact.
    /// `$(KUBELESS_RUNTIME_BIN)`, `$(KUBELESS_GO)`, `$(KUBELESS_JAVAC)` and
    /// `$(KUBELESS_MVN)` name the local tools.
    pub fn compile_command(self, module: &str, function: &str) -> Option<CommandLine> {
        let tools: &[&str] = match self {
            Language::Go => &["--go", "$(KUBELESS_GO)"],
            Language::Java => &["--javac", "$(KUBELESS_JAVAC)", "--mvn", "$(KUBELESS_MVN)"],
            _ => return None,
        };
        let mut args: Vec<String> = [
            "compile",
            "--language",
            self.as_str(),
            "--dir",
            "$(KUBELESS_INSTALL_VOLUME)",
            "--module",
            module,
            "--handler",
            function,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(tools.iter().map(|s| s.to_string()));
        Some(CommandLine {
            program: "$(KUBELESS_RUNTIME_BIN)".to_string(),
            args,
            env: Vec::new(),
        })
    }

    /// The dependency install command, run in `$(KUBELESS_INSTALL_VOLUME)`.
    /// `$(KUBELESS_PYTHON)`, `$(KUBELESS_NPM)`, `$(KUBELESS_BUNDLE)` and
    /// `$(KUBELESS_COMPOSER)` name the local tools.
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
                env: Vec::new(),
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
                    env: Vec::new(),
                }
            }
            Language::Ruby => CommandLine {
                program: "$(KUBELESS_BUNDLE)".to_string(),
                args: args(&[
                    "install",
                    "--local",
                    "--gemfile",
                    "$(KUBELESS_INSTALL_VOLUME)/Gemfile",
                ]),
                env: vec![
                    EnvVar {
                        name: "GEM_HOME".to_string(),
                        value: RUBY_GEM_HOME.to_string(),
                    },
                    EnvVar {
                        name: "BUNDLE_SILENCE_ROOT_WARNING".to_string(),
                        value: "1".to_string(),
                    },
                ],
            },
            Language::Php => CommandLine {
                program: "$(KUBELESS_COMPOSER)".to_string(),
                args: args(&[
                    "install",
                    "--no-interaction",
                    "--no-progress",
                    "--working-dir",
                    "$(KUBELESS_INSTALL_VOLUME)",
                ]),
                env: Vec::new(),
            },
            Language::Go | Language::Java | Language::Custom => return None,
        })
    }
}

/// Where bundler installs a Ruby function's gems.
const RUBY_GEM_HOME: &str = "$(KUBELESS_INSTALL_VOLUME)/.gems";

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalogue {
    pub runtimes: Vec<RuntimeEntry>,
    /// Known runtimes whose toolchain is missing here: they resolve to
    /// [`PlanError::Unavailable`](crate::PlanError::Unavailable) with how
    /// to install it, not to "unknown runtime".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<RuntimeEntry>,
    /// The version of each language's installed toolchain (embedded mode;
    /// empty when it could not be read). A language listed here runs every
    /// runtime version on that toolchain, so legacy ids get a warning; in
    /// Kubernetes mode the map is empty and the version picks the image.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub installed: std::collections::BTreeMap<Language, String>,
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
                RuntimeEntry {
                    id: "ruby".into(),
                    versions: v(&[
                        "2.3", "2.4", "2.5", "2.6", "2.7", "3.0", "3.1", "3.2", "3.3",
                    ]),
                    language: Language::Ruby,
                },
                RuntimeEntry {
                    id: "php".into(),
                    versions: v(&["7.2", "7.3", "7.4", "8.0", "8.1", "8.2", "8.3"]),
                    language: Language::Php,
                },
                RuntimeEntry {
                    id: "go".into(),
                    versions: v(&[
                        "1.13", "1.14", "1.21", "1.22", "1.23", "1.24", "1.25", "1.26",
                    ]),
                    language: Language::Go,
                },
                RuntimeEntry {
                    id: "java".into(),
                    versions: v(&["1.8", "11", "17", "21"]),
                    language: Language::Java,
                },
                // `custom` has no version: the function's own server.
                RuntimeEntry {
                    id: "custom".into(),
                    versions: v(&[""]),
                    language: Language::Custom,
                },
            ],
            ..Catalogue::default()
        }
    }

    /// Only the entries whose language is in `available` (custom runtimes
    /// need nothing installed, so they always stay); the others move to
    /// [`Catalogue::unavailable`].
    pub fn restricted_to(mut self, available: &[Language]) -> Catalogue {
        let (keep, gone): (Vec<_>, Vec<_>) = self
            .runtimes
            .into_iter()
            .partition(|r| r.language == Language::Custom || available.contains(&r.language));
        self.runtimes = keep;
        self.unavailable.extend(gone);
        self
    }

    /// The language of a known runtime string whose toolchain is missing.
    pub fn unavailable_language(&self, runtime: &str) -> Option<Language> {
        self.unavailable.iter().find_map(|r| {
            let version = runtime.strip_prefix(r.id.as_str())?;
            r.versions
                .iter()
                .any(|v| v == version)
                .then_some(r.language)
        })
    }

    /// The one-line reason a known runtime cannot run here.
    pub fn unavailable_reason(&self, runtime: &str) -> Option<String> {
        self.unavailable_language(runtime).map(|l| {
            format!(
                "runtime {runtime} is not available on this machine: {}",
                l.toolchain_hint()
            )
        })
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
                dep_name: (!dep.is_empty()).then(|| dep.to_string()),
            })
        })
    }
}
