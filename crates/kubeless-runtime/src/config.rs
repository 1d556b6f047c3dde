//! Validated host configuration.
//!
//! `main` reads the environment and hands a lookup function to
//! [`Config::from_lookup`]; nothing else in the crate touches the
//! environment, so tests pass a map instead of setting variables.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;

/// The language of the worker that loads the user's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Python,
    Nodejs,
    Ruby,
    Php,
    /// Compiled ahead of time (`kubeless-runtime compile`): the worker is a
    /// binary in the code directory, not a script for an interpreter.
    Go,
    /// Compiled ahead of time; the worker runs on the `java` launcher.
    Java,
}

/// The names [`Language::parse`] accepts, for error messages.
const SUPPORTED: &str = "python, nodejs, ruby, php, go, java";

impl Language {
    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Nodejs => "nodejs",
            Language::Ruby => "ruby",
            Language::Php => "php",
            Language::Go => "go",
            Language::Java => "java",
        }
    }

    pub fn parse(value: &str) -> Option<Language> {
        match value {
            "python" => Some(Language::Python),
            "nodejs" | "node" => Some(Language::Nodejs),
            "ruby" => Some(Language::Ruby),
            "php" => Some(Language::Php),
            "go" | "golang" => Some(Language::Go),
            "java" => Some(Language::Java),
            _ => None,
        }
    }
}

/// Longest Unix socket path the kernel accepts (`sun_path` is 108 bytes
/// including the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Longest worker socket file name the pool creates inside the runtime dir.
pub(crate) const LONGEST_SOCKET_NAME: &str = "worker-18446744073709551615.sock";

/// Everything the host needs, validated before any side effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `FUNC_HANDLER`: the function to call.
    pub handler: String,
    /// `MOD_NAME`: the module (file name without suffix) that defines it.
    pub module: String,
    /// `FUNC_TIMEOUT`: how long one invocation may take.
    pub timeout: Duration,
    /// `FUNC_TIMEOUT` as written, passed to the function's context.
    pub timeout_text: String,
    /// `FUNC_RUNTIME`, e.g. `python3.11`.
    pub runtime: String,
    /// `FUNC_MEMORY_LIMIT`, passed through to the context.
    pub memory_limit: String,
    /// `KUBELESS_BIND`.
    pub bind: IpAddr,
    /// `FUNC_PORT` (0 picks a free port).
    pub port: u16,
    /// `KUBELESS_INSTALL_VOLUME`: the function's code directory.
    pub code_dir: PathBuf,
    /// `KUBELESS_RUNTIME_LANGUAGE`, or derived from `FUNC_RUNTIME`.
    pub language: Language,
    /// `KUBELESS_WORKERS`: the most worker processes alive at once.
    pub max_workers: usize,
    /// `REQ_MB_LIMIT` in bytes.
    pub body_limit: u64,
    /// The program that runs the worker: `KUBELESS_PYTHON`, `KUBELESS_NODE`,
    /// `KUBELESS_RUBY`, `KUBELESS_PHP` or `KUBELESS_JAVA`, whichever the
    /// language needs; empty for Go, whose worker is the compiled binary.
    pub interpreter: String,
    /// `KUBELESS_RUNTIME_DIR`; `None` means a fresh temporary directory.
    pub runtime_dir: Option<PathBuf>,
    /// `KUBELESS_SOCKET`: a Unix socket path served in addition to
    /// `FUNC_PORT`, so a local gateway skips loopback TCP.
    pub socket: Option<PathBuf>,
}

impl Config {
    /// Builds a config from `lookup` (normally the process environment).
    /// `cpus` is the default for `KUBELESS_WORKERS`.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        cpus: usize,
    ) -> Result<Config, Error> {
        // An empty value means "unset": that is what Kubernetes renders for
        // an env entry with an empty value.
        let get = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());

        let handler = required(&get, "FUNC_HANDLER")?;
        check_name("FUNC_HANDLER", &handler)?;
        let module = required(&get, "MOD_NAME")?;
        check_name("MOD_NAME", &module)?;
        if module.starts_with('.') || module.contains('/') {
            return Err(invalid(
                "MOD_NAME",
                format!("{module:?} must be a plain file name without a directory"),
            ));
        }

        let timeout_text = get("FUNC_TIMEOUT").unwrap_or_else(|| "180".to_owned());
        let timeout = parse_positive("FUNC_TIMEOUT", &timeout_text, "seconds")?;
        if timeout > 365.0 * 86_400.0 {
            return Err(invalid(
                "FUNC_TIMEOUT",
                format!("{timeout_text:?} is longer than a year"),
            ));
        }
        let timeout = Duration::from_secs_f64(timeout);

        let runtime = get("FUNC_RUNTIME").unwrap_or_default();
        let memory_limit = get("FUNC_MEMORY_LIMIT").unwrap_or_default();

        let bind = match get("KUBELESS_BIND") {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|_| invalid("KUBELESS_BIND", format!("{text:?} is not an IP address")))?,
        };
        let port = match get("FUNC_PORT") {
            None => 8080,
            Some(text) => text.trim().parse().map_err(|_| {
                invalid(
                    "FUNC_PORT",
                    format!("{text:?} is not a port number (0-65535)"),
                )
            })?,
        };

        let code_dir =
            PathBuf::from(get("KUBELESS_INSTALL_VOLUME").unwrap_or_else(|| "/kubeless".to_owned()));

        let language = match get("KUBELESS_RUNTIME_LANGUAGE") {
            Some(text) => Language::parse(text.trim()).ok_or_else(|| {
                invalid(
                    "KUBELESS_RUNTIME_LANGUAGE",
                    format!("{text:?} is not supported (supported: {SUPPORTED})"),
                )
            })?,
            None => {
                // "python3.11" -> "python", "nodejs20" -> "nodejs".
                let prefix: String = runtime
                    .chars()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .collect();
                if prefix.is_empty() {
                    return Err(invalid(
                        "FUNC_RUNTIME",
                        "is empty, so the runtime language is unknown (set FUNC_RUNTIME or KUBELESS_RUNTIME_LANGUAGE)".to_owned(),
                    ));
                }
                Language::parse(&prefix).ok_or_else(|| {
                    invalid(
                        "FUNC_RUNTIME",
                        format!("runtime {runtime:?} is not supported by this host (supported: {SUPPORTED})"),
                    )
                })?
            }
        };

        let max_workers = match get("KUBELESS_WORKERS") {
            None => cpus.max(2),
            Some(text) => match text.trim().parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => n,
                _ => {
                    return Err(invalid(
                        "KUBELESS_WORKERS",
                        format!("{text:?} is not a number between 1 and 1024"),
                    ));
                }
            },
        };

        let body_limit = match get("REQ_MB_LIMIT") {
            None => 1 << 20,
            Some(text) => {
                let mib = parse_positive("REQ_MB_LIMIT", &text, "MiB")?;
                if mib > 4096.0 {
                    return Err(invalid(
                        "REQ_MB_LIMIT",
                        format!("{text:?} is more than 4096 MiB"),
                    ));
                }
                // Truncation is fine: the value is bounded above and positive.
                ((mib * 1_048_576.0) as u64).max(1)
            }
        };

        let interpreter = match language {
            Language::Python => get("KUBELESS_PYTHON").unwrap_or_else(|| "python3".to_owned()),
            Language::Nodejs => get("KUBELESS_NODE").unwrap_or_else(|| "node".to_owned()),
            Language::Ruby => get("KUBELESS_RUBY").unwrap_or_else(|| "ruby".to_owned()),
            Language::Php => get("KUBELESS_PHP").unwrap_or_else(|| "php".to_owned()),
            Language::Java => get("KUBELESS_JAVA").unwrap_or_else(|| "java".to_owned()),
            Language::Go => String::new(),
        };

        let runtime_dir = get("KUBELESS_RUNTIME_DIR").map(PathBuf::from);
        if let Some(dir) = &runtime_dir {
            let len = dir.as_os_str().len() + 1 + LONGEST_SOCKET_NAME.len();
            if len > MAX_SOCKET_PATH {
                return Err(invalid(
                    "KUBELESS_RUNTIME_DIR",
                    format!(
                        "{} is too long for Unix socket paths inside it (at most {} bytes)",
                        dir.display(),
                        MAX_SOCKET_PATH - 1 - LONGEST_SOCKET_NAME.len()
                    ),
                ));
            }
        }

        let socket = get("KUBELESS_SOCKET").map(PathBuf::from);
        if let Some(path) = &socket
            && path.as_os_str().len() > MAX_SOCKET_PATH
        {
            return Err(invalid(
                "KUBELESS_SOCKET",
                format!(
                    "{} is longer than the {MAX_SOCKET_PATH} bytes a Unix socket path may have",
                    path.display()
                ),
            ));
        }

        Ok(Config {
            handler,
            module,
            timeout,
            timeout_text: timeout_text.trim().to_owned(),
            runtime,
            memory_limit,
            bind,
            port,
            code_dir,
            language,
            max_workers,
            body_limit,
            interpreter,
            runtime_dir,
            socket,
        })
    }

    /// How long a request may wait for in-flight work during shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        self.timeout.min(Duration::from_secs(10))
    }

    /// How long a worker may take to import the user's module.
    ///
    /// Module-level code counts like a call, but imports of big libraries
    /// deserve some slack even under a very short function timeout.
    pub fn load_timeout(&self) -> Duration {
        self.timeout.max(Duration::from_secs(30))
    }
}

fn invalid(var: &'static str, reason: String) -> Error {
    Error::InvalidConfig { var, reason }
}

fn required(get: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<String, Error> {
    get(var)
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| invalid(var, "is not set".to_owned()))
}

fn check_name(var: &'static str, value: &str) -> Result<(), Error> {
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(
            var,
            format!("{value:?} contains whitespace or control characters"),
        ));
    }
    Ok(())
}

fn parse_positive(var: &'static str, text: &str, unit: &str) -> Result<f64, Error> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(invalid(
            var,
            format!("{text:?} is not a positive number of {unit}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, Error> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned(), 1)
    }

    const BASE: [(&str, &str); 3] = [
        ("FUNC_HANDLER", "foo"),
        ("MOD_NAME", "hello"),
        ("FUNC_RUNTIME", "python3.11"),
    ];

    fn err_var(result: Result<Config, Error>) -> &'static str {
        match result {
            Err(Error::InvalidConfig { var, .. }) => var,
            other => panic!("expected invalid config, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = config(&BASE).unwrap();
        assert_eq!(c.handler, "foo");
        assert_eq!(c.module, "hello");
        assert_eq!(c.timeout, Duration::from_secs(180));
        assert_eq!(c.timeout_text, "180");
        assert_eq!(c.port, 8080);
        assert_eq!(c.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(c.code_dir, PathBuf::from("/kubeless"));
        assert_eq!(c.language, Language::Python);
        assert_eq!(c.max_workers, 2, "at least two workers even on one CPU");
        assert_eq!(c.body_limit, 1 << 20);
        assert_eq!(c.interpreter, "python3");
        assert_eq!(c.runtime_dir, None);
        assert_eq!(c.socket, None);
        assert_eq!(c.shutdown_grace(), Duration::from_secs(10));
    }

    #[test]
    fn explicit_values() {
        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("FUNC_TIMEOUT", "2.5"),
            ("FUNC_PORT", "9000"),
            ("KUBELESS_BIND", "127.0.0.1"),
            ("KUBELESS_INSTALL_VOLUME", "/srv/fn"),
            ("KUBELESS_WORKERS", "7"),
            ("REQ_MB_LIMIT", "3"),
            ("KUBELESS_PYTHON", "/usr/bin/python3.11"),
            ("KUBELESS_RUNTIME_DIR", "/tmp/x"),
            ("FUNC_MEMORY_LIMIT", "128Mi"),
            ("KUBELESS_SOCKET", "/tmp/x/http.sock"),
        ]);
        let c = config(&pairs).unwrap();
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.shutdown_grace(), Duration::from_millis(2500));
        assert_eq!(c.load_timeout(), Duration::from_secs(30));
        assert_eq!(c.port, 9000);
        assert_eq!(c.bind.to_string(), "127.0.0.1");
        assert_eq!(c.max_workers, 7);
        assert_eq!(c.body_limit, 3 << 20);
        assert_eq!(c.interpreter, "/usr/bin/python3.11");
        assert_eq!(c.memory_limit, "128Mi");
        assert_eq!(c.runtime_dir, Some(PathBuf::from("/tmp/x")));
        assert_eq!(c.socket, Some(PathBuf::from("/tmp/x/http.sock")));
    }

    #[test]
    fn language_from_runtime_or_explicit() {
        let c = config(&[
            ("FUNC_HANDLER", "h"),
            ("MOD_NAME", "m"),
            ("FUNC_RUNTIME", "nodejs20"),
        ])
        .unwrap();
        assert_eq!(c.language, Language::Nodejs);
        assert_eq!(c.interpreter, "node");
        let c = config(&[
            ("FUNC_HANDLER", "h"),
            ("MOD_NAME", "m"),
            ("KUBELESS_RUNTIME_LANGUAGE", "python"),
        ])
        .unwrap();
        assert_eq!(c.language, Language::Python);
        assert_eq!(
            err_var(config(&[
                ("FUNC_HANDLER", "h"),
                ("MOD_NAME", "m"),
                ("FUNC_RUNTIME", "dotnetcore3.1")
            ])),
            "FUNC_RUNTIME"
        );
        assert_eq!(
            err_var(config(&[("FUNC_HANDLER", "h"), ("MOD_NAME", "m")])),
            "FUNC_RUNTIME"
        );
        assert_eq!(
            err_var(config(&[
                ("FUNC_HANDLER", "h"),
                ("MOD_NAME", "m"),
                ("KUBELESS_RUNTIME_LANGUAGE", "cobol")
            ])),
            "KUBELESS_RUNTIME_LANGUAGE"
        );
    }

    #[test]
    fn every_kubeless_language() {
        for (runtime, language, interpreter) in [
            ("ruby2.6", Language::Ruby, "ruby"),
            ("php7.4", Language::Php, "php"),
            ("go1.14", Language::Go, ""),
            ("java11", Language::Java, "java"),
        ] {
            let c = config(&[
                ("FUNC_HANDLER", "h"),
                ("MOD_NAME", "m"),
                ("FUNC_RUNTIME", runtime),
            ])
            .unwrap();
            assert_eq!(
                (c.language, c.interpreter.as_str()),
                (language, interpreter)
            );
        }
    }

    const LONG_SOCKET: &str = concat!(
        "/tmp/a-socket-path-that-is-longer-than-sun-path-allows/",
        "because-the-kernel-only-takes-108-bytes-with-its-nul/http.sock"
    );

    #[test]
    fn rejects_bad_values() {
        let cases: &[(&str, &str)] = &[
            ("FUNC_TIMEOUT", "0"),
            ("FUNC_TIMEOUT", "-1"),
            ("FUNC_TIMEOUT", "soon"),
            ("FUNC_TIMEOUT", "NaN"),
            ("FUNC_PORT", "65536"),
            ("FUNC_PORT", "http"),
            ("KUBELESS_BIND", "localhost"),
            ("KUBELESS_WORKERS", "0"),
            ("KUBELESS_WORKERS", "many"),
            ("REQ_MB_LIMIT", "0"),
            ("REQ_MB_LIMIT", "100000"),
            ("MOD_NAME", "../etc/passwd"),
            ("FUNC_HANDLER", "two words"),
            (
                "KUBELESS_RUNTIME_DIR",
                "/tmp/a-very-long-directory-name-that-leaves-no-room-for-the-socket-file-name-inside-it",
            ),
            ("KUBELESS_SOCKET", LONG_SOCKET),
        ];
        for (var, value) in cases {
            let mut pairs: Vec<(&str, &str)> =
                BASE.iter().filter(|(k, _)| k != var).copied().collect();
            pairs.push((var, value));
            assert_eq!(err_var(config(&pairs)), *var, "{var}={value}");
        }
    }

    #[test]
    fn requires_handler_and_module() {
        assert_eq!(
            err_var(config(&[("MOD_NAME", "m"), ("FUNC_RUNTIME", "python3.11")])),
            "FUNC_HANDLER"
        );
        assert_eq!(
            err_var(config(&[
                ("FUNC_HANDLER", "h"),
                ("MOD_NAME", " "),
                ("FUNC_RUNTIME", "python3.11")
            ])),
            "MOD_NAME"
        );
    }
}
