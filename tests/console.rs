//! The web console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/test`) driven by Selenium from the suite's Python
//! environment (`EASEL_TEST_PYTHON`), against a host with the offline provider, the demo
//! plugin and an admin key. `tests/console_browser.py` holds the steps: a bad key and a
//! refused job show the API's message, the playground's form follows the schema and renders
//! the image it ran and plays the video and the audio it ran (the offline provider's MP4 and
//! WAV, the demo plugin's MP4), a slow job with an input file attached is cancelled from its task page, a broken
//! plugin's error shows after it is dropped in, the operator sets a client's limits on the
//! clients page (a refused edit shows the API's message) and the client reads them on its
//! account page, a key revoked while a tab is signed in with it signs that tab out (saying
//! why), and every page fits a phone with its navigation in reach. A screenshot of each page is kept under the target folder (the path is
//! printed) so a failed run can be read.
//!
//! The read routes the console added are checked over plain HTTP too: a client reaches only
//! its own tasks, the operator's routes need the admin key and reach every client's.

use std::time::Duration;

use easel_tests::{Backend, Host, Options, Receiver, built_plugin, download, send};
use reqwest::Method;
use serde_json::json;

const ADMIN_KEY: &str = "console-admin-key";

/// `target/<profile>/console-screenshots`, emptied first.
fn screenshot_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile = exe
        .ancestors()
        .nth(2)
        .expect("tests run from target/<profile>/deps");
    let dir = profile.join("console-screenshots");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the screenshot folder");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(built_plugin("demo"), plugins.path().join("demo.wasm")).unwrap();
    let plugins_dir = plugins.path().to_str().unwrap();
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .env("EASEL_PLUGINS_DIR", plugins_dir),
    )
    .await;
    let shots = screenshot_dir();
    println!("console screenshots: {}", shots.display());
    let python = std::env::var("EASEL_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = easel_tests::checkout().join("tests/console_browser.py");
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(host.url(""))
        .arg("key-a")
        .arg(ADMIN_KEY)
        .arg(plugins_dir)
        .arg(&shots)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{python} {} failed (its output is above; screenshots in {}):\n{stderr}",
        script.display(),
        shots.display()
    );
    for check in [
        "bad key shows the API's message",
        "the form follows the schema",
        "a refused job shows the API's message",
        "image rendered",
        "video and audio play inline",
        "slow job cancelled",
        "broken plugin's error shown",
        "a failing vendor's breaker shown",
        "client limits shown and edited",
        "operator pages shown",
        "phone-sized pages fit",
        "a client sees its own limits",
        "a revoked key signs its tab out",
    ] {
        assert!(stdout.contains(check), "missing {check:?} in:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_read_routes_keep_clients_apart_and_need_the_admin_key_for_everything() {
    let host = Host::start(Options::new(Backend::Sqlite).env("EASEL_ADMIN_KEY", ADMIN_KEY)).await;
    let receiver = Receiver::start(0).await;
    let admin = |method: Method, path: &str| host.as_key(method, path, ADMIN_KEY);

    let (status, created) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "model": "offline/image", "prompt": "a",
                    "width": 64, "height": 48, "webhookUrl": receiver.url}),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let id = created["job"]["id"].as_str().unwrap().to_string();
    host.wait_terminal(&id).await;
    receiver.wait_for(1, Duration::from_secs(20)).await;

    // The owner sees the whole story: request, outputs with links, the webhook delivered.
    let detail_path = format!("/api/v1/jobs/{id}/detail");
    let delivered = async || loop {
        let (status, detail) = host.get(&detail_path).await;
        assert_eq!(status, 200, "{detail}");
        if detail["job"]["webhookDeliveries"][0]["deliveredAt"].is_string() {
            return detail;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let detail = tokio::time::timeout(Duration::from_secs(20), delivered())
        .await
        .expect("the delivery is recorded");
    let job = &detail["job"];
    assert_eq!(job["clientId"], "partner-a");
    assert_eq!(job["request"]["prompt"], "a");
    assert_eq!(job["request"]["params"]["width"], 64);
    assert_eq!(job["webhookDeliveries"][0]["url"], receiver.url.as_str());
    assert_eq!(job["outputs"][0]["contentType"], "image/png");
    let (content_type, _) = download(job["outputs"][0]["url"].as_str().unwrap()).await;
    assert_eq!(content_type, "image/png");

    // Another client does not, and the admin key is no client key.
    let (status, _) = send(host.as_key(Method::GET, &detail_path, "key-b")).await;
    assert_eq!(status, 404);
    let (status, refused) = send(host.as_key(Method::GET, &detail_path, ADMIN_KEY)).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (401, Some("Invalid API key."))
    );

    // A task of partner-b, held running, so that the operator can cancel it.
    let (_, held) = send(host.as_key(Method::POST, "/api/v1/jobs", "key-b").json(
        &json!({"capability": "image.generate", "model": "offline/image", "prompt": "b", "work_ms": 60000}),
    ))
    .await;
    let held_id = held["job"]["id"].as_str().unwrap().to_string();

    // The operator's routes: refused without the admin key, every client's tasks with it.
    for path in ["/admin/tasks", "/admin/models", "/admin/clients"] {
        let (status, body) = host.get(path).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("Invalid admin key.")),
            "{path}"
        );
    }
    let (status, all) = send(admin(Method::GET, "/admin/tasks")).await;
    assert_eq!(status, 200, "{all}");
    let owners: Vec<&str> = all["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["clientId"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["partner-b", "partner-a"]);
    let (_, only_b) = send(admin(Method::GET, "/admin/tasks?client=partner-b")).await;
    assert_eq!(only_b["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(only_b["jobs"][0]["id"], held_id.as_str());
    let (_, by_model) = send(admin(
        Method::GET,
        "/admin/tasks?model=offline/image&status=succeeded",
    ))
    .await;
    assert_eq!(by_model["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(by_model["jobs"][0]["id"], id.as_str());
    let (_, other_model) = send(admin(Method::GET, "/admin/tasks?model=offline/video")).await;
    assert_eq!(other_model["jobs"], json!([]));
    let (_, mine_by_model) = host.get("/api/v1/jobs?model=offline/image").await;
    assert_eq!(
        mine_by_model["jobs"].as_array().unwrap().len(),
        1,
        "a client's list is its own"
    );
    let (status, any) = send(admin(Method::GET, &format!("/admin/tasks/{held_id}"))).await;
    assert_eq!(
        (status, any["job"]["clientId"].as_str()),
        (200, Some("partner-b"))
    );

    let (status, cancelled) = send(admin(
        Method::POST,
        &format!("/admin/tasks/{held_id}/cancel"),
    ))
    .await;
    assert_eq!(status, 200, "{cancelled}");
    // A running task's worker is signalled; it ends as cancelled a moment later.
    let ended = async || {
        loop {
            let (_, task) = send(admin(Method::GET, &format!("/admin/tasks/{held_id}"))).await;
            if task["job"]["status"] == "cancelled" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), ended())
        .await
        .expect("the held task ends cancelled");
    let (_, task) = send(admin(Method::GET, &format!("/admin/tasks/{held_id}"))).await;
    assert_eq!(
        task["job"]["error"], "Cancelled by the operator.",
        "the client is not told it cancelled: {task}"
    );
    let (status, again) = send(admin(
        Method::POST,
        &format!("/admin/tasks/{held_id}/cancel"),
    ))
    .await;
    assert_eq!(
        (status, again["error"].as_str()),
        (409, Some("Task is already cancelled."))
    );

    // Models with their schemas, for both; accounts.
    let (_, catalog) = host.get("/api/v1/catalog").await;
    let (_, models) = send(admin(Method::GET, "/admin/models")).await;
    assert_eq!(catalog, models);
    let image = catalog["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "offline/image")
        .unwrap();
    assert_eq!(
        image["paramsSchema"]["properties"]["width"]["maximum"],
        4096
    );
    assert!(
        image["defaultFor"]
            .as_array()
            .unwrap()
            .contains(&json!("image.generate"))
    );
    let (_, account) = host.get("/api/v1/account").await;
    assert_eq!(account["client_id"], "partner-a");
    assert_eq!(account["usage"][0]["model"], "offline/image");
    let (_, clients) = send(admin(Method::GET, "/admin/clients")).await;
    let ids: Vec<&str> = clients["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["partner-a", "partner-b"]);

    // The console's own files, from the binary, kept to this host.
    let page = host.http.get(host.url("/console")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert!(page.text().await.unwrap().contains("/console/app.js"));
    let script = host
        .http
        .get(host.url("/console/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let (status, missing) = send(host.http.get(host.url("/console/nope.js"))).await;
    assert_eq!(
        (status, missing["error"].as_str()),
        (404, Some("File not found."))
    );
}
