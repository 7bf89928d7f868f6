//! The server's connections as an attacker holds them: headers never finished, connections
//! opened until the server has no descriptors left. Through `http::serve` on a real socket,
//! with small limits and a short header time limit.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use idlink_engine::CancellationToken;
use idlink_server::http::{ConnectionLimits, serve};
use idlink_server::tls::ClientAddr;

/// A server answering `GET /` with the client's address, on a free loopback port.
async fn start(limits: ConnectionLimits) -> (std::net::SocketAddr, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route(
        "/",
        get(
            |ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>| async move {
                format!("hello {}", client.ip())
            },
        ),
    );
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, app, limits, stop.clone()));
    (addr, stop)
}

/// Sends a whole request on a new connection and reads the answer.
fn get_root(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    answer
}

/// Whether the server closed `s` (end of file or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
    }
}

/// A connection half-way through its headers.
fn stalled(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_client_that_never_finishes_its_headers_is_disconnected() {
    // Before, the server waited for the rest of the headers for ever: 20,000 such connections
    // took every descriptor of `idlink serve` and nobody else could connect.
    let limits = ConnectionLimits {
        total: 100,
        per_client: 100,
        header_timeout: Duration::from_millis(500),
    };
    let (addr, stop) = start(limits).await;
    tokio::task::spawn_blocking(move || {
        let mut s = stalled(addr);
        let started = Instant::now();
        assert!(
            closed_within(&mut s, Duration::from_secs(5)),
            "a connection without its whole headers is still open after 5 s"
        );
        assert!(started.elapsed() >= Duration::from_millis(400));
        // Idle between requests: closed after as long, once the request was answered.
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut b = [0u8; 256];
        let n = s.read(&mut b).expect("answer");
        assert!(String::from_utf8_lossy(&b[..n]).contains("hello 127.0.0.1"));
        assert!(
            closed_within(&mut s, Duration::from_secs(5)),
            "an idle connection stays"
        );
        // The server still answers.
        assert!(get_root(addr).contains("hello 127.0.0.1"));
    })
    .await
    .expect("client");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_connections_over_the_limit_are_closed_and_the_server_answers_once_they_go() {
    let limits = ConnectionLimits {
        total: 6,
        per_client: 4,
        header_timeout: Duration::from_secs(60),
    };
    let (addr, stop) = start(limits).await;
    tokio::task::spawn_blocking(move || {
        let mut held: Vec<TcpStream> = (0..4).map(|_| stalled(addr)).collect();
        // The client's share is taken: its next connection is closed at once, the held
        // ones stay.
        let mut over = stalled(addr);
        assert!(
            closed_within(&mut over, Duration::from_secs(5)),
            "a fifth connection stays"
        );
        for s in &mut held {
            assert!(
                !closed_within(s, Duration::from_millis(50)),
                "a held connection was closed"
            );
        }
        // One held connection goes: its place serves a request.
        drop(held.pop());
        std::thread::sleep(Duration::from_millis(200));
        assert!(get_root(addr).contains("hello 127.0.0.1"));
    })
    .await
    .expect("client");
    stop.cancel();
}
