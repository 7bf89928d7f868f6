//! Hostile servers for fault injection: a TCP server on `127.0.0.1` (never another address)
//! that plays a script of byte steps on each connection it accepts, whatever the protocol.
//!
//! ```no_run
//! use idlink_test_support::hostile::{HostileServer, Step};
//! // Answers whatever arrives with a header announcing 2 GiB, then bytes without end.
//! let server = HostileServer::start(vec![
//!     Step::ReadSome,
//!     Step::Write(vec![0x30, 0x84, 0x7f, 0xff, 0xff, 0xff]),
//!     Step::Endless(vec![0x41; 64 * 1024]),
//! ]);
//! let address = server.address(); // "127.0.0.1:PORT"
//! ```
//!
//! Each connection runs in its own thread; the server stops (and its connections close)
//! when it is dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::LaunchError;

/// One step of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Reads exactly this many bytes (the connection ends if the peer closes first).
    Read(usize),
    /// Reads once, whatever arrives (at least one byte): one request of a request/response
    /// protocol, when requests are small.
    ReadSome,
    /// Writes these bytes.
    Write(Vec<u8>),
    /// Writes these bytes one at a time, waiting `every` before each.
    Trickle { bytes: Vec<u8>, every: Duration },
    /// Writes one byte every `every`, forever (until the peer closes or the server stops).
    TrickleForever { byte: u8, every: Duration },
    /// Writes this chunk again and again, forever (until the peer closes or the server stops).
    Endless(Vec<u8>),
    /// Waits.
    Sleep(Duration),
    /// Keeps the connection open, silent, until the peer closes or the server stops.
    Hang,
}

/// A scripted server on `127.0.0.1`, stopped when dropped.
#[derive(Debug)]
pub struct HostileServer {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl HostileServer {
    /// Starts a server whose every connection plays `script`; panics when it cannot bind.
    pub fn start(script: Vec<Step>) -> HostileServer {
        HostileServer::start_each(vec![script])
    }

    /// Starts a server whose n-th connection (from 0) plays `scripts[n]`, the connections
    /// after the last script playing the last one.
    pub fn start_each(scripts: Vec<Vec<Step>>) -> HostileServer {
        match HostileServer::try_start_each(scripts) {
            Ok(s) => s,
            Err(e) => panic!("cannot start the hostile server: {e}"),
        }
    }

    /// [`HostileServer::start_each`], returning the error.
    pub fn try_start_each(scripts: Vec<Vec<Step>>) -> Result<HostileServer, LaunchError> {
        if scripts.is_empty() {
            return Err(LaunchError("a hostile server needs a script".into()));
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| LaunchError(format!("cannot bind 127.0.0.1:0: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| LaunchError(format!("cannot read the port: {e}")))?
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (stop2, accepted2, open2) = (stop.clone(), accepted.clone(), open.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let n = accepted2.fetch_add(1, Ordering::SeqCst);
                let script = scripts[n.min(scripts.len() - 1)].clone();
                if let (Ok(mut list), Ok(c)) = (open2.lock(), conn.try_clone()) {
                    list.push(c);
                }
                let stop = stop2.clone();
                std::thread::spawn(move || play(conn, &script, &stop));
            }
        });
        Ok(HostileServer {
            port,
            stop,
            accepted,
            open,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(list) = self.open.lock() {
            for c in list.iter() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
        // Wakes the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Plays `script` on one connection; any error (the peer closed) ends it.
fn play(mut conn: TcpStream, script: &[Step], stop: &AtomicBool) {
    let _ = conn.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    for step in script {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let ok = match step {
            Step::Read(n) => {
                let mut left = *n;
                let mut ok = true;
                while left > 0 {
                    let want = left.min(buf.len());
                    match conn.read(&mut buf[..want]) {
                        Ok(0) | Err(_) => {
                            ok = false;
                            break;
                        }
                        Ok(got) => left -= got,
                    }
                }
                ok
            }
            Step::ReadSome => matches!(conn.read(&mut buf), Ok(n) if n > 0),
            Step::Write(bytes) => conn.write_all(bytes).and_then(|()| conn.flush()).is_ok(),
            Step::Trickle { bytes, every } => bytes.iter().all(|b| {
                std::thread::sleep(*every);
                !stop.load(Ordering::SeqCst) && conn.write_all(&[*b]).is_ok()
            }),
            Step::TrickleForever { byte, every } => loop {
                std::thread::sleep(*every);
                if stop.load(Ordering::SeqCst) || conn.write_all(&[*byte]).is_err() {
                    break false;
                }
            },
            Step::Endless(chunk) => loop {
                if stop.load(Ordering::SeqCst) || conn.write_all(chunk).is_err() {
                    break false;
                }
            },
            Step::Sleep(d) => {
                std::thread::sleep(*d);
                true
            }
            Step::Hang => {
                // Reads (and drops) until the peer closes.
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break false,
                        Ok(_) => {}
                    }
                }
            }
        };
        if !ok {
            return;
        }
    }
}

/// LDAP pieces for hostile directory scripts.
pub mod ldap {
    /// A successful BindResponse to message 1.
    pub const BIND_OK: [u8; 14] = [
        0x30, 0x0c, 0x02, 0x01, 0x01, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
    ];

    /// A message header announcing 2 GiB (0x7fffffff bytes).
    pub const HUGE_HEADER: [u8; 6] = [0x30, 0x84, 0x7f, 0xff, 0xff, 0xff];

    /// A SearchResultDone for message `id` with result code `rc` (e.g. 32, noSuchObject).
    pub fn search_done(id: u8, rc: u8) -> Vec<u8> {
        vec![
            0x30, 0x0c, 0x02, 0x01, id, 0x65, 0x07, 0x0a, 0x01, rc, 0x04, 0x00, 0x04, 0x00,
        ]
    }

    /// A SearchResultDone (success) for message `id` carrying a Paged Results control whose
    /// cookie is `abc`: a server that says "there is more" with the same cookie every time.
    pub fn search_done_with_cookie(id: u8) -> Vec<u8> {
        let oid = b"1.2.840.113556.1.4.319";
        let value = [0x30, 0x08, 0x02, 0x01, 0x00, 0x04, 0x03, b'a', b'b', b'c'];
        let mut control = vec![0x04, oid.len() as u8];
        control.extend_from_slice(oid);
        control.extend_from_slice(&[0x04, value.len() as u8]);
        control.extend_from_slice(&value);
        let mut controls = vec![0x30, control.len() as u8];
        controls.extend(control);
        let mut inner = vec![
            0x02, 0x01, id, 0x65, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
        ];
        inner.extend_from_slice(&[0xa0, controls.len() as u8]);
        inner.extend(controls);
        let mut m = vec![0x30, inner.len() as u8];
        m.extend(inner);
        m
    }

    /// A SearchResultEntry for message `id` whose DN announces 2 GiB inside a message of
    /// normal size: the message header is fine, an element inside is not.
    pub fn entry_with_huge_inner_length(id: u8) -> Vec<u8> {
        let mut m = vec![0x30, 0x84, 0x00, 0x00, 0x00, 0x20, 0x02, 0x01, id];
        m.extend_from_slice(&[0x64, 0x84, 0x00, 0x00, 0x00, 0x17]);
        m.extend_from_slice(&[0x04, 0x84, 0x7f, 0xff, 0xff, 0xff]);
        m.resize(6 + 0x20, 0x41);
        m
    }
}
