//! The event a source hands to a function, with the headers Kubeless's
//! event sources sent (spec 4.2). Building headers is pure and tested.

use base64::Engine;
use bytes::Bytes;
use time::OffsetDateTime;

/// Which kind of source emitted an event; decides `event-namespace`, the
/// time format and the extra headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventSourceKind {
    Cron,
    Kafka,
    Nats,
}

impl EventSourceKind {
    /// The `event-namespace` header value.
    pub fn namespace(self) -> &'static str {
        match self {
            EventSourceKind::Cron => "cronjobtrigger.kubeless.io",
            EventSourceKind::Kafka => "kafkatriggers.kubeless.io",
            EventSourceKind::Nats => "natstriggers.kubeless.io",
        }
    }

    /// The trigger kind name (for metrics and logs).
    pub fn trigger_kind(self) -> &'static str {
        match self {
            EventSourceKind::Cron => "CronJobTrigger",
            EventSourceKind::Kafka => "KafkaTrigger",
            EventSourceKind::Nats => "NATSTrigger",
        }
    }
}

/// One event on its way to a function.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub source: EventSourceKind,
    /// `None` sends a GET without a body (a cron trigger without payload).
    pub body: Option<Bytes>,
    /// Headers in the order they are sent.
    pub headers: Vec<(String, String)>,
}

/// A 15-character base64url id, like Kubeless's event ids.
pub fn new_event_id() -> String {
    let bytes: [u8; 12] = rand::random();
    let mut s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    s.truncate(15);
    s
}

/// Go's `time.Time.String()` of a UTC time:
/// `2021-01-29 10:18:03.123456789 +0000 UTC` (trailing zeros of the
/// fraction dropped, as Go does).
pub fn go_time_string(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let mut frac = format!("{:09}", t.nanosecond());
    while frac.ends_with('0') {
        frac.pop();
    }
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{frac} +0000 UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `date --rfc-3339=seconds --utc`: `2021-05-03 11:31:53+00:00`.
pub fn rfc3339_seconds_space(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}+00:00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `application/json` when the body is a JSON object, else form-encoded,
/// as the Kafka/NATS controllers decided.
pub fn content_type_for(body: &[u8]) -> &'static str {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(_)) => "application/json",
        _ => "application/x-www-form-urlencoded",
    }
}

/// The user agent the message triggers send.
pub fn user_agent(source: EventSourceKind) -> String {
    let v = env!("CARGO_PKG_VERSION");
    match source {
        EventSourceKind::Kafka => format!("kubeless-kafka-trigger-controller/{v}"),
        EventSourceKind::Nats => format!("kubeless-nats-trigger-controller/{v}"),
        EventSourceKind::Cron => format!("kubeless-cronjob-trigger/{v}"),
    }
}

impl Event {
    /// A message from a Kafka topic or NATS subject. `event-topic` is sent
    /// for Kafka only, as Kubeless did.
    pub fn message(
        source: EventSourceKind,
        topic: &str,
        body: Bytes,
        now: OffsetDateTime,
    ) -> Event {
        let ct = content_type_for(&body);
        let mut headers = vec![
            ("event-id".to_string(), new_event_id()),
            ("event-time".to_string(), go_time_string(now)),
            (
                "event-namespace".to_string(),
                source.namespace().to_string(),
            ),
            ("event-type".to_string(), ct.to_string()),
            ("content-type".to_string(), ct.to_string()),
        ];
        if source == EventSourceKind::Kafka {
            headers.push(("event-topic".to_string(), topic.to_string()));
        }
        headers.push(("user-agent".to_string(), user_agent(source)));
        Event {
            source,
            body: Some(body),
            headers,
        }
    }

    /// A cron firing: POST of the JSON payload, or GET when it is null.
    /// `event_id` identifies the run (Kubeless used the Job's pod uid).
    pub fn cron(payload: &serde_json::Value, event_id: String, now: OffsetDateTime) -> Event {
        let body = if payload.is_null() {
            None
        } else {
            Some(Bytes::from(payload.to_string()))
        };
        let headers = vec![
            ("event-id".to_string(), event_id),
            ("event-time".to_string(), rfc3339_seconds_space(now)),
            (
                "event-namespace".to_string(),
                EventSourceKind::Cron.namespace().to_string(),
            ),
            ("event-type".to_string(), "application/json".to_string()),
            ("content-type".to_string(), "application/json".to_string()),
            ("user-agent".to_string(), user_agent(EventSourceKind::Cron)),
        ];
        Event {
            source: EventSourceKind::Cron,
            body,
            headers,
        }
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn times_are_formatted_like_kubeless() {
        let t = datetime!(2021-01-29 10:18:03.123456789 UTC);
        assert_eq!(go_time_string(t), "2021-01-29 10:18:03.123456789 +0000 UTC");
        assert_eq!(
            go_time_string(datetime!(2021-01-29 10:18:03.5 UTC)),
            "2021-01-29 10:18:03.5 +0000 UTC"
        );
        assert_eq!(
            go_time_string(datetime!(2021-01-29 10:18:03 UTC)),
            "2021-01-29 10:18:03 +0000 UTC"
        );
        assert_eq!(
            rfc3339_seconds_space(datetime!(2021-05-03 11:31:53.9 UTC)),
            "2021-05-03 11:31:53+00:00"
        );
    }

    #[test]
    fn message_headers_follow_the_source() {
        let t = datetime!(2021-01-29 10:18:03 UTC);
        let k = Event::message(EventSourceKind::Kafka, "t1", Bytes::from("{\"a\":1}"), t);
        assert_eq!(
            k.header("event-namespace"),
            Some("kafkatriggers.kubeless.io")
        );
        assert_eq!(k.header("event-type"), Some("application/json"));
        assert_eq!(k.header("event-topic"), Some("t1"));
        assert_eq!(k.header("event-id").map(str::len), Some(15));
        let n = Event::message(EventSourceKind::Nats, "t1", Bytes::from("hi"), t);
        assert_eq!(
            n.header("event-namespace"),
            Some("natstriggers.kubeless.io")
        );
        assert_eq!(
            n.header("event-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(n.header("event-topic"), None);
    }

    #[test]
    fn cron_sends_get_without_payload_and_post_with_it() {
        let t = datetime!(2021-05-03 11:31:53 UTC);
        let get = Event::cron(&serde_json::Value::Null, "id".into(), t);
        assert_eq!(get.body, None);
        assert_eq!(
            get.header("event-namespace"),
            Some("cronjobtrigger.kubeless.io")
        );
        assert_eq!(get.header("event-time"), Some("2021-05-03 11:31:53+00:00"));
        let post = Event::cron(&serde_json::json!({"a": 1}), "id".into(), t);
        assert_eq!(post.body.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(post.header("content-type"), Some("application/json"));
    }
}
