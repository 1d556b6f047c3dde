//! Function logs: what every instance of a function writes to stdout and
//! stderr, kept per function in a bounded buffer (the oldest lines are
//! dropped first) and fanned out to `kubeless function logs -f` readers.
//!
//! A function that prints megabytes only ever costs its own buffer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::broadcast;

/// Bytes kept per function.
pub const DEFAULT_LOG_BYTES: usize = 1024 * 1024;
/// Longest single line kept; longer lines are cut with a marker.
const MAX_LINE: usize = 16 * 1024;

struct FunctionLog {
    lines: VecDeque<Bytes>,
    bytes: usize,
    tx: broadcast::Sender<Bytes>,
}

/// All function logs of the server.
#[derive(Clone)]
pub struct LogHub {
    inner: Arc<Mutex<HashMap<String, FunctionLog>>>,
    cap: usize,
}

fn id(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

impl LogHub {
    pub fn new(cap: usize) -> LogHub {
        LogHub {
            inner: Arc::new(Mutex::new(HashMap::new())),
            cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, FunctionLog>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every mutation is a single push/pop), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append one line (without its newline) to a function's log.
    pub fn push(&self, ns: &str, name: &str, line: &[u8]) {
        let mut text = Vec::with_capacity(line.len().min(MAX_LINE) + 1);
        if line.len() > MAX_LINE {
            text.extend_from_slice(&line[..MAX_LINE]);
            text.extend_from_slice(b" [line truncated]");
        } else {
            text.extend_from_slice(line);
        }
        text.push(b'\n');
        let line = Bytes::from(text);
        let mut map = self.lock();
        let log = map.entry(id(ns, name)).or_insert_with(|| FunctionLog {
            lines: VecDeque::new(),
            bytes: 0,
            tx: broadcast::channel(1024).0,
        });
        log.bytes += line.len();
        log.lines.push_back(line.clone());
        while log.bytes > self.cap && log.lines.len() > 1 {
            match log.lines.pop_front() {
                Some(old) => log.bytes -= old.len(),
                None => break,
            }
        }
        // No receivers is fine: nobody is following.
        let _ = log.tx.send(line);
    }

    /// The buffered log (last `tail` lines when given) and, for following, a
    /// receiver of lines pushed after the snapshot.
    pub fn snapshot(
        &self,
        ns: &str,
        name: &str,
        tail: Option<usize>,
    ) -> (Vec<Bytes>, broadcast::Receiver<Bytes>) {
        let mut map = self.lock();
        let log = map.entry(id(ns, name)).or_insert_with(|| FunctionLog {
            lines: VecDeque::new(),
            bytes: 0,
            tx: broadcast::channel(1024).0,
        });
        let skip = tail.map(|t| log.lines.len().saturating_sub(t)).unwrap_or(0);
        (
            log.lines.iter().skip(skip).cloned().collect(),
            log.tx.subscribe(),
        )
    }

    /// The last non-empty line, used as a failure reason.
    pub fn last_line(&self, ns: &str, name: &str) -> Option<String> {
        let map = self.lock();
        let log = map.get(&id(ns, name))?;
        log.lines
            .iter()
            .rev()
            .map(|l| String::from_utf8_lossy(l).trim().to_string())
            .find(|l| !l.is_empty())
    }

    /// Forget a deleted function's log.
    pub fn remove(&self, ns: &str, name: &str) {
        self.lock().remove(&id(ns, name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_tailable() {
        let hub = LogHub::new(100);
        for i in 0..50 {
            hub.push("ns", "f", format!("line {i}").as_bytes());
        }
        let (lines, _) = hub.snapshot("ns", "f", None);
        let total: usize = lines.iter().map(Bytes::len).sum();
        assert!(total <= 100);
        assert_eq!(lines.last().map(|l| l.as_ref()), Some(&b"line 49\n"[..]));
        let (tail, _) = hub.snapshot("ns", "f", Some(2));
        assert_eq!(tail.len(), 2);
        assert_eq!(hub.last_line("ns", "f").as_deref(), Some("line 49"));
        hub.push("ns", "f", &vec![b'x'; MAX_LINE * 2]);
        assert!(
            hub.last_line("ns", "f")
                .is_some_and(|l| l.ends_with("[line truncated]"))
        );
    }
}
