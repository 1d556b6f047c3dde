//! Where the host's own lines go.
//!
//! A host that is a process of its own (a pod's main process, or an image
//! instance of the embedded server) writes its request log to stdout and
//! its diagnostics to stderr, like any container. When the embedded server
//! runs the host inside its own process ([`crate::Host`]), both go to the
//! function's log instead: the server's stdout is not the function's.

use std::io::Write as _;
use std::sync::Arc;

/// A function that takes a chunk of complete lines, each ending in `\n`.
pub type LineSink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// The destination of the host's request log and diagnostics.
#[derive(Clone, Default)]
pub enum Log {
    /// Request log on stdout, diagnostics on stderr.
    #[default]
    Stdio,
    /// Everything to one sink (the embedded server's function log).
    Sink(LineSink),
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Log::Stdio => f.write_str("Log::Stdio"),
            Log::Sink(_) => f.write_str("Log::Sink"),
        }
    }
}

impl Log {
    /// One diagnostic line (without newline), prefixed `kubeless-runtime: `.
    pub fn note(&self, text: &str) {
        let mut line = String::with_capacity(18 + text.len() + 1);
        line.push_str("kubeless-runtime: ");
        line.push_str(text);
        line.push('\n');
        match self {
            Log::Stdio => {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            Log::Sink(sink) => sink(line.as_bytes()),
        }
    }

    /// A batch of request-log lines, each ending in `\n`.
    pub fn requests(&self, lines: &[u8]) {
        match self {
            Log::Stdio => {
                // Nothing useful to do when stdout is gone; the lines are
                // lost either way.
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(lines);
                let _ = out.flush();
            }
            Log::Sink(sink) => sink(lines),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_sink_gets_notes_and_request_lines() {
        let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
        let s = Arc::clone(&seen);
        let log = Log::Sink(Arc::new(move |b: &[u8]| {
            s.lock().unwrap().extend_from_slice(b)
        }));
        log.note("worker 7 was gone");
        log.requests(b"a\nb\n");
        assert_eq!(
            &*seen.lock().unwrap(),
            b"kubeless-runtime: worker 7 was gone\na\nb\n"
        );
    }
}
