//! Provider plugins through the real host: the demo plugin serves seed 001 jobs (an image
//! made at once, a video that goes pending first), `GET /admin/plugins` reports it, and the
//! folder is hot: a broken file is refused while the rest keep serving, a removed file retires
//! its provider. The `.wasm` files come from `scripts/test`, which builds `plugins/` first.

use std::time::Duration;

use easel_tests::{Backend, Host, Options, built_plugin, send};
use reqwest::Method;
use serde_json::{Value, json};

async fn admin_plugins(host: &Host) -> Value {
    let (status, body) = send(host.as_key(Method::GET, "/admin/plugins", "admin-secret")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_plugin_serves_jobs_and_the_folder_is_hot() {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(built_plugin("demo"), plugins.path().join("demo.wasm")).unwrap();
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_PLUGINS_DIR", plugins.path().to_str().unwrap())
            .env("EASEL_ADMIN_KEY", "admin-secret"),
    )
    .await;

    let job = host
        .run_job(&json!({"capability": "image.generate", "model": "demo/image", "prompt": "a plugin made this", "width": 64, "height": 32}))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["model"], "demo/image");
    let asset = job["outputAssetIds"][0].as_str().unwrap();
    let png = host
        .as_key(
            Method::GET,
            &format!("/api/v1/assets/{asset}/download"),
            "key-a",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(png.headers()["content-type"], "image/png");
    let bytes = png.bytes().await.unwrap();
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 64);

    // The video goes pending at the plugin first; the poller finishes it.
    let (_, video) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "video.generate", "model": "demo/video", "prompt": "drift"}),
        )
        .await;
    let video = host
        .wait_terminal(video["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(video["status"], "succeeded", "{video}");

    let listed = admin_plugins(&host).await;
    let demo = &listed["plugins"][0];
    assert_eq!(demo["provider_id"], "demo");
    assert_eq!(demo["content_hash"].as_str().unwrap().len(), 64);
    assert!(
        demo["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "image")
    );
    let (status, _) = send(host.as_key(Method::GET, "/admin/plugins", "key-a")).await;
    assert_eq!(status, 401, "client keys are not admin keys");

    // A broken file is refused with its error shown; demo keeps serving.
    std::fs::write(plugins.path().join("broken.wasm"), b"\0asm not really").unwrap();
    let (status, reloaded) =
        send(host.as_key(Method::POST, "/admin/plugins/reload", "admin-secret")).await;
    assert_eq!(status, 200);
    let broken = reloaded["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["file"].as_str().unwrap().ends_with("broken.wasm"))
        .cloned();
    assert!(broken.expect("broken.wasm listed")["last_error"].is_string());
    let (_, again) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "model": "demo/image", "prompt": "still here"}),
        )
        .await;
    assert_eq!(
        host.wait_terminal(again["job"]["id"].as_str().unwrap())
            .await["status"],
        "succeeded"
    );

    // Dropping a new plugin in makes it live without a restart; removing it retires it.
    std::fs::copy(
        built_plugin("fault-panic"),
        plugins.path().join("fault-panic.wasm"),
    )
    .unwrap();
    wait_until("fault-panic to load", async || {
        admin_plugins(&host).await["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["provider_id"] == "fault-panic")
    })
    .await;
    let (_, panicking) = host.post("/api/v1/jobs", &json!({"capability": "image.generate", "model": "fault-panic/image", "prompt": "boom"})).await;
    let failed = host
        .wait_terminal(panicking["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(
        failed["status"], "failed",
        "a trap fails its own task: {failed}"
    );
    let (_, fine) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "model": "demo/image", "prompt": "unharmed"}),
        )
        .await;
    assert_eq!(
        host.wait_terminal(fine["job"]["id"].as_str().unwrap())
            .await["status"],
        "succeeded"
    );

    std::fs::remove_file(plugins.path().join("fault-panic.wasm")).unwrap();
    wait_until("fault-panic to retire", async || {
        let (status, _) = host.post("/api/v1/jobs", &json!({"capability": "image.generate", "model": "fault-panic/image", "prompt": "x"})).await;
        status == 400
    })
    .await;
}

/// The demo's chat makes tool calls, so a client's tool loop runs with no vendor: the call
/// (its id, name and arguments), then the tool's answer quoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_chat_runs_a_tool_loop() {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(built_plugin("demo"), plugins.path().join("demo.wasm")).unwrap();
    let host = Host::start(
        Options::new(Backend::Sqlite).env("EASEL_PLUGINS_DIR", plugins.path().to_str().unwrap()),
    )
    .await;
    let tools = json!([{"type": "function", "function": {"name": "weather"}}]);
    let asked = json!({"role": "user", "content": "Oslo today"});
    let (status, called) = host
        .post(
            "/v1/chat/completions",
            &json!({"model": "demo/chat", "messages": [asked], "tools": tools}),
        )
        .await;
    assert_eq!(status, 200, "{called}");
    assert_eq!(
        called["choices"][0]["finish_reason"], "tool_calls",
        "{called}"
    );
    let call = &called["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "weather", "{called}");
    assert_eq!(call["function"]["arguments"], r#"{"text":"Oslo today"}"#);

    let answer = json!({"role": "tool", "tool_call_id": call["id"], "content": "sunny"});
    let said = called["choices"][0]["message"].clone();
    let (status, answered) = host
        .post(
            "/v1/chat/completions",
            &json!({"model": "demo/chat", "messages": [asked, said, answer], "tools": tools}),
        )
        .await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(
        answered["choices"][0]["message"]["content"],
        "The tool answered: sunny"
    );
}

/// Seed 003 served by a plugin's model (no local model, the demo's image the default): a
/// count the model cannot make is refused naming `num_images`, the field the client sent,
/// with the model's own limit, though the model calls it `n`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sd_api_on_a_plugin_model_names_the_fields_the_client_sent() {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(built_plugin("demo"), plugins.path().join("demo.wasm")).unwrap();
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_PLUGINS_DIR", plugins.path().to_str().unwrap())
            .env("EASEL_OFFLINE_PROVIDER", "0"),
    )
    .await;
    let (status, refused) = easel_tests::send(
        host.http
            .post(host.url("/api/v1/generate"))
            .header("X-API-Key", "key-a")
            .json(&json!({"prompt": "x", "num_images": 10})),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["detail"][0]["loc"],
        json!(["body", "num_images"]),
        "{refused}"
    );
    let message = refused["detail"][0]["msg"].as_str().unwrap();
    assert!(
        message.contains("num_images") && message.contains('4'),
        "{message}"
    );
}

#[test]
fn plugin_check_prints_the_manifest_and_refuses_a_broken_file() {
    // A built component passes and its manifest comes back as JSON.
    let checked = std::process::Command::new(easel_tests::easel_bin())
        .args(["plugin", "check"])
        .arg(built_plugin("demo"))
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let report: Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(report["manifest"]["id"], "demo", "{report}");
    // Built with this checkout's SDK: the newest contract (the runtime's own tests keep a
    // guest of the first one running).
    assert_eq!(report["contract"], "0.5.0", "{report}");
    assert_eq!(report["warnings"], json!([]), "{report}");

    // A valid manifest that declares what can never work passes, with warnings that say so:
    // loopback hosts (fault-slow-upstream's), easel's own settings as secrets (fault-exfiltrate's).
    for (plugin, expected) in [
        (
            "fault-slow-upstream",
            "allowed host 127.0.0.1 is a loopback or private address",
        ),
        (
            "fault-exfiltrate",
            "secret EASEL_ADMIN_KEY is one of easel's own settings",
        ),
    ] {
        let checked = std::process::Command::new(easel_tests::easel_bin())
            .args(["plugin", "check"])
            .arg(built_plugin(plugin))
            .output()
            .unwrap();
        assert!(checked.status.success(), "{plugin}");
        let report: Value = serde_json::from_slice(&checked.stdout).unwrap();
        let warnings = report["warnings"].to_string();
        assert!(warnings.contains(expected), "{plugin}: {warnings}");
        let printed = String::from_utf8_lossy(&checked.stderr);
        assert!(
            printed.contains(&format!("warning: {expected}")),
            "{printed}"
        );
    }

    // Anything else is refused with a non-zero exit and a reason; a file that is no
    // component says what to build.
    for (bytes, reason) in [
        (&b"\0asm garbage"[..], ""),
        (
            &b"\0asm\x01\0\0\0"[..],
            "core WebAssembly module, not a component",
        ),
        (&b"PK\x03\x04 a zip"[..], "not a WebAssembly file"),
    ] {
        let junk = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(junk.path(), bytes).unwrap();
        let refused = std::process::Command::new(easel_tests::easel_bin())
            .args(["plugin", "check"])
            .arg(junk.path())
            .output()
            .unwrap();
        assert!(!refused.status.success());
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains(reason), "{said}");
    }
}

#[test]
fn plugin_new_scaffolds_a_crate_against_this_checkout_sdk() {
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("acme-images");
    let made = std::process::Command::new(easel_tests::easel_bin())
        .args(["plugin", "new", "acme-images", "--dir"])
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let manifest = std::fs::read_to_string(dest.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("acme-images") || manifest.contains("acme_images"),
        "{manifest}"
    );
    assert!(manifest.contains("easel-sdk"), "{manifest}");
    assert!(dest.join("src/lib.rs").exists());
    // It says where the new plugin's key goes.
    let said = String::from_utf8_lossy(&made.stdout);
    assert!(
        said.contains("EASEL_PLUGIN_ACME_IMAGES__ACME_IMAGES_API_KEY"),
        "{said}"
    );

    // Without an SDK checkout it refuses, rather than naming one no registry has.
    let missing = std::process::Command::new(easel_tests::easel_bin())
        .args([
            "plugin",
            "new",
            "acme-two",
            "--sdk",
            "/nonexistent/sdk",
            "--dir",
        ])
        .arg(parent.path().join("two"))
        .output()
        .unwrap();
    assert!(!missing.status.success());

    // A name that cannot be a provider id is refused before anything is written.
    let bad = std::process::Command::new(easel_tests::easel_bin())
        .args(["plugin", "new", "Bad_Name", "--dir"])
        .arg(parent.path().join("bad"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(!parent.path().join("bad").exists());
}

/// An upstream that answers a `Content-Length: len` head, then `x` once every `gap`, `sent`
/// times, and holds the connection open for a minute.
async fn slow_upstream(len: usize, sent: usize, gap: Duration) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
                let _ = socket.write_all(head.as_bytes()).await;
                for _ in 0..sent {
                    tokio::time::sleep(gap).await;
                    if socket.write_all(b"x").await.is_err() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
    });
    addr
}

/// A host that serves the plugins `names` from a folder of their own (kept alive with the
/// host), may reach loopback upstreams, and has `plugins_config` as its `[plugins]` table.
async fn host_with_plugins(names: &[&str], plugins_config: &str) -> (Host, tempfile::TempDir) {
    let plugins = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::copy(
            built_plugin(name),
            plugins.path().join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_PLUGINS_DIR", plugins.path().to_str().unwrap())
            .env("EASEL_ALLOW_PRIVATE_TARGETS", "1")
            .toml(&format!("[plugins]\n{plugins_config}")),
    )
    .await;
    (host, plugins)
}

/// A vendor that could not be reached (no connection made) was asked nothing: the submit is
/// queued again though the plugin's submit is not idempotent, past `max_attempts`, the job
/// says so while it waits, and once its queue time would run out it fails, its last failure
/// naming what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_that_never_reached_its_vendor_is_tried_again() {
    let (host, _plugins) = host_with_plugins(
        &["fault-slow-upstream"],
        "[engine]\nmax_attempts = 1\nqueue_timeout_secs = 12",
    )
    .await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (status, created) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "model": "fault-slow-upstream/fetch",
                    "prompt": "x", "url": format!("http://127.0.0.1:{port}/file")}),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let id = created["job"]["id"].as_str().unwrap();
    let waiting = host
        .wait_job(id, Duration::from_secs(10), |job| {
            job["message"].is_string()
        })
        .await;
    assert_eq!(waiting["status"], "queued", "{waiting}");
    assert!(
        waiting["message"]
            .as_str()
            .unwrap()
            .contains("tried again at"),
        "{waiting}"
    );
    let failed = host.wait_terminal(id).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.starts_with("upstream unreached: "), "{error}");
    assert!(!error.contains("may have made the job"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_plugins_fail_their_own_task_while_the_host_keeps_serving() {
    let (host, _plugins) = host_with_plugins(
        &[
            "demo",
            "fault-loop",
            "fault-alloc",
            "fault-panic",
            "fault-forbidden-host",
            "fault-slow-upstream",
        ],
        "cpu_deadline_ms = 300\nmemory_limit_mb = 32\ncall_timeout_secs = 3",
    )
    .await;
    // A first byte, then nothing.
    let upstream = slow_upstream(1000, 1, Duration::ZERO).await;

    let faults = [
        ("fault-loop/image", json!({}), "CPU deadline"),
        ("fault-alloc/image", json!({}), "memory limit"),
        // The panic's own message, logged by the SDK's hook before the trap.
        (
            "fault-panic/image",
            json!({}),
            "plugin trapped: wasm trap: wasm `unreachable` instruction executed; it logged: panicked at",
        ),
        ("fault-forbidden-host/image", json!({}), "allowed hosts"),
        // The host's wall-clock cap ends a call whose upstream stalls; what the vendor did
        // is unknown, and the task says so.
        (
            "fault-slow-upstream/fetch",
            json!({"url": format!("http://{upstream}/slow")}),
            "exceeded its 3s timeout; not tried again because fault-slow-upstream's submit is \
             not idempotent: the vendor may have made the job",
        ),
    ];
    let mut fault_jobs = Vec::new();
    for (model, params, _) in &faults {
        let mut body =
            json!({"capability": "image.generate", "model": model, "prompt": "misbehave"});
        body.as_object_mut()
            .unwrap()
            .extend(params.as_object().unwrap().clone());
        let (status, created) = host.post("/api/v1/jobs", &body).await;
        assert_eq!(status, 202, "{created}");
        fault_jobs.push(created["job"]["id"].as_str().unwrap().to_string());
    }
    // While the faults play out, ordinary work keeps flowing.
    let mut fine_jobs = Vec::new();
    for i in 0..10 {
        let (_, created) = host
            .post("/api/v1/jobs", &json!({"capability": "image.generate", "model": "demo/image", "prompt": format!("fine {i}"), "width": 32, "height": 32}))
            .await;
        fine_jobs.push(created["job"]["id"].as_str().unwrap().to_string());
    }
    for id in &fine_jobs {
        assert_eq!(host.wait_terminal(id).await["status"], "succeeded");
    }
    for (id, (model, _, reason)) in fault_jobs.iter().zip(&faults) {
        let job = host.wait_terminal(id).await;
        assert_eq!(job["status"], "failed", "{model}: {job}");
        let error = job["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(reason),
            "{model} should fail with {reason:?}, got {error:?}"
        );
    }
    let (_, after) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "model": "demo/image", "prompt": "after"}),
        )
        .await;
    assert_eq!(
        host.wait_terminal(after["job"]["id"].as_str().unwrap())
            .await["status"],
        "succeeded"
    );
}

/// The CPU deadline counts the guest's own running, not the time it waits for its upstream: a
/// call that reads a slow answer in many small pieces, each waited for longer than the
/// deadline's tick, finishes well past its CPU deadline in wall-clock time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_on_the_upstream_is_not_charged_to_the_cpu_deadline() {
    let (host, _plugins) = host_with_plugins(
        &["fault-slow-upstream"],
        "cpu_deadline_ms = 100\ncall_timeout_secs = 30",
    )
    .await;
    // 120 pieces 15 ms apart: 1.8 s of waiting, 18 times the CPU deadline.
    let upstream = slow_upstream(120, 120, Duration::from_millis(15)).await;
    let job = host
        .run_job(&json!({
            "capability": "image.generate",
            "model": "fault-slow-upstream/fetch",
            "prompt": "wait",
            "url": format!("http://{upstream}/trickle"),
            "stream": true,
        }))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
}

/// A plugin whose chat breaks the contract's order fails that chat, refunded, instead of
/// giving the client an invalid answer: text after the finish (which a streamed client would
/// read after `finish_reason`), an end without a finish (an answer cut off, not to be charged
/// as whole), a tool call whose function is never named, usage details that are no JSON object
/// or hold no token counts (a client would read them inside the usage). So does a generation that finishes
/// with no output, or with only a text where an image was asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_break_the_contract_fail() {
    let (host, _plugins) = host_with_plugins(&["fault-answers"], "").await;
    let faults = [
        ("after-finish", "sent more of the answer after its finish"),
        ("no-finish", "ended the answer without a finish reason"),
        (
            "unnamed-call",
            "made tool call 0 without naming its function",
        ),
        (
            "bad-details",
            "the provider's usage-details is not a JSON object",
        ),
        (
            "bad-counts",
            "the provider's usage-details `completion_tokens_details` is not an object of token counts",
        ),
    ];
    for (asked, _) in faults {
        let chat = json!({"model": "fault-answers/chat", "messages": [{"role": "user", "content": asked}]});
        let (status, answer) = host.post("/v1/chat/completions", &chat).await;
        assert_eq!(status, 500, "{asked}: {answer}");
    }
    // Streamed, the text after the finish never follows the finish chunk.
    let chat = json!({"model": "fault-answers/chat", "stream": true,
                      "messages": [{"role": "user", "content": "after-finish"}]});
    let events = host.post_text("/v1/chat/completions", &chat).await;
    let finish = events.find("\"finish_reason\":\"stop\"").expect(&events);
    assert!(!events[finish..].contains("\"content\":\"b\""), "{events}");
    assert!(events[finish..].contains("\"error\""), "{events}");
    // Each chat failed (so refunded), its record naming the plugin's fault.
    let (_, listed) = host.get("/api/v1/jobs?limit=10").await;
    let jobs = listed["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 6, "{jobs:?}");
    assert!(jobs.iter().all(|job| job["status"] == "failed"), "{jobs:?}");
    for (_, fault) in faults {
        assert!(
            jobs.iter()
                .any(|job| job["error"].as_str().unwrap().contains(fault)),
            "{fault}: {jobs:?}"
        );
    }

    // A generation that finishes without what it makes fails too, never succeeds empty.
    for (prompt, fault) in [
        (
            "nothing",
            "finished without any output (the task makes image)",
        ),
        ("text", "answered text where the task makes image"),
    ] {
        let job = host
            .run_job(&json!({"capability": "image.generate", "model": "fault-answers/image", "prompt": prompt}))
            .await;
        assert_eq!(job["status"], "failed", "{prompt}: {job}");
        assert!(
            job["error"].as_str().unwrap().contains(fault),
            "{prompt}: {job}"
        );
    }
}
