//! The built-in offline provider is a test fixture: free, with knobs that hold a worker for up
//! to an hour. A host serves it only when the operator sets `EASEL_OFFLINE_PROVIDER`.

use easel_tests::{Backend, Host, Options};
use serde_json::json;

#[tokio::test]
async fn a_host_without_the_opt_in_neither_lists_nor_runs_the_offline_provider() {
    let host = Host::start(Options::new(Backend::Sqlite).env("EASEL_OFFLINE_PROVIDER", "0")).await;

    for listing in [
        "/api/v1/capabilities",
        "/api/v1/models",
        "/llmage/v1/models",
        "/v1/models",
    ] {
        let (status, body) = host.get(listing).await;
        assert_eq!(status, 200, "{listing}: {body}");
        assert!(
            !body.to_string().contains("offline"),
            "{listing} lists the offline provider: {body}"
        );
    }

    // A client that names the test model and its knobs is refused before anything is stored.
    let (status, body) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "model": "offline/image", "prompt": "x",
                    "work_ms": 3_600_000}),
        )
        .await;
    assert!((400..500).contains(&status), "{status}: {body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("offline/image"),
        "{body}"
    );
    let (_, jobs) = host.get("/api/v1/jobs").await;
    assert_eq!(jobs["jobs"], json!([]), "{jobs}");
}

#[tokio::test]
async fn the_opt_in_serves_it_with_its_knobs() {
    let host = Host::sqlite().await;
    let done = host
        .run_job(
            &json!({"capability": "image.generate", "model": "offline/image", "prompt": "x",
                         "fail": "as asked"}),
        )
        .await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["error"].to_string().contains("as asked"), "{done}");
}
