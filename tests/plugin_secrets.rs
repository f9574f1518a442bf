//! What a plugin may take with it (issue 14, items 1 and 2), through the real host and the
//! `fault-exfiltrate` plugin: easel's own settings and another vendor's key are withheld
//! (the task says why, `GET /admin/plugins` shows what was asked for and granted), its own
//! assigned `TOKEN` reaches it, an output link outside its allowlist is never fetched, an
//! allowed link whose server fails once is tried again and one that answers a web page, a
//! JSON message or bytes of no image fails the task, and an allowed link whose body is over
//! the size cap is refused while streaming, without the host ever holding it whole.

use std::sync::{Arc, Mutex};

use easel_tests::{Backend, Host, Options, built_plugin, send};
use reqwest::Method;
use serde_json::{Value, json};

const TOKEN: &str = "plugin-own-token";

/// The start of a PNG: what the host reads to tell an image from something else.
const PNG_START: &[u8] = b"\x89PNG\r\n\x1a\n";

/// A file that starts as a PNG, with `rest` after the signature.
fn png(rest: &str) -> Vec<u8> {
    [PNG_START, rest.as_bytes()].concat()
}

/// Every request the "outside world" receives (path and query), and a body over the cap.
async fn outside_world() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    use axum::{Router, body::Body, extract::Request, response::IntoResponse, routing::get};
    static MIB: [u8; 1 << 20] = [7; 1 << 20];
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = Router::new()
        .route("/small.png", get(|| async { png("small enough") }))
        .route(
            "/flaky.png",
            // A CDN's passing trouble: the first request of each run gets a 503.
            get({
                let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                move || {
                    let nth = asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        if nth % 2 == 0 {
                            (axum::http::StatusCode::SERVICE_UNAVAILABLE, "try again")
                                .into_response()
                        } else {
                            png("second time lucky").into_response()
                        }
                    }
                }
            }),
        )
        .route(
            "/denied.png",
            // A store's error page, sent with a success status.
            get(|| async { axum::response::Html("<html>AccessDenied</html>") }),
        )
        .route(
            "/denied.json",
            // A CDN's error message, sent with a success status.
            get(|| async { axum::Json(json!({"error": "AccessDenied"})) }),
        )
        .route(
            "/notes.bin",
            // Bytes of no image, as a store names what it does not know.
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
                    "not a picture",
                )
            }),
        )
        .route(
            "/slow.png",
            // Longer than the test hosts' 1.5 s lease.
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(4)).await;
                png("late but whole")
            }),
        )
        .route(
            "/huge.bin",
            // 600 MiB, chunked (no length up front), made on the fly.
            get(|| async {
                let chunks = futures::stream::iter(
                    (0..600).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from_static(&MIB))),
                );
                Body::from_stream(chunks)
            }),
        )
        .layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| {
                record.lock().unwrap().push(request.uri().to_string());
                next.run(request)
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

async fn run(host: &Host, model: &str, params: Value) -> Value {
    let mut body = json!({"capability": "image.generate", "model": model, "prompt": "take it"});
    body.as_object_mut()
        .unwrap()
        .extend(params.as_object().unwrap().clone());
    host.run_job(&body).await
}

fn error_of(job: &Value) -> &str {
    assert_eq!(job["status"], "failed", "{job}");
    job["error"].as_str().unwrap_or_default()
}

/// The peak resident memory of the `easel serve` process using `data_dir`, in KiB.
fn peak_rss_kib(data_dir: &std::path::Path) -> u64 {
    let needle = format!("EASEL_DATA_DIR={}", data_dir.display());
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let ours = environ
            .split(|b| *b == 0)
            .any(|var| var == needle.as_bytes());
        if !ours {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
            return line.split_whitespace().nth(1).unwrap().parse().unwrap();
        }
    }
    panic!("no easel process runs on {}", data_dir.display());
}

async fn start(outside: std::net::SocketAddr) -> (Host, tempfile::TempDir) {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        built_plugin("fault-exfiltrate"),
        plugins.path().join("fault-exfiltrate.wasm"),
    )
    .unwrap();
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_PLUGINS_DIR", plugins.path().to_str().unwrap())
            .env("EASEL_ADMIN_KEY", "admin-secret")
            .env("EASEL_WEBHOOK_SECRET", "webhook-secret")
            .env("DASHSCOPE_API_KEY", "sk-someone-elses")
            .env("EASEL_PLUGIN_FAULT_EXFILTRATE__TOKEN", TOKEN)
            .toml(&format!(
                "[plugins]\nconnect_to = {{ \"api.example.com\" = \"{outside}\" }}"
            )),
    )
    .await;
    (host, plugins)
}

async fn admin_entry(host: &Host) -> Value {
    let (status, listed) = send(host.as_key(Method::GET, "/admin/plugins", "admin-secret")).await;
    assert_eq!(status, 200, "{listed}");
    let text = listed.to_string();
    for value in ["admin-secret", "webhook-secret", "sk-someone-elses", TOKEN] {
        assert!(
            !text.contains(value),
            "the admin view shows a value: {text}"
        );
    }
    let plugin = listed["plugins"][0].clone();
    assert_eq!(plugin["provider_id"], "fault-exfiltrate");
    plugin
}

fn refused_lately(plugin: &Value, what: &str) {
    let refusals = plugin["recent_refusals"].as_array().unwrap();
    assert!(
        refusals.iter().any(|r| r.as_str().unwrap().contains(what)),
        "{what}: {refusals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn easel_settings_and_other_vendors_keys_are_withheld() {
    let (outside, _) = outside_world().await;
    let (host, _plugins) = start(outside).await;

    for (name, reason) in [
        ("EASEL_ADMIN_KEY", "easel's own settings"),
        ("EASEL_API_KEYS", "easel's own settings"),
        ("EASEL_WEBHOOK_SECRET", "easel's own settings"),
        ("DATABASE_URL", "easel's own settings"),
        (
            "DASHSCOPE_API_KEY",
            "not assigned to plugin fault-exfiltrate",
        ),
    ] {
        let job = run(&host, "fault-exfiltrate/settings", json!({"secret": name})).await;
        let error = error_of(&job);
        assert!(
            error.contains(&format!("secret {name} withheld")) && error.contains(reason),
            "{name}: {error}"
        );
    }

    // The secret assigned to it still reaches it.
    let job = run(
        &host,
        "fault-exfiltrate/settings",
        json!({"secret": "TOKEN"}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let asset = job["outputAssetIds"][0].as_str().unwrap();
    let granted = host
        .as_key(
            Method::GET,
            &format!("/api/v1/assets/{asset}/download"),
            "key-a",
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(granted, TOKEN);

    // The admin view: what it asked for, what it got and from where, why the rest was not.
    let plugin = admin_entry(&host).await;
    let secrets = plugin["secrets"].as_array().expect("secrets listed");
    let entry = |name: &str| {
        secrets
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed: {secrets:?}"))
            .clone()
    };
    assert_eq!(entry("TOKEN")["granted"], true);
    assert_eq!(
        entry("TOKEN")["from"],
        "EASEL_PLUGIN_FAULT_EXFILTRATE__TOKEN"
    );
    assert!(entry("TOKEN").get("reason").is_none());
    for name in [
        "EASEL_ADMIN_KEY",
        "DATABASE_URL",
        "EASEL_API_KEYS",
        "EASEL_WEBHOOK_SECRET",
        "DASHSCOPE_API_KEY",
    ] {
        let refused = entry(name);
        assert_eq!(refused["granted"], false, "{refused}");
        assert!(refused["reason"].as_str().unwrap().len() > 20, "{refused}");
        assert!(refused.get("from").is_none(), "{refused}");
    }
    refused_lately(&plugin, "secret EASEL_ADMIN_KEY withheld");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_links_follow_the_allowlist_and_stream_under_the_cap() {
    let (outside, seen) = outside_world().await;
    let (host, _plugins) = start(outside).await;

    // A link to a host outside its allowlist is never fetched.
    let job = run(
        &host,
        "fault-exfiltrate/link",
        json!({"url": format!("http://{outside}/collect")}),
    )
    .await;
    let error = error_of(&job);
    assert!(
        error.contains("Output link on 127.0.0.1")
            && error.contains("not in the plugin's allowed hosts (api.example.com)"),
        "{error}"
    );
    assert!(
        !error.contains(TOKEN),
        "the refusal does not echo the query: {error}"
    );
    assert!(
        seen.lock().unwrap().iter().all(|r| !r.contains("collect")),
        "the outside host was reached: {:?}",
        seen.lock().unwrap()
    );

    // An allowed link is copied; one whose body passes the cap is refused while it streams.
    let job = run(
        &host,
        "fault-exfiltrate/link",
        json!({"url": "http://api.example.com/small.png"}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // A link whose server fails once is tried again; a web page in place of the file fails
    // the task, saying so, rather than being stored (and charged) as the output.
    let job = run(
        &host,
        "fault-exfiltrate/link",
        json!({"url": "http://api.example.com/flaky.png"}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let job = run(
        &host,
        "fault-exfiltrate/link",
        json!({"url": "http://api.example.com/denied.png"}),
    )
    .await;
    let error = error_of(&job);
    assert!(error.contains("answered a web page (text/html)"), "{error}");
    // Nor is a message, or bytes of no image where the task makes one, whatever its type.
    for (file, answered) in [
        (
            "denied.json",
            "answered a JSON document ({\"error\":\"AccessDenied\"})",
        ),
        (
            "notes.bin",
            "answered application/octet-stream bytes of no image format",
        ),
    ] {
        let job = run(
            &host,
            "fault-exfiltrate/link",
            json!({"url": format!("http://api.example.com/{file}")}),
        )
        .await;
        let error = error_of(&job);
        assert!(error.contains(answered), "{file}: {error}");
    }
    // Copying may outlast the worker's lease: the lease is held until the link is stored.
    let job = run(
        &host,
        "fault-exfiltrate/link",
        json!({"url": "http://api.example.com/slow.png"}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let job = run(
        &host,
        "fault-exfiltrate/link",
        json!({"url": "http://api.example.com/huge.bin"}),
    )
    .await;
    let error = error_of(&job);
    assert!(
        error.contains("Output link on api.example.com")
            && error.contains("larger than 536870912 bytes"),
        "{error}"
    );
    let peak = peak_rss_kib(host.data_dir());
    eprintln!("easel peaked at {peak} KiB while refusing a 600 MiB link");
    assert!(
        peak < 256 * 1024,
        "the host peaked at {peak} KiB while refusing a 600 MiB body"
    );
    let leftovers: Vec<_> = walk(host.data_dir())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let plugin = admin_entry(&host).await;
    assert_eq!(plugin["allowed_hosts"], json!(["api.example.com"]));
    refused_lately(&plugin, "output link to 127.0.0.1 refused");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}
