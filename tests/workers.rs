//! The fleet (issue 17, items 2, 4 and 5), with separate processes on one database: an API
//! host that loads no model (`serve`, `workers = 0`), a "GPU" worker (`easel worker
//! --providers local` on the tiny fixture model) and a vendor worker (`--providers offline`).
//!
//! - The API host lists, validates and accepts what the workers announce: 000, 001 and 002
//!   check `local/tiny-sd`'s parameters against its announced schema, and 001 and 003 (whose
//!   `/api/v1/generate` goes to the fleet's `local` model) run jobs there.
//! - Each worker claims only its own providers' tasks: counted per worker from the worker id
//!   every task records, against the fleet `GET /admin/workers` lists; the vendor worker
//!   counts them on its own metrics address (`EASEL_METRICS_ADDR`) too.
//! - A vendor worker killed mid-submit: its task is re-queued by the other worker's sweeper
//!   (from what the provider announced) and finished by a new vendor worker.
//! - With no live worker for `offline`, its model is still accepted for the grace period; the
//!   task stays queued, says `waiting for a worker that serves offline`, and expires by the
//!   queue timeout; after the grace period the model is refused.
//! - Idle, a host and a worker on PostgreSQL stay quiet: only a task that becomes queued, or
//!   one that ends, wakes the workers, never a claim (which once woke them all again, in a
//!   loop).

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use easel_tests::{ADMIN_KEY, Backend, Host, Options, Worker, on_both_backends, send};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection;

fn tiny_model() -> PathBuf {
    easel_tests::checkout().join("host/crates/diffusion/tests/fixtures/tiny-sd")
}

fn gpu_worker(host: &Host) -> Worker {
    let model = tiny_model();
    host.spawn_worker_with(
        &["--providers", "local"],
        &[
            ("EASEL_SD_MODEL", model.to_str().unwrap()),
            ("EASEL_SD_DEVICE", "flex"),
        ],
    )
}

fn vendor_worker(host: &Host) -> Worker {
    host.spawn_worker_with(
        &["--providers", "offline"],
        &[("EASEL_OFFLINE_PROVIDER", "1")],
    )
}

/// A vendor worker that serves its metrics on a port of its own; with that address. Its
/// plugins folder holds the demo plugin, which `--providers` leaves out.
fn scraped_vendor_worker(host: &Host) -> (Worker, String) {
    let plugins = tempfile::tempdir().unwrap().keep();
    std::fs::copy(easel_tests::built_plugin("demo"), plugins.join("demo.wasm")).unwrap();
    let mut worker = host.spawn_worker_with(
        &["--providers", "offline"],
        &[
            ("EASEL_OFFLINE_PROVIDER", "1"),
            ("EASEL_METRICS_ADDR", "127.0.0.1:0"),
            ("EASEL_PLUGINS_DIR", plugins.to_str().unwrap()),
        ],
    );
    let addr = easel_tests::announced_address(&mut worker.0, "easel worker running; metrics on ");
    (worker, addr)
}

/// The sum of a Prometheus counter's samples whose labels include every one of `labels`.
fn sample_sum(exposition: &str, name: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn admin_get(host: &Host, path: &str) -> Value {
    let (status, body) = send(host.as_admin(Method::GET, path)).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// Waits until the fleet is exactly the workers serving `providers` (one entry per worker,
/// comma-joined) and the host's catalog lists `models`; returns worker ids by providers.
async fn fleet_of(host: &Host, providers: &[&str], models: &[&str]) -> HashMap<String, String> {
    let start = Instant::now();
    loop {
        let fleet = admin_get(host, "/admin/workers").await;
        let by_providers: HashMap<String, String> = fleet["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|worker| {
                let served: Vec<&str> = worker["providers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap())
                    .collect();
                (served.join(","), worker["id"].as_str().unwrap().to_string())
            })
            .collect();
        let catalog = admin_get(host, "/admin/models").await;
        let listed: Vec<&str> = catalog["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        let mut wanted: Vec<&str> = providers.to_vec();
        wanted.sort();
        let mut have: Vec<&str> = by_providers.keys().map(String::as_str).collect();
        have.sort();
        if have == wanted && models.iter().all(|m| listed.contains(m)) {
            return by_providers;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the fleet never became {providers:?} with {models:?}: {fleet} {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates a 001 job; returns its id.
async fn job(host: &Host, body: Value) -> String {
    let (status, created) = host.post("/api/v1/jobs", &body).await;
    assert_eq!(status, 202, "{created}");
    created["job"]["id"].as_str().unwrap().to_string()
}

fn local_job() -> Value {
    json!({"capability": "image.generate", "model": "local/tiny-sd", "prompt": "a harbour",
           "width": 64, "height": 64, "num_inference_steps": 2})
}

fn offline_job(params: Value) -> Value {
    let mut body = json!({"capability": "image.generate", "model": "offline/image", "prompt": "p"});
    body.as_object_mut()
        .unwrap()
        .extend(params.as_object().unwrap().clone());
    body
}

/// The worker whose claim the task was last taken under.
async fn claimed_by(host: &Host, id: &str) -> String {
    let detail = admin_get(host, &format!("/admin/tasks/{id}")).await;
    detail["job"]["workerId"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn workers_claim_only_what_they_serve(backend: easel_tests::Backend) {
    let api = Host::start(
        Options::new(backend)
            .toml("[engine]\nworkers = 0\nqueue_timeout_secs = 6\nmodel_grace_secs = 4")
            .env("EASEL_OFFLINE_PROVIDER", "0")
            .env("EASEL_ADMIN_KEY", ADMIN_KEY),
    )
    .await;
    let (status, _) = send(api.as_key(Method::GET, "/admin/workers", "key-a")).await;
    assert_eq!(status, 401, "a client key does not list the fleet");
    let catalog = admin_get(&api, "/admin/models").await;
    assert_eq!(
        catalog["models"],
        json!([]),
        "the API host loads no model of its own"
    );
    let gpu = gpu_worker(&api);
    let (vendor, vendor_metrics) = scraped_vendor_worker(&api);
    let ids = fleet_of(
        &api,
        &["local", "offline"],
        &["local/tiny-sd", "offline/image"],
    )
    .await;
    let fleet = admin_get(&api, "/admin/workers").await;
    let mut pids: Vec<u64> = fleet["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|worker| worker["pid"].as_u64().expect("a pid"))
        .collect();
    pids.sort();
    let mut spawned = vec![u64::from(gpu.0.id()), u64::from(vendor.0.id())];
    spawned.sort();
    assert_eq!(pids, spawned, "each row names its process: {fleet}");
    for worker in fleet["workers"].as_array().unwrap() {
        let gpu = worker["providers"] == json!(["local"]);
        assert_eq!(worker["modelLoaded"], gpu, "{worker}");
        let models = if gpu {
            "local/tiny-sd"
        } else {
            "offline/image"
        };
        assert!(
            worker["models"]
                .as_array()
                .unwrap()
                .contains(&json!(models)),
            "{worker}"
        );
        assert!(worker["host"].as_str().is_some_and(|h| !h.is_empty()));
    }

    // A chat streams from the host that accepts it: a chat model only a worker loads is not
    // offered by the API host's OpenAI model list (its image model is), and is refused by it,
    // saying why, with nothing stored for it.
    let (_, offered) = api.get("/v1/models").await;
    let offered: Vec<&str> = offered["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        offered.contains(&"offline/image") && !offered.contains(&"offline/chat"),
        "{offered:?}"
    );
    let (status, refused) = api
        .post(
            "/v1/chat/completions",
            &json!({"model": "offline/chat", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    // The model's refusal, not a vendor's failure: a 5xx would have an SDK ask again.
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["param"], "model", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not loaded here"),
        "{refused}"
    );
    let (_, listed) = api.get("/api/v1/jobs?limit=10").await;
    assert_eq!(
        listed["jobs"],
        json!([]),
        "a refused chat left a task: {listed}"
    );

    // Every dialect on the API host resolves the fleet's local model and checks parameters
    // against the schema its worker announced.
    let multiple_of_8 = |field: &str| format!("Invalid parameter {field}: must be a multiple of 8");
    let (status, refused) = api
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "model": "local/tiny-sd", "prompt": "p", "width": 100}),
        )
        .await;
    assert_eq!(
        (status, refused),
        (400, json!({"error": multiple_of_8("width")}))
    );
    let (status, refused) = api
        .post(
            "/llmage/v1/image/generations",
            &json!({"model": "tiny-sd", "catelogid": "t2i", "prompt": "p", "height": 100}),
        )
        .await;
    assert_eq!(
        (status, refused),
        (400, json!({"error": multiple_of_8("height")}))
    );
    let (status, refused) = api
        .post(
            "/api/v1/generations/image",
            &json!({"model": "local/tiny-sd", "prompt": "p", "extraParams": {"width": 100}}),
        )
        .await;
    assert_eq!(
        (status, &refused["message"]),
        (400, &json!(multiple_of_8("width")))
    );

    // Seed 003 on the API host runs on the fleet's local model, not a fallback.
    let (status, created) = send(
        api.http
            .post(api.url("/api/v1/generate"))
            .header("X-API-Key", "key-a")
            .json(&json!({"prompt": "a red square", "width": 64, "height": 64,
                          "num_inference_steps": 2, "seed": 7})),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let mut local = vec![created["task_id"].as_str().unwrap().to_string()];
    local.push(job(&api, local_job()).await);
    let mut offline = Vec::new();
    for _ in 0..6 {
        offline.push(job(&api, offline_job(json!({}))).await);
    }
    for id in local.iter().chain(&offline) {
        let done = api.wait_terminal(id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    let mut counted: HashMap<String, usize> = HashMap::new();
    for id in &local {
        assert_eq!(claimed_by(&api, id).await, ids["local"], "{id}");
        *counted.entry("local".into()).or_default() += 1;
    }
    for id in &offline {
        assert_eq!(claimed_by(&api, id).await, ids["offline"], "{id}");
        *counted.entry("offline".into()).or_default() += 1;
    }
    assert_eq!((counted["local"], counted["offline"]), (2, 6));

    // The vendor worker counts the work it did on its own address (the API host, which ran
    // none of it, cannot), and lists the plugins it loaded; both for the admin key only.
    let scrape = |path: &str| api.http.get(format!("{vendor_metrics}{path}"));
    let (status, _) = send(scrape("/metrics")).await;
    assert_eq!(status, 401, "the worker's metrics need the admin key");
    let exposition = scrape("/metrics")
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let finished = ["provider=\"offline\"", "status=\"succeeded\""];
    assert_eq!(
        sample_sum(&exposition, "easel_tasks_finished_total", &finished),
        6.0,
        "{exposition}"
    );
    let submits = ["provider=\"offline\"", "call=\"submit\""];
    assert!(
        sample_sum(
            &exposition,
            "easel_provider_call_duration_seconds_count",
            &submits
        ) >= 6.0
    );
    let (status, plugins) = send(scrape("/admin/plugins").bearer_auth(ADMIN_KEY)).await;
    assert_eq!(status, 200, "{plugins}");
    // Nothing else is served there, whatever API a path would belong to on an API host.
    for path in ["/health", "/v1/models", "/api/v1/jobs"] {
        let (status, missing) = send(scrape(path).bearer_auth(ADMIN_KEY)).await;
        assert_eq!(
            (status, missing),
            (404, json!({"error": "Route not found."})),
            "{path}"
        );
    }
    // The demo plugin is in its folder but not served there: it says so (it read as loaded).
    let demo = &plugins["plugins"][0];
    assert_eq!(
        (&demo["provider_id"], &demo["served"], &demo["left_out"]),
        (
            &json!("demo"),
            &json!(false),
            &json!("not served here: --providers leaves demo out")
        ),
        "{plugins}"
    );

    // A vendor worker dies mid-submit: the GPU worker's sweeper re-queues the task (offline's
    // submit is idempotent, as announced), and the next vendor worker finishes it.
    let held = job(&api, offline_job(json!({"work_ms": 2500}))).await;
    api.wait_job(&held, Duration::from_secs(10), |job| {
        job["status"] == "running"
    })
    .await;
    drop(vendor);
    let _vendor = vendor_worker(&api);
    let done = api.wait_terminal(&held).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let detail = admin_get(&api, &format!("/admin/tasks/{held}")).await;
    assert_ne!(detail["job"]["workerId"], json!(ids["offline"]), "{detail}");
    drop(_vendor);

    // No live worker serves offline: its model is still accepted for the grace period, and
    // the task waits, says so, and expires by the queue timeout.
    fleet_of(&api, &["local"], &["offline/image"]).await;
    let waiting = job(&api, offline_job(json!({}))).await;
    let (_, shown) = api.get(&format!("/api/v1/jobs/{waiting}")).await;
    assert_eq!(shown["job"]["status"], "queued", "{shown}");
    assert_eq!(
        shown["job"]["message"], "waiting for a worker that serves offline",
        "{shown}"
    );
    let expired = api.wait_terminal(&waiting).await;
    assert_eq!(expired["status"], "expired", "{expired}");
    // After the grace period the model is gone.
    let start = Instant::now();
    loop {
        let (status, body) = api.post("/api/v1/jobs", &offline_job(json!({}))).await;
        if status == 400 {
            assert!(
                body["error"].as_str().unwrap().contains("offline/image"),
                "{body}"
            );
            break;
        }
        assert_eq!(status, 202, "{body}");
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "offline/image is still accepted long after its grace period"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

on_both_backends!(workers_claim_only_what_they_serve);

/// A cancel that cannot stop its job within the wait answers 202 with the job still running,
/// and the job then ends as its own outcome decides. Here the job's poll is in flight on the
/// vendor worker (the offline vendor takes `collect_ms` to hand its outputs over), and the
/// API host, which does not serve the provider, leaves the vendor's cancel to that worker's
/// poller: it finds the request only after that poll, which brings the outcome first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_that_cannot_stop_the_job_in_time_answers_202() {
    let api = Host::start(
        Options::new(easel_tests::Backend::Sqlite)
            .toml("[engine]\nworkers = 0")
            .env("EASEL_OFFLINE_PROVIDER", "0")
            .env("EASEL_ADMIN_KEY", ADMIN_KEY),
    )
    .await;
    let _vendor = vendor_worker(&api);
    fleet_of(&api, &["offline"], &["offline/image"]).await;
    let id = job(
        &api,
        offline_job(json!({"delay_ms": 100, "collect_ms": 8000})),
    )
    .await;
    api.wait_job(&id, Duration::from_secs(10), |job| {
        job["status"] == "running"
    })
    .await;
    // Ready 100 ms after its submit and polled within a tick of that: now collecting.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let asked = Instant::now();
    let (status, answer) = api
        .post(&format!("/api/v1/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["job"]["status"], "running", "{answer}");
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "the answer came only after the wait for the job to stop"
    );

    let done = api.wait_terminal(&id).await;
    assert_eq!(
        done["status"], "succeeded",
        "the outcome reached the worker before the cancel did: {done}"
    );
}

/// An API-only host with a lease of `lease_secs`, a vendor worker, and the id of a job running
/// on the worker for as long as a lease.
async fn running_on_a_worker(backend: Backend, lease_secs: u64) -> (Host, Worker, String) {
    let api = Host::start(
        Options::new(backend)
            .toml(&format!("[engine]\nworkers = 0\nlease_secs = {lease_secs}"))
            .env("EASEL_OFFLINE_PROVIDER", "0")
            .env("EASEL_ADMIN_KEY", ADMIN_KEY),
    )
    .await;
    let vendor = vendor_worker(&api);
    fleet_of(&api, &["offline"], &["offline/image"]).await;
    let work_ms = lease_secs * 1000;
    let id = job(&api, offline_job(json!({"work_ms": work_ms}))).await;
    api.wait_job(&id, Duration::from_secs(10), |job| {
        job["status"] == "running"
    })
    .await;
    (api, vendor, id)
}

on_both_backends!(a_cancel_reaches_the_worker_running_the_job_at_once);

/// A cancel asked of one process stops the submit another process runs at once (PostgreSQL
/// notifies it; on SQLite it reads the flag within a quarter second), not at that process's
/// next lease renewal (a third of a 30 s lease here): the job ends cancelled within the
/// cancel's wait.
async fn a_cancel_reaches_the_worker_running_the_job_at_once(backend: Backend) {
    let (api, _vendor, id) = running_on_a_worker(backend, 30).await;
    let asked = Instant::now();
    let (status, answer) = api
        .post(&format!("/api/v1/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["job"]["status"], "cancelled", "{answer}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "the worker stopped {:?} after the cancel",
        asked.elapsed()
    );
}

/// A cancel notified while the worker's LISTEN connection was down is not lost until the next
/// lease renewal (20 s here): the worker reads it as soon as it listens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_notified_while_the_worker_was_not_listening_reaches_it_when_it_listens_again() {
    let (api, _vendor, id) = running_on_a_worker(Backend::Postgres, 60).await;
    // The worker renews its leases every third of a lease from its start, which is about
    // when the fleet lists it and the job starts: past that renewal, the next is 20 s away.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The listeners cannot come back while the cancel is notified. It is asked on a
    // connection opened before, as the API host's cancel writes it: the API host itself might
    // need a new connection then.
    let mut asker = sqlx::PgConnection::connect(api.database_url().unwrap())
        .await
        .unwrap();
    api.allow_new_connections(false).await;
    api.end_listening_connections().await;
    sqlx::query("UPDATE tasks SET cancel_requested = 1 WHERE id = $1")
        .bind(&id)
        .execute(&mut asker)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status,): (String,) = sqlx::query_as("SELECT status FROM tasks WHERE id = $1")
        .bind(&id)
        .fetch_one(&mut asker)
        .await
        .unwrap();
    assert_eq!(status, "running", "the worker heard the cancel");
    api.allow_new_connections(true).await;
    // The listener tries again each second; the lease's renewal is 20 s away.
    api.wait_job(&id, Duration::from_secs(5), |job| {
        job["status"] == "cancelled"
    })
    .await;
}

/// Each worker counts as alive for its own lease after its heartbeat, not the reader's: an API
/// host with a 4 s lease drops a worker with a 0.6 s lease soon after it dies, and keeps
/// listing a worker with a 30 s lease (which beats every 10 s) between its beats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_is_alive_for_its_own_lease() {
    let api = Host::start(
        Options::new(easel_tests::Backend::Sqlite)
            .toml("[engine]\nworkers = 0\nlease_secs = 4")
            .env("EASEL_OFFLINE_PROVIDER", "0")
            .env("EASEL_ADMIN_KEY", ADMIN_KEY),
    )
    .await;
    let configs = tempfile::tempdir().unwrap();
    // Told apart by their capacity (`workers`).
    let worker_with = |name: &str, toml: &str| {
        let path = configs.path().join(name);
        std::fs::write(&path, toml).unwrap();
        api.spawn_worker_with(
            &["--providers", "offline"],
            &[
                ("EASEL_OFFLINE_PROVIDER", "1"),
                ("EASEL_CONFIG", path.to_str().unwrap()),
            ],
        )
    };
    let short = worker_with("short.toml", "[engine]\nworkers = 3\nlease_secs = 0.6\n");
    let _long = worker_with("long.toml", "[engine]\nworkers = 2\nlease_secs = 30\n");
    let listed = || async {
        let fleet = admin_get(&api, "/admin/workers").await;
        let mut capacities: Vec<i64> = fleet["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|worker| worker["capacity"].as_i64().unwrap())
            .collect();
        capacities.sort();
        capacities
    };
    let start = Instant::now();
    while listed().await != [2, 3] {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{:?}",
            listed().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let long_seen = Instant::now();

    drop(short);
    let died = Instant::now();
    while listed().await.contains(&3) {
        assert!(
            died.elapsed() < Duration::from_millis(2500),
            "a worker with a 0.6 s lease is still listed {:?} after it died",
            died.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Past the API host's own lease since the long worker's first beat, before its second.
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(long_seen.elapsed())).await;
    assert_eq!(
        listed().await,
        [2],
        "the worker with a 30 s lease is listed between its beats"
    );
}

/// Idle, a serving host and a worker on one PostgreSQL database commit little: a worker waits
/// for a task to be queued or for its tick. Only a task that becomes queued, or a running one
/// that ends, notifies the workers; an empty claim (an `UPDATE` that matches no row) does not,
/// as it once did, when every idle claim woke every worker on every host again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_fleet_on_postgres_stays_quiet() {
    let api = Host::start(Options::new(Backend::Postgres)).await;
    let _worker = api.spawn_worker_with(&["--providers", "offline"], &[]);
    let pool = sqlx::PgPool::connect(api.database_url().unwrap())
        .await
        .unwrap();
    let mut listener = sqlx::postgres::PgListener::connect(api.database_url().unwrap())
        .await
        .unwrap();
    listener.listen("easel_tasks").await.unwrap();

    sqlx::query("UPDATE tasks SET status = status WHERE false")
        .execute(&pool)
        .await
        .unwrap();
    let woken = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await;
    assert!(
        woken.is_err(),
        "an update of no row woke the workers: {woken:?}"
    );
    let job = json!({"capability": "image.generate", "model": "offline/image", "prompt": "wake"});
    let (status, created) = api.post("/api/v1/jobs", &job).await;
    assert_eq!(status, 202, "{created}");
    let woken = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await;
    assert!(
        matches!(woken, Ok(Ok(_))),
        "a queued task woke nobody: {woken:?}"
    );
    let id = created["job"]["id"].as_str().unwrap();
    assert_eq!(api.wait_terminal(id).await["status"], "succeeded");
    // Its end frees a slot under a capacity limit another host may be waiting for.
    let woken = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await;
    assert!(
        matches!(woken, Ok(Ok(_))),
        "a task that ended woke nobody: {woken:?}"
    );

    let commits = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = commits().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = commits().await - before;
    // Each worker's tick, the heartbeats and the sweeper: about 70 a second for the two
    // processes' 16 workers, not the thousands a second of the loop.
    assert!(idle < 1_000, "{idle} commits in 3 idle seconds");
}
