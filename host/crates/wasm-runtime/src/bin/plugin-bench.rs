//! `cargo run --release -p easel-wasm --bin plugin-bench`: per-call overhead of the plugin
//! runtime (fresh store + instantiate + one trivial `submit`) with and without the pooling
//! allocator, and how many plugin calls it holds at once.
//!
//! Invariants: builds its own guest (the crate's test guest) so it runs offline; prints
//! figures only, asserts nothing.

#[path = "../../tests/common/guest.rs"]
mod guest;

use std::sync::Arc;
use std::time::{Duration, Instant};

use easel_provider::{CallContext, GenerationRequest, Provider};
use easel_wasm::{Runtime, WasmConfig};

fn request(prompt: &str) -> GenerationRequest {
    GenerationRequest {
        capability: "image.generate".into(),
        model: "echo".into(),
        prompt: prompt.into(),
        params: Default::default(),
        inputs: vec![],
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn overhead(bytes: &[u8], pooling: bool, n: usize) -> (Duration, Duration) {
    let rt = Runtime::new(WasmConfig {
        pooling,
        secrets_from_env: false,
        ..WasmConfig::default()
    })
    .unwrap();
    let p = rt.load_bytes(bytes.to_vec()).await.unwrap();
    let req = request("echo:x");
    let ctx = CallContext::detached("bench");
    for _ in 0..n / 10 {
        p.submit(&req, &ctx).await.unwrap();
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        p.submit(&req, &ctx).await.unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

async fn held_at_once(bytes: &[u8], calls: u32) -> (usize, Duration) {
    let rt = Runtime::new(WasmConfig {
        max_instances: calls,
        secrets_from_env: false,
        ..WasmConfig::default()
    })
    .unwrap();
    let p: Arc<dyn Provider> = Arc::new(rt.load_bytes(bytes.to_vec()).await.unwrap());
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..calls {
        let p = p.clone();
        set.spawn(async move {
            p.submit(&request("sleep:1000"), &CallContext::detached("held"))
                .await
                .unwrap();
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    (rt.peak_concurrent_calls(), start.elapsed())
}

fn main() {
    let bytes = guest::guest_component("1.0.0");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let n = 20_000;
        let (pm, pp) = overhead(&bytes, true, n).await;
        let (om, op) = overhead(&bytes, false, n).await;
        println!("per-call overhead (fresh store + instantiate + trivial submit), {n} calls:");
        println!("  pooling allocator:    median {pm:?}, p99 {pp:?}");
        println!("  on-demand allocator:  median {om:?}, p99 {op:?}");
        let calls = 2000;
        let (peak, took) = held_at_once(&bytes, calls).await;
        println!("concurrency: {calls} calls each sleeping 1 s inside the guest: {peak} held at once, all done in {took:?}");
    });
}
