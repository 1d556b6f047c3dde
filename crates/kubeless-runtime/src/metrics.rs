//! Prometheus metrics, kept in atomics and rendered by hand.
//!
//! Series are labelled with the HTTP method. Kubeless' Node.js runtime used
//! `<MOD_NAME>-<METHOD>`; every runtime here uses the plain method, like the
//! Python and Go runtimes did. Unknown extension methods share the label
//! `OTHER` so a client cannot grow the series set without bound.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the duration histogram (Prometheus client defaults).
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "OTHER",
];

#[derive(Default)]
struct Series {
    calls: AtomicU64,
    failures: AtomicU64,
    /// Cumulative counts are derived at render time; each slot counts
    /// observations that fell into exactly that bucket (last = +Inf).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// Call counters and the duration histogram for the function.
#[derive(Default)]
pub struct Metrics {
    series: [Series; METHODS.len()],
}

impl Metrics {
    /// Records one function invocation.
    pub fn observe(&self, method: &str, elapsed: Duration, failed: bool) {
        let series = &self.series[slot(method)];
        series.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            series.failures.fetch_add(1, Ordering::Relaxed);
        }
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(BUCKETS.len());
        series.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        series.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Renders the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let used: Vec<(&str, &Series)> = METHODS
            .iter()
            .zip(&self.series)
            .filter(|(_, s)| s.calls.load(Ordering::Relaxed) > 0)
            .map(|(m, s)| (*m, s))
            .collect();

        out.push_str("# HELP function_duration_seconds Duration of user function in seconds\n");
        out.push_str("# TYPE function_duration_seconds histogram\n");
        for (method, s) in &used {
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "function_duration_seconds_bucket{{method=\"{method}\",le=\"{le}\"}} {cumulative}"
                );
            }
            cumulative += s.buckets[BUCKETS.len()].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "function_duration_seconds_bucket{{method=\"{method}\",le=\"+Inf\"}} {cumulative}"
            );
            let sum = s.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "function_duration_seconds_sum{{method=\"{method}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "function_duration_seconds_count{{method=\"{method}\"}} {cumulative}"
            );
        }
        out.push_str("# HELP function_calls_total Number of calls to user function\n");
        out.push_str("# TYPE function_calls_total counter\n");
        for (method, s) in &used {
            let _ = writeln!(
                out,
                "function_calls_total{{method=\"{method}\"}} {}",
                s.calls.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP function_failures_total Number of exceptions in user function\n");
        out.push_str("# TYPE function_failures_total counter\n");
        for (method, s) in &used {
            let _ = writeln!(
                out,
                "function_failures_total{{method=\"{method}\"}} {}",
                s.failures.load(Ordering::Relaxed)
            );
        }
        out
    }
}

fn slot(method: &str) -> usize {
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|m| *m == method)
        .unwrap_or(METHODS.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_registry_has_only_metadata() {
        let text = Metrics::default().render();
        assert!(text.contains("# TYPE function_duration_seconds histogram\n"));
        assert!(text.contains("# TYPE function_calls_total counter\n"));
        assert!(text.contains("# TYPE function_failures_total counter\n"));
        assert!(!text.contains("method="));
    }

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe("GET", Duration::from_millis(3), false);
        m.observe("GET", Duration::from_millis(300), true);
        m.observe("GET", Duration::from_secs(20), false);
        m.observe("BREW", Duration::from_millis(1), false);
        let text = m.render();
        assert!(
            text.contains("function_calls_total{method=\"GET\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("function_failures_total{method=\"GET\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("function_duration_seconds_bucket{method=\"GET\",le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("function_duration_seconds_bucket{method=\"GET\",le=\"0.25\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("function_duration_seconds_bucket{method=\"GET\",le=\"0.5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("function_duration_seconds_bucket{method=\"GET\",le=\"10\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("function_duration_seconds_bucket{method=\"GET\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("function_duration_seconds_count{method=\"GET\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("function_duration_seconds_sum{method=\"GET\"} 20.303\n"),
            "{text}"
        );
        assert!(
            text.contains("function_calls_total{method=\"OTHER\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("method=\"POST\""), "{text}");
    }
}
