//! Seed 001's job API over real HTTP: create, get, list with filters, capabilities, auth
//! headers, per-client isolation, idempotency (also under concurrency), errors.

use std::time::Duration;

use easel_tests::{Backend, Host, Options, on_both_backends, send};
use reqwest::Method;
use serde_json::{Value, json};

on_both_backends!(
    job_runs_to_success_and_its_image_downloads,
    idempotency_holds_under_concurrency,
    list_filters_and_paginates,
    ended_jobs_go_after_keep_ended_secs
);

async fn job_runs_to_success_and_its_image_downloads(backend: Backend) {
    let host = Host::start(Options::new(backend)).await;
    let (status, created) = host
        .post("/api/v1/jobs", &json!({"capability": "image.generate", "prompt": "生成一张专业产品主图", "width": 144, "height": 256}))
        .await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["reused"], false);
    let job = &created["job"];
    assert!(job["id"].as_str().unwrap().starts_with("job_"));
    assert_eq!(job["status"], "queued");
    assert_eq!(job["capability"], "image.generate");
    assert_eq!(job["outputAssetIds"], json!([]));

    let done = host.wait_terminal(job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["progress"], 1.0);
    let asset_id = done["outputAssetIds"][0]
        .as_str()
        .expect("one output asset");

    let (status, asset) = host.get(&format!("/api/v1/assets/{asset_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(asset["asset"]["contentType"], "image/png");
    assert_eq!(asset["asset"]["jobId"], done["id"]);

    let response = host
        .as_key(
            Method::GET,
            &format!("/api/v1/assets/{asset_id}/download"),
            "key-a",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let png = response.bytes().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (144, 256), "the PNG has the asked size");
}

async fn idempotency_holds_under_concurrency(backend: Backend) {
    let host = Host::start(Options::new(backend)).await;
    let body = json!({"capability": "image.generate", "prompt": "same", "width": 32, "height": 32});
    let requests = (0..16).map(|_| {
        send(
            host.as_key(Method::POST, "/api/v1/jobs", "key-a")
                .header("Idempotency-Key", "demo-job-001")
                .json(&body),
        )
    });
    let answers = futures::future::join_all(requests).await;
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|(_, b)| b["job"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "one job for one key: {answers:?}");
    let fresh = answers
        .iter()
        .filter(|(status, b)| *status == 202 && b["reused"] == false)
        .count();
    assert_eq!(fresh, 1, "exactly one request created it");
    assert!(
        answers
            .iter()
            .all(|(status, b)| *status == 202 || (*status == 200 && b["reused"] == true))
    );

    // Key order and whitespace do not make a different body.
    let reordered =
        r#"{ "height": 32, "width": 32, "prompt": "same", "capability": "image.generate" }"#;
    let (status, again) = send(
        host.as_key(Method::POST, "/api/v1/jobs", "key-a")
            .header("Idempotency-Key", "demo-job-001")
            .header("content-type", "application/json")
            .body(reordered),
    )
    .await;
    assert_eq!((status, &again["reused"]), (200, &json!(true)));

    let (status, conflict) = send(
        host.as_key(Method::POST, "/api/v1/jobs", "key-a")
            .header("Idempotency-Key", "demo-job-001")
            .json(&json!({"capability": "image.generate", "prompt": "different"})),
    )
    .await;
    assert_eq!(status, 409);
    assert!(
        conflict["error"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );

    // Keys are per client: partner-b may use the same key for its own job.
    let (status, other) = send(
        host.as_key(Method::POST, "/api/v1/jobs", "key-b")
            .header("Idempotency-Key", "demo-job-001")
            .json(&body),
    )
    .await;
    assert_eq!((status, &other["reused"]), (202, &json!(false)));
    assert!(!ids.contains(other["job"]["id"].as_str().unwrap()));
}

/// With `[engine] keep_ended_secs`, a job is deleted that long after it ended, with its
/// idempotency key (the key then makes a new job, where a key left naming a deleted job would
/// fail); a job still running, and one whose webhook is still being delivered, stay.
async fn ended_jobs_go_after_keep_ended_secs(backend: Backend) {
    let host = Host::start(Options::new(backend).toml("[engine]\nkeep_ended_secs = 1")).await;
    let image =
        json!({"capability": "image.generate", "prompt": "kept", "width": 16, "height": 16});
    let keyed = || {
        send(
            host.as_key(Method::POST, "/api/v1/jobs", "key-a")
                .header("Idempotency-Key", "kept-a-second")
                .json(&image),
        )
    };
    let (status, first) = keyed().await;
    assert_eq!(status, 202, "{first}");
    let first = first["job"]["id"].as_str().unwrap().to_owned();
    host.wait_terminal(&first).await;
    let mut running = image.clone();
    running["work_ms"] = json!(30_000);
    let (status, running) = host.post("/api/v1/jobs", &running).await;
    assert_eq!(status, 202, "{running}");
    let mut hooked = image.clone();
    // Nothing listens there: its delivery is tried again and again meanwhile.
    hooked["webhookUrl"] = json!("http://127.0.0.1:9/hook");
    let (status, hooked) = host.post("/api/v1/jobs", &hooked).await;
    assert_eq!(status, 202, "{hooked}");
    let hooked = hooked["job"]["id"].as_str().unwrap().to_owned();
    host.wait_terminal(&hooked).await;

    let start = std::time::Instant::now();
    loop {
        let (status, gone) = host.get(&format!("/api/v1/jobs/{first}")).await;
        if status == 404 {
            break;
        }
        assert_eq!(status, 200, "{gone}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the ended job outlived its keep: {gone}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, again) = keyed().await;
    assert_eq!((status, &again["reused"]), (202, &json!(false)), "{again}");
    assert_ne!(again["job"]["id"], first.as_str());
    let (status, running) = host
        .get(&format!(
            "/api/v1/jobs/{}",
            running["job"]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        (status, &running["job"]["status"]),
        (200, &json!("running")),
        "{running}"
    );
    let (status, hooked) = host.get(&format!("/api/v1/jobs/{hooked}")).await;
    assert_eq!(
        (status, &hooked["job"]["status"]),
        (200, &json!("succeeded")),
        "{hooked}"
    );
}

async fn list_filters_and_paginates(backend: Backend) {
    let host = Host::start(Options::new(backend)).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let (_, created) = host.post("/api/v1/jobs", &json!({"capability": "image.generate", "prompt": format!("p{n}"), "width": 16, "height": 16})).await;
        ids.push(created["job"]["id"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let (_, failing) = host
        .post("/api/v1/jobs", &json!({"capability": "image.upscale", "imageUrls": ["https://example.com/input.png"], "resolution": "4k", "fail": "upscaler refused"}))
        .await;
    let failing_id = failing["job"]["id"].as_str().unwrap().to_string();
    for id in ids.iter().chain([&failing_id]) {
        host.wait_terminal(id).await;
    }

    let (status, listed) = host.get("/api/v1/jobs?status=succeeded&limit=20").await;
    assert_eq!(status, 200);
    let jobs = listed["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 5);
    assert!(jobs.iter().all(|j| j["status"] == "succeeded"));
    assert_eq!(jobs[0]["id"], ids[4], "newest first");

    let (_, failed) = host.get("/api/v1/jobs?status=failed").await;
    assert_eq!(failed["jobs"][0]["id"], failing_id);
    assert!(
        failed["jobs"][0]["error"]
            .as_str()
            .unwrap()
            .contains("upscaler refused")
    );

    let (_, upscales) = host.get("/api/v1/jobs?capability=image.upscale").await;
    assert_eq!(upscales["jobs"].as_array().unwrap().len(), 1);

    let (_, first_page) = host
        .get("/api/v1/jobs?capability=image.generate&limit=2")
        .await;
    assert_eq!(first_page["jobs"].as_array().unwrap().len(), 2);
    let before = first_page["nextBefore"]
        .as_str()
        .expect("a full page has a cursor");
    let (_, second_page) = host
        .get(&format!(
            "/api/v1/jobs?capability=image.generate&limit=2&before={before}"
        ))
        .await;
    assert_eq!(second_page["jobs"][0]["id"], ids[2]);

    for bad in [
        "limit=0",
        "limit=201",
        "limit=abc",
        "status=done",
        "before=yesterday",
        "capability=image.paint",
    ] {
        let (status, body) = host.get(&format!("/api/v1/jobs?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string());
    }
}

#[tokio::test]
async fn every_auth_header_works_and_clients_are_isolated() {
    let host = Host::sqlite().await;
    let body = json!({"capability": "image.generate", "prompt": "mine", "width": 16, "height": 16});
    let (status, missing) = send(host.http.post(host.url("/api/v1/jobs")).json(&body)).await;
    assert_eq!(
        (status, missing["error"].as_str()),
        (401, Some("Missing API key."))
    );
    let (status, invalid) = send(host.as_key(Method::GET, "/api/v1/jobs", "nope")).await;
    assert_eq!(
        (status, invalid["error"].as_str()),
        (401, Some("Invalid API key."))
    );

    for header in ["X-Zhinian-Api-Key", "X-API-Key"] {
        let (status, _) = send(
            host.http
                .get(host.url("/api/v1/jobs"))
                .header(header, "key-a"),
        )
        .await;
        assert_eq!(status, 200, "{header}");
    }
    let (_, created) = host.post("/api/v1/jobs", &body).await;
    let id = created["job"]["id"].as_str().unwrap();
    let done = host.wait_terminal(id).await;
    let asset = done["outputAssetIds"][0].as_str().unwrap();

    for path in [
        format!("/api/v1/jobs/{id}"),
        format!("/api/v1/assets/{asset}"),
        format!("/api/v1/assets/{asset}/download"),
    ] {
        let (status, body) = send(host.as_key(Method::GET, &path, "key-b")).await;
        assert_eq!(status, 404, "{path} must be invisible to partner-b: {body}");
    }
    let (status, _) =
        send(host.as_key(Method::POST, &format!("/api/v1/jobs/{id}/cancel"), "key-b")).await;
    assert_eq!(status, 404);
    let (_, theirs) = send(host.as_key(Method::GET, "/api/v1/jobs", "key-b")).await;
    assert_eq!(theirs["jobs"], json!([]));
    let (_, their_assets) = send(host.as_key(Method::GET, "/api/v1/assets", "key-b")).await;
    assert_eq!(their_assets["assets"], json!([]));
}

#[tokio::test]
async fn bad_requests_get_400_and_change_nothing() {
    let host = Host::sqlite().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"prompt": "no capability"}), "capability"),
        (
            json!({"capability": "image.paint", "prompt": "x"}),
            "Unsupported capability",
        ),
        (json!({"capability": "image.generate"}), "prompt"),
        (
            json!({"capability": "image.generate", "prompt": "x", "width": 5}),
            "width",
        ),
        (
            json!({"capability": "image.generate", "prompt": "x", "model": "nobody/nothing"}),
            "Unknown model",
        ),
        (
            json!({"capability": "image.upscale", "resolution": "4k"}),
            "input image",
        ),
        (
            json!({"capability": "video.generate", "prompt": "x", "settings": {"duration": 3}}),
            "duration",
        ),
        (
            json!({"capability": "video.generate", "prompt": "x", "settings": {"ratio": "2:1"}}),
            "ratio",
        ),
        (
            json!({"capability": "video.generate", "prompt": "x", "settings": {"resolution": "4k"}}),
            "resolution",
        ),
        (
            json!({"capability": "image.generate", "prompt": "x", "settings": {"resolution": "720p"}}),
            "settings.resolution is a video setting (480p, 720p, 1080p); give image.generate a width and height",
        ),
        (
            json!({"capability": "image.generate", "prompt": "x", "width": "512"}),
            "Invalid request: width: invalid type: string \"512\", expected a whole number",
        ),
        (
            json!({"capability": "image.generate", "prompt": "x", "quality": "ultra"}),
            "quality",
        ),
        (
            json!({"capability": "image.generate", "prompt": "x", "force_single": "yes"}),
            "force_single must be true or false",
        ),
        (
            json!({"capability": "image.generate", "prompt": "x", "inputAssetIds": ["asset_missing"]}),
            "Unknown asset",
        ),
        (
            json!({"capability": "image.generate", "prompt": "x", "imageUrls": ["ftp://example.com/a.png"]}),
            "http",
        ),
        (json!(["not", "an", "object"]), "JSON object"),
    ];
    for (body, needle) in cases {
        let (status, answer) = host.post("/api/v1/jobs", &body).await;
        assert_eq!(status, 400, "{body} → {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{body}: {message:?} should mention {needle:?}"
        );
    }
    let (status, _) = send(
        host.as_key(Method::POST, "/api/v1/jobs", "key-a")
            .header("content-type", "application/json")
            .body("{oops"),
    )
    .await;
    assert_eq!(status, 400);
    let (_, listed) = host.get("/api/v1/jobs").await;
    assert_eq!(listed["jobs"], json!([]), "no rejected request was stored");
    let (status, missing) = host.get("/api/v1/jobs/job_doesnotexist").await;
    assert_eq!((status, missing["error"].is_string()), (404, true));
}

/// A method a documented route does not take is refused in that route's API's own shape
/// (seeds 000 and 003, OpenAI's error object); a path no route serves in `{"error"}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_are_refused_in_each_apis_own_shape() {
    let host = Host::sqlite().await;
    let wrong = |method: Method, path: &str| send(host.as_key(method, path, "key-a"));
    let (status, pixel) = wrong(Method::POST, "/api/v1/models").await;
    assert_eq!(status, 405, "{pixel}");
    assert_eq!(pixel["code"], "405", "{pixel}");
    assert!(
        pixel["message"].is_string() && pixel["request_id"].is_string(),
        "{pixel}"
    );
    let (status, pixel) = wrong(Method::GET, "/api/v1/generations/image").await;
    assert_eq!((status, &pixel["code"]), (405, &json!("405")), "{pixel}");
    let (status, sd) = wrong(Method::GET, "/api/v1/generate").await;
    assert_eq!(status, 405, "{sd}");
    assert!(sd["detail"].is_string(), "{sd}");
    let (status, openai) = wrong(Method::GET, "/v1/chat/completions").await;
    assert_eq!(status, 405, "{openai}");
    assert!(openai["error"]["message"].is_string(), "{openai}");
    let (status, jobs) = wrong(Method::DELETE, "/api/v1/jobs").await;
    assert_eq!(status, 405, "{jobs}");
    assert!(jobs["error"].is_string(), "{jobs}");
    let (status, unknown) = wrong(Method::GET, "/api/v1/nothing-here").await;
    assert_eq!(status, 404, "{unknown}");
    assert!(unknown["error"].is_string(), "{unknown}");
}

/// A path parameter that cannot be read (an id that is no UTF-8) is refused in the route's
/// API's own JSON shape, not axum's plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_path_parameters_are_refused_in_each_apis_own_shape() {
    let host = Host::sqlite().await;
    let ask = |method: Method, path: &str| send(host.as_key(method, path, "key-a"));
    for path in [
        "/api/v1/jobs/%ff",
        "/api/v1/assets/%ff",
        "/api/v1/assets/%ff/download",
    ] {
        let (status, jobs) = ask(Method::GET, path).await;
        assert_eq!(status, 400, "{path}: {jobs}");
        assert!(
            jobs["error"].as_str().unwrap().contains("UTF-8"),
            "{path}: {jobs}"
        );
    }
    let (status, cancel) = ask(Method::POST, "/api/v1/jobs/%ff/cancel").await;
    assert!(status == 400 && cancel["error"].is_string(), "{cancel}");
    let (status, shared) = ask(Method::GET, "/api/v1/tasks/%ff").await;
    assert_eq!(status, 400, "{shared}");
    assert!(
        shared["code"] == "400" && shared["detail"].is_string(),
        "{shared}"
    );
    let (status, openai) = ask(Method::GET, "/v1/models/%ff").await;
    assert_eq!(status, 400, "{openai}");
    assert!(openai["error"]["message"].is_string(), "{openai}");
    let (status, pixel) = send(
        host.as_key(Method::POST, "/api/v1/generations/%ff", "key-a")
            .json(&json!({"prompt": "x"})),
    )
    .await;
    assert_eq!(status, 400, "{pixel}");
    assert!(
        pixel["code"] == "400" && pixel["request_id"].is_string(),
        "{pixel}"
    );
}

#[tokio::test]
async fn capabilities_and_openapi_describe_the_api() {
    let host = Host::sqlite().await;
    let (status, caps) = host.get("/api/v1/capabilities").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = caps["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["capability"].as_str().unwrap())
        .collect();
    for needed in [
        "image.generate",
        "image.inpaint",
        "image.upscale",
        "video.generate",
    ] {
        assert!(names.contains(&needed), "{needed} missing from {names:?}");
    }
    let (status, doc) = host.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/v1/jobs",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs/{id}/cancel",
        "/api/v1/capabilities",
        "/api/v1/assets",
        "/api/v1/assets/{id}",
        "/api/v1/assets/{id}/download",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from openapi.json"
        );
    }
    assert!(doc["components"]["schemas"]["JobRequest"]["properties"]["webhookUrl"].is_object());
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let host =
        Host::start(Options::new(Backend::Sqlite).toml("[limits]\nmax_body_bytes = 4096")).await;
    let huge = "x".repeat(10_000);
    let (status, body) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "prompt": huge}),
        )
        .await;
    assert_eq!(status, 413);
    assert!(
        body["error"].is_string(),
        "413 in the {{\"error\"}} shape: {body}"
    );
}

#[test]
fn refuses_a_public_bind_without_keys() {
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(easel_tests::easel_bin())
        .arg("serve")
        .env_clear()
        .env("EASEL_ADDR", "0.0.0.0:0")
        .env("EASEL_DATA_DIR", data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without API keys"), "{stderr}");
}
