//! Seed 000 (Pixel): every example request of the document, sent as written (host and key
//! substituted), gets the documented answer shape. The example model ids are aliases of the
//! built-in offline models here; vendor plugins are exercised in `vendors.rs`.

use easel_tests::{Backend, Host, Options, download, send};
use reqwest::Method;
use serde_json::{Value, json};

const ALIASES: &str = r#"
[models]
aliases = { "dashscope/qwen-image" = "offline/image", "dashscope/wan2.6-video" = "offline/video", "volcengine/doubao-tts" = "offline/speech" }
"#;

async fn pixel_host() -> Host {
    Host::start(Options::new(Backend::Sqlite).toml(ALIASES)).await
}

/// Submits, checks the envelope, waits, and returns the Pixel task view's `data`.
async fn generate_and_wait(host: &Host, kind: &str, body: Value) -> Value {
    let (status, created) = host
        .post(&format!("/api/v1/generations/{kind}"), &body)
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["code"], "200");
    assert_eq!(created["message"], "success");
    let id = created["data"]["task_id"]
        .as_str()
        .expect("data.task_id")
        .to_string();
    host.wait_terminal(&id).await;
    let (status, task) = host.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["code"], "200");
    let data = task["data"].clone();
    assert_eq!(data["id"], id.as_str());
    assert_eq!(data["type"], kind);
    for field in [
        "status",
        "model",
        "params",
        "result",
        "created_at",
        "updated_at",
    ] {
        assert!(!data[field].is_null(), "task data lacks {field}: {data}");
    }
    data
}

/// The document's video example, as written, on `model`.
fn video_example(model: &str) -> Value {
    json!({
        "prompt": "a cat playing with a ball",
        "model": model,
        "negativePrompt": "static, blurry",
        "duration": "5s",
        "resolution": "720p",
        "n": 1,
        "imageInputs": ["https://example.com/first-frame.jpg"],
        "projectId": "proj_123"
    })
}

/// The document's audio example, as written, on `model`.
fn audio_example(model: &str) -> Value {
    json!({
        "prompt": "Hello, welcome to Pixel AI!",
        "model": model,
        "voice": "zh_female_qingxin",
        "speed": 1.0,
        "projectId": "proj_123"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_grouped_by_type_with_every_documented_field() {
    let host = pixel_host().await;
    let (status, body) = host.get("/api/v1/models").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], "200");
    assert_eq!(body["message"], "success");
    for kind in ["image", "video", "audio", "llm"] {
        assert!(body["data"][kind].is_object(), "group {kind}: {body}");
    }
    let image = &body["data"]["image"]["offline/image"];
    assert_eq!(image["id"], "offline/image");
    assert_eq!(image["type"], "image");
    assert_eq!(image["provider"], "offline");
    assert_eq!(image["model_key"], "image");
    assert_eq!(image["is_default"], true);
    assert_eq!(image["enabled"], true);
    assert!(image["name"].is_string());
    // The seed's shapes, however the manifest lists them: levels to ratio-to-size tables,
    // `"5s": "5秒"` durations, voice objects.
    assert_eq!(image["resolutions"]["1K"]["1:1"], "1024*1024", "{image}");
    assert_eq!(image["resolutions"]["2K"]["1:1"], "2048*2048", "{image}");
    let video = &body["data"]["video"]["offline/video"];
    assert_eq!(video["durations"]["5s"], "5秒", "{video}");
    assert_eq!(video["resolutions"]["1K"]["16:9"], "96*54", "{video}");
    let speech = &body["data"]["audio"]["offline/speech"];
    assert_eq!(speech["voices"][0], json!({"id": "tone", "name": "tone"}));
    assert_eq!(body["data"]["llm"]["offline/chat"]["type"], "llm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_example_completes_with_typed_results() {
    let host = pixel_host().await;
    // The document's example, as written.
    let data = generate_and_wait(
        &host,
        "image",
        json!({
            "prompt": "a beautiful sunset over mountains",
            "model": "dashscope/qwen-image",
            "negativePrompt": "blurry, low quality",
            "resolution": "2K",
            "aspectRatio": "16:9",
            "n": 1,
            "imageInputs": ["https://example.com/ref-image.jpg"],
            "extraParams": {"loras": [{"model": "dashscope/anime-style", "weight": 0.8}]},
            "projectId": "proj_123",
            "source": "canvas",
            "sourceId": "canvas_456"
        }),
    )
    .await;
    assert_eq!(data["status"], "completed", "{data}");
    assert_eq!(
        data["params"]["prompt"],
        "a beautiful sunset over mountains"
    );
    assert_eq!(data["params"]["resolution"], "2K");
    assert_eq!(data["params"]["aspectRatio"], "16:9");
    // 2K at 16:9 on a model that takes width and height: 2048² pixels in that shape.
    let image = &data["result"]["images"][0];
    assert_eq!(image["width"], 2728);
    assert_eq!(image["height"], 1536);
    let (content_type, bytes) = download(image["url"].as_str().unwrap()).await;
    assert_eq!(content_type, "image/png");
    assert_eq!(png_size(&bytes), (2728, 1536));
}

/// Width and height from a PNG's header.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let word = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

/// Submits an image request and returns the size of the PNG it made.
async fn image_size_of(host: &Host, body: Value) -> (u32, u32) {
    let data = generate_and_wait(host, "image", body).await;
    assert_eq!(data["status"], "completed", "{data}");
    let (_, bytes) = download(data["result"]["images"][0]["url"].as_str().unwrap()).await;
    png_size(&bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_and_aspect_ratio_shape_a_width_and_height_model() {
    let host = pixel_host().await;
    for (ratio, expected) in [
        ("16:9", 16.0 / 9.0),
        ("9:16", 9.0 / 16.0),
        ("4:3", 4.0 / 3.0),
    ] {
        let (width, height) = image_size_of(
            &host,
            json!({"prompt": "a harbour", "model": "offline/image", "resolution": "1K", "aspectRatio": ratio}),
        )
        .await;
        let shape = f64::from(width) / f64::from(height);
        assert!(
            (shape / expected - 1.0).abs() < 0.01,
            "{ratio} gave {width}x{height}"
        );
        assert!(
            (900_000..=1_100_000).contains(&(width * height)),
            "1K is about 1024² pixels: {width}x{height}"
        );
    }
    // Without a level the seed's default, 1K, square.
    let (width, height) = image_size_of(
        &host,
        json!({"prompt": "a harbour", "model": "offline/image"}),
    )
    .await;
    assert_eq!((width, height), (1024, 1024));
    // A size the request sets itself stays.
    let (width, height) = image_size_of(
        &host,
        json!({"prompt": "a harbour", "model": "offline/image", "resolution": "1K", "aspectRatio": "16:9",
               "extraParams": {"width": 64, "height": 48}}),
    )
    .await;
    assert_eq!((width, height), (64, 48));
    // A shape that is not a ratio is refused, in Pixel's envelope.
    let (status, body) = host
        .post(
            "/api/v1/generations/image",
            &json!({"prompt": "a harbour", "model": "offline/image", "aspectRatio": "wide"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "400");
}

/// The document's examples on the demo plugin's models, whose schemas accept every value the
/// seeds use: `duration: "5s"`, `resolution: "720p"`, the voice `zh_female_qingxin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_run_on_the_demo_plugin() {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        easel_tests::built_plugin("demo"),
        plugins.path().join("demo.wasm"),
    )
    .unwrap();
    let host = Host::start(
        Options::new(Backend::Sqlite).env("EASEL_PLUGINS_DIR", plugins.path().to_str().unwrap()),
    )
    .await;
    let (width, height) = image_size_of(
        &host,
        json!({"prompt": "a beautiful sunset over mountains", "model": "demo/image",
               "resolution": "2K", "aspectRatio": "16:9", "n": 1}),
    )
    .await;
    assert_eq!(
        (width, height),
        (2560, 1440),
        "2K at 16:9 within the demo's 2560 sides"
    );
    let video = generate_and_wait(&host, "video", video_example("demo/video")).await;
    assert_eq!(video["status"], "completed", "{video}");
    let (content_type, _) = download(video["result"]["videos"][0]["url"].as_str().unwrap()).await;
    assert_eq!(content_type, "video/mp4");
    let audio = generate_and_wait(&host, "audio", audio_example("demo/speech")).await;
    assert_eq!(audio["status"], "completed", "{audio}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_video_and_audio_examples_complete() {
    let host = pixel_host().await;
    let video = generate_and_wait(&host, "video", video_example("dashscope/wan2.6-video")).await;
    assert_eq!(video["status"], "completed", "{video}");
    let (content_type, _) = download(video["result"]["videos"][0]["url"].as_str().unwrap()).await;
    assert!(content_type.starts_with("video/"), "{content_type}");

    let audio = generate_and_wait(&host, "audio", audio_example("volcengine/doubao-tts")).await;
    assert_eq!(audio["status"], "completed", "{audio}");
    let (content_type, bytes) =
        download(audio["result"]["audios"][0]["url"].as_str().unwrap()).await;
    assert!(content_type.starts_with("audio/"), "{content_type}");
    assert_eq!(&bytes[..4], b"RIFF");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_model_ids_get_the_documented_messages() {
    let host = pixel_host().await;
    let response = host
        .as_key(reqwest::Method::POST, "/api/v1/generations/image", "key-a")
        .json(&json!({"prompt": "a cat", "model": "qwen-image"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "400");
    assert_eq!(
        body["message"],
        "Model must be in format 'provider/model_key', got: 'qwen-image'. Example: 'dashscope/qwen-image'"
    );
    // The id a client quotes is the one the host's log lines carry.
    assert!(request_id.starts_with("req_"), "{request_id}");
    assert_eq!(body["request_id"], request_id.as_str());

    let (status, body) = host
        .post(
            "/api/v1/generations/image",
            &json!({"prompt": "a cat", "model": "invalid/model"}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "404");
    assert_eq!(
        body["message"],
        "Model 'invalid/model' not found. Available models can be fetched from /api/v1/models"
    );
    // A missing model is said to be missing, not to be of the wrong form.
    let (status, body) = host
        .post("/api/v1/generations/image", &json!({"prompt": "a cat"}))
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("Missing required parameter: model"),
        "{body}"
    );
    // A model of another type is found, and named as such.
    let (status, body) = host
        .post(
            "/api/v1/generations/audio",
            &json!({"prompt": "a cat", "model": "offline/image"}),
        )
        .await;
    assert_eq!((status, &body["code"]), (400, &json!("400")), "{body}");
    assert_eq!(
        body["message"],
        "Model 'offline/image' is of type 'image', and this route takes type 'audio'. \
         Available models can be fetched from /api/v1/models"
    );
    // The old `provider` field form is refused the same way.
    let (status, _) = host
        .post(
            "/api/v1/generations/image",
            &json!({"prompt": "a cat", "model": "qwen-image", "provider": "dashscope"}),
        )
        .await;
    assert_eq!(status, 400);
    // Several videos of a model that makes one per request: refused, naming `n`, rather than
    // answered with one (seed 000's video table has `n`).
    let mut two = video_example("offline/video");
    two["n"] = json!(2);
    let (status, body) = host.post("/api/v1/generations/video", &two).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("400")),
        "{body}"
    );
    assert_eq!(
        body["message"],
        "Invalid parameter n: this model makes one output per request, not 2"
    );
    // Nothing was stored by the refused requests.
    let (_, jobs) = host.get("/api/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0, "{jobs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_follow_pixel_names_and_tasks_are_private() {
    let host = pixel_host().await;
    let (_, created) = host
        .post(
            "/api/v1/generations/image",
            &json!({"prompt": "slow", "model": "offline/image", "delay_ms": 1500}),
        )
        .await;
    let id = created["data"]["task_id"].as_str().unwrap().to_string();
    let (_, early) = host.get(&format!("/api/v1/tasks/{id}")).await;
    assert!(
        ["pending", "processing"].contains(&early["data"]["status"].as_str().unwrap()),
        "{early}"
    );
    let (status, other) =
        send(host.as_key(Method::GET, &format!("/api/v1/tasks/{id}"), "key-b")).await;
    assert_eq!(status, 404, "another client's task: {other}");
    assert_eq!(other["code"], "404");
    host.wait_terminal(&id).await;
    let (_, done) = host.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(done["data"]["status"], "completed");

    let (_, failing) = host
        .post(
            "/api/v1/generations/image",
            &json!({"prompt": "x", "model": "offline/image", "fail": "refused on purpose"}),
        )
        .await;
    let id = failing["data"]["task_id"].as_str().unwrap().to_string();
    host.wait_terminal(&id).await;
    let (_, failed) = host.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(failed["data"]["status"], "failed", "{failed}");
    assert!(failed["data"]["error"].is_string());
}
