//! Per-trigger delivery counters and their Prometheus text.
//!
//! Counters are atomics shared by every running source of a trigger (one per
//! selected function), so a trigger's numbers are the sum over its
//! functions. They count since the server started.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The counters of one trigger.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events the function answered with 2xx.
    pub delivered: AtomicU64,
    /// Attempts repeated after the function answered with an error.
    pub retried: AtomicU64,
    /// Events written to the dead-letter destination.
    pub dead_lettered: AtomicU64,
    /// Events being delivered now.
    pub in_flight: AtomicU64,
    /// Cron runs skipped because the previous run was still going.
    pub skipped: AtomicU64,
    /// Cron runs that failed (error answer or function unavailable).
    pub failed: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub in_flight: u64,
    pub skipped: u64,
    pub failed: u64,
}

impl Snapshot {
    /// Copy the counters into a trigger's status.
    pub fn write_to(&self, st: &mut kubeless_api::TriggerStatus) {
        st.delivered = self.delivered;
        st.retried = self.retried;
        st.dead_lettered = self.dead_lettered;
        st.in_flight = self.in_flight;
        st.skipped = self.skipped;
        st.failed = self.failed;
    }
}

impl Counters {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    pub fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Count one event in flight until the guard drops.
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// Decrements `in_flight` on drop.
pub struct InFlight(Arc<Counters>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// (trigger kind, namespace, trigger name).
pub type TriggerKey = (String, String, String);

/// Every trigger's counters; cheap to clone.
#[derive(Clone, Default)]
pub struct Stats {
    inner: Arc<Mutex<BTreeMap<TriggerKey, Arc<Counters>>>>,
}

impl Stats {
    /// The counters of a trigger, created on first use.
    pub fn counters(&self, kind: &str, ns: &str, name: &str) -> Arc<Counters> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((kind.to_string(), ns.to_string(), name.to_string()))
            .or_default()
            .clone()
    }

    /// A trigger's counters, if it has any.
    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Option<Snapshot> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(kind.to_string(), ns.to_string(), name.to_string()))
            .map(|c| c.snapshot())
    }

    /// Forget triggers not in `keep`.
    pub fn retain(&self, keep: impl Fn(&TriggerKey) -> bool) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|k, _| keep(k));
    }

    /// The Prometheus text exposition of every trigger's counters.
    pub fn render(&self) -> String {
        let snaps: Vec<(TriggerKey, Snapshot)> = {
            let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            map.iter().map(|(k, c)| (k.clone(), c.snapshot())).collect()
        };
        let mut out = String::new();
        let families: [Family; 6] = [
            (
                "kubeless_trigger_delivered_total",
                "counter",
                "Events the function answered with 2xx.",
                |s| s.delivered,
            ),
            (
                "kubeless_trigger_retried_total",
                "counter",
                "Deliveries retried after the function answered with an error.",
                |s| s.retried,
            ),
            (
                "kubeless_trigger_dead_lettered_total",
                "counter",
                "Events written to the dead-letter destination.",
                |s| s.dead_lettered,
            ),
            (
                "kubeless_trigger_in_flight",
                "gauge",
                "Events being delivered now.",
                |s| s.in_flight,
            ),
            (
                "kubeless_trigger_skipped_total",
                "counter",
                "Cron runs skipped because the previous run was still going.",
                |s| s.skipped,
            ),
            (
                "kubeless_trigger_failed_total",
                "counter",
                "Cron runs that failed.",
                |s| s.failed,
            ),
        ];
        for (name, kind, help, get) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for ((k, ns, n), s) in &snaps {
                let _ = writeln!(
                    out,
                    "{name}{{kind=\"{k}\",namespace=\"{}\",trigger=\"{}\"}} {}",
                    escape(ns),
                    escape(n),
                    get(s)
                );
            }
        }
        out
    }
}

/// Metric name, type, help and how to read it from a snapshot.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Snapshot) -> u64,
);

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_prometheus_text() {
        let stats = Stats::default();
        let c = stats.counters("KafkaTrigger", "default", "t");
        Counters::add(&c.delivered);
        Counters::add(&c.delivered);
        {
            let _g = c.in_flight();
            assert_eq!(
                stats
                    .get("KafkaTrigger", "default", "t")
                    .map(|s| s.in_flight),
                Some(1)
            );
        }
        let text = stats.render();
        assert!(text.contains("kubeless_trigger_delivered_total{kind=\"KafkaTrigger\",namespace=\"default\",trigger=\"t\"} 2"), "{text}");
        assert!(text.contains("kubeless_trigger_in_flight{kind=\"KafkaTrigger\",namespace=\"default\",trigger=\"t\"} 0"), "{text}");
        stats.retain(|_| false);
        assert_eq!(stats.get("KafkaTrigger", "default", "t"), None);
    }
}
