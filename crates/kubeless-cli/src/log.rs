//! Messages to stderr in the format of logrus, which Kubeless users and
//! scripts know: `INFO[0000] msg` on a terminal, and
//! `time="<RFC3339>" level=info msg="<msg>"` otherwise (scripts grep the
//! latter). Data never goes through here: it goes to stdout.
//!
//! A multi-line message is written as one record per line in the non-TTY
//! form, so that every line stays greppable (logrus would escape the
//! newlines into a single record).

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Instant;

use time::OffsetDateTime;
use time::macros::format_description;

/// Severity of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    fn long(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERRO",
            Level::Fatal => "FATA",
        }
    }

    fn color(self) -> u8 {
        match self {
            Level::Info => 36,
            Level::Warn => 33,
            Level::Error | Level::Fatal => 31,
        }
    }
}

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Remember the process start so `[0000]` counts seconds from it.
pub fn init() {
    let _ = start();
}

/// Write one message to stderr.
pub fn log(level: Level, msg: &str) {
    let tty = std::io::stderr().is_terminal();
    let text = if tty {
        format_tty(level, start().elapsed().as_secs(), msg)
    } else {
        format_plain(level, &now_rfc3339(), msg)
    };
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

pub fn info(msg: impl AsRef<str>) {
    log(Level::Info, msg.as_ref());
}

pub fn warn(msg: impl AsRef<str>) {
    log(Level::Warn, msg.as_ref());
}

pub fn error(msg: impl AsRef<str>) {
    log(Level::Error, msg.as_ref());
}

/// The current time as logrus prints it (RFC3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

/// Terminal form: coloured level, seconds since start, message.
pub fn format_tty(level: Level, secs: u64, msg: &str) -> String {
    format!(
        "\x1b[{}m{}\x1b[0m[{:04}] {}\n",
        level.color(),
        level.short(),
        secs,
        msg.trim_end_matches('\n')
    )
}

/// Non-terminal form, one record per message line.
pub fn format_plain(level: Level, time: &str, msg: &str) -> String {
    let msg = msg.trim_end_matches('\n');
    let mut out = String::new();
    let lines: Vec<&str> = if msg.is_empty() {
        vec![""]
    } else {
        msg.lines().collect()
    };
    for line in lines {
        out.push_str(&format!(
            "time=\"{}\" level={} msg={}\n",
            time,
            level.long(),
            quote(line)
        ));
    }
    out
}

/// logrus quotes a value unless it is made of `[A-Za-z0-9-._/@^+]` only,
/// using Go's `%q`.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_form_quotes_like_logrus() {
        assert_eq!(
            format_plain(Level::Info, "2021-05-03T11:31:53Z", "Deploying function..."),
            "time=\"2021-05-03T11:31:53Z\" level=info msg=\"Deploying function...\"\n"
        );
        assert_eq!(
            format_plain(Level::Fatal, "t", "say \"hi\""),
            "time=\"t\" level=fatal msg=\"say \\\"hi\\\"\"\n"
        );
        assert_eq!(
            format_plain(Level::Warn, "t", "ok"),
            "time=\"t\" level=warning msg=ok\n"
        );
    }

    #[test]
    fn plain_form_splits_lines() {
        let s = format_plain(Level::Fatal, "t", "first\nsecond");
        assert_eq!(
            s,
            "time=\"t\" level=fatal msg=first\ntime=\"t\" level=fatal msg=second\n"
        );
    }

    #[test]
    fn tty_form() {
        assert_eq!(
            format_tty(Level::Fatal, 0, "boom"),
            "\x1b[31mFATA\x1b[0m[0000] boom\n"
        );
    }
}
