//! The host-worker wire format (see docs/runtime-host.md).
//!
//! Every message is a frame: a big-endian `u32` payload length followed by
//! the payload, whose first byte is the message kind. Integers are
//! big-endian; a "blob" is a `u32` length followed by that many bytes.
//! Pure encoding and decoding live here; the socket IO is in `worker`.

use bytes::Bytes;

/// Worker to host: the handler is loaded; no fields.
pub const KIND_READY: u8 = 1;
/// Worker to host: loading failed; one blob with the reason (UTF-8).
pub const KIND_LOAD_FAILED: u8 = 2;
/// Host to worker: one invocation.
pub const KIND_REQUEST: u8 = 3;
/// Worker to host: the answer to one invocation.
pub const KIND_RESPONSE: u8 = 4;

/// The largest payload the host accepts from a worker. Bigger answers are a
/// protocol violation: the worker is replaced and the client gets a 500.
pub const MAX_WORKER_FRAME: usize = 256 << 20;

/// One invocation, as the host sends it. The body is written after the
/// encoded head so it is never copied.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestHead<'a> {
    pub id: u64,
    pub method: &'a str,
    /// The path as received (still percent-encoded).
    pub path: &'a str,
    /// The raw query string without `?`, empty when absent.
    pub query: &'a str,
    /// Header names are lower-case; values are raw bytes.
    pub headers: Vec<(&'a str, &'a [u8])>,
}

/// How the worker's attempt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handler returned; status, headers and body are its answer.
    Ok,
    /// The handler raised or rejected; the worker logged the stack.
    HandlerError,
    /// The request could not be turned into an event (e.g. invalid JSON);
    /// `error` is safe to show to the client.
    BadRequest,
}

/// The worker's answer to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub id: u64,
    pub outcome: Outcome,
    pub status: u16,
    pub headers: Vec<(String, Bytes)>,
    pub body: Bytes,
    pub error: String,
}

/// Anything a worker can say.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerMessage {
    Ready,
    LoadFailed { reason: String },
    Response(Response),
}

/// Encodes the frame length, kind and all request fields up to and
/// including the body length; the caller writes `body` right after.
pub fn encode_request_head(
    head: &RequestHead<'_>,
    body_len: usize,
) -> Result<Vec<u8>, &'static str> {
    let mut out =
        Vec::with_capacity(64 + head.path.len() + head.query.len() + head.headers.len() * 32);
    out.extend_from_slice(&[0; 4]); // patched below once the length is known
    out.push(KIND_REQUEST);
    out.extend_from_slice(&head.id.to_be_bytes());
    put_blob(&mut out, head.method.as_bytes())?;
    put_blob(&mut out, head.path.as_bytes())?;
    put_blob(&mut out, head.query.as_bytes())?;
    put_u32(&mut out, head.headers.len())?;
    for (name, value) in &head.headers {
        put_blob(&mut out, name.as_bytes())?;
        put_blob(&mut out, value)?;
    }
    put_u32(&mut out, body_len)?;
    let total = out.len() - 4 + body_len;
    let total = u32::try_from(total).map_err(|_| "request too large for one frame")?;
    out[..4].copy_from_slice(&total.to_be_bytes());
    Ok(out)
}

/// Decodes one worker payload (the bytes after the length prefix).
pub fn decode_worker_message(payload: Bytes) -> Result<WorkerMessage, &'static str> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let message = match r.u8()? {
        KIND_READY => WorkerMessage::Ready,
        KIND_LOAD_FAILED => WorkerMessage::LoadFailed { reason: r.text()? },
        KIND_RESPONSE => {
            let id = r.u64()?;
            let outcome = match r.u8()? {
                0 => Outcome::Ok,
                1 => Outcome::HandlerError,
                2 => Outcome::BadRequest,
                _ => return Err("unknown outcome"),
            };
            let status = r.u16()?;
            let count = r.u32()? as usize;
            // Each header takes at least eight bytes, which bounds the
            // allocation by the payload size.
            if count > r.remaining() / 8 {
                return Err("header count exceeds frame");
            }
            let mut headers = Vec::with_capacity(count);
            for _ in 0..count {
                let name = r.text()?;
                let value = r.blob()?;
                headers.push((name, value));
            }
            let body = r.blob()?;
            let error = r.text()?;
            WorkerMessage::Response(Response {
                id,
                outcome,
                status,
                headers,
                body,
                error,
            })
        }
        _ => return Err("unknown message kind"),
    };
    if r.remaining() != 0 {
        return Err("trailing bytes after message");
    }
    Ok(message)
}

fn put_u32(out: &mut Vec<u8>, n: usize) -> Result<(), &'static str> {
    let n = u32::try_from(n).map_err(|_| "field too large for one frame")?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

fn put_blob(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), &'static str> {
    put_u32(out, bytes.len())?;
    out.extend_from_slice(bytes);
    Ok(())
}

struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<Bytes, &'static str> {
        if n > self.remaining() {
            return Err("truncated message");
        }
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let bytes = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(&bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn blob(&mut self) -> Result<Bytes, &'static str> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn text(&mut self) -> Result<String, &'static str> {
        let blob = self.blob()?;
        String::from_utf8(blob.to_vec()).map_err(|_| "text field is not UTF-8")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a worker response payload the way the language workers do.
    pub(crate) fn response_payload(
        id: u64,
        outcome: u8,
        status: u16,
        headers: &[(&str, &[u8])],
        body: &[u8],
        error: &str,
    ) -> Vec<u8> {
        let mut out = vec![KIND_RESPONSE];
        out.extend_from_slice(&id.to_be_bytes());
        out.push(outcome);
        out.extend_from_slice(&status.to_be_bytes());
        out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            put_blob(&mut out, name.as_bytes()).unwrap();
            put_blob(&mut out, value).unwrap();
        }
        put_blob(&mut out, body).unwrap();
        put_blob(&mut out, error.as_bytes()).unwrap();
        out
    }

    #[test]
    fn request_head_layout() {
        let head = RequestHead {
            id: 7,
            method: "PUT",
            path: "/a%20b",
            query: "x=1",
            headers: vec![("content-type", b"text/plain"), ("x-bin", &[0xff, 0x00])],
        };
        let mut frame = encode_request_head(&head, 3).unwrap();
        frame.extend_from_slice(b"abc");
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(
            len,
            frame.len() - 4,
            "length prefix covers kind, fields and body"
        );
        let mut r = Reader {
            buf: Bytes::from(frame[4..].to_vec()),
            pos: 0,
        };
        assert_eq!(r.u8().unwrap(), KIND_REQUEST);
        assert_eq!(r.u64().unwrap(), 7);
        assert_eq!(r.text().unwrap(), "PUT");
        assert_eq!(r.text().unwrap(), "/a%20b");
        assert_eq!(r.text().unwrap(), "x=1");
        assert_eq!(r.u32().unwrap(), 2);
        assert_eq!(r.text().unwrap(), "content-type");
        assert_eq!(&r.blob().unwrap()[..], b"text/plain");
        assert_eq!(r.text().unwrap(), "x-bin");
        assert_eq!(&r.blob().unwrap()[..], &[0xff, 0x00]);
        assert_eq!(&r.blob().unwrap()[..], b"abc");
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn decodes_ready_and_load_failure() {
        assert_eq!(
            decode_worker_message(Bytes::from_static(&[KIND_READY])).unwrap(),
            WorkerMessage::Ready
        );
        let mut p = vec![KIND_LOAD_FAILED];
        put_blob(
            &mut p,
            "module \"hello\" has no function \"foo\"".as_bytes(),
        )
        .unwrap();
        assert_eq!(
            decode_worker_message(Bytes::from(p)).unwrap(),
            WorkerMessage::LoadFailed {
                reason: "module \"hello\" has no function \"foo\"".to_owned()
            }
        );
    }

    #[test]
    fn decodes_response() {
        let p = response_payload(
            9,
            0,
            201,
            &[("content-type", b"application/json")],
            b"{}",
            "",
        );
        let WorkerMessage::Response(r) = decode_worker_message(Bytes::from(p)).unwrap() else {
            panic!("expected a response");
        };
        assert_eq!(r.id, 9);
        assert_eq!(r.outcome, Outcome::Ok);
        assert_eq!(r.status, 201);
        assert_eq!(
            r.headers,
            vec![(
                "content-type".to_owned(),
                Bytes::from_static(b"application/json")
            )]
        );
        assert_eq!(&r.body[..], b"{}");
        assert_eq!(r.error, "");

        let p = response_payload(1, 2, 400, &[], b"", "invalid JSON");
        let WorkerMessage::Response(r) = decode_worker_message(Bytes::from(p)).unwrap() else {
            panic!("expected a response");
        };
        assert_eq!(r.outcome, Outcome::BadRequest);
        assert_eq!(r.error, "invalid JSON");
    }

    #[test]
    fn rejects_malformed_messages() {
        let good = response_payload(1, 0, 200, &[("a", b"b")], b"body", "");
        for cut in 0..good.len() {
            assert!(
                decode_worker_message(Bytes::from(good[..cut].to_vec())).is_err(),
                "cut at {cut}"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            decode_worker_message(Bytes::from(trailing)),
            Err("trailing bytes after message")
        );
        let mut bad_outcome = good.clone();
        bad_outcome[9] = 9;
        assert_eq!(
            decode_worker_message(Bytes::from(bad_outcome)),
            Err("unknown outcome")
        );
        assert_eq!(
            decode_worker_message(Bytes::from_static(&[42])),
            Err("unknown message kind")
        );
        let mut huge_count = vec![KIND_RESPONSE];
        huge_count.extend_from_slice(&[0; 8]);
        huge_count.push(0);
        huge_count.extend_from_slice(&200u16.to_be_bytes());
        huge_count.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            decode_worker_message(Bytes::from(huge_count)),
            Err("header count exceeds frame")
        );
    }
}
