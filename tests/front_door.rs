//! The engine's front door, through every dialect: a request is checked against its model's
//! whole schema, its input files and URLs are checked once (the one no-SSRF rule, a real
//! `data:` parser), it is priced from the parameters it will run with, and a refused request
//! leaves nothing behind, uploads included.

use std::path::PathBuf;

use base64::Engine as _;
use easel_tests::{ADMIN_KEY, Backend, Host, Options, charging, send, solid_png};
use reqwest::{Method, multipart};
use serde_json::{Value, json};

fn tiny_model() -> PathBuf {
    easel_tests::checkout().join("host/crates/diffusion/tests/fixtures/tiny-sd")
}

async fn local_host(extra_toml: &str) -> Host {
    Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_SD_MODEL", tiny_model().to_str().unwrap())
            .env("EASEL_SD_DEVICE", "flex")
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .toml(extra_toml),
    )
    .await
}

async fn job_count(host: &Host) -> usize {
    let (_, jobs) = host.get("/api/v1/jobs?limit=200").await;
    jobs["jobs"].as_array().unwrap().len()
}

async fn asset_count(host: &Host) -> usize {
    let (_, assets) = host.get("/api/v1/assets?limit=200").await;
    assets["assets"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_schema_keyword_is_enforced_at_submit_in_each_dialects_shape() {
    let host = local_host("").await;
    // The local model's schema says multiples of 8: refused before a task exists.
    let (status, answer) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "model": "local/tiny-sd", "prompt": "p", "width": 100}),
        )
        .await;
    assert_eq!(
        (status, answer),
        (
            400,
            json!({"error": "Invalid parameter width: must be a multiple of 8"})
        )
    );
    let (status, answer) = host
        .post(
            "/llmage/v1/image/generations",
            &json!({"model": "tiny-sd", "catelogid": "t2i", "prompt": "p", "height": 100}),
        )
        .await;
    assert_eq!(
        (status, answer),
        (
            400,
            json!({"error": "Invalid parameter height: must be a multiple of 8"})
        )
    );
    let (status, answer) = host
        .post(
            "/api/v1/generations/image",
            &json!({"model": "local/tiny-sd", "prompt": "p", "extraParams": {"width": 100}}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["message"],
        "Invalid parameter width: must be a multiple of 8"
    );
    // Seed 003's own range check names the field; the schema's would too.
    let (status, answer) = host
        .post(
            "/api/v1/generate",
            &json!({"prompt": "p", "width": 64, "height": 64, "num_inference_steps": 0}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["detail"][0]["loc"],
        json!(["body", "num_inference_steps"])
    );
    assert_eq!(job_count(&host).await, 0, "nothing was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_data_urls_are_refused_at_submit() {
    let host = Host::sqlite().await;
    for url in [
        "data:image/png,not-base64-at-all",
        "data:image/png;base64,@@@broken***",
        "data:image/png;base64,",
    ] {
        let (status, answer) = host
            .post(
                "/api/v1/jobs",
                &json!({"capability": "image.upscale", "model": "offline/image", "imageUrls": [url]}),
            )
            .await;
        assert_eq!(status, 400, "{url}: {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(
            message.starts_with("imageUrls holds a malformed data URL"),
            "{message}"
        );
        let (status, answer) = host
            .post(
                "/llmage/v1/image/generations",
                &json!({"model": "offline/image", "catelogid": "i2i", "prompt": "p", "image_file": url}),
            )
            .await;
        assert_eq!(status, 400, "{url}: {answer}");
        let (status, answer) = host
            .post(
                "/api/v1/generate",
                &json!({"prompt": "p", "init_image": url.replace("data:image/png,", "data:image/png;base64,@")}),
            )
            .await;
        assert_eq!(status, 422, "{url}: {answer}");
        assert_eq!(answer["detail"][0]["loc"], json!(["body", "init_image"]));
        let chat = json!({"model": "offline/chat", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": url}}]}]});
        let (status, answer) = host.post("/v1/chat/completions", &chat).await;
        assert_eq!(status, 400, "{url}: {answer}");
        assert_eq!(
            answer["error"]["param"], "messages[0].content[1].image_url",
            "{answer}"
        );
    }
    // Text named PNG is no image, in a chat as in a job.
    let text = base64::engine::general_purpose::STANDARD.encode("hello");
    let chat = json!({"model": "offline/chat", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{text}")}}]}]});
    let (status, answer) = host.post("/v1/chat/completions", &chat).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not an image"),
        "{answer}"
    );
    assert_eq!(job_count(&host).await, 0);
    // A good one goes through and reaches the provider as bytes.
    let png = base64::engine::general_purpose::STANDARD.encode(solid_png(8, 8, 90));
    let (status, answer) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.upscale", "model": "offline/image",
                    "imageUrls": [format!("data:image/png;base64,{png}")]}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let job = host
        .wait_terminal(answer["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_multipart_request_leaves_no_upload_behind() {
    let host = Host::sqlite().await;
    let file = || {
        multipart::Part::bytes(solid_png(8, 8, 90))
            .file_name("in.png")
            .mime_str("image/png")
            .unwrap()
    };
    let post = |form: multipart::Form| {
        send(
            host.as_key(Method::POST, "/llmage/v1/image/generations", "key-a")
                .multipart(form),
        )
    };
    let missing_prompt = multipart::Form::new()
        .text("model", "offline/image")
        .text("catelogid", "i2i")
        .part("image_file", file());
    let (status, answer) = post(missing_prompt).await;
    assert_eq!(
        (status, answer),
        (400, json!({"error": "Missing required parameter: prompt"}))
    );
    let unknown_model = multipart::Form::new()
        .text("model", "no-such-model")
        .text("catelogid", "i2i")
        .text("prompt", "p")
        .part("image_file", file());
    let (status, _) = post(unknown_model).await;
    assert_eq!(status, 400);
    let bad_parameter = multipart::Form::new()
        .text("model", "offline/image")
        .text("catelogid", "i2i")
        .text("prompt", "p")
        .text("n", "11")
        .part("image_file", file());
    let (status, _) = post(bad_parameter).await;
    assert_eq!(status, 400);
    assert_eq!(asset_count(&host).await, 0, "refused uploads were stored");
    // An accepted one stores its upload once.
    let accepted = multipart::Form::new()
        .text("model", "offline/image")
        .text("catelogid", "i2i")
        .text("prompt", "p")
        .part("image_file", file());
    let (status, answer) = post(accepted).await;
    assert_eq!(status, 200, "{answer}");
    let uploads = {
        let (_, assets) = host.get("/api/v1/assets?limit=200").await;
        assets["assets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["jobId"].is_null())
            .count()
    };
    assert_eq!(uploads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_price_counts_the_outputs_the_checked_parameters_make() {
    let host = local_host(&charging(&[("local/tiny-sd", 1.0), ("offline/image", 1.0)])).await;
    host.grant("partner-a", 100.0).await;
    let spent = || async {
        let account = host.usage("partner-a").await;
        100.0 - account["balance"].as_f64().unwrap()
    };
    // The local model counts outputs as `num_images`, also through the jobs API.
    let (status, answer) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "model": "local/tiny-sd", "prompt": "p",
                    "width": 64, "height": 64, "num_inference_steps": 1, "num_images": 4}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(spent().await, 4.0);
    // A count sent as a string is the number it reads as.
    let (status, answer) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "model": "offline/image", "prompt": "p", "n": "4",
                    "width": 16, "height": 16}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(spent().await, 8.0);
    let form = multipart::Form::new()
        .text("model", "offline/image")
        .text("catelogid", "t2i")
        .text("prompt", "p")
        .text("n", "4")
        .text("width", "8")
        .text("height", "8");
    let (status, answer) = send(
        host.as_key(Method::POST, "/llmage/v1/image/generations", "key-a")
            .multipart(form),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(spent().await, 12.0);
    // Pixel's extraParams are parameters like any other.
    let (status, answer) = host
        .post(
            "/api/v1/generations/image",
            &json!({"model": "offline/image", "prompt": "p", "extraParams": {"n": 4, "width": 8, "height": 8}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(spent().await, 16.0);
    // And the outputs made match what was paid for.
    let id = answer["data"]["task_id"].as_str().unwrap();
    let job = host.wait_terminal(id).await;
    assert_eq!(job["outputAssetIds"].as_array().unwrap().len(), 4, "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_image_edit_fetches_its_http_input() {
    let image = solid_png(64, 64, 90);
    let served = image.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/in.png",
        axum::routing::get(move || {
            let served = served.clone();
            async move { ([("content-type", "image/png")], served) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let host = local_host("").await;
    let (status, answer) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.edit", "model": "local/tiny-sd", "prompt": "p",
                    "imageUrls": [format!("http://{address}/in.png")],
                    "num_inference_steps": 2, "strength": 0.5}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let job = host
        .wait_terminal(answer["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // A URL that does not answer fails the task with the reason, not silently.
    let (status, answer) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.edit", "model": "local/tiny-sd", "prompt": "p",
                    "imageUrls": [format!("http://{address}/missing.png")], "num_inference_steps": 1}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let job = host
        .wait_terminal(answer["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("missing.png") && error.contains("404"),
        "{error}"
    );
}

/// Addresses no entry point may be pointed at, in the spellings a client might use.
const FORBIDDEN: &[&str] = &[
    "http://127.0.0.1/x",
    "http://127.1/x",
    "http://2130706433/x",
    "http://0x7f000001/x",
    "http://localhost/x",
    "http://10.0.0.1/x",
    "http://172.16.0.1/x",
    "http://192.168.1.1/x",
    "http://169.254.169.254/latest/meta-data",
    "http://100.64.0.1/x",
    "http://0.0.0.0/x",
    "http://[::1]/x",
    "http://[::]/x",
    "http://[fe80::1]/x",
    "http://[fd00::1]/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://[::ffff:10.0.0.1]/x",
    "http://[::127.0.0.1]/x",
    "http://[64:ff9b::7f00:1]/x",
    "http://[2002:7f00:1::]/x",
    "http://[fec0::1]/x",
    "http://[ff02::1]/x",
    "http://224.0.0.1/x",
    "http://198.18.0.1/x",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ssrf_rule_guards_every_entry_point_that_takes_a_url() {
    let mut options = Options::new(Backend::Sqlite);
    options.allow_private = false;
    let host = Host::start(options).await;
    let entry_points: Vec<(&str, Box<dyn Fn(&str) -> Value>)> = vec![
        (
            "/api/v1/jobs",
            Box::new(
                |url| json!({"capability": "image.generate", "model": "offline/image", "prompt": "p", "webhookUrl": url}),
            ),
        ),
        (
            "/api/v1/jobs",
            Box::new(
                |url| json!({"capability": "image.upscale", "model": "offline/image", "imageUrls": [url]}),
            ),
        ),
        (
            "/api/v1/jobs",
            Box::new(
                |url| json!({"capability": "image.upscale", "model": "offline/image", "inputUrls": [url]}),
            ),
        ),
        (
            "/api/v1/jobs",
            Box::new(|url| {
                json!({"capability": "video.generate", "model": "offline/video", "prompt": "p",
                       "materials": [{"type": "image", "url": url}]})
            }),
        ),
        (
            "/llmage/v1/image/generations",
            Box::new(
                |url| json!({"model": "offline/image", "catelogid": "i2i", "prompt": "p", "image_file": url}),
            ),
        ),
        (
            "/llmage/v1/video/generations",
            Box::new(
                |url| json!({"model": "offline/video", "catelogid": "ref2v", "prompt": "p", "image_files": [url]}),
            ),
        ),
        (
            "/api/v1/generations/image",
            Box::new(|url| json!({"model": "offline/image", "prompt": "p", "imageInputs": [url]})),
        ),
        (
            "/api/v1/generate",
            Box::new(|url| json!({"prompt": "p", "callback_url": url})),
        ),
        ("/api/v1/assets", Box::new(|url| json!({"url": url}))),
        // A chat's images are its input files too, though its vendor is the one to fetch them.
        (
            "/v1/chat/completions",
            Box::new(|url| {
                json!({"model": "offline/chat", "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": url}}]}]})
            }),
        ),
        (
            "/llmage/v1/chat/completions",
            Box::new(|url| {
                json!({"model": "offline/chat", "prompt": "and this?", "messages": [{"role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": url}}]}]})
            }),
        ),
    ];
    for url in FORBIDDEN {
        for (path, body) in &entry_points {
            let body = body(url);
            let (status, answer) = host.post(path, &body).await;
            assert!(
                (400..500).contains(&status) && answer.to_string().contains("private"),
                "{path} did not refuse {url} by the no-SSRF rule: {status} {answer}"
            );
        }
    }
    assert_eq!(job_count(&host).await, 0);
    assert_eq!(asset_count(&host).await, 0);
    // The same entry points take a public address.
    let (status, answer) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.upscale", "model": "offline/image",
                    "imageUrls": ["https://93.184.216.34/in.png"], "delay_ms": 1}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
}
