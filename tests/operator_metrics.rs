//! The operator's view (issue 18, items 3 and 5): `/metrics` after a workload that touches
//! every family, checked by `promtool check metrics` (Debian's `prometheus` package, which
//! scripts/test installs) and family by family; the `Server-Timing` of responses that wait
//! for a vendor; and `EASEL_LOG_FORMAT=json` lines carrying the request and task ids.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use easel_tests::{
    ADMIN_KEY, Backend, Host, Options, Receiver, built_plugin, charging,
    exposition::{samples, total},
    send,
};
use reqwest::Method;
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    easel_tests::checkout().join("host/crates/diffusion/tests/fixtures")
}

async fn job(host: &Host, body: Value) -> String {
    let (status, created) = host.post("/api/v1/jobs", &body).await;
    assert_eq!(status, 202, "{created}");
    created["job"]["id"].as_str().unwrap().to_string()
}

/// `(easel ms, upstream ms)` of a `Server-Timing` header.
fn server_timing(response: &reqwest::Response) -> (f64, f64) {
    let header = response
        .headers()
        .get("server-timing")
        .expect("a Server-Timing header")
        .to_str()
        .unwrap()
        .to_string();
    let mut parts = HashMap::new();
    for metric in header.split(',') {
        let (name, dur) = metric.trim().split_once(";dur=").expect("name;dur=ms");
        parts.insert(name.to_string(), dur.parse::<f64>().expect("ms"));
    }
    (parts["easel"], parts["upstream"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_every_family_and_pass_promtool() {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        built_plugin("fault-panic"),
        plugins.path().join("fault_panic.wasm"),
    )
    .unwrap();
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .env("EASEL_PLUGINS_DIR", plugins.path().to_str().unwrap())
            .env(
                "EASEL_SD_MODEL",
                fixtures().join("tiny-sd").to_str().unwrap(),
            )
            .env("EASEL_SD_DEVICE", "flex")
            .toml("[engine]\nworkers = 1")
            .toml(&charging(&[("offline/image", 0.5)])),
    )
    .await;
    let (status, _) = send(host.as_key(Method::GET, "/metrics", "key-a")).await;
    assert_eq!(status, 401, "a client key does not read the metrics");
    host.grant("partner-a", 10.0).await;

    // Tasks that succeed (with a webhook refused once, then delivered), fail (refunded), trap,
    // and run the local model for two steps.
    let receiver = Receiver::start(1).await;
    let image = json!({"capability": "image.generate", "model": "offline/image", "prompt": "m",
                       "width": 16, "height": 16});
    let mut with_hook = image.clone();
    with_hook["webhookUrl"] = receiver.url.clone().into();
    let hooked = job(&host, with_hook).await;
    let mut failing = image.clone();
    failing["fail"] = "broken on purpose".into();
    let failed = job(&host, failing).await;
    let trapped = job(
        &host,
        json!({"capability": "image.generate", "model": "fault-panic/image", "prompt": "trap"}),
    )
    .await;
    let local = job(
        &host,
        json!({"capability": "image.generate", "model": "local/tiny-sd", "prompt": "steps",
               "width": 64, "height": 64, "num_inference_steps": 3, "seed": 1}),
    )
    .await;
    assert_eq!(host.wait_terminal(&hooked).await["status"], "succeeded");
    assert_eq!(host.wait_terminal(&failed).await["status"], "failed");
    assert_eq!(host.wait_terminal(&trapped).await["status"], "failed");
    let ran = host.wait_terminal(&local).await;
    assert_eq!(ran["status"], "succeeded", "{ran}");
    receiver.wait_for(2, Duration::from_secs(20)).await;

    // Responses that wait for a vendor say how long it took, apart from easel's own time.
    let chat = host
        .as_key(Method::POST, "/v1/chat/completions", "key-a")
        .json(&json!({"model": "offline/chat", "messages": [{"role": "user", "content": "time this answer"}],
                      "work_ms": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 200);
    let (own, upstream) = server_timing(&chat);
    assert!(
        upstream >= 250.0 && own >= 0.0,
        "chat: easel {own} ms, upstream {upstream} ms"
    );
    let llmage_chat = host
        .as_key(Method::POST, "/llmage/v1/chat/completions", "key-a")
        .json(&json!({"model": "offline/chat", "prompt": "time this answer", "work_ms": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(llmage_chat.status(), 200);
    let (own, upstream) = server_timing(&llmage_chat);
    assert!(
        upstream >= 250.0 && own >= 0.0,
        "llmage chat: easel {own} ms, upstream {upstream} ms"
    );
    let sync = host
        .as_key(Method::POST, "/v1/images/generations", "key-a")
        .json(&json!({"model": "offline/image", "prompt": "sync", "size": "64x64", "work_ms": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(sync.status(), 200, "{:?}", sync.text().await);
    let (own, upstream) = server_timing(&sync);
    assert!(
        upstream >= 250.0 && own >= 0.0,
        "sync image: easel {own} ms, upstream {upstream} ms"
    );
    let plain = host
        .as_key(Method::GET, "/api/v1/jobs", "key-a")
        .send()
        .await
        .unwrap();
    assert!(
        plain.headers().get("server-timing").is_none(),
        "a request that calls no vendor has no upstream time"
    );
    assert!(plain.headers().get("x-request-id").is_some());

    // The one worker is busy with a slow task, so the next one waits in the queue.
    let mut slow = image.clone();
    slow["work_ms"] = 3000.into();
    let busy = job(&host, slow).await;
    host.wait_job(&busy, Duration::from_secs(20), |j| j["status"] == "running")
        .await;
    let waiting = job(&host, image.clone()).await;
    tokio::time::sleep(Duration::from_millis(600)).await;

    let response = host.as_admin(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();

    let started = std::time::Instant::now();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    eprintln!("promtool check metrics took {:?}", started.elapsed());

    let s = samples(&text);
    assert!(
        total(
            &s,
            "easel_http_requests_total",
            &[
                "route=\"/api/v1/jobs\"",
                "method=\"POST\"",
                "status=\"202\""
            ]
        ) >= 6.0
    );
    assert!(
        total(
            &s,
            "easel_http_request_duration_seconds_count",
            &["route=\"/api/v1/jobs/{id}\""]
        ) >= 1.0,
        "routes are templates, not raw paths"
    );
    for histogram in [
        "easel_http_request_duration_seconds",
        "easel_provider_call_duration_seconds",
        "easel_diffusion_step_seconds",
    ] {
        assert!(
            total(&s, &format!("{histogram}_bucket"), &["le=\"+Inf\""]) >= 1.0,
            "{histogram} has buckets"
        );
    }
    assert!(!text.contains(&format!("route=\"/api/v1/jobs/{hooked}\"")));
    assert!(
        total(
            &s,
            "easel_tasks_created_total",
            &[
                "provider=\"offline\"",
                "model=\"image\"",
                "capability=\"image.generate\""
            ]
        ) >= 5.0
    );
    assert!(total(&s, "easel_tasks_created_total", &["capability=\"chat\""]) >= 1.0);
    assert!(
        total(
            &s,
            "easel_tasks_finished_total",
            &["model=\"image\"", "status=\"succeeded\""]
        ) >= 2.0
    );
    assert!(
        total(
            &s,
            "easel_tasks_finished_total",
            &["model=\"image\"", "status=\"failed\""]
        ) >= 1.0
    );
    assert!(
        total(
            &s,
            "easel_tasks_finished_total",
            &["provider=\"fault-panic\"", "status=\"failed\""]
        ) >= 1.0
    );
    assert!(
        total(&s, "easel_queue_depth", &["provider=\"offline\""]) >= 1.0,
        "{waiting} waits"
    );
    assert!(total(&s, "easel_queue_depth", &["provider=\"local\""]) == 0.0);
    // The slow task the one worker runs.
    assert_eq!(total(&s, "easel_tasks_in_flight", &[]), 1.0);
    let age = total(
        &s,
        "easel_queue_oldest_age_seconds",
        &["provider=\"offline\""],
    );
    assert!((0.3..60.0).contains(&age), "oldest queued age {age}");
    assert!(
        total(
            &s,
            "easel_provider_call_duration_seconds_count",
            &["provider=\"offline\"", "call=\"submit\"", "outcome=\"ok\""]
        ) >= 2.0
    );
    assert!(
        total(
            &s,
            "easel_provider_call_duration_seconds_count",
            &["call=\"chat\""]
        ) >= 1.0
    );
    assert!(
        total(&s, "easel_plugin_traps_total", &["kind=\"unreachable\""]) >= 1.0,
        "a panicking plugin traps on `unreachable`"
    );
    assert!(
        total(
            &s,
            "easel_webhook_deliveries_total",
            &["outcome=\"failed\""]
        ) >= 1.0
    );
    assert!(
        total(
            &s,
            "easel_webhook_deliveries_total",
            &["outcome=\"delivered\""]
        ) >= 1.0
    );
    // Series with known labels are there from the start, at 0 until their first event.
    for (name, never) in [
        ("easel_webhook_deliveries_total", "outcome=\"gave_up\""),
        ("easel_plugin_traps_total", "kind=\"memory\""),
        ("easel_tasks_requeued_total", "reason=\"interrupted\""),
    ] {
        let at_zero = |(labels, value): &(String, f64)| labels.contains(never) && *value == 0.0;
        assert!(
            s[name].iter().any(at_zero),
            "{name}{{{never}}} missing: {:?}",
            s[name]
        );
    }
    // Five image tasks at 0.5 (the sync one included), one refunded.
    assert!(total(&s, "easel_credits_charged_total", &[]) >= 2.5);
    assert_eq!(total(&s, "easel_credits_refunded_total", &[]), 0.5);
    let steps = total(&s, "easel_diffusion_step_seconds_count", &[]);
    assert!(steps >= 2.0, "{steps} steps timed of 3");
    assert!(total(&s, "easel_diffusion_step_seconds_sum", &[]) > 0.0);
}

/// `easel serve` on a free loopback port with the offline provider, its data in `data`, only
/// `env` besides (nothing of this process's environment but `PATH`), its output piped.
fn serve_offline(data: &std::path::Path, env: &[(&str, &str)]) -> std::process::Child {
    Command::new(easel_tests::easel_bin())
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("EASEL_ADDR", "127.0.0.1:0")
        .env("EASEL_DATA_DIR", data)
        .env("EASEL_OFFLINE_PROVIDER", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Every line the host writes to stderr, collected until it exits.
fn stderr_lines(child: &mut std::process::Child) -> std::thread::JoinHandle<Vec<String>> {
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect()
    })
}

/// Waits (5 s at most) until client `key-a`'s job `id` on `base` has failed.
async fn wait_failed(http: &reqwest::Client, base: &str, id: &str) {
    for _ in 0..100 {
        let job: Value = http
            .get(format!("{base}/api/v1/jobs/{id}"))
            .bearer_auth("key-a")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["job"]["status"] == "failed" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Text a client sent (here a failure's reason) cannot write a log line of its own: a line
/// break inside an event is written as `\n`.
#[tokio::test]
async fn client_text_cannot_forge_a_log_line() {
    let data = tempfile::tempdir().unwrap();
    let mut child = serve_offline(data.path(), &[("EASEL_API_KEYS", easel_tests::KEYS)]);
    let base = easel_tests::announced_address(&mut child, "easel listening on ");
    let lines = stderr_lines(&mut child);
    let http = reqwest::Client::new();
    let forged = "boom\n2026-01-01T00:00:00.000000Z  INFO easel: FORGED admin key rotated";
    let created: Value = http
        .post(format!("{base}/api/v1/jobs"))
        .bearer_auth("key-a")
        .json(
            &json!({"capability": "image.generate", "model": "offline/image", "prompt": "x",
                      "width": 16, "height": 16, "fail": forged}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["job"]["id"].as_str().unwrap().to_string();
    wait_failed(&http, &base, &id).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = child.kill();
    let _ = child.wait();
    let lines = lines.join().unwrap();
    assert!(
        lines
            .iter()
            .all(|line| !line.contains("FORGED") || line.contains(r"boom\n2026")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|line| line.contains(r"boom\n2026")),
        "the reason is logged, on its line: {lines:#?}"
    );
}

/// Settings that name a model or a provider nothing here serves (a misspelt alias target, a
/// `[capacity]` entry) are named in the log at start; they used to do nothing without a word.
#[test]
fn settings_naming_nothing_served_here_are_logged_at_start() {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("easel.toml");
    // What a host started on `settings` logs until it listens.
    let start_log = |settings: &str| {
        std::fs::write(&config, settings).unwrap();
        let mut child = serve_offline(data.path(), &[("EASEL_CONFIG", config.to_str().unwrap())]);
        easel_tests::announced_address(&mut child, "easel listening on ");
        let _ = child.kill();
        let _ = child.wait();
        let mut log = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
        log
    };
    let settings = "[models]\naliases = { \"fast\" = \"offline/image\", \"typo\" = \"ofline/image\" }\n\
                    [capacity]\nproviders = { dashcope = 4, offline = 2 }\n";
    let log = start_log(settings);
    // Field names and values may be apart (colours), so each is looked for on its own.
    let warned = |all: &[&str]| {
        log.lines()
            .any(|l| l.contains("WARN") && all.iter().all(|needle| l.contains(needle)))
    };
    assert!(
        warned(&["setting", "\"typo\"", "\"ofline/image\""]),
        "{log}"
    );
    assert!(warned(&["provider", "dashcope"]), "{log}");
    // What is served here is not named.
    assert!(
        !warned(&["\"offline/image\""]) && !warned(&["[capacity]", "offline"]),
        "{log}"
    );
    // An API-only host claims nothing: the fleet's shared `[capacity]` names nothing to it.
    let log = start_log(&format!("[engine]\nworkers = 0\n{settings}"));
    assert!(!log.contains("dashcope"), "{log}");
    assert!(
        log.contains("ofline/image"),
        "aliases are still checked: {log}"
    );
}

/// `EASEL_LOG_FORMAT=json`: every line a JSON object; a request's lines carry its id, and
/// once it is admitted its task's id; the worker's lines about the task carry both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_and_task_ids() {
    let data = tempfile::tempdir().unwrap();
    let mut child = serve_offline(
        data.path(),
        &[
            ("EASEL_API_KEYS", easel_tests::KEYS),
            ("EASEL_LOG_FORMAT", "json"),
            ("EASEL_LOG", "info,tower_http=debug"),
        ],
    );
    let base = easel_tests::announced_address(&mut child, "easel listening on ");
    let lines = stderr_lines(&mut child);
    let http = reqwest::Client::new();
    // A failing task logs from the request (admitted) and from the worker (finished).
    let response = http
        .post(format!("{base}/api/v1/jobs"))
        .bearer_auth("key-a")
        .json(
            &json!({"capability": "image.generate", "model": "offline/image", "prompt": "log",
                      "width": 16, "height": 16, "fail": "logged failure"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let created: Value = response.json().await.unwrap();
    let task_id = created["job"]["id"].as_str().unwrap().to_string();
    wait_failed(&http, &base, &task_id).await;
    // OpenAI's synchronous image route admits its task on a task of its own: the task still
    // records the request's id, so the worker's lines about it name the request.
    let response = http
        .post(format!("{base}/v1/images/generations"))
        .bearer_auth("key-a")
        .json(
            &json!({"model": "offline/image", "prompt": "log", "size": "64x64",
                      "fail": "logged failure"}),
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{response:?}");
    let sync_request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(child.wait().unwrap().success());
    let lines = lines.join().unwrap();
    assert!(!lines.is_empty());
    let parsed: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    // A stop says so, idle or not, so that a log tells it from a crash.
    let messages: Vec<&str> = parsed
        .iter()
        .filter_map(|line| line["fields"]["message"].as_str())
        .collect();
    assert!(
        messages.contains(&"stopping (SIGTERM): no new tasks are claimed")
            && messages.last() == Some(&"stopped"),
        "{messages:#?}"
    );
    // The fields of the spans a line was written in.
    let span_field = |line: &Value, field: &str| -> Option<String> {
        line["spans"]
            .as_array()?
            .iter()
            .find_map(|span| span[field].as_str().map(String::from))
    };
    let of_task: Vec<&Value> = parsed
        .iter()
        .filter(|line| span_field(line, "task_id").as_deref() == Some(task_id.as_str()))
        .collect();
    assert!(
        of_task.len() >= 2,
        "lines of the request and of the worker name the task: {lines:#?}"
    );
    for line in &of_task {
        assert_eq!(
            span_field(line, "request_id").as_deref(),
            Some(request_id.as_str()),
            "the request's lines and the worker's about its task carry the request id: {line}"
        );
    }
    assert!(
        of_task
            .iter()
            .any(|line| line["fields"]["message"] == "task finished"
                && line["fields"]["error"]
                    .as_str()
                    .is_some_and(|error| error.contains("logged failure"))),
        "the worker's line is among them, with the failure's reason: {lines:#?}"
    );
    assert!(
        parsed
            .iter()
            .any(|line| line["fields"]["message"] == "task finished"
                && span_field(line, "request_id").as_deref() == Some(sync_request_id.as_str())),
        "the synchronous route's task names its request: {lines:#?}"
    );
    for line in &parsed {
        if line["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|s| s["name"] == "request"))
        {
            assert!(span_field(line, "request_id").is_some(), "{line}");
        }
    }
}

/// A database outage is told once per loop, not at every retry (before, a few seconds of it
/// wrote about 190 warnings), and each loop says when it works again; meanwhile `/metrics`
/// still answers, without the gauges read from the database and with `easel_database_up` 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_told_once_per_loop_and_metrics_still_answer() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let host = Host::start(
        Options::new(Backend::Postgres)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .env("EASEL_LOG", "info")
            .env("EASEL_LOG_FORMAT", "json")
            .log_to(log.path()),
    )
    .await;
    let scrape = || async {
        let response = host.as_admin(Method::GET, "/metrics").send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "/metrics answers through the outage"
        );
        samples(&response.text().await.unwrap())
    };
    let before = scrape().await;
    assert_eq!(total(&before, "easel_database_up", &[]), 1.0);
    assert!(before.contains_key("easel_queue_depth"));

    host.set_database_reachable(false).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = scrape().await;
    assert_eq!(total(&during, "easel_database_up", &[]), 0.0);
    assert!(
        !during.contains_key("easel_queue_depth"),
        "the queue is not shown as it was before the outage"
    );
    assert!(during.contains_key("easel_tasks_in_flight"));
    host.set_database_reachable(true).await;

    let recovered = |lines: &[Value]| {
        lines
            .iter()
            .any(|line| message(line).starts_with("claiming due polls works again"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines = log_lines(log.path());
        if recovered(&lines) || std::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(recovered(&lines), "no loop said it works again");
    assert_eq!(total(&scrape().await, "easel_database_up", &[]), 1.0);
    let mut warned: HashMap<String, usize> = HashMap::new();
    let easels_warnings = lines.iter().filter(|line| {
        line["level"] == "WARN"
            && line["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("easel"))
    });
    for line in easels_warnings {
        *warned.entry(message(line).to_string()).or_default() += 1;
    }
    let polls = warned.get("claiming due polls failed").copied();
    assert_eq!(
        polls,
        Some(1),
        "the poller retries every 100 ms: {warned:#?}"
    );
    let repeated: Vec<_> = warned.iter().filter(|(_, times)| **times > 1).collect();
    assert!(repeated.is_empty(), "said more than once: {repeated:#?}");
}

fn log_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}
