//! Webhooks: signed, retried with backoff against a receiver that fails the first attempts,
//! delivered after a `kill -9` of the host, and never held up by another client's receiver
//! that does not answer (at most eight attempts to one receiver at once).

use std::time::{Duration, Instant};

use easel_tests::{Backend, Host, Options, Receiver};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "your-secret";

fn expected_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_and_retried_until_delivered() {
    let receiver = Receiver::start(2).await;
    let host =
        Host::start(Options::new(Backend::Sqlite).env("ZHINIAN_WEBHOOK_SECRET", SECRET)).await;
    let (status, created) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "prompt": "hook", "width": 16, "height": 16, "webhookUrl": receiver.url}),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let id = created["job"]["id"].as_str().unwrap();
    host.wait_terminal(id).await;
    receiver.wait_for(3, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        receiver.count(),
        3,
        "two failures, one success, then silence"
    );

    let calls = receiver.calls.lock().unwrap();
    let times: Vec<&Vec<u8>> = calls.iter().map(|(_, body)| body).collect();
    assert!(
        times.windows(2).all(|w| w[0] == w[1]),
        "every attempt carries the same body"
    );
    for (headers, body) in calls.iter() {
        let signature = headers["x-zhinian-signature"].to_str().unwrap();
        assert_eq!(
            signature,
            expected_signature(body),
            "HMAC-SHA256 of the raw body"
        );
        let payload: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(payload["event"], "generation.succeeded");
        assert_eq!(payload["job"]["id"], id);
        assert_eq!(payload["job"]["status"], "succeeded");
        assert_eq!(
            payload["job"]["outputAssetIds"].as_array().unwrap().len(),
            1
        );
    }
}

/// A failed attempt's recorded error tells a silent receiver from one that refuses the
/// connection (reqwest's own text names only the URL for both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_says_whether_the_receiver_was_silent_or_refused() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/hook", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .toml("[engine]\nwebhook_timeout_secs = 1\nwebhook_backoff_secs = 600\n"),
    )
    .await;
    let mut errors = Vec::new();
    for url in [&silent_url, &refused_url] {
        let (status, created) = host
            .post("/api/v1/jobs", &json!({"capability": "image.generate", "prompt": "hook", "width": 16, "height": 16, "webhookUrl": url}))
            .await;
        assert_eq!(status, 202, "{created}");
        let id = created["job"]["id"].as_str().unwrap().to_string();
        host.wait_terminal(&id).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let error = loop {
            let (_, detail) = host.get(&format!("/api/v1/jobs/{id}/detail")).await;
            if let Some(error) = detail["job"]["webhookDeliveries"][0]["lastError"].as_str() {
                break error.to_string();
            }
            assert!(Instant::now() < deadline, "no attempt recorded: {detail}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        errors.push(error);
    }
    assert_eq!(errors[0], "no answer within 1 s");
    assert!(
        errors[1].to_lowercase().contains("refused"),
        "the cause is named: {}",
        errors[1]
    );
}

/// A receiver that takes the request and never answers holds its own attempts until the
/// timeout (10 s by default), at most eight at once however many are due for it (more than
/// the deliverer's 32 slots here, and more than a claim's first pass ranks, so the other
/// receiver's row is found behind them), and never the deliveries to other receivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_holds_up_no_other() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        silent_receiver_on(backend).await;
    }
}

async fn silent_receiver_on(backend: Backend) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/hook", silent.local_addr().unwrap());
    let (accepted, mut reached) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
            let _ = accepted.send(());
        }
    });
    let receiver = Receiver::start(0).await;
    let host = Host::start(Options::new(backend)).await;
    let job = |url: &str| json!({"capability": "image.generate", "prompt": "hook", "width": 16, "height": 16, "webhookUrl": url});

    let mut silent_jobs = Vec::new();
    for _ in 0..80 {
        let (status, created) = host.post("/api/v1/jobs", &job(&silent_url)).await;
        assert_eq!(status, 202, "{created}");
        silent_jobs.push(created["job"]["id"].as_str().unwrap().to_string());
    }
    for id in &silent_jobs {
        host.wait_terminal(id).await;
    }
    for _ in 0..8 {
        tokio::time::timeout(Duration::from_secs(10), reached.recv())
            .await
            .expect("the silent receiver is called");
    }
    // Every silent job's webhook is due now; a ninth attempt would be claimed within 200 ms.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut more = 0;
    while reached.try_recv().is_ok() {
        more += 1;
    }
    assert_eq!(
        more, 0,
        "{backend:?}: more than 8 attempts to one receiver at once"
    );

    let (status, created) = host.post("/api/v1/jobs", &job(&receiver.url)).await;
    assert_eq!(status, 202, "{created}");
    let finished = host
        .wait_terminal(created["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "succeeded");
    let started = Instant::now();
    receiver.wait_for(1, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{backend:?}: delivered {:?} after its job ended",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_webhooks_survive_a_kill9() {
    // The receiver refuses the first 3 attempts; the host is killed in between.
    let receiver = Receiver::start(3).await;
    let mut host = Host::start(
        Options::new(Backend::Sqlite)
            .toml("[engine]\nwebhook_backoff_secs = 0.4")
            .env("EASEL_WEBHOOK_SECRET", SECRET),
    )
    .await;
    let (_, created) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "prompt": "x", "fail": "refused", "webhookUrl": receiver.url}),
        )
        .await;
    let id = created["job"]["id"].as_str().unwrap().to_string();
    receiver.wait_for(1, Duration::from_secs(20)).await;
    host.kill9_and_restart().await;
    receiver.wait_for(4, Duration::from_secs(30)).await;
    let calls = receiver.calls.lock().unwrap();
    let last: Value = serde_json::from_slice(&calls.last().unwrap().1).unwrap();
    assert_eq!(last["event"], "generation.failed");
    assert_eq!(last["job"]["id"], id.as_str());
    assert!(last["job"]["error"].as_str().unwrap().contains("refused"));
}

/// A proxy named in the environment carries no webhook: it would resolve the name itself,
/// past the resolver that refuses private addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_never_carry_a_webhook() {
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let mut options = Options::new(Backend::Sqlite);
    options.allow_private = false;
    for name in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        options = options.env(name, &proxy_url);
    }
    let host = Host::start(options).await;
    let (status, created) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "prompt": "hook", "width": 16, "height": 16,
                    "webhookUrl": "http://hooks.easel-test.invalid/hook"}),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let id = created["job"]["id"].as_str().unwrap().to_string();
    host.wait_terminal(&id).await;
    let detail_path = format!("/api/v1/jobs/{id}/detail");
    let attempted = async || loop {
        let (_, detail) = host.get(&detail_path).await;
        let delivery = &detail["job"]["webhookDeliveries"][0];
        if delivery["attempts"].as_u64() > Some(0) {
            return delivery.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let delivery = tokio::time::timeout(Duration::from_secs(20), attempted())
        .await
        .expect("a delivery was attempted");
    assert!(delivery["deliveredAt"].is_null(), "{delivery}");
    let reached = tokio::time::timeout(Duration::from_millis(500), proxy.accept()).await;
    assert!(
        reached.is_err(),
        "the webhook went through the proxy: {delivery}"
    );
}

#[tokio::test]
async fn private_webhook_targets_are_refused_without_the_test_flag() {
    let host = Host::start(Options {
        allow_private: false,
        ..Options::new(Backend::Sqlite)
    })
    .await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost/x",
        "http://[::1]/",
    ] {
        let (status, body) = host
            .post(
                "/api/v1/jobs",
                &json!({"capability": "image.generate", "prompt": "x", "webhookUrl": url}),
            )
            .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("private"),
            "{body}"
        );
    }
}
