//! Public links to outputs: `/files/{asset_id}/{signature}`, the URLs Pixel, llmage, the SD
//! service and OpenAI clients put in `<img src>` or download without a key.
//!
//! Invariants: a link is valid only with the HMAC-SHA256 of its asset id (and of its expiry,
//! when it has one) under the host's link key, which lives in the database (`settings`) so
//! every API process signs alike; with `EASEL_LINK_TTL_SECS` every link handed out carries
//! `?expires=<unix seconds>` and is refused after it, and a link without one (handed out
//! before the TTL was set) is refused; nothing else about an asset is
//! reachable without a key; a bad signature or a lapsed link is a 404.

use aide::axum::{ApiRouter, routing::get_with};
use axum::{
    extract::{Request, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{
    api::{
        AppState,
        assets::serve_asset,
        dialect::PathOf,
        jobs::Jobs,
        openapi::{Api, Describe},
    },
    store::Store,
};

/// Signs and checks public file links.
pub struct Links {
    key: Vec<u8>,
    ttl: Option<Duration>,
}

impl Links {
    /// Loads the host's link key, creating it on first start; links made expire `ttl` after
    /// they are made, when given.
    pub async fn load(store: &Store, ttl: Option<Duration>) -> anyhow::Result<Self> {
        let fresh = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut writer = store.writer().await?;
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ('link_key', $1) ON CONFLICT (name) DO NOTHING",
        )
        .bind(fresh)
        .execute(&mut *writer)
        .await?;
        let (key,): (String,) =
            sqlx::query_as("SELECT value FROM settings WHERE name = 'link_key'")
                .fetch_one(&mut *writer)
                .await?;
        Ok(Self {
            key: key.into_bytes(),
            ttl,
        })
    }

    fn mac(&self, asset_id: &str, expires: Option<u64>) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(asset_id.as_bytes());
        if let Some(expires) = expires {
            // An id never holds a newline, so no other (id, expiry) pair signs the same text.
            mac.update(format!("\nexpires={expires}").as_bytes());
        }
        mac
    }

    /// The public URL of an asset, under `base` (`http://host:port`).
    pub fn url(&self, base: &str, asset_id: &str) -> String {
        let expires = self.ttl.map(|ttl| unix_now() + ttl.as_secs());
        let signature = hex::encode(self.mac(asset_id, expires).finalize().into_bytes());
        match expires {
            Some(expires) => format!("{base}/files/{asset_id}/{signature}?expires={expires}"),
            None => format!("{base}/files/{asset_id}/{signature}"),
        }
    }

    fn verify(&self, asset_id: &str, signature: &str, expires: Option<u64>) -> bool {
        let signed = hex::decode(signature)
            .is_ok_and(|bytes| self.mac(asset_id, expires).verify_slice(&bytes).is_ok());
        // With a TTL, a link without an expiry (handed out before the TTL was set) is refused
        // too: it would never lapse.
        signed && expires.map_or(self.ttl.is_none(), |expires| unix_now() <= expires)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The `expires` of a link's query: `Ok(None)` without one, `Err` when it is malformed.
fn expiry(request: &Request) -> Result<Option<u64>, ()> {
    let Some(query) = request.uri().query() else {
        return Ok(None);
    };
    let mut found = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if name == "expires" {
            if found.is_some() {
                return Err(());
            }
            found = Some(value.parse::<u64>().map_err(|_| ())?);
        }
    }
    Ok(found)
}

/// The base of the links for task `task` when no request asks for them (a webhook's body):
/// the one its own request came in on, kept in its extra fields. A view answering a request
/// uses that request's [`public_base`], so a task read through another host or under a new
/// `EASEL_PUBLIC_URL` hands out links that work there.
pub fn submitted_base(task: &crate::engine::task::Task) -> String {
    serde_json::from_str::<serde_json::Value>(&task.extra)
        .ok()
        .and_then(|extra| Some(extra.get("base")?.as_str()?.to_string()))
        .unwrap_or_default()
}

/// Where links should point: `EASEL_PUBLIC_URL`, else the host the client used, as a trusted
/// proxy forwarded it (see [`proxies`](crate::api::proxies): `X-Forwarded-Host` and `-Proto`,
/// else the last element of RFC 7239's `Forwarded`, the one the proxy nearest easel wrote),
/// else its `Host`.
pub fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.clone();
    }
    let header = |name| headers.get(name).and_then(|h| h.to_str().ok());
    // A proxy that sets X-Forwarded-* may pass a client's own `Forwarded` on untouched, and
    // one that appends to `Forwarded` writes last: earlier elements may be the client's.
    let forwarded = match (header("x-forwarded-host"), header("x-forwarded-proto")) {
        (None, None) => header("forwarded").map(last_forwarded).unwrap_or_default(),
        (host, proto) => Forwarded { host, proto },
    };
    // A host and port only: `a@evil.example` or `evil.example/x?` would turn the links
    // handed out into another site's.
    let authority = |h: &&str| !h.contains('@') && h.parse::<axum::http::uri::Authority>().is_ok();
    let host = forwarded
        .host
        .filter(authority)
        .or_else(|| header(axum::http::header::HOST.as_str()).filter(authority))
        .map_or_else(|| state.config.addr.to_string(), str::to_string);
    let scheme = forwarded
        .proto
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// Where the client reached easel, as one proxy says it.
#[derive(Default)]
struct Forwarded<'a> {
    host: Option<&'a str>,
    proto: Option<&'a str>,
}

fn last_forwarded(value: &str) -> Forwarded<'_> {
    let mut found = Forwarded::default();
    let last = value.rsplit(',').next().unwrap_or_default();
    for pair in last.split(';') {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        match name.trim().to_ascii_lowercase().as_str() {
            "host" => found.host = Some(value),
            "proto" => found.proto = Some(value),
            _ => {}
        }
    }
    found
}

/// The route of public links.
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().api_route(
        "/files/{asset_id}/{signature}",
        get_with(download, |op| {
            op.api(Api::Documents)
                .open()
                .summary("A public, signed link to an output file")
        }),
    )
}

async fn download(
    State(state): State<AppState>,
    PathOf {
        params: (asset_id, signature),
        ..
    }: PathOf<(String, String), Jobs>,
    request: Request,
) -> Response {
    let not_found = || crate::api::error::Error::not_found("File").into_response();
    let Ok(expires) = expiry(&request) else {
        return not_found();
    };
    if !state.links.verify(&asset_id, &signature, expires) {
        return not_found();
    }
    match state.engine.assets().get_linked(&asset_id).await {
        Ok(Some(asset)) => serve_asset(&state, &asset, request, false)
            .await
            .unwrap_or_else(|e| e.into_response()),
        Ok(None) => not_found(),
        Err(error) => crate::api::error::Error::from(error).into_response(),
    }
}
