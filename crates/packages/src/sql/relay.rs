//! A guard between sqlx and the database server: every server message is checked against
//! `MaxMessageSize` before sqlx sees it, and must arrive complete within `Timeout` once begun.
//!
//! sqlx 0.8 reads a message by first reserving the length the server announces (PostgreSQL's
//! 5-byte header, MySQL's 3-byte packet length with continuation packets), so a server that
//! announces 2 GB makes it allocate 2 GB; and it waits for the rest of a message without limit.
//! It has no hook to bound either. So sqlx does not talk to the server: it talks, in plain
//! text over a Unix socket in a private folder (mode 0700) that lives only until sqlx has
//! connected, to this relay, which holds the real connection (TCP or Unix socket, and TLS for
//! PostgreSQL, which the relay negotiates itself). The relay forwards bytes as they come and
//! reads only the message headers of the server's stream: a header announcing more than the
//! limit, a message that stays incomplete past `Timeout`, or malformed framing ends the
//! connection, and the reason is kept in [`Status`] for the package's error message (sqlx itself
//! only sees the connection close).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::tls::TlsPlan;

/// The default of `MaxMessageSize`: 64 MiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 64 * 1024 * 1024;

/// How long the relay waits for sqlx to connect to it (it does so at once).
const ACCEPT_WAIT: Duration = Duration::from_secs(30);

/// After sqlx has closed its side, how long the server may take to close its own.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Which protocol's framing the relay reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Postgres,
    MySql,
}

/// Where the real server is.
#[derive(Debug, Clone)]
pub(crate) enum Server {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

/// Why the relay ended a connection: the message the package shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub message: String,
    /// Whether trying again may help.
    pub retryable: bool,
}

impl Failure {
    fn new(message: impl Into<String>, retryable: bool) -> Self {
        Failure {
            message: message.into(),
            retryable,
        }
    }
}

/// The first reason the relay of one operation gave up, shared with the package.
#[derive(Debug, Default)]
pub(crate) struct Status(Mutex<Option<Failure>>);

impl Status {
    fn set(&self, failure: Failure) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(failure);
        }
    }

    /// The reason the relay ended the connection, if it did.
    pub fn failure(&self) -> Option<Failure> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the relay needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub protocol: Protocol,
    pub server: Server,
    /// PostgreSQL only: whether and how to negotiate TLS.
    pub tls: TlsPlan,
    pub max_message: u64,
    /// `None`: no limit.
    pub timeout: Option<Duration>,
}

/// The server side of the relay: TCP, TLS over TCP, or a Unix socket.
pub(crate) trait StreamBox: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> StreamBox for T {}

/// The relay's socket for PostgreSQL: sqlx takes a folder and a port, [`PG_SOCKET_PORT`].
const PG_SOCKET: &str = ".s.PGSQL.5432";
/// The port sqlx must be given with the relay's folder.
pub(crate) const PG_SOCKET_PORT: u16 = 5432;

/// Connects to the server (and negotiates TLS), then starts the relay. Returns the Unix socket
/// sqlx must connect to: `<folder>/.s.PGSQL.5432` for PostgreSQL (sqlx takes the folder and
/// [`PG_SOCKET_PORT`]), `<folder>/mysql.sock` for MySQL. The caller bounds this call in time.
pub(crate) async fn start(plan: Plan, status: Arc<Status>) -> Result<PathBuf, Failure> {
    let server: Box<dyn StreamBox> = match &plan.server {
        Server::Tcp { host, port } => {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| Failure::new(format!("cannot reach the server: {e}"), true))?;
            let _ = tcp.set_nodelay(true);
            match plan.protocol {
                Protocol::Postgres => super::tls::negotiate_pg(tcp, host, &plan.tls).await?,
                Protocol::MySql => Box::new(tcp),
            }
        }
        Server::Unix(path) => Box::new(
            tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| Failure::new(format!("cannot reach the server: {e}"), true))?,
        ),
    };
    // A Unix socket's path holds at most 107 bytes: a long TMPDIR falls back to /tmp.
    let tmp = std::env::temp_dir();
    let parent = if tmp.as_os_str().len() <= 64 {
        tmp
    } else {
        PathBuf::from("/tmp")
    };
    let dir = tempfile::Builder::new()
        .prefix("idlink-sql-")
        .tempdir_in(parent)
        .map_err(|e| Failure::new(format!("cannot create the relay's folder: {e}"), false))?;
    let socket = dir.path().join(match plan.protocol {
        Protocol::Postgres => PG_SOCKET,
        Protocol::MySql => "mysql.sock",
    });
    let listener = tokio::net::UnixListener::bind(&socket)
        .map_err(|e| Failure::new(format!("cannot open the relay's socket: {e}"), false))?;
    tokio::spawn(async move {
        let client = match tokio::time::timeout(ACCEPT_WAIT, listener.accept()).await {
            Ok(Ok((client, _))) => client,
            _ => return,
        };
        // Nobody else may connect: the socket and its folder go now.
        drop(listener);
        drop(dir);
        pipe(client, server, &plan, &status).await;
    });
    Ok(socket)
}

/// Forwards both ways until either side ends or the server breaks a rule.
async fn pipe(
    client: tokio::net::UnixStream,
    server: Box<dyn StreamBox>,
    plan: &Plan,
    status: &Status,
) {
    let (mut client_read, client_write) = tokio::io::split(client);
    let (server_read, mut server_write) = tokio::io::split(server);
    let up = async {
        if tokio::io::copy(&mut client_read, &mut server_write)
            .await
            .is_ok()
        {
            let _ = server_write.shutdown().await;
            tokio::time::sleep(CLOSE_GRACE).await;
        }
    };
    let framer = Framer::new(plan.protocol, plan.max_message);
    let down = async {
        if let Err(f) = down(server_read, client_write, framer, plan.timeout).await {
            status.set(f);
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

/// Forwards the server's bytes to sqlx, reading the message headers.
async fn down(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut framer: Framer,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let read = match (framer.started, timeout) {
            (Some(began), Some(t)) => {
                match tokio::time::timeout_at(began + t, from.read(&mut buf)).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(Failure::new(
                            format!(
                                "the server began a message but did not complete it within {} s (the Timeout setting): it is stalled or far too slow",
                                t.as_secs()
                            ),
                            true,
                        ));
                    }
                }
            }
            _ => from.read(&mut buf).await,
        };
        let mut n = match read {
            Ok(0) if framer.started.is_some() => {
                return Err(Failure::new(
                    "the server closed the connection in the middle of a message",
                    true,
                ));
            }
            Ok(0) => {
                let _ = to.shutdown().await;
                return Ok(());
            }
            Ok(n) => n,
            Err(e) => {
                return Err(Failure::new(
                    format!("the connection to the server broke: {e}"),
                    true,
                ));
            }
        };
        // Take what else is already there, so that sqlx reads big chunks (fewer system calls
        // on both sides of the relay).
        while n < buf.len() {
            match from.read(&mut buf[n..]).now_or_never() {
                Some(Ok(m)) if m > 0 => n += m,
                _ => break,
            }
        }
        let chunk = &buf[..n];
        framer.feed(chunk, Instant::now())?;
        if to.write_all(chunk).await.is_err() {
            // sqlx has gone: nothing to report.
            return Ok(());
        }
    }
}

/// Reads the message boundaries of a server's stream.
#[derive(Debug)]
struct Framer {
    protocol: Protocol,
    max: u64,
    header: [u8; 5],
    have: usize,
    /// Bytes of the current message's body (packet payload) still to come.
    remaining: u64,
    /// When the current message's first byte came; `None` between messages.
    started: Option<Instant>,
    /// MySQL: the length of the logical message so far (a packet of 0xFFFFFF bytes continues
    /// in the next one).
    logical: u64,
    /// PostgreSQL: whether the server has said it is ready (the first `ReadyForQuery`), and the
    /// bytes it sent before, bounded like one message.
    ready: bool,
    before_ready: u64,
}

impl Framer {
    fn new(protocol: Protocol, max: u64) -> Self {
        Framer {
            protocol,
            max,
            header: [0; 5],
            have: 0,
            remaining: 0,
            started: None,
            logical: 0,
            ready: false,
            before_ready: 0,
        }
    }

    fn header_len(&self) -> usize {
        match self.protocol {
            Protocol::Postgres => 5,
            Protocol::MySql => 4,
        }
    }

    fn too_big(&self, announced: u64) -> Failure {
        Failure::new(
            format!(
                "the server announced a message of {announced} bytes, more than MaxMessageSize ({} bytes): the server is broken or hostile, or a value is larger than this limit (raise MaxMessageSize if the data are genuine)",
                self.max
            ),
            false,
        )
    }

    /// Reads `data`, which arrived at `now`; fails on a rule broken.
    fn feed(&mut self, data: &[u8], now: Instant) -> Result<(), Failure> {
        let mut i = 0;
        while i < data.len() {
            if self.remaining > 0 {
                let take = self.remaining.min((data.len() - i) as u64);
                self.remaining -= take;
                i += take as usize;
                if self.remaining == 0 {
                    self.body_done();
                }
                continue;
            }
            if self.have == 0 && self.started.is_none() {
                self.started = Some(now);
            }
            let want = self.header_len() - self.have;
            let take = want.min(data.len() - i);
            self.header[self.have..self.have + take].copy_from_slice(&data[i..i + take]);
            self.have += take;
            i += take;
            if self.have == self.header_len() {
                self.have = 0;
                self.header_done()?;
            }
        }
        Ok(())
    }

    fn header_done(&mut self) -> Result<(), Failure> {
        match self.protocol {
            Protocol::Postgres => {
                let h = self.header;
                let len = u64::from(u32::from_be_bytes([h[1], h[2], h[3], h[4]]));
                if len < 4 {
                    return Err(Failure::new(
                        format!(
                            "the server sent a malformed message (type {}, length {len}): is it a PostgreSQL server?",
                            printable(h[0])
                        ),
                        false,
                    ));
                }
                if len > self.max {
                    return Err(self.too_big(len));
                }
                if !self.ready {
                    if h[0] == b'Z' {
                        self.ready = true;
                    } else {
                        self.before_ready += len + 1;
                        if self.before_ready > self.max {
                            return Err(Failure::new(
                                format!(
                                    "the server sent more than MaxMessageSize ({} bytes) before the connection was ready: the server is broken or hostile",
                                    self.max
                                ),
                                false,
                            ));
                        }
                    }
                }
                self.remaining = len - 4;
            }
            Protocol::MySql => {
                let h = self.header;
                let len = u64::from(u32::from_le_bytes([h[0], h[1], h[2], 0]));
                self.logical += len;
                if self.logical > self.max {
                    return Err(self.too_big(self.logical));
                }
                self.remaining = len;
            }
        }
        if self.remaining == 0 {
            self.body_done();
        }
        Ok(())
    }

    fn body_done(&mut self) {
        if self.protocol == Protocol::MySql && self.header[..3] == [0xff, 0xff, 0xff] {
            // The logical message continues in the next packet.
            return;
        }
        self.logical = 0;
        self.started = None;
    }
}

fn printable(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("0x{b:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[tokio::test]
    async fn pg_framing_splits_anywhere_and_bounds_sizes() {
        let now = Instant::now();
        let mut f = Framer::new(Protocol::Postgres, 100);
        let mut stream = pg(b'R', &[0, 0, 0, 0]);
        stream.extend(pg(b'Z', b"I"));
        stream.extend(pg(b'D', &[7; 60]));
        for byte in &stream {
            f.feed(std::slice::from_ref(byte), now)
                .expect("valid stream");
        }
        assert!(f.started.is_none() && f.ready);
        f.feed(&[b'D', 0, 0], now).expect("partial header");
        assert!(f.started.is_some());
        let e = f.feed(&[0, 101], now).expect_err("too big");
        assert!(e.message.contains("101 bytes"), "{}", e.message);
        let mut f = Framer::new(Protocol::Postgres, 100);
        let e = f
            .feed(&[b'R', 0x7f, 0xff, 0xff, 0xff], now)
            .expect_err("2 GB");
        assert!(e.message.contains("2147483647 bytes"), "{}", e.message);
        let mut f = Framer::new(Protocol::Postgres, 100);
        assert!(f.feed(&[b'R', 0, 0, 0, 2], now).is_err(), "length < 4");
    }

    #[tokio::test]
    async fn pg_bytes_before_ready_are_bounded() {
        let now = Instant::now();
        let mut f = Framer::new(Protocol::Postgres, 100);
        let mut e = None;
        for _ in 0..10 {
            if let Err(x) = f.feed(&pg(b'S', &[b'a'; 20]), now) {
                e = Some(x);
                break;
            }
        }
        assert!(e.is_some_and(|e| e.message.contains("before the connection was ready")));
    }

    #[tokio::test]
    async fn mysql_continuation_packets_count_as_one_message() {
        let now = Instant::now();
        let mut f = Framer::new(Protocol::MySql, 20_000_000);
        let mut first = vec![0xff, 0xff, 0xff, 0];
        first.extend(std::iter::repeat_n(0u8, 0xff_ffff));
        f.feed(&first, now).expect("16 MiB packet");
        assert!(f.started.is_some(), "the message continues");
        let e = f.feed(&[0xff, 0xff, 0xff, 1], now).expect_err("32 MiB");
        assert!(e.message.contains("33554430 bytes"), "{}", e.message);
        let mut f = Framer::new(Protocol::MySql, 100);
        f.feed(&[3, 0, 0, 0, 1, 2, 3], now).expect("small packet");
        assert!(f.started.is_none());
    }
}
