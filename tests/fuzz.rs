//! Fuzzing every write route of the four APIs: no input may produce a 5xx, and an input that
//! is refused (4xx) must leave stored state exactly as it was.
//!
//! Two runs: a seeded mutation fuzzer here (valid bodies with fields dropped, retyped,
//! oversized or garbled, plus non-JSON bodies), which checks the table row counts around every
//! request; and schemathesis against `/openapi.json` for breadth (its `not_a_server_error`
//! check), time-boxed by `EASEL_FUZZ_SECS` (default 30).

use easel_tests::{Backend, Host, Options, send};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row;

/// Small deterministic generator (xorshift64*), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A hostile value in place of a field.
fn hostile(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => json!(-1),
        2 => json!(1e308),
        3 => json!(i64::MAX),
        4 => json!(""),
        5 => json!("x".repeat(20_000)),
        6 => json!({"nested": {"deeper": [1, 2, {"x": null}]}}),
        7 => json!([1, "two", null]),
        8 => json!(true),
        9 => json!("data:image/png;base64,!!!notbase64"),
        10 => json!("http://127.0.0.1:1/internal"),
        _ => json!("\u{0}\u{fffd}'; DROP TABLE tasks; --"),
    }
}

/// A mutated request body: raw bytes and whether it is still JSON.
fn mutate(valid: &Value, rng: &mut Rng) -> Vec<u8> {
    let mut body = valid.clone();
    let keys: Vec<String> = body
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    match rng.below(7) {
        0 if !keys.is_empty() => {
            body.as_object_mut()
                .unwrap()
                .remove(&keys[rng.below(keys.len())]);
        }
        1 | 2 if !keys.is_empty() => {
            let key = keys[rng.below(keys.len())].clone();
            body[key] = hostile(rng);
        }
        3 => {
            body["unexpected_field"] = hostile(rng);
        }
        4 => {
            let text = body.to_string();
            return text.as_bytes()[..rng.below(text.len().max(1))].to_vec();
        }
        5 => {
            return match rng.below(4) {
                0 => b"[1,2,3]".to_vec(),
                1 => b"\"just a string\"".to_vec(),
                2 => vec![0xff, 0xfe, 0x00, 0x80],
                _ => Vec::new(),
            };
        }
        _ => {}
    }
    body.to_string().into_bytes()
}

/// Row counts of every table a request can change, once the work accepted so far has
/// finished (a task that ends writes its outputs, which is not the next request's doing).
async fn snapshot(host: &Host) -> Vec<i64> {
    let url = format!(
        "sqlite://{}?mode=ro",
        host.data_dir().join("easel.db").display()
    );
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    loop {
        let live = sqlx::query("SELECT COUNT(*) FROM tasks WHERE status IN ('queued', 'running')")
            .fetch_one(&mut db)
            .await
            .unwrap();
        if live.get::<i64, _>(0) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut counts = Vec::new();
    for table in [
        "tasks",
        "assets",
        "idempotency_keys",
        "webhook_outbox",
        "balances",
        "credit_ledger",
        "clients",
    ] {
        let row = sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut db)
            .await
            .unwrap();
        counts.push(row.get::<i64, _>(0));
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_input_never_5xx_and_never_changes_state() {
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_ADMIN_KEY", "admin-secret")
            .toml("[credits]\nenforce = true\nprices = { \"offline/video\" = 3 }"),
    )
    .await;
    let routes: Vec<(&str, &str, Value)> = vec![
        (
            "/api/v1/jobs",
            "key-a",
            json!({"capability": "image.generate", "prompt": "x", "width": 64, "height": 64}),
        ),
        (
            "/api/v1/assets",
            "key-a",
            json!({"url": "https://example.com/a.png"}),
        ),
        (
            "/api/v1/generations/image",
            "key-a",
            json!({"prompt": "x", "model": "offline/image", "n": 1}),
        ),
        (
            "/api/v1/generations/video",
            "key-a",
            json!({"prompt": "x", "model": "offline/video", "duration": "2s"}),
        ),
        (
            "/api/v1/generate",
            "key-a",
            json!({"prompt": "x", "width": 64, "height": 64, "num_images": 1}),
        ),
        (
            "/llmage/v1/image/generations",
            "key-a",
            json!({"model": "image", "catelogid": "t2i", "prompt": "x"}),
        ),
        (
            "/llmage/v1/video/generations",
            "key-a",
            json!({"model": "video", "catelogid": "t2v", "prompt": "x", "duration": 2}),
        ),
        (
            "/llmage/v1/chat/completions",
            "key-a",
            json!({"model": "chat", "prompt": "x"}),
        ),
        (
            "/v1/chat/completions",
            "key-a",
            json!({"model": "offline/chat", "messages": [{"role": "user", "content": "x"}]}),
        ),
        (
            "/v1/images/generations",
            "key-a",
            json!({"model": "offline/image", "prompt": "x", "size": "32x32"}),
        ),
        (
            "/admin/clients",
            "admin-secret",
            json!({"id": "fuzz-client"}),
        ),
        (
            "/admin/clients/partner-a/credits",
            "admin-secret",
            json!({"amount": 5}),
        ),
    ];
    let mut rng = Rng(0x05EE_D0FE_A5E1);
    let mut state = snapshot(&host).await;
    let (mut refused, mut accepted) = (0, 0);
    for round in 0..120 {
        for (path, key, valid) in &routes {
            let body = mutate(valid, &mut rng);
            let request = host
                .as_key(Method::POST, path, key)
                .header("content-type", "application/json")
                .body(body.clone());
            let (status, answer) = send(request).await;
            assert!(
                status < 500,
                "round {round}: {path} with {} → {status} {answer}",
                String::from_utf8_lossy(&body)
            );
            let now = snapshot(&host).await;
            if status >= 400 {
                refused += 1;
                assert_eq!(
                    now, state,
                    "round {round}: refused {path} ({status} {answer}) changed stored state"
                );
            } else {
                accepted += 1;
            }
            state = now;
        }
        // Reads with hostile ids and queries.
        let long = "9".repeat(300);
        let junk = ["%00", "..%2F..%2Fetc%2Fpasswd", "job_x", long.as_str()][rng.below(4)];
        for path in [
            format!("/api/v1/tasks/{junk}"),
            format!("/api/v1/jobs?limit={junk}&before={junk}"),
            format!("/llmage/v1/tasks?taskid={junk}"),
            format!("/llmage/v1/models?catelogid={junk}"),
            format!("/files/{junk}/{junk}"),
        ] {
            let (status, answer) = send(host.as_key(Method::GET, &path, "key-a")).await;
            assert!(status < 500, "{path} → {status} {answer}");
        }
    }
    assert!(
        refused > 500 && accepted > 50,
        "the mix exercised both sides: {refused} refused, {accepted} accepted"
    );
    assert_eq!(snapshot(&host).await, state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_on_any_documented_route() {
    let host =
        Host::start(Options::new(Backend::Sqlite).env("EASEL_ADMIN_KEY", "admin-secret")).await;
    let python = std::env::var("EASEL_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let seconds = std::env::var("EASEL_FUZZ_SECS").unwrap_or_else(|_| "30".into());
    let report = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(&python)
        // schemathesis keeps a cache in its working folder; keep it out of the checkout.
        .current_dir(report.path())
        .args(["-m", "schemathesis.cli", "run"])
        .arg(host.url("/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error",
            "--max-time",
            &seconds,
            "-n",
            "25",
            "--seed",
            "7",
        ])
        .args([
            "-H",
            "Authorization: Bearer key-a",
            "--report",
            "junit",
            "--report-dir",
        ])
        .arg(report.path())
        .output()
        .await
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("generated"), "{stdout}");
    println!(
        "{}",
        stdout
            .lines()
            .filter(|l| l.contains("generated") || l.contains("Tested"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_and_both_viewers_cover_every_api() {
    let host = Host::start(Options::new(Backend::Sqlite)).await;
    let (status, doc) = host.get("/openapi.json").await;
    assert_eq!(status, 200);
    for path in [
        "/api/v1/jobs",
        "/api/v1/assets",
        "/api/v1/models",
        "/api/v1/generations/{kind}",
        "/api/v1/tasks/{id}",
        "/health",
        "/api/health",
        "/api/v1/generate",
        "/llmage/v1/models",
        "/llmage/v1/chat/completions",
        "/llmage/v1/image/generations",
        "/llmage/v1/video/generations",
        "/llmage/v1/tasks",
        "/v1/models",
        "/v1/chat/completions",
        "/v1/images/generations",
        "/admin/plugins",
        "/admin/clients/{id}/credits",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from /openapi.json"
        );
    }
    let (_, same) = host.get("/api/v1/openapi.json").await;
    assert_eq!(same, doc);
    for (path, needle) in [
        ("/docs", "swagger-ui"),
        ("/docs/swagger-ui-bundle.js", "SwaggerUIBundle"),
        ("/redoc", "/openapi.json"),
    ] {
        let response = reqwest::get(host.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            response.text().await.unwrap().contains(needle),
            "{path} should mention {needle}"
        );
    }
}

/// The document lists only what the router serves: each documented operation, called with
/// placeholder path parameters (an enum's first value where the document names one) and an
/// empty JSON body, reaches a handler. The router's own miss is a 404 or 405 with an empty body;
/// every handler answers with one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed() {
    let host =
        Host::start(Options::new(Backend::Sqlite).env("EASEL_ADMIN_KEY", "admin-secret")).await;
    let (_, doc) = host.get("/openapi.json").await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("operations") {
            let mut concrete = path.clone();
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] != "path" {
                    continue;
                }
                let name = parameter["name"].as_str().unwrap();
                let value = parameter["schema"]["enum"][0].as_str().unwrap_or("x");
                concrete = concrete.replace(&format!("{{{name}}}"), value);
            }
            let key = if path.starts_with("/admin") {
                "admin-secret"
            } else {
                "key-a"
            };
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = host
                .as_key(method.clone(), &concrete, key)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap();
            assert!(
                !(matches!(status, 404 | 405) && body.is_empty()),
                "{method} {concrete} is documented but not routed ({status})"
            );
            checked += 1;
        }
    }
    assert!(checked > 30, "checked {checked} operations");
}
