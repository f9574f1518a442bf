//! Forwarding headers from trusted proxies only: `X-Forwarded-Host`, `X-Forwarded-Proto` and
//! `Forwarded` say where a client reached easel (the base of the links it is handed, see
//! [`public_base`](crate::api::files::public_base)), but any client can send them.
//!
//! Invariant: past this layer, a request carries them only when its peer address is in
//! `EASEL_TRUSTED_PROXIES`; from every other peer (all of them by default) they are removed.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::Response,
};

/// The headers only a trusted proxy may set.
const FORWARDING: [&str; 3] = ["x-forwarded-host", "x-forwarded-proto", "forwarded"];

/// Removes the forwarding headers unless the peer is a trusted proxy. A request without a
/// known peer (served without connection info) is not trusted.
pub async fn strip_untrusted(
    State(trusted): State<Arc<Vec<ipnet::IpNet>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical());
    let believed = peer.is_some_and(|ip| trusted.iter().any(|net| net.contains(&ip)));
    if !believed {
        let headers = request.headers_mut();
        for name in FORWARDING {
            headers.remove(name);
        }
    }
    next.run(request).await
}
