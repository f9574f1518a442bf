//! Seed 003 (the SD service): every example request of the document, sent as written (host
//! and key substituted), gets the documented answer shape. With no native model configured the
//! service runs on the default image model (the offline one here); `diffusion.rs` covers the
//! native `local` model.

use std::time::Duration;

use base64::Engine as _;
use easel_tests::{Backend, Host, Options, Receiver, send, solid_png};
use serde_json::{Value, json};

async fn sd_host() -> Host {
    Host::start(Options::new(Backend::Sqlite).env("EASEL_ALLOW_PRIVATE_TARGETS", "1")).await
}

/// POSTs with `X-API-Key`, as the document's examples do.
async fn generate(host: &Host, body: &Value) -> (u16, Value) {
    send(
        reqwest::Client::new()
            .post(host.url("/api/v1/generate"))
            .header("X-API-Key", "key-a")
            .json(body),
    )
    .await
}

/// Each field a 422 names, with the kind of its refusal, in the order listed.
fn refused_fields(answer: &Value) -> Vec<(&Value, &Value)> {
    answer["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (&entry["loc"][1], &entry["type"]))
        .collect()
}

async fn task(host: &Host, id: &str) -> Value {
    let (status, body) = send(
        reqwest::Client::new()
            .get(host.url(&format!("/api/v1/tasks/{id}")))
            .header("X-API-Key", "key-a"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Submits, checks the documented answer, waits, and returns the flat task.
async fn generate_and_wait(host: &Host, body: Value) -> Value {
    let (status, created) = generate(host, &body).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["message"], "任务已创建，正在处理中");
    let id = created["task_id"].as_str().unwrap().to_string();
    host.wait_terminal(&id).await;
    let done = task(host, &id).await;
    for field in [
        "task_id",
        "status",
        "result_url",
        "result_urls",
        "error_message",
        "created_at",
        "updated_at",
    ] {
        assert!(done.get(field).is_some(), "flat task lacks {field}: {done}");
    }
    // The seed's time format: ISO 8601 without an offset (`2024-01-01T12:00:00`), to the
    // microsecond as Python writes it.
    for field in ["created_at", "updated_at"] {
        let at = done[field].as_str().unwrap();
        assert!(
            at.len() == 26 && at.as_bytes()[10] == b'T' && !at.ends_with('Z'),
            "{field}: {at}"
        );
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_on_both_paths_without_a_key() {
    let host = sd_host().await;
    for path in ["/health", "/api/health"] {
        let (status, body) = send(reqwest::Client::new().get(host.url(path))).await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["model_loaded"], true, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txt2img_and_img2img_examples_complete_with_one_result_url() {
    let host = sd_host().await;
    let done = generate_and_wait(
        &host,
        json!({
            "prompt": "a beautiful landscape with mountains and lakes, sunset, highly detailed, 4k",
            "width": 512, "height": 512, "num_images": 1, "guidance_scale": 7.5,
            "num_inference_steps": 30, "output_format": "png"
        }),
    )
    .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(done["result_urls"].is_null());
    assert!(done["error_message"].is_null());
    let image = reqwest::get(done["result_url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(image.status(), 200, "result_url is public");
    assert_eq!(image.headers()["content-type"], "image/png");

    let init = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(solid_png(64, 64, 120))
    );
    let edited = generate_and_wait(
        &host,
        json!({
            "prompt": "anime style, vibrant colors", "init_image": init, "strength": 0.7,
            "guidance_scale": 7.5, "num_inference_steps": 30
        }),
    )
    .await;
    assert_eq!(edited["status"], "completed", "{edited}");
    assert!(edited["result_url"].is_string());
}

/// `output_format` is kept on a model that does not take it: the offline model draws PNGs, and
/// the host converts them to the JPEG asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_format_asked_is_the_one_delivered() {
    let host = sd_host().await;
    for (asked, content_type, magic) in [
        ("jpg", "image/jpeg", &b"\xFF\xD8\xFF"[..]),
        ("jpeg", "image/jpeg", &b"\xFF\xD8\xFF"[..]),
        ("png", "image/png", &b"\x89PNG"[..]),
    ] {
        let done = generate_and_wait(
            &host,
            json!({"prompt": "a red square", "width": 64, "height": 64, "output_format": asked}),
        )
        .await;
        assert_eq!(done["status"], "completed", "{done}");
        let image = reqwest::get(done["result_url"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(image.headers()["content-type"], content_type, "{asked}");
        let bytes = image.bytes().await.unwrap();
        assert!(bytes.starts_with(magic), "{asked}: {:?}", &bytes[..8]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_images_come_back_as_result_urls_and_seeds_repeat() {
    let host = sd_host().await;
    let done = generate_and_wait(
        &host,
        json!({"prompt": "a cute cat playing in the garden", "width": 512, "height": 512,
               "num_images": 3, "guidance_scale": 7.5, "num_inference_steps": 30}),
    )
    .await;
    assert!(done["result_url"].is_null(), "{done}");
    assert_eq!(done["result_urls"].as_array().unwrap().len(), 3);

    let example = json!({"prompt": "a magical forest with glowing mushrooms", "seed": 12345,
                         "guidance_scale": 7.5, "num_inference_steps": 30});
    let first = generate_and_wait(&host, example.clone()).await;
    let second = generate_and_wait(&host, example).await;
    let bytes =
        |url: String| async move { reqwest::get(url).await.unwrap().bytes().await.unwrap() };
    assert_eq!(
        bytes(first["result_url"].as_str().unwrap().into()).await,
        bytes(second["result_url"].as_str().unwrap().into()).await,
        "same seed, same image"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_example_delivers_003s_payload() {
    let host = sd_host().await;
    let receiver = Receiver::start(0).await;
    let (status, created) = generate(
        &host,
        &json!({"prompt": "a futuristic cityscape at night", "width": 1024, "height": 1024,
                "callback_url": receiver.url, "guidance_scale": 7.5, "num_inference_steps": 30}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    receiver.wait_for(1, Duration::from_secs(30)).await;
    let body: Value = serde_json::from_slice(&receiver.calls.lock().unwrap()[0].1).unwrap();
    assert_eq!(body["task_id"], created["task_id"]);
    assert_eq!(body["status"], "completed");
    assert!(
        body["image_url"].as_str().unwrap().contains("/files/"),
        "{body}"
    );
}

/// The service's model must do what the request asks: a model mapped to `sd` that cannot
/// edit images refuses an `init_image` (it used to answer with a text-to-image result, the
/// init image dropped), one that draws no images refuses a text-to-image request, and
/// neither request leaves a task behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_refuses_what_it_cannot_do() {
    let config = "[models]\naliases = { \"sd\" = \"offline/video\" }\n";
    let host = Host::start(Options::new(Backend::Sqlite).toml(config)).await;
    let init = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(solid_png(64, 64, 120))
    );
    for (body, capability) in [
        (
            json!({"prompt": "x", "init_image": init, "strength": 0.7}),
            "image.edit",
        ),
        (json!({"prompt": "x"}), "image.generate"),
    ] {
        let (status, answer) = generate(&host, &body).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(
            answer["detail"],
            format!("Model offline/video does not support {capability}")
        );
    }
    let (status, jobs) = host.get("/api/v1/jobs").await;
    assert_eq!(
        (status, jobs["jobs"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{jobs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_follow_the_documented_codes() {
    let host = sd_host().await;
    // 401 without or with a wrong key.
    let (status, body) = send(
        reqwest::Client::new()
            .post(host.url("/api/v1/generate"))
            .json(&json!({"prompt": "x"})),
    )
    .await;
    assert_eq!(status, 401);
    assert!(body["detail"].is_string());
    let (status, _) = send(
        reqwest::Client::new()
            .post(host.url("/api/v1/generate"))
            .header("X-API-Key", "nope")
            .json(&json!({"prompt": "x"})),
    )
    .await;
    assert_eq!(status, 401);
    // 404 for an unknown task, in 003's shape.
    let (status, body) = send(
        reqwest::Client::new()
            .get(host.url("/api/v1/tasks/550e8400-e29b-41d4-a716-446655440000"))
            .header("X-API-Key", "key-a"),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["detail"], "任务不存在");
    // 422 naming the field, for each documented range.
    let cases = [
        (json!({"width": 512}), "prompt"),
        (json!({"prompt": "x", "num_images": 11}), "num_images"),
        (json!({"prompt": "x", "num_images": 0}), "num_images"),
        (json!({"prompt": "x", "strength": 1.5}), "strength"),
        (
            json!({"prompt": "x", "scheduler": "FancyScheduler"}),
            "scheduler",
        ),
        (
            json!({"prompt": "x", "output_format": "gif"}),
            "output_format",
        ),
        (
            json!({"prompt": "x", "init_image": "https://example.com/a.png"}),
            "init_image",
        ),
        (json!({"prompt": "x", "width": 500}), "width"),
        (json!({"prompt": "x", "seed": "abc"}), "seed"),
        // A1111's separate text-encoder and UNet weights: refused, not left in the prompt.
        (json!({"prompt": "x <lora:ink:0.5:0.3>"}), "prompt"),
        // Adapter tags alone are no prompt.
        (json!({"prompt": " <lora:ink:0.5> "}), "prompt"),
    ];
    for (body, field) in cases {
        let (status, answer) = generate(&host, &body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(
            answer["detail"][0]["loc"],
            json!(["body", field]),
            "{answer}"
        );
    }
    // An adapter's errors are located within it; a misspelt weight is refused, not run at 1.0.
    let (status, answer) = generate(
        &host,
        &json!({"prompt": "x", "loras": [{"name": "ink", "scale": 0.2}, "ink", {"weight": "x"}]}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    let locs: Vec<&Value> = answer["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| &entry["loc"])
        .collect();
    assert_eq!(
        locs,
        [
            &json!(["body", "loras", 0, "scale"]),
            &json!(["body", "loras", 1]),
            &json!(["body", "loras", 2, "name"]),
            &json!(["body", "loras", 2, "weight"]),
        ],
        "{answer}"
    );
    // Every field of the wrong type is listed, as FastAPI lists them, not only the first.
    let (status, answer) = generate(
        &host,
        &json!({"width": "wide", "negative_prompt": 3, "seed": [1], "loras": {}}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        refused_fields(&answer),
        [
            (&json!("prompt"), &json!("value_error.missing")),
            (&json!("negative_prompt"), &json!("type_error.str")),
            (&json!("width"), &json!("type_error.integer")),
            (&json!("seed"), &json!("type_error.integer")),
            (&json!("loras"), &json!("type_error.list")),
        ],
        "{answer}"
    );
    // Every field out of its range is listed, as FastAPI lists them, not only the first.
    let (status, answer) = generate(
        &host,
        &json!({"prompt": "x", "width": 7, "num_images": 0, "scheduler": "x"}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    let fields: Vec<&Value> = answer["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| &entry["loc"][1])
        .collect();
    assert_eq!(
        fields,
        [&json!("width"), &json!("num_images"), &json!("scheduler")],
        "{answer}"
    );
    // Both kinds together, in the body's order, as FastAPI lists them: a field of the wrong
    // type does not hide another one's range.
    let (status, answer) = generate(
        &host,
        &json!({"width": 7, "seed": "abc", "num_images": 0, "scheduler": 3}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        refused_fields(&answer),
        [
            (&json!("prompt"), &json!("value_error.missing")),
            (&json!("width"), &json!("value_error")),
            (&json!("num_images"), &json!("value_error")),
            (&json!("scheduler"), &json!("type_error.str")),
            (&json!("seed"), &json!("type_error.integer")),
        ],
        "{answer}"
    );
    // Numbers as FastAPI takes them: integral floats and numeric strings, as clients that
    // build bodies from form inputs send them; an empty init_image is none, as an empty
    // callback_url is. A fraction is still no integer.
    let (status, answer) = generate(
        &host,
        &json!({"prompt": "x", "num_images": 2.0, "seed": "42", "width": "64", "height": 64.0,
                "guidance_scale": "7.5", "init_image": ""}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = generate(&host, &json!({"prompt": "x", "num_images": 1.5})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["loc"], json!(["body", "num_images"]));
    // -1, A1111's "random seed", is taken as no seed; any 64-bit unsigned seed is taken.
    for seed in [json!(-1), json!(u64::MAX), json!(0)] {
        let (status, answer) = generate(
            &host,
            &json!({"prompt": "x", "seed": seed, "width": 64, "height": 64}),
        )
        .await;
        assert_eq!(status, 200, "{seed}: {answer}");
    }
    let (status, answer) = generate(&host, &json!({"prompt": "x", "seed": -5})).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["detail"][0]["loc"],
        json!(["body", "seed"]),
        "{answer}"
    );
    // The nine scheduler names and three formats are all accepted.
    for scheduler in [
        "DPMSolverMultistepScheduler",
        "DDIMScheduler",
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "PNDMScheduler",
        "LMSDiscreteScheduler",
        "HeunDiscreteScheduler",
        "KDPM2DiscreteScheduler",
        "KDPM2AncestralDiscreteScheduler",
    ] {
        let (status, body) = generate(
            &host,
            &json!({"prompt": "x", "scheduler": scheduler, "width": 64, "height": 64}),
        )
        .await;
        assert_eq!(status, 200, "{scheduler}: {body}");
    }
    for format in ["png", "jpg", "jpeg"] {
        let (status, _) = generate(
            &host,
            &json!({"prompt": "x", "output_format": format, "width": 64, "height": 64}),
        )
        .await;
        assert_eq!(status, 200, "{format}");
    }
}
