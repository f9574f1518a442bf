//! Public links to outputs: `/files/{asset_id}/{signature}`, the URLs Pixel, llmage, the SD
//! service and OpenAI clients put in `<img src>` or download without a key.
//!
//! Invariants: a link is valid only with the HMAC-SHA256 of its asset id under the host's link
//! key, which lives in the database (`settings`) so every API process signs alike; nothing
//! else about an asset is reachable without a key; a bad signature is a plain 404.

use aide::axum::{ApiRouter, routing::get_with};
use axum::{
    extract::{Path, Request, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{
    api::{
        AppState,
        assets::serve_asset,
        openapi::{Api, Describe},
    },
    store::Store,
};

/// Signs and checks public file links.
pub struct Links {
    key: Vec<u8>,
}

impl Links {
    /// Loads the host's link key, creating it on first start.
    pub async fn load(store: &Store) -> anyhow::Result<Self> {
        let fresh = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ('link_key', $1) ON CONFLICT (name) DO NOTHING",
        )
        .bind(fresh)
        .execute(&store.writer)
        .await?;
        let (key,): (String,) =
            sqlx::query_as("SELECT value FROM settings WHERE name = 'link_key'")
                .fetch_one(&store.writer)
                .await?;
        Ok(Self {
            key: key.into_bytes(),
        })
    }

    fn mac(&self, asset_id: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(asset_id.as_bytes());
        mac
    }

    /// The public URL of an asset, under `base` (`http://host:port`).
    pub fn url(&self, base: &str, asset_id: &str) -> String {
        let signature = hex::encode(self.mac(asset_id).finalize().into_bytes());
        format!("{base}/files/{asset_id}/{signature}")
    }

    fn verify(&self, asset_id: &str, signature: &str) -> bool {
        hex::decode(signature).is_ok_and(|bytes| self.mac(asset_id).verify_slice(&bytes).is_ok())
    }
}

/// Where links should point: `EASEL_PUBLIC_URL`, else the `Host` the client used.
pub fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.clone();
    }
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(axum::http::header::HOST))
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .map_or_else(|| state.config.addr.to_string(), str::to_string);
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

/// The route of public links.
pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().api_route(
        "/files/{asset_id}/{signature}",
        get_with(download, |op| {
            op.api(Api::Documents)
                .summary("A public, signed link to an output file")
        }),
    )
}

async fn download(
    State(state): State<AppState>,
    Path((asset_id, signature)): Path<(String, String)>,
    request: Request,
) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "Not found").into_response();
    if !state.links.verify(&asset_id, &signature) {
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
