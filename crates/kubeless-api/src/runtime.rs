//! Runtime strings (`python3.8`, `nodejs_distroless8`, `nodejsCE8`) split
//! into runtime ID and version, as Kubeless' langruntime does: the ID is the
//! leading run of letters, `_` and `-`; the version is the trailing run of
//! digits and dots; together they must cover the whole string.

/// Split a runtime string into `(id, version)`.
///
/// Returns `None` when the string is not exactly `^[A-Za-z_-]+[0-9.]+$`
/// (no ID, no version, or other characters in between).
///
/// ```
/// use kubeless_api::runtime::parse_runtime_id;
/// assert_eq!(
///     parse_runtime_id("python3.8"),
///     Some(("python".to_string(), "3.8".to_string()))
/// );
/// assert_eq!(parse_runtime_id("python"), None);
/// ```
pub fn parse_runtime_id(s: &str) -> Option<(String, String)> {
    let split = s
        .find(|c: char| !(c.is_ascii_alphabetic() || c == '_' || c == '-'))
        .unwrap_or(s.len());
    let (id, version) = s.split_at(split);
    let version_ok = !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.');
    (!id.is_empty() && version_ok).then(|| (id.to_string(), version.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str, id: &str, version: &str) {
        assert_eq!(
            parse_runtime_id(s),
            Some((id.to_string(), version.to_string())),
            "{s}"
        );
    }

    #[test]
    fn catalogue_runtimes() {
        ok("python3.8", "python", "3.8");
        ok("nodejs_distroless8", "nodejs_distroless", "8");
        ok("nodejsCE8", "nodejsCE", "8");
        ok("ballerina0.981.0", "ballerina", "0.981.0");
        ok("dotnetcore3.1", "dotnetcore", "3.1");
        ok("go1.14", "go", "1.14");
        ok("java11", "java", "11");
        ok("jvm1.8", "jvm", "1.8");
        ok("vertx1.8", "vertx", "1.8");
        ok("my-runtime2", "my-runtime", "2");
    }

    #[test]
    fn malformed_runtimes() {
        for s in [
            "",
            "python",
            "3.8",
            "python3.8-slim",
            "py3thon3",
            "python 3",
            "python3.8\n",
        ] {
            assert_eq!(parse_runtime_id(s), None, "{s:?}");
        }
    }
}
