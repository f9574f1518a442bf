//! Job API benchmark: durable submissions per second with p50/p99 latency, then job reads per
//! second, against the real `easel` binary with its workers running, on SQLite and (when
//! `EASEL_TEST_POSTGRES` is set, as `scripts/bench` does) PostgreSQL; with `api_hosts` above
//! one, PostgreSQL again with that many hosts on the one database, requests spread over them
//! in turn.
//!
//! `cargo run --release -p easel-tests --bin bench-jobs -- [seconds] [concurrency] [api_hosts]`

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use easel_tests::{Backend, Host, Options};
use serde_json::json;

struct Phase {
    count: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted
            .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or_default()
    }
}

/// Runs `call` from `concurrency` loops for `seconds`; every call must succeed.
async fn drive<F, Fut>(seconds: u64, concurrency: usize, call: F) -> (Phase, Vec<String>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = String> + Send,
{
    let call = Arc::new(call);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let loops: Vec<_> = (0..concurrency)
        .map(|n| {
            let (call, stop) = (call.clone(), stop.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut ids = Vec::new();
                let mut i = n;
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    ids.push(call(i).await);
                    latencies.push(began.elapsed());
                    i += concurrency;
                }
                (latencies, ids)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut ids = Vec::new();
    for handle in loops {
        let (l, i) = handle.await.expect("bench loop");
        latencies.extend(l);
        ids.extend(i);
    }
    (
        Phase {
            count: latencies.len(),
            elapsed: start.elapsed(),
            latencies,
        },
        ids,
    )
}

async fn bench(backend: Backend, seconds: u64, concurrency: usize, api_hosts: usize) {
    let mut hosts = vec![Host::start(Options::new(backend)).await];
    while hosts.len() < api_hosts {
        let database = hosts[0]
            .database_url()
            .expect("several hosts share a PostgreSQL database")
            .to_string();
        hosts.push(Host::start(Options::new(backend).env("DATABASE_URL", &database)).await);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let bases: Arc<Vec<String>> = Arc::new(hosts.iter().map(|h| h.url("/api/v1/jobs")).collect());
    let submit_client = client.clone();
    let submit_bases = bases.clone();
    let (submits, ids) = drive(seconds, concurrency, move |i| {
        let (client, url) = (submit_client.clone(), submit_bases[i % submit_bases.len()].clone());
        async move {
            let body = json!({"capability": "image.generate", "prompt": format!("bench {i}"), "width": 16, "height": 16});
            let response = client.post(&url).bearer_auth("key-a").json(&body).send().await.expect("submit");
            assert_eq!(response.status(), 202);
            let created: serde_json::Value = response.json().await.expect("submit body");
            created["job"]["id"].as_str().unwrap().to_string()
        }
    })
    .await;
    let ids = Arc::new(ids);
    let read_ids = ids.clone();
    let (reads, _) = drive(seconds, concurrency, move |i| {
        let (client, url) = (
            client.clone(),
            format!(
                "{}/{}",
                bases[i % bases.len()],
                read_ids[i % read_ids.len()]
            ),
        );
        async move {
            let response = client
                .get(&url)
                .bearer_auth("key-a")
                .send()
                .await
                .expect("read");
            assert_eq!(response.status(), 200);
            response.bytes().await.expect("read body");
            String::new()
        }
    })
    .await;
    let name = match (backend, api_hosts) {
        (Backend::Sqlite, _) => "SQLite".to_string(),
        (Backend::Postgres, 1) => "PostgreSQL".to_string(),
        (Backend::Postgres, n) => format!("PostgreSQL, {n} hosts"),
    };
    println!(
        "{name:<10} | submit {:>7.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms | read {:>7.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms | {} jobs, {concurrency} concurrent, {seconds} s each",
        submits.rate(),
        submits.percentile(0.5).as_secs_f64() * 1000.0,
        submits.percentile(0.99).as_secs_f64() * 1000.0,
        reads.rate(),
        reads.percentile(0.5).as_secs_f64() * 1000.0,
        reads.percentile(0.99).as_secs_f64() * 1000.0,
        ids.len(),
    );
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let concurrency = args.next().and_then(|s| s.parse().ok()).unwrap_or(16);
    let api_hosts: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    bench(Backend::Sqlite, seconds, concurrency, 1).await;
    if std::env::var_os("EASEL_TEST_POSTGRES").is_some() {
        bench(Backend::Postgres, seconds, concurrency, 1).await;
        if api_hosts > 1 {
            bench(Backend::Postgres, seconds, concurrency, api_hosts).await;
        }
    } else {
        println!("PostgreSQL | skipped: set EASEL_TEST_POSTGRES (scripts/bench starts a server)");
    }
}
