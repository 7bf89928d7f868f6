//! A hostile PostgreSQL-speaking server on `127.0.0.1`, for fault injection: a
//! [`HostileServer`] playing a PostgreSQL script. It answers the client's TLS request with
//! `N`, reads the startup message, then misbehaves as asked.

use std::time::Duration;

use crate::LaunchError;
use crate::hostile::{HostileServer, Step};

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
    server: HostileServer,
}

/// AuthenticationOk (`R`, length 8, code 0): repeated, it stays a well-formed stream.
const AUTH_OK: [u8; 9] = [b'R', 0, 0, 0, 8, 0, 0, 0, 0];

fn script(hostility: Hostility) -> Vec<Step> {
    // The client asks for TLS first (SSLRequest, 8 bytes): "N", then its startup message.
    let mut steps = vec![Step::Read(8), Step::Write(b"N".to_vec()), Step::ReadSome];
    steps.extend(match hostility {
        Hostility::HugeMessage => vec![
            Step::Write(vec![b'R', 0x7f, 0xff, 0xff, 0xff]),
            Step::Endless(vec![0x41; 64 * 1024]),
        ],
        Hostility::Trickle => vec![Step::Trickle {
            // Far longer than any test waits.
            bytes: AUTH_OK.repeat(1000),
            every: Duration::from_secs(1),
        }],
        Hostility::Silent => vec![Step::Hang],
    });
    steps
}

impl FakePgServer {
    /// Starts a fake server on a free `127.0.0.1` port.
    pub fn start(hostility: Hostility) -> Result<FakePgServer, LaunchError> {
        Ok(FakePgServer {
            server: HostileServer::try_start_each(vec![script(hostility)])?,
        })
    }

    /// The port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> usize {
        self.server.connections()
    }
}
