//! `--schedule` validation, shared by `function deploy` and `trigger
//! cronjob`: the same parser the server's cron scheduler uses, so a
//! schedule the CLI accepts is one the server runs.

/// Check a cron expression (5 fields or a descriptor such as `@daily`).
pub fn check(expr: &str) -> Result<(), String> {
    kubeless_api::cron::Schedule::parse(expr)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_standard_expressions() {
        for e in ["*/1 * * * *", "0 0 1 jan mon", "@daily", "@every 1h30m"] {
            assert!(check(e).is_ok(), "{e}");
        }
    }

    #[test]
    fn rejects_bad_expressions() {
        for e in ["* * * *", "60 * * * *", "@sometimes"] {
            assert!(check(e).is_err(), "{e}");
        }
    }
}
