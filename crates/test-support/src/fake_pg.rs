//! A hostile PostgreSQL-speaking server on `127.0.0.1`, for fault injection: it answers TLS
//! requests with `N`, reads the startup message, then misbehaves as asked.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::LaunchError;

/// How the fake server answers the startup message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostility {
    /// An authentication message announcing 2,147,483,647 bytes, then bytes without end.
    HugeMessage,
    /// A valid-looking authentication message, one byte a second, without end.
    Trickle,
    /// Nothing at all: accepts, reads, and stays silent.
    Silent,
}

/// A fake server, stopped when dropped.
#[derive(Debug)]
pub struct FakePgServer {
    port: u16,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FakePgServer {
    /// Starts a fake server on a free `127.0.0.1` port.
    pub fn start(hostility: Hostility) -> Result<FakePgServer, LaunchError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| LaunchError(format!("cannot bind 127.0.0.1:0: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| LaunchError(format!("cannot read the port: {e}")))?
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (stop2, count) = (Arc::clone(&stop), Arc::clone(&connections));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let stop3 = Arc::clone(&stop2);
                std::thread::spawn(move || {
                    let _ = serve(stream, hostility, &stop3);
                });
            }
        });
        Ok(FakePgServer {
            port,
            stop,
            connections,
            thread: Some(thread),
        })
    }

    /// The port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakePgServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one length-prefixed startup-phase message (at most 10,000 bytes); returns its code.
fn read_startup(stream: &mut TcpStream) -> std::io::Result<u32> {
    let mut head = [0u8; 8];
    stream.read_exact(&mut head)?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if !(8..=10_000).contains(&len) {
        return Err(std::io::Error::other("bad startup length"));
    }
    let mut rest = vec![0u8; len - 8];
    stream.read_exact(&mut rest)?;
    Ok(code)
}

fn serve(mut stream: TcpStream, hostility: Hostility, stop: &AtomicBool) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    // SSLRequest (80877103) or GSSENCRequest (80877104): "N", then the real startup.
    let mut code = read_startup(&mut stream)?;
    while code == 80_877_103 || code == 80_877_104 {
        stream.write_all(b"N")?;
        code = read_startup(&mut stream)?;
    }
    match hostility {
        Hostility::HugeMessage => {
            stream.write_all(&[b'R', 0x7f, 0xff, 0xff, 0xff])?;
            let chunk = vec![0x41u8; 64 * 1024];
            while !stop.load(Ordering::SeqCst) {
                stream.write_all(&chunk)?;
            }
        }
        Hostility::Trickle => {
            // AuthenticationOk, R 00000008 00000000, again and again.
            let message = [b'R', 0, 0, 0, 8, 0, 0, 0, 0];
            for byte in message.iter().cycle() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                stream.write_all(&[*byte])?;
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Hostility::Silent => {
            let mut sink = [0u8; 1024];
            while !stop.load(Ordering::SeqCst) {
                match stream.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}
