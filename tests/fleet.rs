//! The reference deployment (`deploy/`, the README's "Running as a fleet") run as a fleet of
//! separate processes on one PostgreSQL database and one real S3 server (s3s-fs): two API
//! hosts (`easel serve` with `workers = 0`), a vendor worker serving the DashScope and Kling
//! plugins against their fakes, and a "GPU" worker on the tiny diffusion model. Every role is
//! started from its unit and environment file in `deploy/` (tests/support/deploy.rs), with only
//! the site's addresses, secrets and paths replaced.
//!
//! - Jobs through all four APIs on both API hosts complete, and each output downloads
//!   through either host.
//! - No process claims a task it cannot run: every task's worker id is looked up in the
//!   workers table and its provider found among that worker's.
//! - Faults: the GPU worker killed (`kill -9`) mid-generation, and its task finished by the
//!   worker started again; an API host killed mid-upload (while receiving, and while sending
//!   a received file to the store), and nothing accepted lost; the S3 server stopped for ten
//!   seconds, and what needs it waits, then service resumes without a restart. After each,
//!   every asset row points at a whole object (size and SHA-256), every object has its row,
//!   and each task's assets are exactly its outputs (none stored twice).
//!
//! Capacity across hosts (`max_in_flight` counted by a slow fake) is `capacity.rs`'s.

mod fakes;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use easel_tests::{
    ADMIN_KEY, Backend, Host, KEYS, Options, Worker,
    deploy::{self, Role},
    noise,
    s3::{ACCESS_KEY, S3Server, SECRET_KEY},
    send,
};
use fakes::{Fake, dashscope, easel::plugin_options, kling};
use futures::StreamExt;
use reqwest::{
    Method,
    multipart::{Form, Part},
};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};

/// What the test changes in every role's `easel.toml`: the store's address, and leases and
/// polls short enough for a test.
fn test_toml(s3: &S3Server) -> String {
    format!(
        "[engine]\nlease_secs = 1.5\nmax_poll_interval_secs = 0.5\n[assets]\nendpoint = \"{}\"",
        s3.endpoint
    )
}

/// A worker role as the test runs it: its unit's command, its environment file with the
/// site's values, and its own data folder.
struct WorkerSite {
    role: Role,
    env: Vec<(String, String)>,
    _data_dir: tempfile::TempDir,
}

impl WorkerSite {
    /// `deploy/easel-<name>.service` with `site` replacing the file's values, its
    /// `easel.toml` being `deploy/worker.toml` with `toml` merged in.
    fn new(name: &str, database: &str, toml: &str, site: &[(&str, Option<&str>)]) -> Self {
        let role = deploy::role(name);
        assert_eq!(role.args[0], "worker", "{name}: {:?}", role.args);
        let data_dir = tempfile::tempdir().unwrap();
        let config = data_dir.path().join("easel.toml");
        std::fs::write(
            &config,
            easel_tests::merge_toml(deploy::config("worker"), toml).to_string(),
        )
        .unwrap();
        let mut replaced: Vec<(&str, Option<&str>)> = vec![
            ("EASEL_CONFIG", Some(config.to_str().unwrap())),
            ("EASEL_DATA_DIR", Some(data_dir.path().to_str().unwrap())),
            ("DATABASE_URL", Some(database)),
            ("AWS_ACCESS_KEY_ID", Some(ACCESS_KEY)),
            ("AWS_SECRET_ACCESS_KEY", Some(SECRET_KEY)),
            // Each worker's metrics on a free loopback port of its own.
            ("EASEL_METRICS_ADDR", Some("127.0.0.1:0")),
            ("EASEL_ADMIN_KEY", Some(ADMIN_KEY)),
        ];
        replaced.extend_from_slice(site);
        let env = role.env(&replaced);
        Self {
            role,
            env,
            _data_dir: data_dir,
        }
    }

    /// Starts the role's command with that environment and nothing else but `extra`, which
    /// only a test needs.
    fn spawn(&self, extra: &[(&str, &str)]) -> Worker {
        let child = easel_tests::easel_command()
            .args(&self.role.args)
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .envs(extra.iter().copied())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("starting easel worker");
        Worker(child)
    }
}

async fn api_host(s3: &S3Server, database: &str) -> Host {
    let role = deploy::role("api");
    assert_eq!(role.args, ["serve"]);
    let env = role.env(&[
        // The harness listens on a free loopback port and gives each host its data folder.
        ("EASEL_ADDR", None),
        ("EASEL_CONFIG", None),
        ("EASEL_DATA_DIR", None),
        ("DATABASE_URL", Some(database)),
        ("EASEL_API_KEYS", Some(KEYS)),
        ("EASEL_ADMIN_KEY", Some(ADMIN_KEY)),
        ("AWS_ACCESS_KEY_ID", Some(ACCESS_KEY)),
        ("AWS_SECRET_ACCESS_KEY", Some(SECRET_KEY)),
    ]);
    let config = easel_tests::merge_toml(deploy::config("api"), &test_toml(s3));
    let mut options = Options::new(Backend::Postgres)
        .toml(&config.to_string())
        .env("EASEL_OFFLINE_PROVIDER", "0");
    for (name, value) in &env {
        options = options.env(name, value);
    }
    Host::start(options).await
}

/// Waits until `host` lists every model in `models`.
async fn lists(host: &Host, models: &[&str]) {
    let start = Instant::now();
    loop {
        let (status, catalog) = send(host.as_admin(Method::GET, "/admin/models")).await;
        assert_eq!(status, 200, "{catalog}");
        let listed: Vec<&str> = catalog["models"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        if models.iter().all(|m| listed.contains(m)) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} never listed {models:?}: {listed:?}",
            host.base
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every worker row seen so far: id → providers served. Rows of dead workers lapse, so the
/// test records them while they live.
async fn record_workers(db: &PgPool, seen: &mut HashMap<String, Vec<String>>) {
    for row in sqlx::query("SELECT id, providers FROM workers")
        .fetch_all(db)
        .await
        .unwrap()
    {
        let providers: Vec<String> =
            serde_json::from_str(row.get::<String, _>("providers").as_str()).unwrap();
        seen.insert(row.get("id"), providers);
    }
}

/// Waits until a worker serving exactly `providers` has a row; records every row.
async fn joined(db: &PgPool, providers: &[&str], seen: &mut HashMap<String, Vec<String>>) {
    let start = Instant::now();
    loop {
        record_workers(db, seen).await;
        if seen.values().any(|served| served == providers) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no worker serving {providers:?} joined: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The worker the task was last claimed by.
async fn claimed_by(db: &PgPool, task: &str) -> String {
    sqlx::query_scalar::<_, Option<String>>("SELECT worker_id FROM tasks WHERE id = $1")
        .bind(task)
        .fetch_one(db)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("task {task} was never claimed"))
}

/// Submits through one of the four APIs on `host`; returns the task id.
async fn submit(host: &Host, api: &str, prompt: &str) -> String {
    // Each API's path, body, accepted status and where its answer puts the task id.
    let (path, body, accepted, id_at) = match api {
        "001" => (
            "/api/v1/jobs",
            json!({"capability": "image.generate", "model": "kling/kling-v2-1",
                   "prompt": prompt, "aspectRatio": "16:9"}),
            202,
            "/job/id",
        ),
        "000" => (
            "/api/v1/generations/image",
            json!({"model": "dashscope/wan2.2-t2i-flash", "prompt": prompt, "n": 1}),
            200,
            "/data/task_id",
        ),
        "002" => (
            "/llmage/v1/image/generations",
            json!({"model": "wan2.2-t2i-flash", "catelogid": "t2i", "prompt": prompt}),
            200,
            "/taskid",
        ),
        "003" => (
            "/api/v1/generate",
            json!({"prompt": prompt, "width": 64, "height": 64,
                   "num_inference_steps": 2, "seed": 7}),
            200,
            "/task_id",
        ),
        other => unreachable!("{other}"),
    };
    // Seed 003 names its key in `X-API-Key`; the others take a bearer token.
    let request = match api {
        "003" => host.http.post(host.url(path)).header("X-API-Key", "key-a"),
        _ => host.as_key(Method::POST, path, "key-a"),
    };
    let (status, created) = send(request.json(&body)).await;
    assert_eq!(status, accepted, "{api}: {created}");
    created
        .pointer(id_at)
        .and_then(|id| id.as_str())
        .unwrap_or_else(|| panic!("{api}: no task id at {id_at}: {created}"))
        .to_string()
}

/// The model each API's jobs run on.
fn model_of(api: &str) -> &'static str {
    match api {
        "001" => "kling/kling-v2-1",
        "000" | "002" => "dashscope/wan2.2-t2i-flash",
        _ => "local/tiny-sd",
    }
}

/// Waits for a job to succeed on `model`; its output asset ids.
async fn outputs(host: &Host, id: &str, model: &str) -> Vec<String> {
    let job = host.wait_terminal(id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["model"], model, "{job}");
    let ids: Vec<String> = job["outputAssetIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert!(!ids.is_empty(), "{job}");
    ids
}

async fn download(host: &Host, asset: &str) -> Vec<u8> {
    let path = format!("/api/v1/assets/{asset}/download");
    let response = host
        .as_key(Method::GET, &path, "key-a")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{} {path}", host.base);
    response.bytes().await.unwrap().to_vec()
}

/// The same bytes through both API hosts.
async fn downloads_from_both(hosts: &[Host; 2], asset: &str) -> Vec<u8> {
    let first = download(&hosts[0], asset).await;
    let second = download(&hosts[1], asset).await;
    assert_eq!(first, second, "{asset} differs between the hosts");
    assert!(!first.is_empty(), "{asset} is empty");
    first
}

/// Every stored asset row names a whole object (its recorded size and SHA-256), every object
/// under the prefix has its row, and every task output was stored once: a task's assets are
/// exactly its outputs (a poll run twice would store its outputs twice).
async fn bucket_matches_rows(db: &PgPool, s3: &S3Server, bucket: &str, prefix: &str) -> usize {
    // Listed before the rows are read: an object is written before its row, so an upload
    // ending between the two reads cannot pass for an orphan.
    let mut keys = s3.keys(bucket);
    let rows = sqlx::query("SELECT id, size, sha256 FROM assets WHERE sha256 IS NOT NULL")
        .fetch_all(db)
        .await
        .unwrap();
    let strays: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.id, a.task_id FROM assets a JOIN tasks t ON t.id = a.task_id \
         WHERE t.outputs NOT LIKE '%\"' || a.id || '\"%'",
    )
    .fetch_all(db)
    .await
    .unwrap();
    assert!(strays.is_empty(), "assets no task output names: {strays:?}");
    for row in &rows {
        let id: String = row.get("id");
        let key = format!("{prefix}/{id}");
        let bytes = std::fs::read(s3.object_file(bucket, &key))
            .unwrap_or_else(|error| panic!("row {id} has no object {key}: {error}"));
        assert_eq!(
            bytes.len() as i64,
            row.get::<i64, _>("size"),
            "{key} is not whole"
        );
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            row.get::<String, _>("sha256"),
            "{key} is not the recorded bytes"
        );
        keys.retain(|listed| *listed != key);
    }
    assert!(keys.is_empty(), "objects without a row: {keys:?}");
    rows.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_deployment_runs_as_a_fleet_and_survives_its_faults() {
    let started = Instant::now();
    // The deployment's roles agree on where assets live and on capacity.
    let (api_config, worker_config) = (deploy::config("api"), deploy::config("worker"));
    for shared in ["assets", "capacity"] {
        assert_eq!(
            api_config[shared], worker_config[shared],
            "deploy/api.toml and deploy/worker.toml disagree on [{shared}]"
        );
    }
    assert_eq!(api_config["engine"]["workers"].as_integer(), Some(0));
    let bucket = api_config["assets"]["bucket"].as_str().unwrap().to_string();
    let prefix = api_config["assets"]["key_prefix"]
        .as_str()
        .unwrap()
        .to_string();

    let mut s3 = S3Server::start(&bucket).await;
    let database = easel_tests::fresh_postgres_database().await;
    let db = PgPool::connect(&database).await.unwrap();
    let mut hosts = [
        api_host(&s3, &database).await,
        api_host(&s3, &database).await,
    ];

    let (dashscope_fake, kling_fake) = (
        Fake::start(dashscope::routes).await,
        Fake::start(kling::routes).await,
    );
    let (plugin_site, _plugins) = plugin_options(
        Backend::Postgres,
        &["dashscope", "kling"],
        &[
            (dashscope::HOST, &dashscope_fake),
            (kling::HOST, &kling_fake),
            (kling::HOST_CN, &kling_fake),
        ],
        &[],
        "",
    );
    let plugins_dir = plugin_site
        .env
        .iter()
        .find(|(name, _)| name == "EASEL_PLUGINS_DIR")
        .map(|(_, dir)| dir.clone())
        .unwrap();
    let vendor = WorkerSite::new(
        "vendor-worker",
        &database,
        // The fakes stand in for the vendors' hosts.
        &format!("{}\n{}", test_toml(&s3), plugin_site.toml),
        &[
            ("EASEL_PLUGINS_DIR", Some(&plugins_dir)),
            ("DASHSCOPE_API_KEY", Some(dashscope::KEY)),
            ("KLING_ACCESS_KEY", Some(kling::ACCESS_KEY)),
            ("KLING_SECRET_KEY", Some(kling::SECRET_KEY)),
        ],
    );
    let tiny_model: PathBuf =
        easel_tests::checkout().join("host/crates/diffusion/tests/fixtures/tiny-sd");
    let gpu = WorkerSite::new(
        "gpu-worker",
        &database,
        &test_toml(&s3),
        &[("EASEL_SD_MODEL", Some(tiny_model.to_str().unwrap()))],
    );
    // This machine has no GPU: the CPU device, as the other diffusion tests use.
    let gpu_extra = [("EASEL_SD_DEVICE", "flex")];
    let mut workers: HashMap<String, Vec<String>> = HashMap::new();
    // The fakes stand in for the vendors on loopback, which easel reaches only in tests.
    let _vendor_worker = vendor.spawn(&[("EASEL_ALLOW_PRIVATE_TARGETS", "1")]);
    let mut gpu_worker = gpu.spawn(&gpu_extra);
    joined(&db, &["dashscope", "kling"], &mut workers).await;
    joined(&db, &["local"], &mut workers).await;
    let models = [
        "local/tiny-sd",
        "dashscope/wan2.2-t2i-flash",
        "kling/kling-v2-1",
    ];
    for host in &hosts {
        lists(host, &models).await;
    }
    eprintln!("fleet up after {:?}", started.elapsed());

    // All four APIs on both API hosts; each output through either host.
    let mut submitted = Vec::new();
    for (n, host) in hosts.iter().enumerate() {
        for api in ["001", "000", "002", "003"] {
            let id = submit(host, api, &format!("{api} on host {n}")).await;
            submitted.push((n, api, id));
        }
    }
    for (n, api, id) in &submitted {
        for asset in outputs(&hosts[*n], id, model_of(api)).await {
            let bytes = downloads_from_both(&hosts, &asset).await;
            if model_of(api) == "local/tiny-sd" {
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{api}: {asset}");
            } else {
                assert_eq!(
                    bytes,
                    fakes::PNG_1X1,
                    "{api}: {asset} is not the vendor's file"
                );
            }
        }
    }
    eprintln!("four APIs on two hosts after {:?}", started.elapsed());

    // kill -9 of the GPU worker mid-generation: the task is recovered by the existing rules
    // and finished by the worker started again (or failed, credits back).
    let (status, created) = hosts[1]
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "model": "local/tiny-sd", "prompt": "held",
                    "width": 256, "height": 256, "num_inference_steps": 40}),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let held = created["job"]["id"].as_str().unwrap().to_string();
    let taken = hosts[1]
        .wait_job(&held, Duration::from_secs(30), |job| {
            job["status"] != "queued"
        })
        .await;
    assert_eq!(taken["status"], "running", "killed mid-generation: {taken}");
    let killed = claimed_by(&db, &held).await;
    gpu_worker.kill9();
    let (_, meanwhile) = hosts[0].get(&format!("/api/v1/jobs/{held}")).await;
    assert!(
        matches!(
            meanwhile["job"]["status"].as_str(),
            Some("running" | "queued")
        ),
        "{meanwhile}"
    );
    gpu_worker = gpu.spawn(&gpu_extra);
    let recovered = hosts[0].wait_terminal(&held).await;
    match recovered["status"].as_str() {
        Some("succeeded") => {
            assert_ne!(
                claimed_by(&db, &held).await,
                killed,
                "the task finished before its worker was killed: {recovered}"
            );
            let asset = recovered["outputAssetIds"][0].as_str().unwrap();
            downloads_from_both(&hosts, asset).await;
        }
        // The existing rule for a submit that may not be repeated: failed, never charged.
        Some("failed") => assert!(recovered.get("usage").is_none(), "{recovered}"),
        _ => panic!("the interrupted task neither finished nor failed: {recovered}"),
    }
    record_workers(&db, &mut workers).await;
    eprintln!(
        "GPU worker killed and back, task {} after {:?}",
        recovered["status"],
        started.elapsed()
    );

    // kill -9 of an API host mid-upload: what it accepted before stays whole, the upload in
    // flight leaves no row and no object.
    let whole = noise(20 * 1024 * 1024 + 11, 3);
    let (status, accepted) = hosts[1].upload("accepted.bin", whole.clone()).await;
    assert_eq!(status, 201, "{accepted}");
    let accepted_id = accepted["assets"][0]["id"].as_str().unwrap().to_string();
    let sent = Arc::new(AtomicUsize::new(0));
    let in_flight = {
        let sent = sent.clone();
        let chunks = futures::stream::iter(0..64).then(move |n| {
            let sent = sent.clone();
            async move {
                if n > 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                sent.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(noise(1024 * 1024, n))
            }
        });
        let part = Part::stream(reqwest::Body::wrap_stream(chunks)).file_name("cut.bin");
        let request = hosts[1]
            .as_key(Method::POST, "/api/v1/assets", "key-a")
            .multipart(Form::new().part("files", part));
        tokio::spawn(async move { request.send().await.map(|r| r.status()) })
    };
    while sent.load(Ordering::SeqCst) < 8 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hosts[1].kill9_and_restart().await;
    let cut = in_flight.await.unwrap();
    assert!(
        cut.as_ref().map_or(true, |status| !status.is_success()),
        "the cut upload was accepted: {cut:?}"
    );
    assert_eq!(downloads_from_both(&hosts, &accepted_id).await, whole);

    // Killed again with a file received whole and on its way to the store (held there by the
    // store being down).
    s3.stop();
    let unstored = noise(12 * 1024 * 1024, 5);
    let storing = {
        let request = hosts[1]
            .as_key(Method::POST, "/api/v1/assets", "key-a")
            .multipart(Form::new().part(
                "files",
                Part::bytes(unstored.clone()).file_name("unstored.bin"),
            ));
        tokio::spawn(async move { request.send().await.map(|r| r.status()) })
    };
    let receiving = hosts[1].data_dir().join("assets");
    let received = Instant::now();
    while !std::fs::read_dir(&receiving).is_ok_and(|files| {
        files.flatten().any(|file| {
            file.metadata()
                .is_ok_and(|m| m.len() >= unstored.len() as u64)
        })
    }) {
        assert!(
            received.elapsed() < Duration::from_secs(20),
            "the upload was never received"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    hosts[1].kill9_and_restart().await;
    s3.resume().await;
    let cut = storing.await.unwrap();
    assert!(
        cut.as_ref().map_or(true, |status| !status.is_success()),
        "the upload cut on its way to the store was accepted: {cut:?}"
    );
    let (_, listed) = hosts[0].get("/api/v1/assets").await;
    for name in ["cut.bin", "unstored.bin"] {
        assert!(
            !listed.to_string().contains(name),
            "a row for the cut upload {name}: {listed}"
        );
    }
    let stored = bucket_matches_rows(&db, &s3, &bucket, &prefix).await;
    eprintln!(
        "API host killed mid-upload; {stored} rows match the bucket after {:?}",
        started.elapsed()
    );

    // The S3 server down for ten seconds: submissions still go in, what needs the store
    // waits for it, and nothing is half-written; service resumes without restarting easel.
    s3.stop();
    let job_during = submit(&hosts[0], "000", "while the store is down").await;
    let upload_during = {
        let request = hosts[1]
            .as_key(Method::POST, "/api/v1/assets", "key-a")
            .multipart(Form::new().part(
                "files",
                Part::bytes(noise(3 * 1024 * 1024, 9)).file_name("during.bin"),
            ));
        tokio::spawn(send(request))
    };
    let download_during = {
        let request = hosts[0].as_key(
            Method::GET,
            &format!("/api/v1/assets/{accepted_id}/download"),
            "key-a",
        );
        tokio::spawn(async move {
            let response = request.send().await.unwrap();
            (response.status(), response.bytes().await.unwrap().to_vec())
        })
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    s3.resume().await;
    let (status, during) = upload_during.await.unwrap();
    assert_eq!(status, 201, "the upload waited for the store: {during}");
    let during_id = during["assets"][0]["id"].as_str().unwrap();
    assert_eq!(
        downloads_from_both(&hosts, during_id).await,
        noise(3 * 1024 * 1024, 9)
    );
    let (status, bytes) = download_during.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(bytes, whole, "the download waited for the store");
    for asset in outputs(&hosts[0], &job_during, model_of("000")).await {
        assert_eq!(downloads_from_both(&hosts, &asset).await, fakes::PNG_1X1);
    }
    // Service resumed: every API again, on both hosts.
    for (n, host) in hosts.iter().enumerate() {
        for api in ["001", "003"] {
            let id = submit(host, api, &format!("{api} after the outage on {n}")).await;
            for asset in outputs(host, &id, model_of(api)).await {
                downloads_from_both(&hosts, &asset).await;
            }
        }
    }
    let stored = bucket_matches_rows(&db, &s3, &bucket, &prefix).await;
    eprintln!(
        "store outage ridden out; {stored} rows match the bucket after {:?}",
        started.elapsed()
    );

    // No process ever claimed a task it cannot run: each task's worker is looked up in the
    // workers seen, and the task's provider found among that worker's.
    record_workers(&db, &mut workers).await;
    let mut claims: HashMap<String, usize> = HashMap::new();
    for row in sqlx::query("SELECT id, provider, worker_id FROM tasks")
        .fetch_all(&db)
        .await
        .unwrap()
    {
        let (id, provider): (String, String) = (row.get("id"), row.get("provider"));
        let worker: Option<String> = row.get("worker_id");
        let worker = worker.unwrap_or_else(|| panic!("task {id} ({provider}) was never claimed"));
        let served = workers.get(&worker).unwrap_or_else(|| {
            panic!("task {id} was claimed by {worker}, not a worker: {workers:?}")
        });
        assert!(
            served.contains(&provider),
            "task {id} of {provider} was claimed by {worker}, which serves {served:?}"
        );
        *claims.entry(provider).or_default() += 1;
    }
    eprintln!(
        "claims by provider: {claims:?}; {:?} in all",
        started.elapsed()
    );
    // Two hosts × four APIs, the interrupted one, one during the outage, four after it.
    assert_eq!(claims.values().sum::<usize>(), 8 + 1 + 1 + 4, "{claims:?}");
    drop(gpu_worker);
}
