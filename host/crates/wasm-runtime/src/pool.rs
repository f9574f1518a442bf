//! Kept-alive upstream connections of the [`gate`](crate::gate), one pool per loaded plugin.
//!
//! A pooled connection saves the TCP connect and the TLS handshake, nothing else: the gate
//! checks every request against the allowlists and resolves and checks its host's addresses
//! before it asks the pool.
//!
//! Invariants:
//! - A connection serves only the origin (scheme, host name as the plugin wrote it, port) it
//!   was opened for, and only a request whose own resolution, already checked by the no-SSRF
//!   rule, includes the connection's peer address.
//! - A connection comes back only after its response body was read to the end; a closed one,
//!   or one idle longer than [`IDLE_TIMEOUT`], is dropped when met; at most
//!   [`IDLE_PER_ORIGIN`] wait per origin.
//! - Nothing is shared between plugins: a new plugin version starts with an empty pool.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use wasmtime_wasi_http::WasiBody;

/// Idle connections kept per origin: enough for the concurrency one upstream sees from here.
pub(crate) const IDLE_PER_ORIGIN: usize = 64;
/// How long an idle connection is kept: below the idle timeouts of common servers (nginx 75 s,
/// most load balancers 60 s), so a reused one is rarely already closed at the far end.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// Where a connection goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// An open HTTP/1 connection, driven by its own task.
pub(crate) struct Conn {
    pub(crate) sender: SendRequest<WasiBody>,
    pub(crate) peer: SocketAddr,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// The idle connections of one plugin.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<Origin, Vec<Idle>>>,
}

impl Pool {
    /// An idle connection to `origin` whose peer is one of `checked`, if any is ready.
    pub(crate) fn take(&self, origin: &Origin, checked: &[SocketAddr]) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap();
        let kept = idle.get_mut(origin)?;
        kept.retain(|i| !i.conn.sender.is_closed() && i.since.elapsed() < IDLE_TIMEOUT);
        // Newest first: the likeliest to be open still at the far end.
        let at = kept
            .iter()
            .rposition(|i| i.conn.sender.is_ready() && checked.contains(&i.conn.peer))?;
        Some(kept.remove(at).conn)
    }

    /// Keeps `conn` for the next request to `origin`.
    pub(crate) fn put(&self, origin: Origin, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap();
        let kept = idle.entry(origin).or_default();
        if kept.len() >= IDLE_PER_ORIGIN {
            kept.remove(0);
        }
        kept.push(Idle {
            conn,
            since: Instant::now(),
        });
    }
}
