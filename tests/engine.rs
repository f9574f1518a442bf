//! The engine's state machine over real HTTP: pending and running work, failure, cancel in
//! each state, expiry, and `kill -9` of the host followed by a restart.

use std::time::Duration;

use easel_tests::{Backend, Host, Options, on_both_backends};
use serde_json::{Value, json};

on_both_backends!(
    pending_work_is_polled_to_success,
    a_poll_outlasting_its_lease_runs_once,
    a_job_cancelled_while_its_outputs_are_collected_keeps_none,
    cancel_works_in_every_live_state,
    kill9_loses_nothing_and_repeats_nothing,
    a_separate_worker_process_runs_the_queue,
    a_task_the_vendor_never_finishes_fails_after_the_pending_timeout,
    an_api_only_host_expires_what_no_worker_takes,
    a_vendor_failing_in_a_row_opens_its_breaker_and_its_tasks_wait,
    a_breakers_probe_spends_none_of_its_tasks_attempts,
    a_pending_task_whose_polls_get_no_answer_says_why,
);

fn image(extra: Value) -> Value {
    let mut body = json!({"capability": "image.generate", "prompt": "state machine", "width": 16, "height": 16});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

async fn create(host: &Host, body: Value) -> String {
    let (status, created) = host.post("/api/v1/jobs", &body).await;
    assert_eq!(status, 202, "{created}");
    created["job"]["id"].as_str().unwrap().to_string()
}

async fn pending_work_is_polled_to_success(backend: Backend) {
    let host = Host::start(Options::new(backend)).await;
    let id = create(&host, image(json!({"delay_ms": 1500}))).await;
    let running = host
        .wait_job(&id, Duration::from_secs(10), |job| {
            job["status"] == "running" && job["progress"].as_f64().unwrap() > 0.0
        })
        .await;
    assert!(
        running["progress"].as_f64().unwrap() < 1.0,
        "progress is reported while pending: {running}"
    );
    let done = host.wait_terminal(&id).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["outputAssetIds"].as_array().unwrap().len(), 1);

    let failing = create(
        &host,
        image(json!({"delay_ms": 200, "fail": "moderation said no"})),
    )
    .await;
    let failed = host.wait_terminal(&failing).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("moderation said no")
    );
    assert_eq!(failed["outputAssetIds"], json!([]));
}

async fn a_poll_outlasting_its_lease_runs_once(backend: Backend) {
    // The poll collecting the files takes four leases; a poll claimed again when its first
    // lease lapsed would store the outputs once per claim.
    let host = Host::start(
        Options::new(backend).toml("[engine]\nlease_secs = 0.5\nmax_poll_interval_secs = 0.2"),
    )
    .await;
    let id = create(&host, image(json!({"delay_ms": 100, "collect_ms": 2000}))).await;
    let done = host.wait_terminal(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let outputs = done["outputAssetIds"].as_array().unwrap().clone();
    assert_eq!(outputs.len(), 1, "{done}");
    // A second claim would still be storing; give it the time to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, listed) = host.get("/api/v1/assets").await;
    let stored: Vec<&Value> = listed["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|asset| &asset["id"])
        .collect();
    assert_eq!(stored, outputs.iter().collect::<Vec<_>>(), "{listed}");
}

async fn a_job_cancelled_while_its_outputs_are_collected_keeps_none(backend: Backend) {
    let host = Host::start(Options::new(backend)).await;
    // Ready after 100 ms; the poll that collects its file then takes 1.5 s.
    let id = create(&host, image(json!({"delay_ms": 100, "collect_ms": 1500}))).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, cancelled) = host
        .post(&format!("/api/v1/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(cancelled["job"]["status"], "cancelled", "{cancelled}");
    // The collecting poll ends after the cancel and stores the file it was copying.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (_, job) = host.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(job["job"]["status"], "cancelled", "{job}");
    assert_eq!(job["job"]["outputAssetIds"], json!([]), "{job}");
    let (_, listed) = host.get("/api/v1/assets").await;
    assert_eq!(
        listed["assets"],
        json!([]),
        "no file of the cancelled job is left: {listed}"
    );
}

async fn cancel_works_in_every_live_state(backend: Backend) {
    // One worker, so a second job stays queued behind a busy one.
    let host = Host::start(Options::new(backend).toml("[engine]\nworkers = 1")).await;
    let busy = create(&host, image(json!({"work_ms": 60_000}))).await;
    host.wait_job(&busy, Duration::from_secs(10), |job| {
        job["status"] == "running"
    })
    .await;
    let queued = create(&host, image(json!({}))).await;

    let (status, cancelled) = host
        .post(&format!("/api/v1/jobs/{queued}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        cancelled["job"]["status"], "cancelled",
        "a queued job is cancelled at once"
    );

    // A running job (the worker is inside the provider's submit) is cancelled through its
    // token, and the answer says so: it waited for the worker to stop.
    let (status, answer) = host
        .post(&format!("/api/v1/jobs/{busy}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["job"]["status"], "cancelled", "{answer}");

    // A job pending at the provider is cancelled through the provider's cancel.
    let pending = create(&host, image(json!({"delay_ms": 60_000}))).await;
    host.wait_job(&pending, Duration::from_secs(10), |job| {
        job["status"] == "running"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, answer) = host
        .post(&format!("/api/v1/jobs/{pending}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["job"]["status"], "cancelled", "{answer}");

    // A terminal job cannot be cancelled.
    let (status, conflict) = host
        .post(&format!("/api/v1/jobs/{pending}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 409, "{conflict}");
}

/// A vendor that keeps answering "still running" (or keeps failing to answer) does not hold
/// a task, its client's concurrency slot and its credits for ever: after
/// `pending_timeout_secs` it is cancelled at the vendor and fails, refunded.
async fn a_task_the_vendor_never_finishes_fails_after_the_pending_timeout(backend: Backend) {
    let host = Host::start(
        Options::new(backend)
            .toml("[engine]\npending_timeout_secs = 1.5\nmax_poll_interval_secs = 0.2"),
    )
    .await;
    let started = std::time::Instant::now();
    let id = create(&host, image(json!({"delay_ms": 600_000}))).await;
    let failed = host.wait_terminal(&id).await;
    let took = started.elapsed();
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("did not finish the task within 1.5 s")
            && error.ends_with("it was cancelled at its vendor"),
        "{error}"
    );
    assert!(
        (Duration::from_millis(1_500)..Duration::from_secs(6)).contains(&took),
        "failed {took:?} after it was created"
    );
}

/// Submits that fail unavailable in a row open the provider's breaker: the next tasks wait
/// in the queue, saying why and until when, the operator sees the breaker in
/// `/admin/workers` and `/metrics`; after the cooldown one of them tries the vendor while the
/// others still wait (before, every waiting task was submitted at once, each spending an
/// attempt on a vendor that may still be down), and its success closes the breaker.
async fn a_vendor_failing_in_a_row_opens_its_breaker_and_its_tasks_wait(backend: Backend) {
    let host = Host::start(
        Options::new(backend)
            .env("EASEL_ADMIN_KEY", easel_tests::ADMIN_KEY)
            .toml("[engine]\nworkers = 4\nmax_attempts = 1\nbreaker_failures = 2\nbreaker_cooldown_secs = 2.5"),
    )
    .await;
    for n in 0..2 {
        let id = create(
            &host,
            image(json!({"unavailable": format!("vendor down {n}")})),
        )
        .await;
        let failed = host.wait_terminal(&id).await;
        assert_eq!(failed["status"], "failed", "{failed}");
    }
    let opened = std::time::Instant::now();
    let mut waiting_ids = Vec::new();
    for _ in 0..3 {
        waiting_ids.push(create(&host, image(json!({"work_ms": 1000}))).await);
    }
    let id = waiting_ids[0].clone();
    let waiting = host
        .wait_job(&id, Duration::from_secs(5), |job| {
            job["message"].is_string()
        })
        .await;
    assert_eq!(waiting["status"], "queued", "{waiting}");
    let message = waiting["message"].as_str().unwrap();
    assert!(
        message.starts_with("its vendor failed 2 submits in a row (last: vendor down 1)"),
        "{message}"
    );
    let (status, workers) =
        easel_tests::send(host.as_admin(reqwest::Method::GET, "/admin/workers")).await;
    assert_eq!(status, 200, "{workers}");
    let breaker = &workers["breakers"][0];
    assert_eq!(
        (&breaker["provider"], &breaker["open"], &breaker["failures"]),
        (&json!("offline"), &json!(true), &json!(2)),
        "{workers}"
    );
    let metrics = host.metrics().await;
    assert!(
        metrics.contains("easel_provider_breaker_open{provider=\"offline\"} 1"),
        "{metrics}"
    );
    // The probe: one task runs, the others stay queued until its submit ends; read often,
    // since the claims the breaker refuses were once seen running for a moment.
    let statuses = || async {
        let mut statuses = Vec::new();
        for id in &waiting_ids {
            let (_, job) = host.get(&format!("/api/v1/jobs/{id}")).await;
            statuses.push(job["job"]["status"].as_str().unwrap().to_string());
        }
        statuses
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = statuses().await;
    while !seen.iter().any(|status| status != "queued") {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing ran: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        seen = statuses().await;
    }
    assert!(
        opened.elapsed() >= Duration::from_secs(2),
        "it waited for the cooldown: {:?}",
        opened.elapsed()
    );
    for _ in 0..6 {
        let running = seen.iter().filter(|status| *status == "running").count();
        assert_eq!(running, 1, "one probe at a time: {seen:?}");
        assert_eq!(
            seen.iter().filter(|s| *s == "queued").count(),
            2,
            "{seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = statuses().await;
    }
    for id in &waiting_ids {
        let done = host.wait_terminal(id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    let (_, workers) =
        easel_tests::send(host.as_admin(reqwest::Method::GET, "/admin/workers")).await;
    assert_eq!(workers["breakers"], json!([]), "a success closes it");
    assert!(
        host.metrics()
            .await
            .contains("easel_provider_breaker_open{provider=\"offline\"} 0")
    );
}

/// The probe after a breaker's cooldown is made for the breaker's sake: when it finds the
/// vendor still away its task is queued again with that claim uncounted (before, the task at
/// the head of the queue was the probe at each cooldown's end and failed once its attempts
/// were spent, 40 s into an outage with the defaults).
async fn a_breakers_probe_spends_none_of_its_tasks_attempts(backend: Backend) {
    let host = Host::start(
        Options::new(backend)
            .env("EASEL_ADMIN_KEY", easel_tests::ADMIN_KEY)
            .toml("[engine]\nmax_attempts = 1\nbreaker_failures = 1\nbreaker_cooldown_secs = 0.5"),
    )
    .await;
    let down = || image(json!({"unavailable": "vendor down"}));
    let opened = create(&host, down()).await;
    assert_eq!(host.wait_terminal(&opened).await["status"], "failed");
    let probe = create(&host, down()).await;
    let failures = || async {
        let (_, workers) =
            easel_tests::send(host.as_admin(reqwest::Method::GET, "/admin/workers")).await;
        workers["breakers"][0]["failures"].as_i64().unwrap_or(0)
    };
    let status = || async {
        let (_, job) = host.get(&format!("/api/v1/jobs/{probe}")).await;
        job
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let job = loop {
        // The probe's failure is counted before its task is queued again (or failed), so the
        // task is read after the count.
        let probed = failures().await >= 2;
        let job = status().await;
        if probed && job["job"]["status"] != "running" {
            break job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no probe was made: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        job["job"]["status"], "queued",
        "the probe's one attempt was not spent: {job}"
    );
    let (_, view) =
        easel_tests::send(host.as_admin(reqwest::Method::GET, &format!("/admin/tasks/{probe}")))
            .await;
    assert_eq!(view["job"]["attempts"], 0, "{view}");
    let (status, _) = host
        .post(&format!("/api/v1/jobs/{probe}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
}

/// A task pending at a vendor whose polls get no answer says why, and when it is polled
/// again, instead of a bare `running`; the reason is on the task, for every host's view.
async fn a_pending_task_whose_polls_get_no_answer_says_why(backend: Backend) {
    let host = Host::start(Options::new(backend)).await;
    let id = create(
        &host,
        image(json!({"delay_ms": 600_000, "poll_unavailable": "503 from the vendor"})),
    )
    .await;
    let troubled = host
        .wait_job(&id, Duration::from_secs(15), |job| {
            job["message"].is_string()
        })
        .await;
    assert_eq!(troubled["status"], "running", "{troubled}");
    let message = troubled["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "its vendor gave no answer to the last poll (503 from the vendor); polled again at "
        ),
        "{message}"
    );
    let (status, _) = host
        .post(&format!("/api/v1/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
}

/// A host asked to stop (SIGTERM) lets the submit in flight finish and records it before it
/// exits: a rolling restart neither redoes the vendor's work nor spends one of its attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_host_finishes_the_submit_in_flight() {
    let mut host = Host::start(Options::new(Backend::Sqlite)).await;
    let busy = create(&host, image(json!({"work_ms": 1500}))).await;
    host.wait_job(&busy, Duration::from_secs(10), |job| {
        job["status"] == "running"
    })
    .await;
    let asked = std::time::Instant::now();
    let exited = host.terminate();
    assert!(exited.success(), "{exited}");
    assert!(
        asked.elapsed() >= Duration::from_millis(500),
        "it waited for the submit"
    );
    host.kill9_and_restart().await;
    let (_, job) = host.get(&format!("/api/v1/jobs/{busy}")).await;
    assert_eq!(
        job["job"]["status"], "succeeded",
        "recorded before the exit: {job}"
    );
}

/// A chat stream longer than the shutdown grace does not hold the stop: the host cuts it
/// when the grace runs out, so a service manager's stop timeout never has to kill it. One
/// grace in all: the chat is a task in flight too, and it is not waited for a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_does_not_hold_a_stop_past_the_grace() {
    let mut host =
        Host::start(Options::new(Backend::Sqlite).toml("[engine]\nshutdown_grace_secs = 2")).await;
    let slow_chat = |stream: bool| {
        host.as_key(reqwest::Method::POST, "/v1/chat/completions", "key-a")
            .json(&json!({"model": "offline/chat", "stream": stream, "work_ms": 30_000,
                          "messages": [{"role": "user", "content": "a slow answer of many words"}]}))
            .send()
    };
    let mut stream = slow_chat(true).await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut read = String::from_utf8(stream.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    let opening: Value =
        serde_json::from_str(read.lines().next().unwrap().strip_prefix("data: ").unwrap()).unwrap();
    let streamed_id = opening["id"].as_str().unwrap().to_string();
    let whole = tokio::spawn(slow_chat(false));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = std::time::Instant::now();
    let exited = host.terminate();
    assert!(exited.success(), "{exited}");
    assert!(
        asked.elapsed() < Duration::from_millis(3_500),
        "the stop waited {:?} for the stream",
        asked.elapsed()
    );

    // Both clients are told why their answers were cut off, and the chats were recorded so
    // (refunded) by the stopping process, not left running for the next start's sweeper.
    while let Ok(Some(chunk)) = stream.chunk().await {
        read.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        read.contains("shutting down") && read.ends_with("data: [DONE]\n\n"),
        "{read}"
    );
    let whole = whole.await.unwrap().unwrap();
    assert_eq!(whole.status(), 503);
    let refused: Value = whole.json().await.unwrap();
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("shutting down"), "{refused}");
    use sqlx::{Connection, Row};
    let url = format!(
        "sqlite://{}?mode=ro",
        host.data_dir().join("easel.db").display()
    );
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let chats = sqlx::query("SELECT id, status, error FROM tasks ORDER BY created_at")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert_eq!(chats.len(), 2);
    assert_eq!(chats[0].get::<String, _>("id"), streamed_id);
    for chat in chats {
        let (status, error): (String, String) = (chat.get("status"), chat.get("error"));
        assert_eq!(status, "failed");
        assert!(error.contains("shut down"), "{error}");
    }
}

#[tokio::test]
async fn queued_jobs_expire() {
    let host = Host::start(
        Options::new(Backend::Sqlite).toml("[engine]\nworkers = 1\nqueue_timeout_secs = 1"),
    )
    .await;
    let busy = create(&host, image(json!({"work_ms": 30_000}))).await;
    host.wait_job(&busy, Duration::from_secs(10), |job| {
        job["status"] == "running"
    })
    .await;
    let waiting = create(&host, image(json!({}))).await;
    let expired = host.wait_terminal(&waiting).await;
    assert_eq!(expired["status"], "expired");
    assert!(expired["error"].as_str().unwrap().contains("queue"));
}

async fn kill9_loses_nothing_and_repeats_nothing(backend: Backend) {
    let mut host = Host::start(Options::new(backend).toml("[engine]\nworkers = 2")).await;
    let mut ids = Vec::new();
    // Three pending at the provider (handed off at once), two held by workers mid-submit,
    // three queued behind them.
    for _ in 0..3 {
        ids.push(create(&host, image(json!({"delay_ms": 2_500}))).await);
    }
    for _ in 0..2 {
        ids.push(create(&host, image(json!({"work_ms": 2_000}))).await);
    }
    for _ in 0..3 {
        ids.push(create(&host, image(json!({}))).await);
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, running) = host.get("/api/v1/jobs?status=running").await;
    assert_eq!(
        running["jobs"].as_array().unwrap().len(),
        5,
        "pending and submitting jobs at the kill: {running}"
    );
    let (_, queued) = host.get("/api/v1/jobs?status=queued").await;
    assert_eq!(queued["jobs"].as_array().unwrap().len(), 3);

    host.kill9_and_restart().await;

    for id in &ids {
        let job = host.wait_terminal(id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(
            job["outputAssetIds"].as_array().unwrap().len(),
            1,
            "exactly one output, never two: {job}"
        );
    }
    let (_, listed) = host.get("/api/v1/jobs?limit=200").await;
    assert_eq!(
        listed["jobs"].as_array().unwrap().len(),
        ids.len(),
        "nothing lost, nothing duplicated"
    );
    let (_, assets) = host.get("/api/v1/assets?limit=200").await;
    let outputs: Vec<&str> = assets["assets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["jobId"].as_str())
        .collect();
    assert_eq!(
        outputs.len(),
        ids.len(),
        "one stored output per job: no work was stored twice"
    );
    assert!(outputs.iter().all(|job| ids.iter().any(|id| id == job)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_pending_never_block_the_workers() {
    let host = Host::start(
        Options::new(Backend::Sqlite).toml("[engine]\nworkers = 2\npoll_concurrency = 64"),
    )
    .await;
    let submits = (0..1000).map(|_| create(&host, image(json!({"delay_ms": 3_000}))));
    let pending: Vec<String> = futures::future::join_all(submits).await;

    // With a thousand handles pending upstream, a fresh job still goes straight through.
    let quick = create(&host, image(json!({}))).await;
    let started = std::time::Instant::now();
    assert_eq!(host.wait_terminal(&quick).await["status"], "succeeded");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a worker was free: {:?}",
        started.elapsed()
    );
    assert_eq!(
        count_jobs(&host, "running", 200).await,
        200,
        "the pending jobs are still pending"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, still) = host.get("/api/v1/jobs?status=running&limit=1").await;
        if still["jobs"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pending jobs did not all finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, failed) = host.get("/api/v1/jobs?status=failed").await;
    assert_eq!(failed["jobs"], json!([]));
    // Every page boundary falls between milliseconds, so paging through sees every job once.
    assert_eq!(count_jobs(&host, "succeeded", usize::MAX).await, 1001);
    assert_eq!(pending.len(), 1000);
}

/// How many of `key-a`'s jobs have `status`, paging 200 at a time through `nextBefore`, and
/// stopping once `at_most` are seen.
async fn count_jobs(host: &Host, status: &str, at_most: usize) -> usize {
    let mut seen = std::collections::HashSet::new();
    let mut before = String::new();
    loop {
        let path = format!("/api/v1/jobs?status={status}&limit=200&before={before}");
        let (_, page) = host.get(&path).await;
        for job in page["jobs"].as_array().unwrap() {
            assert!(seen.insert(job["id"].to_string()), "a job on two pages");
        }
        match page["nextBefore"].as_str() {
            Some(next) if seen.len() < at_most => before = next.replace('+', "%2B"),
            _ => return seen.len().min(at_most),
        }
    }
}

async fn a_separate_worker_process_runs_the_queue(backend: Backend) {
    // `serve` with no workers only accepts; an `easel worker` on the same database does the work.
    let host = Host::start(Options::new(backend).toml("[engine]\nworkers = 0")).await;
    let id = create(&host, image(json!({}))).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, waiting) = host.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(
        waiting["job"]["status"], "queued",
        "the API-only host ran nothing"
    );
    let mut worker = host.spawn_worker();
    let done = host.wait_terminal(&id).await;
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(done["status"], "succeeded", "{done}");
}

/// With no worker alive, a queued task still expires by `queue_timeout_secs`: the API-only
/// host that accepted it sweeps too.
async fn an_api_only_host_expires_what_no_worker_takes(backend: Backend) {
    let host =
        Host::start(Options::new(backend).toml("[engine]\nworkers = 0\nqueue_timeout_secs = 1"))
            .await;
    let id = create(&host, image(json!({}))).await;
    let ended = host
        .wait_job(&id, Duration::from_secs(10), |job| {
            job["status"] != "queued"
        })
        .await;
    assert_eq!(ended["status"], "expired", "{ended}");
}

/// A database away for longer than a lease does not make a running task run again: its
/// holder could not renew its lease, but it is alive, and once the database is back the
/// lease is renewed, not judged lapsed (before, the holder's own sweeper queued the task
/// again, twice, and three submits of it ran at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_longer_than_a_lease_runs_nothing_twice() {
    let host = Host::start(Options::new(Backend::Postgres).toml("[engine]\nlease_secs = 3")).await;
    let id = create(&host, image(json!({"work_ms": 12_000}))).await;
    host.wait_job(&id, Duration::from_secs(10), |job| {
        job["status"] == "running"
    })
    .await;
    host.set_database_reachable(false).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    host.set_database_reachable(true).await;
    let done = host.wait_terminal(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let pool = sqlx::PgPool::connect(host.database_url().unwrap())
        .await
        .unwrap();
    let (attempts,): (i64,) = sqlx::query_as("SELECT attempts FROM tasks WHERE id = $1")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        attempts, 1,
        "the task was claimed again while its holder ran it"
    );
}
