//! Native diffusion through seed 003's API: the tiny fixture SD model (random weights of the
//! real architecture, `host/crates/diffusion/tests/fixtures`) loaded from `EASEL_SD_MODEL` on
//! the `flex` CPU backend answers `/health`, makes real PNG and JPEG images, repeats an image
//! for a repeated seed, and runs img2img.

use std::path::PathBuf;

use base64::Engine as _;
use easel_tests::{Backend, Host, Options, send, solid_png};
use serde_json::{Value, json};

fn tiny_model() -> PathBuf {
    easel_tests::checkout().join("host/crates/diffusion/tests/fixtures/tiny-sd")
}

async fn local_host() -> Host {
    Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_SD_MODEL", tiny_model().to_str().unwrap())
            .env("EASEL_SD_DEVICE", "flex"),
    )
    .await
}

/// Generates through `/api/v1/generate` and returns the finished flat task.
async fn generate(host: &Host, body: Value) -> Value {
    let (status, created) = send(
        reqwest::Client::new()
            .post(host.url("/api/v1/generate"))
            .header("X-API-Key", "key-a")
            .json(&body),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let id = created["task_id"].as_str().unwrap().to_string();
    let job = host.wait_terminal(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        job["model"], "local/tiny-sd",
        "seed 003 runs on the local model: {job}"
    );
    let (_, task) = send(
        reqwest::Client::new()
            .get(host.url(&format!("/api/v1/tasks/{id}")))
            .header("X-API-Key", "key-a"),
    )
    .await;
    task
}

async fn bytes(url: &Value) -> (String, Vec<u8>) {
    easel_tests::download(url.as_str().unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_model_serves_seed_003() {
    let host = local_host().await;
    let (_, health) = send(reqwest::Client::new().get(host.url("/health"))).await;
    assert_eq!(health["model_loaded"], true, "{health}");
    assert_eq!(health["model"], "local/tiny-sd");
    assert!(
        health["device"].as_str().unwrap().starts_with("flex"),
        "{health}"
    );

    let request = json!({"prompt": "a red square", "width": 64, "height": 64, "num_inference_steps": 2,
                         "guidance_scale": 7.5, "seed": 42, "scheduler": "EulerDiscreteScheduler"});
    let first = generate(&host, request.clone()).await;
    let second = generate(&host, request).await;
    let (content_type, png) = bytes(&first["result_url"]).await;
    assert_eq!(content_type, "image/png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 64);
    assert_eq!(
        png,
        bytes(&second["result_url"]).await.1,
        "the same seed gives the same bytes"
    );

    let batch = generate(
        &host,
        json!({"prompt": "two", "width": 64, "height": 64, "num_inference_steps": 2,
                                       "seed": 7, "num_images": 2, "output_format": "jpg"}),
    )
    .await;
    let urls = batch["result_urls"].as_array().unwrap();
    assert_eq!(urls.len(), 2);
    let (content_type, jpeg) = bytes(&urls[0]).await;
    assert_eq!(content_type, "image/jpeg");
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    assert_ne!(
        jpeg,
        bytes(&urls[1]).await.1,
        "seed + index differs per image"
    );

    let init = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    );
    let edited = generate(
        &host,
        json!({"prompt": "bluer", "init_image": init, "strength": 0.5,
                                        "num_inference_steps": 4, "seed": 3}),
    )
    .await;
    let (_, edited_png) = bytes(&edited["result_url"]).await;
    assert_eq!(&edited_png[..8], b"\x89PNG\r\n\x1a\n");
    assert_ne!(edited_png, png);

    // An init image the model cannot read, though named PNG (text, a GIF), or smaller than one
    // latent pixel (8x8 here, so it would be rounded down to nothing), is a 422 naming the
    // field at once, not a task that fails later.
    let speck = base64::engine::general_purpose::STANDARD.encode(solid_png(4, 16, 9));
    for (image, says) in [
        ("aGVsbG8=", "not an image"),
        ("R0lGODlhAQABAAAAACw=", "not an image"),
        (
            speck.as_str(),
            "is 4x16 pixels; this model takes images of at least 8x8",
        ),
    ] {
        let (status, answer) = send(
            reqwest::Client::new()
                .post(host.url("/api/v1/generate"))
                .header("X-API-Key", "key-a")
                .json(
                    &json!({"prompt": "x", "init_image": format!("data:image/png;base64,{image}")}),
                ),
        )
        .await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(
            answer["detail"][0]["loc"],
            json!(["body", "init_image"]),
            "{answer}"
        );
        assert!(answer.to_string().contains(says), "{answer}");
    }
}
