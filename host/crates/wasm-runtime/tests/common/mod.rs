//! Shared test helpers: the guest builder, a map-backed provider sink, a local upstream.
#![allow(dead_code)]

pub mod guest;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use easel_provider::{CallContext, GenerationRequest, Output, Provider, ProviderError, Submission};
use easel_wasm::{ProviderSink, WasmConfig};

/// A registry stand-in: id → provider, swapped atomically under a lock.
#[derive(Default)]
pub struct MapSink(pub RwLock<HashMap<String, Arc<dyn Provider>>>);

impl ProviderSink for MapSink {
    fn upsert(&self, p: Arc<dyn Provider>) {
        self.0.write().unwrap().insert(p.id().to_string(), p);
    }
    fn remove(&self, id: &str) {
        self.0.write().unwrap().remove(id);
    }
}

impl MapSink {
    pub fn get(&self, id: &str) -> Option<Arc<dyn Provider>> {
        self.0.read().unwrap().get(id).cloned()
    }
}

pub fn config() -> WasmConfig {
    WasmConfig {
        allow_private_targets: true,
        cpu_deadline: Duration::from_millis(500),
        memory_limit_bytes: 32 << 20,
        max_instances: 64,
        request_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        max_response_bytes: 1 << 20,
        secrets_from_env: false,
        secrets: [
            ("TEST_SECRET".to_string(), "s3cret".to_string()),
            ("OTHER".to_string(), "nope".to_string()),
        ]
        .into_iter()
        .collect(),
        secret_grants: [("testguest".to_string(), vec!["TEST_SECRET".to_string()])]
            .into_iter()
            .collect(),
        ..WasmConfig::default()
    }
}

pub fn request(prompt: &str) -> GenerationRequest {
    GenerationRequest {
        capability: "image.generate".into(),
        model: "echo".into(),
        prompt: prompt.into(),
        params: Default::default(),
        inputs: vec![],
    }
}

pub async fn submit_text(p: &dyn Provider, prompt: &str) -> Result<String, ProviderError> {
    match p
        .submit(&request(prompt), &CallContext::detached("t"))
        .await?
    {
        Submission::Finished { outputs, .. } => match outputs.into_iter().next() {
            Some(Output::Text(t)) => Ok(t),
            other => panic!("unexpected output {other:?}"),
        },
        other => panic!("unexpected submission {other:?}"),
    }
}

/// A local upstream: `/ok` (2 bytes), `/slow` (answers after 5 s), `/big` (2 MiB),
/// `/trickle` (6 bytes, one every 300 ms), `/stall` (a byte, then another 1.6 s later).
pub async fn upstream() -> SocketAddr {
    use axum::{Router, body::Body, routing::get};
    use futures::StreamExt;
    /// A body of one byte after each of `gaps`.
    fn paced(gaps: Vec<u64>) -> Body {
        Body::from_stream(futures::stream::iter(gaps).then(|ms| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, std::convert::Infallible>(vec![b'x'])
        }))
    }
    let app = Router::new()
        .route("/trickle", get(|| async { paced(vec![300; 6]) }))
        .route("/stall", get(|| async { paced(vec![0, 1600]) }))
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route("/big", get(|| async { vec![b'x'; 2 << 20] }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// `component` with a custom section appended: the same code under new bytes, as a redeploy
/// of an unchanged build looks to the host.
pub fn with_custom_section(component: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    use wasm_encoder::Section;
    let mut out = component.to_vec();
    wasm_encoder::CustomSection {
        name: name.into(),
        data: payload.into(),
    }
    .append_to(&mut out);
    out
}

/// The target folder holding the wasip2 builds of `plugins/` (scripts/test builds them before
/// the tests run).
fn plugins_target() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .find(|dir| dir.join("wasm32-wasip2").is_dir())
        .expect("no wasm32-wasip2 folder above the test binary: build plugins/ first")
        .to_path_buf()
}

/// A plugin shipped in `plugins/`, from its wasip2 build.
pub fn shipped_plugin(crate_name: &str) -> std::path::PathBuf {
    let file = plugins_target()
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(
        file.exists(),
        "{} is missing: cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml",
        file.display()
    );
    file
}

/// A compile cache for the shipped plugins, kept in the target folder: each build is compiled
/// once, not once per test run (compiling all of them takes seconds of every core).
pub fn shipped_plugins_cache() -> std::path::PathBuf {
    plugins_target().join("easel-wasm-shipped-cache")
}
