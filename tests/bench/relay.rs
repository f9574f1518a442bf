//! The floor `scripts/bench-gateway` measures easel against: a bare Rust relay on the same
//! runtime and HTTP crates (tokio, axum's server, reqwest's pooled client with `TCP_NODELAY`
//! on both sides), with nothing of a gateway in it: no keys, no sandbox, no task written.
//! Every `POST` is sent on to the upstream at the same path with its body, and the answer,
//! whole or streamed, is relayed back as it comes.
//!
//! Usage: `bench-relay UPSTREAM_URL`; prints `listening on http://ADDR` once it serves on a
//! free loopback port.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;

struct Relay {
    upstream: String,
    client: reqwest::Client,
}

async fn forward(State(relay): State<Arc<Relay>>, uri: Uri, body: Bytes) -> Response {
    let sent = relay
        .client
        .post(format!("{}{}", relay.upstream, uri.path()))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let mut response = Response::builder().status(answer.status().as_u16());
    if let Some(kind) = answer.headers().get(header::CONTENT_TYPE) {
        response = response.header(header::CONTENT_TYPE, kind.as_bytes());
    }
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .expect("a status and a content type make a response")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let upstream = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: bench-relay UPSTREAM_URL"))?;
    let relay = Arc::new(Relay {
        upstream: upstream.trim_end_matches('/').to_string(),
        client: reqwest::Client::builder().tcp_nodelay(true).build()?,
    });
    let app = axum::Router::new()
        .fallback(axum::routing::post(forward))
        .with_state(relay);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}", listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}
