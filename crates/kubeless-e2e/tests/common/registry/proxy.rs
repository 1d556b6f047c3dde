//! A loopback HTTP proxy in front of a real registry that forwards every
//! request but can fail manifest pushes (`PUT /v2/<name>/manifests/<ref>`),
//! to test a registry that breaks in the middle of a push: the blobs
//! arrive, the tag does not.
//!
//! One request per connection: the proxy reads a request (head and
//! `Content-Length` body), forwards it upstream with `Connection: close`
//! and relays the answer until the registry closes, so the client opens a
//! new connection for its next request and every request passes the fault
//! check. The registry builds upload `Location`s from the `Host` header,
//! which is passed through, so uploads come back through the proxy too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy does with a manifest push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it.
    None,
    /// Answer `503 Service Unavailable` without forwarding.
    Unavailable,
    /// Read it and close the connection without an answer.
    Drop,
}

impl Fault {
    fn from_u8(v: u8) -> Fault {
        match v {
            1 => Fault::Unavailable,
            2 => Fault::Drop,
            _ => Fault::None,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Fault::None => 0,
            Fault::Unavailable => 1,
            Fault::Drop => 2,
        }
    }
}

struct Shared {
    upstream: String,
    fault: AtomicU8,
    /// Manifest pushes refused (answered 503 or dropped).
    refused: AtomicUsize,
    stop: AtomicBool,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

/// The proxy; stops (and joins its threads) when dropped.
pub struct FaultyProxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultyProxy {
    /// Listen on a free loopback port, forwarding to `upstream`
    /// (`host:port`).
    pub fn start(upstream: &str) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            fault: AtomicU8::new(Fault::None.as_u8()),
            refused: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            connections: Mutex::default(),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s2 = s.clone();
                let handle = std::thread::spawn(move || {
                    // A failed conversation is the client's to report.
                    let _ = serve(conn, &s2);
                });
                let mut list = s.connections.lock().expect("connections");
                list.retain(|h| !h.is_finished());
                list.push(handle);
            }
        });
        FaultyProxy {
            port,
            shared,
            accept: Some(accept),
        }
    }

    /// `127.0.0.1:<port>`, the registry host to give a client.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set_fault(&self, fault: Fault) {
        self.shared.fault.store(fault.as_u8(), Ordering::SeqCst);
    }

    /// Manifest pushes refused so far.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let handles = std::mem::take(
            &mut *self
                .shared
                .connections
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for h in handles {
            let _ = h.join();
        }
    }
}

/// Handle one request on `client`.
fn serve(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        // Ours replaces it.
        if !lower.starts_with("connection:") {
            headers.push(line);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;

    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let fault = Fault::from_u8(shared.fault.load(Ordering::SeqCst));
    let mut client = client;
    if method == "PUT" && path.starts_with("/v2/") && path.contains("/manifests/") {
        match fault {
            Fault::None => {}
            Fault::Unavailable => {
                shared.refused.fetch_add(1, Ordering::SeqCst);
                client.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )?;
                return client.shutdown(Shutdown::Both);
            }
            Fault::Drop => {
                shared.refused.fetch_add(1, Ordering::SeqCst);
                return client.shutdown(Shutdown::Both);
            }
        }
    }

    let mut upstream = TcpStream::connect(&shared.upstream)?;
    upstream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = request_line;
    for h in headers {
        head.push_str(&h);
    }
    head.push_str("Connection: close\r\n\r\n");
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(&body)?;
    std::io::copy(&mut upstream, &mut client)?;
    client.shutdown(Shutdown::Both)
}
