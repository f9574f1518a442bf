//! Limits checked before the work, tasks that never stick, money in integers and the small
//! leaks of issue 14 (items 5 to 8), each against the real binary.

use std::time::{Duration, Instant};

use base64::Engine as _;
use easel_tests::{ADMIN_KEY, Backend, Host, Options, charging, on_both_backends, send};
use reqwest::{Method, multipart};
use serde_json::{Value, json};

async fn create_job(host: &Host, body: Value) -> String {
    let (status, created) = host.post("/api/v1/jobs", &body).await;
    assert_eq!(status, 202, "{created}");
    created["job"]["id"].as_str().unwrap().to_string()
}

fn offline_image(extra: Value) -> Value {
    let mut body = json!({"capability": "image.generate", "model": "offline/image",
                          "prompt": "limits", "width": 16, "height": 16});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

/// Peak resident memory of a process, bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/PID/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// Files in the data folder's asset store (finished or not).
fn stored_files(host: &Host) -> Vec<String> {
    std::fs::read_dir(host.data_dir().join("assets"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

// Item 5: limits checked before the work.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_routes_take_no_more_than_the_json_limit() {
    let host =
        Host::start(Options::new(Backend::Sqlite).toml("[limits]\nmax_body_bytes = 65536")).await;
    let prompt = "x".repeat(200_000);
    for path in [
        "/llmage/v1/chat/completions",
        "/llmage/v1/image/generations",
        "/api/v1/jobs",
        "/v1/chat/completions",
    ] {
        let (status, answer) = host
            .post(
                path,
                &json!({"model": "chat", "catelogid": "t2t", "prompt": prompt,
                                "messages": [{"role": "user", "content": prompt}]}),
            )
            .await;
        let shown: String = answer.to_string().chars().take(300).collect();
        assert_eq!(status, 413, "{path}: {shown}");
        assert!(
            answer.to_string().contains("larger than 65536 bytes"),
            "{path} answers in its own shape: {answer}"
        );
    }
    let (_, jobs) = host.get("/api/v1/jobs").await;
    assert_eq!(jobs["jobs"], json!([]), "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stream_to_storage_and_a_refused_one_leaves_nothing() {
    let host = Host::sqlite().await;
    let size = 96 * 1024 * 1024;
    let before = peak_rss(host.pid());
    let form = multipart::Form::new().part(
        "files",
        multipart::Part::bytes(vec![7u8; size]).file_name("big.bin"),
    );
    let (status, answer) = send(
        host.as_key(Method::POST, "/api/v1/assets", "key-a")
            .multipart(form),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["assets"][0]["size"], size);
    let grown = peak_rss(host.pid()).saturating_sub(before);
    assert!(
        grown < 48 * 1024 * 1024,
        "a {size}-byte upload raised the host's peak memory by {grown} bytes"
    );
    let kept = stored_files(&host);
    assert_eq!(kept.len(), 1, "{kept:?}");

    // A form the engine refuses (unknown model) leaves no file behind.
    let form = multipart::Form::new()
        .text("model", "no-such-model")
        .text("catelogid", "i2v")
        .text("prompt", "p")
        .part(
            "image_file",
            multipart::Part::bytes(vec![1u8; 4096]).file_name("a.png"),
        );
    let (status, answer) = send(
        host.as_key(Method::POST, "/llmage/v1/video/generations", "key-a")
            .multipart(form),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(stored_files(&host), kept, "the refused upload was removed");
}

/// A PNG of `side`×`side` pixels, tiny on the wire (1-bit, all black).
fn huge_png(side: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().unwrap();
    writer
        .write_image_data(&vec![0u8; side.div_ceil(8) as usize * side as usize])
        .unwrap();
    drop(writer);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_image_too_large_for_the_model_is_refused_from_its_header() {
    let model = easel_tests::checkout().join("host/crates/diffusion/tests/fixtures/tiny-sd");
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_SD_MODEL", model.to_str().unwrap())
            .env("EASEL_SD_DEVICE", "flex"),
    )
    .await;
    let png = huge_png(11_000);
    let init = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    );
    let before = peak_rss(host.pid());
    let (status, answer) = host
        .post(
            "/api/v1/generate",
            &json!({"prompt": "p", "init_image": init, "num_inference_steps": 1}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "init_image"]));
    let message = answer["detail"][0]["msg"].as_str().unwrap();
    assert!(message.contains("11000x11000"), "{message}");
    let grown = peak_rss(host.pid()).saturating_sub(before);
    assert!(grown < 64 * 1024 * 1024, "checking it cost {grown} bytes");
    let (_, jobs) = host.get("/api/v1/jobs").await;
    assert_eq!(jobs["jobs"], json!([]), "nothing was accepted");

    // A remote one is only seen when the task runs: checked from its header there, before the
    // model decodes it.
    let served = png.clone();
    let app = axum::Router::new().route(
        "/huge.png",
        axum::routing::get(move || {
            let png = served.clone();
            async move { ([("content-type", "image/png")], png) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/huge.png", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let id = create_job(
        &host,
        json!({"capability": "image.edit", "model": "local/tiny-sd", "prompt": "p",
               "imageUrls": [url], "num_inference_steps": 1}),
    )
    .await;
    let job = host.wait_terminal(&id).await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("is 11000x11000 pixels"), "{error}");
}

// Item 6: a task never sticks.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_that_cannot_be_stored_fail_a_polled_task_and_refund_it() {
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .toml(&charging(&[("offline/image", 2.0)])),
    )
    .await;
    host.grant("partner-a", 5.0).await;
    let id = create_job(&host, offline_image(json!({"delay_ms": 1_500}))).await;
    // The asset store becomes unwritable before the poll finds the task done.
    let assets = host.data_dir().join("assets");
    std::fs::rename(&assets, host.data_dir().join("assets-away")).unwrap();
    std::fs::write(&assets, b"not a folder").unwrap();

    let job = host.wait_terminal(&id).await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.starts_with("Storing the outputs failed"), "{error}");
    assert!(
        !error.contains("os error"),
        "no OS text reaches the client: {error}"
    );
    let account = host.usage("partner-a").await;
    assert_eq!(account["balance"], 5.0, "{account}");
    assert_eq!(account["reserved"], 0.0, "{account}");
    // The task's own view says what became of its reservation.
    let (status, view) = send(host.as_admin(Method::GET, &format!("/admin/tasks/{id}"))).await;
    assert_eq!(status, 200, "{view}");
    let view = &view["job"];
    assert_eq!(
        (
            &view["reservedCredits"],
            &view["chargedCredits"],
            &view["refundedCredits"]
        ),
        (&json!(2.0), &json!(0.0), &json!(2.0)),
        "{view}"
    );
}

/// OpenAI's image and speech answers are the client's only way to their results, so a client
/// that gives up (its SDK's timeout, which the SDK then retries as a new request) cancels the
/// task it left, and pays nothing for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_answer_whose_client_left_is_cancelled_and_refunded() {
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .toml(&charging(&[
                ("offline/image", 2.0),
                ("offline/speech", 1.0),
            ])),
    )
    .await;
    host.grant("partner-a", 10.0).await;
    for (path, body) in [
        (
            "/v1/images/generations",
            json!({"model": "offline/image", "prompt": "slow", "size": "16x16", "work_ms": 5_000}),
        ),
        (
            "/v1/audio/speech",
            json!({"model": "offline/speech", "input": "slow", "work_ms": 5_000}),
        ),
    ] {
        let left = host
            .as_key(Method::POST, path, "key-a")
            .json(&body)
            .timeout(Duration::from_millis(700))
            .send()
            .await;
        assert!(left.is_err_and(|e| e.is_timeout()), "{path}");
    }
    let started = Instant::now();
    let jobs = loop {
        let (status, listed) = host.get("/api/v1/jobs?limit=10").await;
        assert_eq!(status, 200, "{listed}");
        let jobs = listed["jobs"].as_array().unwrap().clone();
        if jobs.len() == 2 && jobs.iter().all(|job| job["status"] == "cancelled") {
            break jobs;
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the tasks run on after their clients left: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        jobs.iter()
            .all(|job| job["error"] == "Cancelled by the client."),
        "{jobs:?}"
    );
    let account = host.usage("partner-a").await;
    assert_eq!(account["balance"], 10.0, "{account}");
    assert_eq!(account["reserved"], 0.0, "{account}");
}

/// The task's `attempts` column, read from the SQLite file.
async fn attempts(host: &Host, id: &str) -> i64 {
    use sqlx::{Connection, Row};
    let url = format!(
        "sqlite://{}?mode=ro",
        host.data_dir().join("easel.db").display()
    );
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("SELECT attempts FROM tasks WHERE id = $1")
        .bind(id)
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_brings_its_worker_down_every_time_ends_failed() {
    let mut host = Host::sqlite().await;
    let id = create_job(&host, offline_image(json!({"work_ms": 30_000}))).await;
    for attempt in 1..=3 {
        let start = Instant::now();
        while attempts(&host, &id).await < attempt {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "claim {attempt} never came"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The worker dies mid-submit, as it would on a task that crashes the process.
        host.kill9_and_restart().await;
    }
    let job = host.wait_terminal(&id).await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("3 attempts"), "{error}");
    assert_eq!(attempts(&host, &id).await, 3, "never claimed a fourth time");
}

// Item 7: money in integers.

on_both_backends!(credits_add_up_exactly_and_grants_need_a_known_client);

async fn credits_add_up_exactly_and_grants_need_a_known_client(backend: Backend) {
    let host = Host::start(
        Options::new(backend)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .toml(&charging(&[("offline/image", 0.1)])),
    )
    .await;
    let grant = |client: &str, amount: f64| {
        send(
            host.as_admin(Method::POST, &format!("/admin/clients/{client}/credits"))
                .json(&json!({"amount": amount})),
        )
    };
    let (status, granted) = grant("partner-a", 0.3).await;
    assert_eq!((status, granted["balance"].clone()), (200, json!(0.3)));
    for _ in 0..3 {
        create_job(&host, offline_image(json!({}))).await;
    }
    let (status, refused) = host.post("/api/v1/jobs", &offline_image(json!({}))).await;
    assert_eq!(status, 429, "{refused}");
    let account = host.usage("partner-a").await;
    assert_eq!(account["balance"], 0.0, "{account}");

    // Concurrent grants all land, exactly.
    let grants: Vec<_> = (0..10).map(|_| grant("partner-b", 0.1)).collect();
    for (status, answer) in futures::future::join_all(grants).await {
        assert_eq!(status, 200, "{answer}");
    }
    let account = host.usage("partner-b").await;
    assert_eq!(account["balance"], 1.0, "{account}");

    let (status, answer) = grant("partner-b", -1.5).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "The balance cannot go below zero.");
    // What the balance holds can be taken back, to the last micro-credit.
    let (status, answer) = grant("partner-b", -0.4).await;
    assert_eq!(
        (status, answer["balance"].clone()),
        (200, json!(0.6)),
        "{answer}"
    );
    let (status, answer) = grant("partner-b", -0.6).await;
    assert_eq!(
        (status, answer["balance"].clone()),
        (200, json!(0.0)),
        "{answer}"
    );
    // The cap counts what the client's tasks hold: a refund gives it back to the balance.
    let (status, _) = grant("partner-b", 999_999_999.9).await;
    assert_eq!(status, 200);
    let (status, held) = send(
        host.as_key(Method::POST, "/api/v1/jobs", "key-b")
            .json(&offline_image(json!({"work_ms": 30_000}))),
    )
    .await;
    assert_eq!(status, 202, "{held}");
    let (status, answer) = grant("partner-b", 0.2).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("cannot exceed"),
        "{answer}"
    );
    let (status, answer) = grant("partner-b", 0.1).await;
    assert_eq!(
        (status, answer["balance"].clone()),
        (200, json!(999_999_999.9)),
        "{answer}"
    );
    let (status, answer) = grant("nobody", 10.0).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"], "Client nobody not found.");
    // Nor did the grant make one: its usage is a 404 as well, not an empty account.
    let (status, account) = send(host.as_admin(Method::GET, "/admin/clients/nobody/usage")).await;
    assert_eq!(status, 404, "{account}");
    assert_eq!(account["error"], "Client nobody not found.");
}

/// A balance at the cap stays there while tasks reserve from it: a reservation only moves
/// credits from the balance to its task, so no grant racing the reservations may land (on
/// PostgreSQL a grant waiting on the balance row once missed the reservation it waited for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_racing_reservations_keep_the_cap() {
    let host = Host::start(
        Options::new(Backend::Postgres)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .toml(&charging(&[("offline/image", 2.0)])),
    )
    .await;
    let grant = |amount: f64| {
        send(
            host.as_admin(Method::POST, "/admin/clients/partner-a/credits")
                .json(&json!({"amount": amount})),
        )
    };
    assert_eq!(grant(1_000_000_000.0).await.0, 200);
    let jobs = (0..24).map(|_| async {
        let (status, job) = host
            .post("/api/v1/jobs", &offline_image(json!({"work_ms": 600_000})))
            .await;
        assert_eq!(status, 202, "{job}");
    });
    let grants = (0..48).map(|_| async { grant(1.0).await.0 });
    let (_, granted) = futures::future::join(
        futures::future::join_all(jobs),
        futures::future::join_all(grants),
    )
    .await;
    assert!(granted.iter().all(|status| *status == 400), "{granted:?}");
    let account = host.usage("partner-a").await;
    assert_eq!(account["balance"], json!(999_999_952.0), "{account}");
    assert_eq!(account["reserved"], json!(48.0), "{account}");
}

on_both_backends!(stored_real_credits_become_exact_micro_credits);

/// A database as the release before integer credits left it: migrations up to the one that
/// made API keys, a balance of 0.3 credits and a succeeded task that kept 0.1.
async fn database_with_real_credits(backend: Backend, dir: &std::path::Path) -> String {
    use sqlx::{Connection, migrate::Migrator};
    let (url, migrations, last_real) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}?mode=rwc", dir.join("old.db").display()),
            "host/migrations/sqlite",
            3,
        ),
        Backend::Postgres => (
            easel_tests::fresh_postgres_database().await,
            "host/migrations/postgres",
            4,
        ),
    };
    let mut migrator = Migrator::new(easel_tests::checkout().join(migrations))
        .await
        .unwrap();
    migrator.migrations = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= last_real)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    let statements = [
        "INSERT INTO clients (id, created_at) VALUES ('partner-a', 1)",
        "INSERT INTO balances (client_id, credits, updated_at) VALUES ('partner-a', 0.3, 1)",
        "INSERT INTO credit_ledger (id, client_id, kind, amount, created_at) \
         VALUES ('crd_1', 'partner-a', 'grant', 0.4, 1)",
        "INSERT INTO tasks (id, client_id, api, capability, provider, model, request, status, \
         created_at, updated_at, reserved_credits) VALUES ('job_old', 'partner-a', 'jobs', \
         'image.generate', 'offline', 'image', '{}', 'succeeded', 1, 1, 0.1)",
    ];
    match backend {
        Backend::Sqlite => {
            let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
            migrator.run(&mut db).await.unwrap();
            for statement in statements {
                sqlx::query(statement).execute(&mut db).await.unwrap();
            }
        }
        Backend::Postgres => {
            let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
            migrator.run(&mut db).await.unwrap();
            for statement in statements {
                sqlx::query(statement).execute(&mut db).await.unwrap();
            }
        }
    }
    url.replace("?mode=rwc", "")
}

async fn stored_real_credits_become_exact_micro_credits(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = database_with_real_credits(backend, dir.path()).await;
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .env("DATABASE_URL", &url)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .toml(&charging(&[("offline/image", 0.1)])),
    )
    .await;
    let account = host.usage("partner-a").await;
    assert_eq!(account["balance"], 0.3, "{account}");
    assert_eq!(
        account["usage"],
        json!([{"model": "offline/image", "tasks": 1, "credits": 0.1}])
    );
    for _ in 0..3 {
        create_job(&host, offline_image(json!({}))).await;
    }
    let (status, refused) = host.post("/api/v1/jobs", &offline_image(json!({}))).await;
    assert_eq!(status, 429, "0.3 paid for exactly three: {refused}");
}

// Item 8: small leaks closed.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answers_in_json() {
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .toml("[limits]\nmax_body_bytes = 65536"),
    )
    .await;
    let (status, answer) = host.get("/api/v1/no-such-route").await;
    assert_eq!(
        (status, answer["error"].is_string()),
        (404, true),
        "{answer}"
    );
    let (status, answer) = send(host.as_key(Method::DELETE, "/api/v1/jobs", "key-a")).await;
    assert_eq!(
        (status, answer["error"].is_string()),
        (405, true),
        "{answer}"
    );
    let big = json!({"id": "x".repeat(128 * 1024)});
    let (status, answer) = send(host.as_admin(Method::POST, "/admin/clients").json(&big)).await;
    assert_eq!(
        (status, answer["error"].is_string()),
        (413, true),
        "{answer}"
    );
}

/// The link an llmage task view hands out, the task created with `headers` and read with
/// `read_with`.
async fn image_link_read_with(
    host: &Host,
    headers: &[(&str, &str)],
    read_with: &[(&str, &str)],
) -> String {
    let mut request = host
        .as_key(Method::POST, "/llmage/v1/image/generations", "key-a")
        .json(
            &json!({"model": "offline/image", "catelogid": "t2i", "prompt": "p",
                      "width": 16, "height": 16}),
        );
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (status, created) = send(request).await;
    assert_eq!(status, 200, "{created}");
    let id = created["taskid"].as_str().unwrap();
    host.wait_terminal(id).await;
    let mut read = host.as_key(
        Method::GET,
        &format!("/llmage/v1/tasks?taskid={id}"),
        "key-a",
    );
    for (name, value) in read_with {
        read = read.header(*name, *value);
    }
    let (_, task) = send(read).await;
    task["image"].as_str().unwrap().to_string()
}

/// The link an llmage task view hands out, the task created and read with `headers`.
async fn image_link(host: &Host, headers: &[(&str, &str)]) -> String {
    image_link_read_with(host, headers, headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_hosts_are_believed_only_from_trusted_proxies() {
    let forwarded = [
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
    ];
    let host = Host::sqlite().await;
    let link = image_link(&host, &forwarded).await;
    assert!(link.starts_with(&host.base), "{link}");

    let proxied =
        Host::start(Options::new(Backend::Sqlite).env("EASEL_TRUSTED_PROXIES", "127.0.0.0/8"))
            .await;
    let link = image_link(&proxied, &forwarded).await;
    assert!(link.starts_with("https://evil.example/files/"), "{link}");
    // RFC 7239's header, as a proxy that sends only it appends its element: the last one
    // counts, not one a client wrote before it.
    let standard = [(
        "forwarded",
        "for=192.0.2.9;host=evil.example, for=192.0.2.1;proto=https;host=\"fwd.example\"",
    )];
    let link = image_link(&proxied, &standard).await;
    assert!(link.starts_with("https://fwd.example/files/"), "{link}");
    let link = image_link(&host, &standard).await;
    assert!(
        link.starts_with(&host.base),
        "not from an untrusted peer: {link}"
    );
    // A proxy that sets X-Forwarded-Host is believed over a `Forwarded` it passed on.
    let both = [("x-forwarded-host", "proxy.example"), standard[0]];
    let link = image_link(&proxied, &both).await;
    assert!(link.starts_with("http://proxy.example/files/"), "{link}");
    // A task view hands out links for the name it is read through, not the one the task was
    // made through (another host of the fleet, a name changed since).
    let link = image_link_read_with(
        &proxied,
        &[("x-forwarded-host", "made.example")],
        &[("x-forwarded-host", "read.example")],
    )
    .await;
    assert!(link.starts_with("http://read.example/files/"), "{link}");
    // A host that is no host and port (credentials, a path) is not made into links.
    for odd in ["a@evil.example", "evil.example/x?"] {
        let link = image_link(&proxied, &[("x-forwarded-host", odd)]).await;
        assert!(link.starts_with(&proxied.base), "{odd}: {link}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_a_browser_would_render_are_served_as_attachments() {
    let host = Host::sqlite().await;
    let form = multipart::Form::new()
        .part(
            "files",
            multipart::Part::bytes(b"<script>alert(1)</script>".to_vec())
                .file_name("page.html")
                .mime_str("text/html")
                .unwrap(),
        )
        .part(
            "files",
            multipart::Part::bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec())
                .file_name("icon.svg")
                .mime_str("image/svg+xml")
                .unwrap(),
        )
        .part(
            "files",
            multipart::Part::bytes(b"plain words".to_vec())
                .file_name("note.txt")
                .mime_str("text/plain")
                .unwrap(),
        );
    let (status, answer) = send(
        host.as_key(Method::POST, "/api/v1/assets", "key-a")
            .multipart(form),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let kinds: Vec<&Value> = answer["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|asset| &asset["kind"])
        .collect();
    // Only the asset API's own kinds: text is a `file`, as a client would register it.
    assert_eq!(kinds, [&json!("file"), &json!("image"), &json!("file")]);
    for (asset, safe) in answer["assets"]
        .as_array()
        .unwrap()
        .iter()
        .zip([false, false, true])
    {
        let url = host.url(asset["downloadUrl"].as_str().unwrap());
        let response = host
            .http
            .get(url)
            .bearer_auth("key-a")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff");
        if safe {
            assert_eq!(headers["content-type"], "text/plain");
        } else {
            assert_eq!(
                headers["content-type"], "application/octet-stream",
                "{asset}"
            );
            let disposition = headers["content-disposition"].to_str().unwrap();
            assert!(disposition.starts_with("attachment"), "{disposition}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_links_can_expire() {
    let host = Host::start(Options::new(Backend::Sqlite).env("EASEL_LINK_TTL_SECS", "2")).await;
    let link = image_link(&host, &[]).await;
    let (base, expires) = link
        .split_once("?expires=")
        .expect("the link carries its expiry");
    let expires: u64 = expires.parse().unwrap();
    assert_eq!(reqwest::get(&link).await.unwrap().status(), 200, "{link}");
    let stretched = format!("{base}?expires={}", expires + 3600);
    assert_eq!(
        reqwest::get(&stretched).await.unwrap().status(),
        404,
        "the expiry is signed"
    );
    assert_eq!(
        reqwest::get(base).await.unwrap().status(),
        404,
        "and cannot be left out"
    );
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let lapsed = reqwest::get(&link).await.unwrap();
    assert_eq!(lapsed.status(), 404, "refused after its expiry");
}

/// A link handed out while links did not expire stops working once a TTL is set: it carries
/// no expiry to lapse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_from_before_a_ttl_stop_working_once_it_is_set() {
    let mut host = Host::start(Options::new(Backend::Sqlite)).await;
    let link = image_link(&host, &[]).await;
    assert!(!link.contains("expires="), "{link}");
    assert_eq!(reqwest::get(&link).await.unwrap().status(), 200, "{link}");
    let path = link.split_once("/files/").unwrap().1.to_string();
    host.set_env("EASEL_LINK_TTL_SECS", "3600");
    host.kill9_and_restart().await;
    let old = host.url(&format!("/files/{path}"));
    assert_eq!(reqwest::get(&old).await.unwrap().status(), 404, "{old}");
    let fresh = image_link(&host, &[]).await;
    assert_eq!(reqwest::get(&fresh).await.unwrap().status(), 200, "{fresh}");
}
