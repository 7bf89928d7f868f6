//! Serving HTTP connections, with the limits a server open to a network needs (what
//! `axum::serve` leaves out):
//! - a client has [`HEADER_READ_TIMEOUT`] to send a request's headers, and a connection idle
//!   between requests is closed after as long: one that sends nothing, or a byte at a time,
//!   does not hold its connection (and its file descriptor) for ever;
//! - the connections open at once are capped below the process's file descriptor limit, and
//!   one client address may hold a part of them only: connections over either limit are
//!   closed when accepted, so a flood of them leaves the server its descriptors (the store,
//!   exported tables) and other clients their connections.
//!
//! On shutdown no connection is accepted any more, idle ones are closed and requests under way
//! finish.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use idlink_engine::CancellationToken;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::ServiceExt;

use crate::tls::ClientAddr;

/// How long a client has to send a request's headers, and how long a connection may stay idle
/// between requests (hyper's default, which it applies only when given a timer).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// File descriptors kept for the server's own work (the store, exported tables, logs), out of
/// the process's limit, when counting how many connections it may hold.
const RESERVED_DESCRIPTORS: u64 = 256;

/// How many connections may be open at once, in all and from one client address, and how
/// long a client has to send a request's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub total: usize,
    pub per_client: usize,
    pub header_timeout: Duration,
}

impl ConnectionLimits {
    /// Limits for a process allowed `descriptors` open files: all of them but
    /// [`RESERVED_DESCRIPTORS`] for connections (at least 64), and a quarter of those for
    /// one client address (at least 16).
    pub fn for_descriptors(descriptors: u64) -> ConnectionLimits {
        let total = descriptors.saturating_sub(RESERVED_DESCRIPTORS).max(64);
        let total = usize::try_from(total).unwrap_or(usize::MAX);
        ConnectionLimits {
            total,
            per_client: (total / 4).max(16),
            header_timeout: HEADER_READ_TIMEOUT,
        }
    }

    /// The limits of this process: its soft limit of open files, first raised to the hard
    /// limit (as most servers do at start; the usual soft limit, 1,024, is a few hundred
    /// connections).
    pub fn of_this_process() -> ConnectionLimits {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let descriptors = match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok((soft, hard)) if soft < hard => {
                match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                    Ok(()) => hard,
                    Err(_) => soft,
                }
            }
            Ok((soft, _)) => soft,
            Err(_) => 1024,
        };
        ConnectionLimits::for_descriptors(descriptors)
    }
}

/// The connections open, in all and by client address.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
    /// When a refused connection was last logged (one line a minute at most).
    last_warned: Option<Instant>,
    refused_since_warned: u64,
}

/// A connection's place among the open ones, given back when it closes.
struct Slot {
    open: Arc<Mutex<Open>>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_client.remove(&self.client);
            }
        }
    }
}

/// A place for a new connection from `client`, or None when a limit is reached (the refusal is
/// logged, once a minute at most, with how many were refused).
fn admit(open: &Arc<Mutex<Open>>, limits: ConnectionLimits, client: IpAddr) -> Option<Slot> {
    let mut o = open.lock().unwrap_or_else(|e| e.into_inner());
    let from_client = o.by_client.get(&client).copied().unwrap_or(0);
    if o.total >= limits.total || from_client >= limits.per_client {
        o.refused_since_warned += 1;
        let now = Instant::now();
        if o.last_warned
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
        {
            tracing::warn!(
                client = %client,
                open = o.total,
                from_client,
                limit = limits.total,
                limit_per_client = limits.per_client,
                refused = o.refused_since_warned,
                "too many connections: new ones are closed at once"
            );
            o.last_warned = Some(now);
            o.refused_since_warned = 0;
        }
        return None;
    }
    o.total += 1;
    *o.by_client.entry(client).or_insert(0) += 1;
    Some(Slot {
        open: open.clone(),
        client,
    })
}

/// Serves `app` on the connections `listener` accepts until `shutdown` is cancelled, then
/// waits for the requests under way. Each request carries `ConnectInfo<ClientAddr>`.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // HTTP/1.1 only, as before (the TLS configuration offers no other).
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Mutex::new(Open::default()));
    loop {
        let (io, addr) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Some(slot) = admit(&open, limits, addr.ip()) else {
            drop(io);
            continue;
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo(ClientAddr(addr)));
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.oneshot(request).await.unwrap_or_else(|e| match e {})) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!(client = %addr, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_leave_descriptors_to_the_server_and_share_them_between_clients() {
        assert_eq!(
            ConnectionLimits::for_descriptors(20_000),
            ConnectionLimits {
                total: 19_744,
                per_client: 4_936,
                header_timeout: HEADER_READ_TIMEOUT,
            }
        );
        assert_eq!(
            ConnectionLimits::for_descriptors(256),
            ConnectionLimits {
                total: 64,
                per_client: 16,
                header_timeout: HEADER_READ_TIMEOUT,
            }
        );
    }

    #[test]
    fn a_client_over_its_share_is_refused_and_a_closed_connection_frees_its_place() {
        let limits = ConnectionLimits {
            total: 3,
            per_client: 2,
            header_timeout: HEADER_READ_TIMEOUT,
        };
        let open = Arc::new(Mutex::new(Open::default()));
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
            "10.0.0.3".parse().expect("ip"),
        );
        let a1 = admit(&open, limits, a).expect("a1");
        let _a2 = admit(&open, limits, a).expect("a2");
        assert!(admit(&open, limits, a).is_none(), "a over its share");
        let _b1 = admit(&open, limits, b).expect("b1");
        assert!(admit(&open, limits, c).is_none(), "over the total");
        drop(a1);
        let _c1 = admit(&open, limits, c).expect("c1 once a1 closed");
        let o = open.lock().expect("lock");
        assert_eq!((o.total, o.by_client.get(&a).copied()), (3, Some(1)));
    }
}
