//! Assets kept in an S3-compatible bucket (`[assets] bucket`), against a real S3 server on
//! loopback (tests/support/s3.rs): uploads stream into the bucket whole before their row
//! exists, downloads (whole, `Range`, `HEAD`) stream from it, task outputs land there and their
//! signed links work from every host on the database, orphan objects are swept, and a store
//! that is down is waited for or reported, never left half-written. Also the orphan sweep of
//! the default local folder.

use std::time::{Duration, Instant};

use easel_tests::{Backend, Host, Options, noise, s3::S3Server, send};
use reqwest::{
    Method, StatusCode,
    multipart::{Form, Part},
};
use serde_json::json;
use sha2::{Digest, Sha256};

const BUCKET: &str = "easel-assets";
const PREFIX: &str = "fleet";

async fn bucket_host(s3: &S3Server, extra: &str) -> Host {
    Host::start(s3.host_options(Options::new(Backend::Sqlite), BUCKET, PREFIX, extra)).await
}

fn download(host: &Host, id: &str) -> reqwest::RequestBuilder {
    host.as_key(
        Method::GET,
        &format!("/api/v1/assets/{id}/download"),
        "key-a",
    )
}

/// [`download`]'s `HEAD`.
fn download_head(host: &Host, id: &str) -> reqwest::RequestBuilder {
    host.as_key(
        Method::HEAD,
        &format!("/api/v1/assets/{id}/download"),
        "key-a",
    )
}

/// Files left in the host's receiving folder.
fn received_files(host: &Host) -> Vec<String> {
    std::fs::read_dir(host.data_dir().join("assets"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stream_into_the_bucket_and_download_with_ranges() {
    let s3 = S3Server::start(BUCKET).await;
    let host = bucket_host(&s3, "").await;
    // Larger than one multipart part (8 MiB): stored by a multipart upload.
    let big = noise(20 * 1024 * 1024 + 3, 7);
    let (status, uploaded) = host.upload("big.bin", big.clone()).await;
    assert_eq!(status, 201, "{uploaded}");
    let asset = &uploaded["assets"][0];
    let id = asset["id"].as_str().unwrap();
    assert_eq!(asset["size"], big.len());
    assert_eq!(asset["sha256"], hex::encode(Sha256::digest(&big)));
    let (status, small) = host.upload("note.txt", b"hello bucket".to_vec()).await;
    assert_eq!(status, 201, "{small}");
    let small_id = small["assets"][0]["id"].as_str().unwrap();

    // The objects are in the bucket under the prefix, whole; nothing stays in the data folder.
    assert_eq!(s3.keys(BUCKET), {
        let mut keys = vec![format!("{PREFIX}/{id}"), format!("{PREFIX}/{small_id}")];
        keys.sort();
        keys
    });
    assert_eq!(
        std::fs::read(s3.object_file(BUCKET, &format!("{PREFIX}/{id}"))).unwrap(),
        big
    );
    assert!(
        received_files(&host).is_empty(),
        "{:?}",
        received_files(&host)
    );

    let whole = download(&host, id).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(
        whole.headers()["content-length"],
        big.len().to_string().as_str()
    );
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.headers()["x-content-type-options"], "nosniff");
    assert_eq!(whole.bytes().await.unwrap().to_vec(), big);

    let part = download(&host, id)
        .header("Range", "bytes=9000000-9000999")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 9000000-9000999/{}", big.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap(), big[9_000_000..9_001_000]);

    let tail = download(&host, id)
        .header("Range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap(), big[big.len() - 10..]);

    let beyond = download(&host, id)
        .header("Range", format!("bytes={}-", big.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);
    assert_eq!(
        beyond.headers()["content-range"],
        format!("bytes */{}", big.len())
    );
    let refused: serde_json::Value = beyond.json().await.unwrap();
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("Range not satisfiable"),
        "{refused}"
    );

    // A range in a unit other than bytes is ignored (RFC 9110): the whole object.
    let other_unit = download(&host, small_id)
        .header("Range", "items=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(other_unit.status(), 200);
    assert_eq!(other_unit.headers()["content-length"], "12");

    let head = download_head(&host, small_id).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "12");

    // An object removed behind easel's back is a 404, not an empty 200, to HEAD as to GET.
    std::fs::remove_file(s3.object_file(BUCKET, &format!("{PREFIX}/{small_id}"))).unwrap();
    let head = download_head(&host, small_id).send().await.unwrap();
    assert_eq!(head.status(), 404);
    assert_eq!(
        download(&host, small_id).send().await.unwrap().status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_land_in_the_bucket_and_signed_links_work_from_every_host() {
    let s3 = S3Server::start(BUCKET).await;
    let worker_host = bucket_host(&s3, "").await;
    // An API-only host on the same database, with a data folder of its own.
    let database = format!(
        "sqlite://{}",
        worker_host.data_dir().join("easel.db").display()
    );
    let api_host = Host::start(
        s3.host_options(Options::new(Backend::Sqlite), BUCKET, PREFIX, "")
            .toml("[engine]\nworkers = 0")
            .env("DATABASE_URL", &database),
    )
    .await;

    let (status, made) = api_host
        .post(
            "/v1/images/generations",
            &json!({"model": "offline/image", "prompt": "a lighthouse", "size": "64x48"}),
        )
        .await;
    assert_eq!(status, 200, "{made}");
    let link = made["data"][0]["url"].as_str().unwrap().to_string();
    assert!(link.starts_with(&api_host.base), "{link}");
    let (content_type, bytes) = easel_tests::download(&link).await;
    assert_eq!(content_type, "image/png");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // The same signed link on the other host.
    let elsewhere = link.replacen(&api_host.base, &worker_host.base, 1);
    let (_, again) = easel_tests::download(&elsewhere).await;
    assert_eq!(again, bytes);
    // The bytes are the bucket's: neither host keeps them.
    let id = link
        .split('/')
        .find(|segment| segment.starts_with("asset_"))
        .expect("the link names its asset");
    assert_eq!(
        std::fs::read(s3.object_file(BUCKET, &format!("{PREFIX}/{id}"))).unwrap(),
        bytes
    );
    assert!(received_files(&worker_host).is_empty());
    assert!(received_files(&api_host).is_empty());

    // base64 answers read the output back from the bucket.
    let (status, inline) = api_host
        .post(
            "/v1/images/generations",
            &json!({"model": "offline/image", "prompt": "a lighthouse", "size": "64x48",
                    "response_format": "b64_json"}),
        )
        .await;
    assert_eq!(status, 200, "{inline}");
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(inline["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, bytes, "same prompt and model, same offline image");
}

/// Waits until `done()` or panics after ten seconds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_without_a_row_are_swept_from_the_bucket() {
    let s3 = S3Server::start(BUCKET).await;
    let host = bucket_host(&s3, "orphan_grace_secs = 1").await;
    let (status, kept) = host.upload("kept.txt", b"kept".to_vec()).await;
    assert_eq!(status, 201, "{kept}");
    let kept_id = kept["assets"][0]["id"].as_str().unwrap();
    // What a process that died between the object and its row leaves, and an object of
    // someone else under another prefix.
    let orphan = s3.object_file(BUCKET, &format!("{PREFIX}/asset_orphaned"));
    std::fs::write(&orphan, b"no row").unwrap();
    let foreign = s3.object_file(BUCKET, "elsewhere/asset_not_ours");
    std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    std::fs::write(&foreign, b"not ours").unwrap();
    // And one under the prefix that easel never names so.
    let beside = s3.object_file(BUCKET, &format!("{PREFIX}/backup-2026.tar"));
    std::fs::write(&beside, b"someone's backup").unwrap();
    let received = host.data_dir().join("assets/spool_crashed.partial");
    std::fs::write(&received, b"half an upload").unwrap();

    eventually("the orphan object is swept", || !orphan.exists()).await;
    eventually("the abandoned received file is swept", || {
        !received.exists()
    })
    .await;
    assert!(
        foreign.exists(),
        "objects outside the prefix are not easel's"
    );
    assert!(
        beside.exists(),
        "objects easel did not name are not easel's"
    );
    let response = download(&host, kept_id).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_without_a_row_are_swept_from_the_local_folder() {
    let host =
        Host::start(Options::new(Backend::Sqlite).toml("[assets]\norphan_grace_secs = 1")).await;
    let (status, kept) = host.upload("kept.txt", b"kept".to_vec()).await;
    assert_eq!(status, 201, "{kept}");
    let kept_id = kept["assets"][0]["id"].as_str().unwrap();
    let orphan = host.data_dir().join("assets/asset_orphaned");
    std::fs::write(&orphan, b"no row").unwrap();
    eventually("the orphan file is swept", || !orphan.exists()).await;
    assert!(host.data_dir().join("assets").join(kept_id).exists());
    let response = download(&host, kept_id).send().await.unwrap();
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_down_for_a_while_is_waited_for() {
    let mut s3 = S3Server::start(BUCKET).await;
    let host = bucket_host(&s3, "retry_timeout_secs = 30").await;
    let (status, before) = host.upload("before.txt", b"before".to_vec()).await;
    assert_eq!(status, 201, "{before}");
    let before_id = before["assets"][0]["id"].as_str().unwrap().to_string();

    s3.stop();
    let uploading = {
        let request = host
            .as_key(Method::POST, "/api/v1/assets", "key-a")
            .multipart(Form::new().part(
                "files",
                Part::bytes(b"during".to_vec()).file_name("during.txt"),
            ));
        tokio::spawn(send(request))
    };
    let downloading = tokio::spawn(download(&host, &before_id).send());
    tokio::time::sleep(Duration::from_secs(3)).await;
    s3.resume().await;

    let (status, during) = uploading.await.unwrap();
    assert_eq!(status, 201, "the upload waited for the store: {during}");
    let response = downloading.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"before");
    let during_id = during["assets"][0]["id"].as_str().unwrap();
    let response = download(&host, during_id).send().await.unwrap();
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"during");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_down_too_long_fails_clearly_and_leaves_no_row() {
    let mut s3 = S3Server::start(BUCKET).await;
    let host = bucket_host(&s3, "retry_timeout_secs = 1").await;
    let (status, before) = host.upload("before.txt", b"before".to_vec()).await;
    assert_eq!(status, 201, "{before}");
    let before_id = before["assets"][0]["id"].as_str().unwrap().to_string();

    s3.stop();
    let (status, failed) = host.upload("lost.txt", b"lost".to_vec()).await;
    assert_eq!(status, 503, "an upload may be sent again shortly: {failed}");
    assert!(
        failed.to_string().contains("asset store is unavailable"),
        "{failed}"
    );
    let response = download(&host, &before_id).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // No row for the upload that never reached the store, and nothing left received.
    let (_, listed) = host.get("/api/v1/assets").await;
    assert_eq!(listed["assets"].as_array().unwrap().len(), 1, "{listed}");
    assert!(
        received_files(&host).is_empty(),
        "{:?}",
        received_files(&host)
    );

    // Service resumes without a restart.
    s3.resume().await;
    let response = download(&host, &before_id).send().await.unwrap();
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"before");
    let (status, after) = host.upload("after.txt", b"after".to_vec()).await;
    assert_eq!(status, 201, "{after}");
    assert_eq!(s3.keys(BUCKET).len(), 2);
}
