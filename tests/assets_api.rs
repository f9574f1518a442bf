//! Seed 001's assets: multipart upload of several files, URL registration with the no-SSRF
//! rule, list, get, download with content type and `Range`, size limits, use as job inputs.

use easel_tests::{Backend, Host, Options, send};
use reqwest::{
    Method,
    multipart::{Form, Part},
};
use serde_json::{Value, json};

fn png_bytes() -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0u8..=255).cycle().take(5000));
    bytes
}

#[tokio::test]
async fn upload_list_get_and_ranged_download() {
    let host = Host::sqlite().await;
    let form = Form::new()
        .part(
            "files",
            Part::bytes(png_bytes())
                .file_name("reference.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .part(
            "files",
            Part::bytes(b"RIFF....WAVE".to_vec()).file_name("voice.wav"),
        );
    let (status, uploaded) = send(
        host.as_key(Method::POST, "/api/v1/assets", "key-a")
            .multipart(form),
    )
    .await;
    assert_eq!(status, 201, "{uploaded}");
    let assets = uploaded["assets"].as_array().unwrap();
    assert_eq!(assets.len(), 2);
    assert_eq!(assets[0]["name"], "reference.png");
    assert_eq!(assets[0]["kind"], "image");
    assert_eq!(assets[0]["size"], 5008);
    assert_eq!(
        assets[1]["contentType"], "audio/wav",
        "type guessed from the name"
    );
    let id = assets[0]["id"].as_str().unwrap();

    let (_, listed) = host.get("/api/v1/assets").await;
    assert_eq!(listed["assets"].as_array().unwrap().len(), 2);
    assert_eq!(listed["nextBefore"], Value::Null, "{listed}");
    // Pages go on from `nextBefore`, as the job list's do.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (status, _) = host.upload("later.txt", b"later".to_vec()).await;
    assert_eq!(status, 201);
    // An empty file is refused, not stored as an asset of no bytes.
    let (status, refused) = host.upload("empty.png", Vec::new()).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"], "empty.png is empty: nothing was stored.");
    let (_, first) = host.get("/api/v1/assets?limit=1").await;
    assert_eq!(first["assets"][0]["name"], "later.txt", "{first}");
    // A text file is no model's input: refused at the door, as a text `data:` URL is.
    let text = first["assets"][0]["id"].as_str().unwrap();
    let body = json!({"capability": "image.upscale", "inputAssetIds": [text]});
    let (status, refused) = host.post("/api/v1/jobs", &body).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"],
        format!("inputAssetIds: asset {text} is text/plain, not an image, video or audio file")
    );
    let next = first["nextBefore"].as_str().expect("a next page");
    let (_, rest) = host.get(&format!("/api/v1/assets?before={next}")).await;
    assert_eq!(rest["assets"].as_array().unwrap().len(), 2, "{rest}");
    assert_eq!(rest["nextBefore"], Value::Null, "{rest}");
    let (status, one) = host.get(&format!("/api/v1/assets/{id}")).await;
    assert_eq!((status, &one["asset"]["id"]), (200, &json!(id)));

    let full = host
        .as_key(
            Method::GET,
            &format!("/api/v1/assets/{id}/download"),
            "key-a",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["content-type"], "image/png");
    assert!(
        full.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("reference.png")
    );
    assert_eq!(full.bytes().await.unwrap().to_vec(), png_bytes());

    let part = host
        .as_key(
            Method::GET,
            &format!("/api/v1/assets/{id}/download"),
            "key-a",
        )
        .header("Range", "bytes=8-15")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 8-15/5008");
    assert_eq!(
        part.bytes().await.unwrap().to_vec(),
        png_bytes()[8..16].to_vec()
    );
    // A range in a unit other than bytes is ignored (RFC 9110): the whole file.
    let other_unit = host
        .as_key(
            Method::GET,
            &format!("/api/v1/assets/{id}/download"),
            "key-a",
        )
        .header("Range", "items=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(other_unit.status(), 200);
    assert_eq!(other_unit.bytes().await.unwrap().to_vec(), png_bytes());
    // A range it cannot satisfy, or several, is a 416 in the API's error shape that still
    // tells the file's length.
    for range in ["bytes=9000-", "bytes=0-1,5-6"] {
        let refused = host
            .as_key(
                Method::GET,
                &format!("/api/v1/assets/{id}/download"),
                "key-a",
            )
            .header("Range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 416, "{range}");
        assert_eq!(
            refused.headers()["content-range"],
            "bytes */5008",
            "{range}"
        );
        assert_eq!(
            refused.headers()["content-type"],
            "application/json",
            "{range}"
        );
        let body: serde_json::Value = refused.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("5008 bytes"),
            "{body}"
        );
    }

    // An uploaded asset feeds a job.
    let job = host
        .run_job(&json!({"capability": "image.upscale", "inputAssetIds": [id], "resolution": "4k"}))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // So does its URL, as the upload answered it (seed 001: "资产 URL 可放入 inputUrls 或
    // imageUrls"); another client's asset is unknown by its URL too.
    let url = assets[0]["downloadUrl"].as_str().unwrap();
    let body = json!({"capability": "image.upscale", "imageUrls": [url], "resolution": "4k"});
    let job = host.run_job(&body).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // With the host's address before it, as the seed writes every path, it is the same asset
    // (it used to be fetched as a remote URL: refused as a loopback address, or answered 401
    // without a key where private targets are allowed, as here).
    let absolute =
        json!({"capability": "image.upscale", "inputUrls": [host.url(url)], "resolution": "4k"});
    let job = host.run_job(&absolute).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (status, refused) = send(
        host.as_key(Method::POST, "/api/v1/jobs", "key-b")
            .json(&body),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("Unknown asset"),
        "{refused}"
    );
}

#[tokio::test]
async fn registered_urls_follow_the_ssrf_rule_and_redirect_on_download() {
    let host = Host::start(Options {
        allow_private: false,
        ..Options::new(Backend::Sqlite)
    })
    .await;
    let (status, registered) = host
        .post("/api/v1/assets", &json!({"url": "https://example.com/reference.png", "name": "reference.png", "kind": "image"}))
        .await;
    assert_eq!(status, 201, "{registered}");
    assert_eq!(
        registered["asset"]["sourceUrl"],
        "https://example.com/reference.png"
    );
    assert_eq!(registered["asset"]["contentType"], "image/png");
    let id = registered["asset"]["id"].as_str().unwrap();

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects
        .get(host.url(&format!("/api/v1/assets/{id}/download")))
        .bearer_auth("key-a")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 307);
    assert_eq!(
        response.headers()["location"],
        "https://example.com/reference.png"
    );

    for url in [
        "http://127.0.0.1/a.png",
        "http://10.0.0.8/a.png",
        "http://[fe80::1]/a.png",
        "file:///etc/passwd",
        "not a url",
    ] {
        let (status, body) = host.post("/api/v1/assets", &json!({"url": url})).await;
        assert_eq!(status, 400, "{url}: {body}");
    }
    let (status, body) = host
        .post(
            "/api/v1/assets",
            &json!({"url": "https://example.com/a", "kind": "hologram"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // Without a kind, the file's name says what it is; a kind given against it is refused,
    // or a job would hand a video to its model as an image.
    for (url, kind) in [
        ("https://example.com/clip.mp4", "video"),
        ("https://example.com/voice.wav", "audio"),
        ("https://example.com/photo.jpg", "image"),
        ("https://example.com/", "image"),
    ] {
        let (status, body) = host.post("/api/v1/assets", &json!({"url": url})).await;
        assert_eq!(status, 201, "{url}: {body}");
        assert_eq!(body["asset"]["kind"], kind, "{url}: {body}");
    }
    let (status, body) = host
        .post(
            "/api/v1/assets",
            &json!({"url": "https://example.com/clip.mp4", "kind": "image"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("video/mp4"),
        "{body}"
    );
}

#[tokio::test]
async fn uploads_over_the_limit_get_413() {
    let host =
        Host::start(Options::new(Backend::Sqlite).toml("[limits]\nmax_upload_bytes = 10000")).await;
    let form = Form::new().part("files", Part::bytes(vec![7u8; 50_000]).file_name("big.bin"));
    let (status, body) = send(
        host.as_key(Method::POST, "/api/v1/assets", "key-a")
            .multipart(form),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    let (_, listed) = host.get("/api/v1/assets").await;
    assert_eq!(listed["assets"], json!([]));
    let (status, empty) = send(
        host.as_key(Method::POST, "/api/v1/assets", "key-a")
            .multipart(Form::new().text("note", "no file")),
    )
    .await;
    assert_eq!(status, 400, "{empty}");
    // Parts beyond [limits] max_upload_parts are refused before they are read, and nothing
    // of the form is kept: each file part holds an open file until the request ends.
    let host =
        Host::start(Options::new(Backend::Sqlite).toml("[limits]\nmax_upload_parts = 5")).await;
    let form = (0..6).fold(Form::new(), |form, i| {
        form.part(
            "files",
            Part::bytes(vec![1u8]).file_name(format!("{i}.bin")),
        )
    });
    let (status, body) = send(
        host.as_key(Method::POST, "/api/v1/assets", "key-a")
            .multipart(form),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("at most 5 parts"),
        "{body}"
    );
    let (_, listed) = host.get("/api/v1/assets").await;
    assert_eq!(listed["assets"], json!([]));
    let spooled = std::fs::read_dir(host.data_dir().join("assets"))
        .map(|entries| {
            entries
                .filter(|entry| {
                    let name = entry.as_ref().unwrap().file_name();
                    name.to_string_lossy().ends_with(".partial")
                })
                .count()
        })
        .unwrap_or(0);
    assert_eq!(spooled, 0, "the refused form's files are removed");
}

/// With `[assets] keep_secs`, a stored file goes once it is that old, its row and its bytes,
/// unless a queued or running task names it (an input it has yet to send).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_files_go_after_keep_secs_unless_a_live_task_names_them() {
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .toml("[assets]\nkeep_secs = 1\norphan_grace_secs = 2\n[engine]\nworkers = 1"),
    )
    .await;
    let uploaded = |name: &'static str| async {
        let (status, uploaded) = host.upload(name, png_bytes()).await;
        assert_eq!(status, 201, "{uploaded}");
        uploaded["assets"][0]["id"].as_str().unwrap().to_string()
    };
    let (old, input) = (uploaded("old.png").await, uploaded("input.png").await);
    let (status, job) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.edit", "model": "offline/image", "prompt": "keep",
                    "inputAssetIds": [input], "work_ms": 30_000}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let stored = |id: &str| host.data_dir().join("assets").join(id).exists();
    assert!(stored(&old) && stored(&input));

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stored(&old) {
        assert!(std::time::Instant::now() < deadline, "{old} was kept");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (status, gone) = host.get(&format!("/api/v1/assets/{old}")).await;
    assert_eq!(status, 404, "{gone}");
    let (status, kept) = host.get(&format!("/api/v1/assets/{input}")).await;
    assert_eq!(status, 200, "the running task's input is kept: {kept}");
    assert!(stored(&input));
}
