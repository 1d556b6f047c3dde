//! One Apache "combined" line per request, written to the host's
//! [`Log`](crate::log::Log) (stdout for a host process of its own).
//!
//! Kubeless' tests grep these lines (`"GET / HTTP/1.1" 200 11`), so the
//! format follows Apache exactly, including `-` for an empty body.
//!
//! Lines are collected in a [`Batch`] and written by [`flush_loop`] a few
//! milliseconds after the first one: under load one `write` then carries
//! many lines, instead of a syscall in the host and a wake-up in whoever
//! reads the pipe (the embedded server) for every request.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use time::macros::format_description;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::log::Log;

/// How long the first line of a batch waits for company. Short enough that
/// `kubeless function logs -f` still feels live.
pub const FLUSH_DELAY: Duration = Duration::from_millis(10);

/// Log lines waiting for the next flush.
#[derive(Default)]
pub struct Batch {
    pending: Mutex<Vec<u8>>,
    wake: Notify,
}

impl Batch {
    /// Queues one line (without its newline).
    pub fn push(&self, line: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let first = pending.is_empty();
        pending.extend_from_slice(line.as_bytes());
        pending.push(b'\n');
        drop(pending);
        if first {
            // A stored permit if the flusher is busy: no wake-up is lost.
            self.wake.notify_one();
        }
    }

    /// Hands every queued line to `out` in one call.
    pub fn flush_to(&self, out: &Log) {
        let lines =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if !lines.is_empty() {
            out.requests(&lines);
        }
    }
}

/// Writes queued lines to `out` [`FLUSH_DELAY`] after the first of each
/// batch, until `stop`; then writes what is left.
pub async fn flush_loop(batch: Arc<Batch>, out: Log, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = batch.wake.notified() => {}
            _ = stop.cancelled() => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(FLUSH_DELAY) => {}
            _ = stop.cancelled() => {}
        }
        batch.flush_to(&out);
    }
    batch.flush_to(&out);
}

/// What one log line says about one request.
pub struct Entry<'a> {
    pub remote: IpAddr,
    pub time: OffsetDateTime,
    pub method: &'a str,
    /// Path and query as the client sent them.
    pub target: &'a str,
    pub version: &'a str,
    pub status: u16,
    pub body_bytes: u64,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
}

/// Formats `entry` as a combined-log line, without the trailing newline.
pub fn format(entry: &Entry<'_>) -> String {
    let mut line = String::with_capacity(160);
    let _ = write!(line, "{} - - [", entry.remote);
    push_stamp(&mut line, entry.time);
    line.push_str("] \"");
    escape_into(&mut line, entry.method.as_bytes());
    line.push(' ');
    escape_into(&mut line, entry.target.as_bytes());
    line.push(' ');
    line.push_str(entry.version);
    let _ = write!(line, "\" {} ", entry.status);
    if entry.body_bytes == 0 {
        line.push('-');
    } else {
        let _ = write!(line, "{}", entry.body_bytes);
    }
    for field in [entry.referer, entry.user_agent] {
        line.push_str(" \"");
        match field {
            Some(value) if !value.is_empty() => escape_into(&mut line, value),
            _ => line.push('-'),
        }
        line.push('"');
    }
    line
}

thread_local! {
    /// The last second's rendered timestamp: every request of a second
    /// shares it, so the date is formatted once a second, not per line.
    static STAMP: RefCell<((i64, i32), String)> = const { RefCell::new(((i64::MIN, 0), String::new())) };
}

fn push_stamp(line: &mut String, time: OffsetDateTime) {
    let key = (time.unix_timestamp(), time.offset().whole_seconds());
    STAMP.with_borrow_mut(|(second, text)| {
        if *second != key || text.is_empty() {
            let format = format_description!(
                "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
            );
            *text = time.format(&format).unwrap_or_else(|_| "-".to_owned());
            *second = key;
        }
        line.push_str(text);
    });
}

/// Escapes like Apache's `ap_escape_logitem`, so a client cannot forge log
/// lines or break the quoting.
fn escape_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn entry<'a>() -> Entry<'a> {
        Entry {
            remote: "127.0.0.1".parse().unwrap(),
            time: datetime!(2026-11-21 10:00:00 UTC),
            method: "GET",
            target: "/",
            version: "HTTP/1.1",
            status: 200,
            body_bytes: 11,
            referer: None,
            user_agent: Some(b"curl/7.88"),
        }
    }

    #[test]
    fn batch_writes_lines_in_order_once() {
        let batch = Batch::default();
        batch.push("one");
        batch.push("two");
        let out = Arc::new(Mutex::new(Vec::new()));
        let o = Arc::clone(&out);
        let log = Log::Sink(Arc::new(move |b: &[u8]| {
            o.lock().unwrap().extend_from_slice(b)
        }));
        batch.flush_to(&log);
        batch.flush_to(&log);
        assert_eq!(*out.lock().unwrap(), b"one\ntwo\n");
    }

    #[test]
    fn combined_format() {
        assert_eq!(
            format(&entry()),
            r#"127.0.0.1 - - [21/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 11 "-" "curl/7.88""#
        );
    }

    #[test]
    fn empty_body_and_missing_agent_are_dashes() {
        let mut e = entry();
        e.body_bytes = 0;
        e.user_agent = None;
        e.referer = Some(b"http://x/");
        e.target = "/a?b=1";
        e.method = "PUT";
        assert_eq!(
            format(&e),
            r#"127.0.0.1 - - [21/Nov/2026:10:00:00 +0000] "PUT /a?b=1 HTTP/1.1" 200 - "http://x/" "-""#
        );
    }

    #[test]
    fn escapes_quotes_and_control_bytes() {
        let mut e = entry();
        e.user_agent = Some(b"evil\" \n\xff\\");
        assert!(
            format(&e).ends_with(r#""-" "evil\" \n\xff\\""#),
            "{}",
            format(&e)
        );
    }
}
