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

struct Buffer {
    lines: VecDeque<Bytes>,
    bytes: usize,
    tx: broadcast::Sender<Bytes>,
}

impl Buffer {
    fn new() -> Buffer {
        Buffer {
            lines: VecDeque::new(),
            bytes: 0,
            tx: broadcast::channel(1024).0,
        }
    }

    fn push(&mut self, line: &[u8], cap: usize) {
        let mut text = Vec::with_capacity(line.len().min(MAX_LINE) + 1);
        if line.len() > MAX_LINE {
            text.extend_from_slice(&line[..MAX_LINE]);
            text.extend_from_slice(b" [line truncated]");
        } else {
            text.extend_from_slice(line);
        }
        text.push(b'\n');
        let line = Bytes::from(text);
        self.bytes += line.len();
        self.lines.push_back(line.clone());
        while self.bytes > cap && self.lines.len() > 1 {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len(),
                None => break,
            }
        }
        // No receivers is fine: nobody is following.
        let _ = self.tx.send(line);
    }
}

type Shared = Arc<Mutex<Buffer>>;

fn lock_buffer(buffer: &Mutex<Buffer>) -> MutexGuard<'_, Buffer> {
    // Every mutation is a single push/pop, so a panic while holding the
    // lock cannot leave the buffer inconsistent: poisoning is ignored.
    buffer.lock().unwrap_or_else(|p| p.into_inner())
}

/// All function logs of the server.
#[derive(Clone)]
pub struct LogHub {
    inner: Arc<Mutex<HashMap<String, Shared>>>,
    cap: usize,
}

/// One function's log, looked up once: what an instance's output pump
/// holds, so a line costs neither a key nor the hub's lock.
#[derive(Clone)]
pub struct FunctionLog {
    buffer: Shared,
    cap: usize,
}

impl FunctionLog {
    /// Append lines (without their newlines) under one lock.
    pub fn push_lines<'a>(&self, lines: impl IntoIterator<Item = &'a [u8]>) {
        let mut buffer = lock_buffer(&self.buffer);
        for line in lines {
            buffer.push(line, self.cap);
        }
    }
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

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Shared>> {
        // The map is only inserted into and removed from: poisoning is
        // ignored, as for the buffers.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn buffer(&self, ns: &str, name: &str) -> Shared {
        Arc::clone(
            self.lock()
                .entry(id(ns, name))
                .or_insert_with(|| Arc::new(Mutex::new(Buffer::new()))),
        )
    }

    /// A handle on a function's log. Lines pushed through it after
    /// [`LogHub::remove`] go to a buffer nobody reads any more.
    pub fn handle(&self, ns: &str, name: &str) -> FunctionLog {
        FunctionLog {
            buffer: self.buffer(ns, name),
            cap: self.cap,
        }
    }

    /// Append one line (without its newline) to a function's log.
    pub fn push(&self, ns: &str, name: &str, line: &[u8]) {
        lock_buffer(&self.buffer(ns, name)).push(line, self.cap);
    }

    /// The buffered log (last `tail` lines when given) and, for following, a
    /// receiver of lines pushed after the snapshot.
    pub fn snapshot(
        &self,
        ns: &str,
        name: &str,
        tail: Option<usize>,
    ) -> (Vec<Bytes>, broadcast::Receiver<Bytes>) {
        let buffer = self.buffer(ns, name);
        let log = lock_buffer(&buffer);
        let skip = tail.map(|t| log.lines.len().saturating_sub(t)).unwrap_or(0);
        (
            log.lines.iter().skip(skip).cloned().collect(),
            log.tx.subscribe(),
        )
    }

    /// The last non-empty line, used as a failure reason.
    pub fn last_line(&self, ns: &str, name: &str) -> Option<String> {
        let buffer = self.lock().get(&id(ns, name)).cloned()?;
        let log = lock_buffer(&buffer);
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
        let handle = hub.handle("ns", "f");
        handle.push_lines([&b"a"[..], b"b"]);
        let (tail, _) = hub.snapshot("ns", "f", Some(2));
        assert_eq!(tail, [&b"a\n"[..], b"b\n"]);
        hub.push("ns", "f", &vec![b'x'; MAX_LINE * 2]);
        assert!(
            hub.last_line("ns", "f")
                .is_some_and(|l| l.ends_with("[line truncated]"))
        );
    }
}
