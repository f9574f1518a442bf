//! The soak: one host under a steady mix of every API for a given time, with uploads,
//! webhooks, cancels, plugin faults and a hot reload of a plugin at a fixed period, then a
//! drain. What it promises to measure, not to judge: every status code by kind of request,
//! each 5xx with its body, the server's resident memory over time, and what is left running or
//! reserved once the load stops. The caller decides what to assert (`tests/soak.rs` for CI's
//! short run, the `soak` binary for the long one).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::{Method, multipart};
use serde_json::{Value, json};

use crate::{Backend, Host, Options, Receiver, built_plugin, send, solid_png};

/// How long and how hard to soak.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Time under load, before the drain.
    pub duration: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// A plugin is replaced in the watched folder this often.
    pub reload_every: Duration,
    /// Resident memory is sampled this often.
    pub sample_every: Duration,
}

/// What a soak saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Answers per `kind status`, e.g. `"jobs.create 202"`.
    pub answers: BTreeMap<String, usize>,
    /// Every 5xx (and transport error) with what was sent and answered.
    pub server_errors: Vec<String>,
    /// `(seconds since start, resident MiB)` of the easel process.
    pub rss_mib: Vec<(f64, f64)>,
    /// Plugin replacements that the host picked up.
    pub reloads: usize,
    /// Jobs still queued or running after the drain.
    pub left_unfinished: Vec<Value>,
    /// Credits still reserved after the drain.
    pub reserved: f64,
    /// Tasks created with a webhook, and webhook calls received.
    pub webhooks: (usize, usize),
}

impl Report {
    /// Total answers counted.
    pub fn requests(&self) -> usize {
        self.answers.values().sum()
    }

    /// What went wrong, if anything: a 5xx or a broken connection, a kind of request that
    /// never succeeded, a missed reload, a job left open, credits left reserved, a missed
    /// webhook, or resident memory in the last quarter of the run above the second quarter's
    /// by more than `rss_growth` (a fraction) plus 16 MiB of allocator slack.
    pub fn problems(&self, rss_growth: f64, min_reloads: usize) -> Vec<String> {
        let mut problems = self.server_errors.clone();
        for kind in KINDS {
            let succeeded = self.answers.iter().any(|(answer, count)| {
                *count > 0
                    && answer
                        .strip_prefix(kind)
                        .and_then(|status| status.trim().parse::<u16>().ok())
                        .is_some_and(|status| (200..300).contains(&status))
            });
            if !succeeded {
                problems.push(format!("{kind}: no request succeeded"));
            }
        }
        if self.reloads < min_reloads {
            problems.push(format!(
                "{} plugin reloads, expected {min_reloads}",
                self.reloads
            ));
        }
        for job in &self.left_unfinished {
            problems.push(format!("left unfinished: {job}"));
        }
        if self.reserved != 0.0 {
            problems.push(format!("{} credits left reserved", self.reserved));
        }
        if self.webhooks.1 < self.webhooks.0 {
            problems.push(format!(
                "{} webhooks sent, {} received",
                self.webhooks.0, self.webhooks.1
            ));
        }
        let end = self.rss_mib.last().map_or(0.0, |(t, _)| *t);
        if let (Some(early), Some(late)) = (
            self.median_rss(end / 4.0, end / 2.0),
            self.median_rss(end * 0.75, f64::INFINITY),
        ) && late > early * (1.0 + rss_growth) + 16.0
        {
            problems.push(format!(
                "resident memory grew from {early:.0} MiB to {late:.0} MiB"
            ));
        }
        problems
    }

    /// Median resident memory over the samples whose time lies in `[from, to)` of the run.
    pub fn median_rss(&self, from: f64, to: f64) -> Option<f64> {
        let mut window: Vec<f64> = self
            .rss_mib
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, mib)| *mib)
            .collect();
        window.sort_by(f64::total_cmp);
        window.get(window.len() / 2).copied()
    }
}

const ADMIN: &str = "soak-admin";

/// The traffic, one entry per kind of request; each worker walks it round-robin from its own
/// offset so every kind runs throughout.
const KINDS: &[&str] = &[
    "jobs.create",
    "jobs.webhook",
    "jobs.cancel",
    "jobs.poll_path",
    "jobs.plugin_fault",
    "jobs.demo_plugin",
    "assets.upload_and_edit",
    "pixel.image",
    "llmage.chat",
    "llmage.chat_stream",
    "llmage.image_multipart",
    "openai.chat",
    "openai.image",
    "sd.generate",
];

/// Runs a soak on SQLite and reports.
pub async fn run(plan: Plan) -> Report {
    let plugins = tempfile::tempdir().expect("plugins folder");
    for plugin in ["demo", "fault-panic"] {
        std::fs::copy(
            built_plugin(plugin),
            plugins.path().join(format!("{plugin}.wasm")),
        )
        .expect("copying a plugin");
    }
    let host = Arc::new(
        Host::start(
            Options::new(Backend::Sqlite)
                .env("EASEL_PLUGINS_DIR", plugins.path().to_str().unwrap())
                .env("EASEL_ADMIN_KEY", ADMIN)
                .env("EASEL_ALLOW_PRIVATE_TARGETS", "1")
                .toml(concat!(
                    "[credits]\nenforce = true\n",
                    "prices = { \"offline/image\" = 1, \"offline/chat\" = 1, \"demo/image\" = 1 }\n",
                    "[models]\ndefaults = { \"image.generate\" = \"offline/image\" }\n",
                )),
        )
        .await,
    );
    wait_for_plugins(&host, &["demo", "fault-panic"]).await;
    let (status, body) = send(
        host.as_key(Method::POST, "/admin/clients/partner-a/credits", ADMIN)
            .json(&json!({"amount": 100_000_000})),
    )
    .await;
    assert_eq!(status, 200, "granting soak credits: {body}");

    let receiver = Arc::new(Receiver::start(0).await);
    let report = Arc::new(Mutex::new(Report::default()));
    let webhooks_sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let mut tasks = Vec::new();
    for worker in 0..plan.concurrency {
        let (host, report, stop) = (host.clone(), report.clone(), stop.clone());
        let (receiver, webhooks_sent) = (receiver.clone(), webhooks_sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut round = worker;
            while !stop.load(Ordering::Relaxed) {
                let kind = KINDS[round % KINDS.len()];
                round += 1;
                let traffic = Traffic {
                    host: &host,
                    webhook: &receiver.url,
                    webhooks_sent: &webhooks_sent,
                };
                for (status, detail) in traffic.send(kind, round).await {
                    record(&report, kind, status, detail);
                }
            }
        }));
    }
    let sampler = {
        let (report, stop) = (report.clone(), stop.clone());
        let pid = host.pid();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(mib) = resident_mib(pid) {
                    let at = started.elapsed().as_secs_f64();
                    report.lock().unwrap().rss_mib.push((at, mib));
                }
                tokio::time::sleep(plan.sample_every).await;
            }
        })
    };
    let mut next_reload = started + plan.reload_every;
    while started.elapsed() < plan.duration {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if Instant::now() >= next_reload {
            next_reload += plan.reload_every;
            let deploy = report.lock().unwrap().reloads + 1;
            if reload_plugin(&host, plugins.path().join("demo.wasm"), deploy).await {
                report.lock().unwrap().reloads += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a soak worker panicked");
    }
    sampler.await.expect("the sampler panicked");

    let left_unfinished = drain(&host).await;
    let (_, account) =
        send(host.as_key(Method::GET, "/admin/clients/partner-a/usage", ADMIN)).await;
    let sent = webhooks_sent.load(Ordering::Relaxed);
    receiver.wait_for(sent, Duration::from_secs(30)).await;
    let mut report = std::mem::take(&mut *report.lock().unwrap());
    report.left_unfinished = left_unfinished;
    report.reserved = account["reserved"].as_f64().unwrap_or(f64::NAN);
    report.webhooks = (sent, receiver.count());
    report
}

fn record(report: &Mutex<Report>, kind: &str, status: u16, detail: String) {
    let mut report = report.lock().unwrap();
    *report
        .answers
        .entry(format!("{kind} {status}"))
        .or_default() += 1;
    if status >= 500 || status == 0 {
        report
            .server_errors
            .push(format!("{kind} {status}: {detail}"));
    }
}

/// One request of a kind (and what follows from it: a poll, a cancel, a download).
struct Traffic<'a> {
    host: &'a Host,
    webhook: &'a str,
    webhooks_sent: &'a AtomicUsize,
}

type Answers = Vec<(u16, String)>;

impl Traffic<'_> {
    async fn send(&self, kind: &str, round: usize) -> Answers {
        let prompt = format!("soak {kind} {round}");
        match kind {
            "jobs.create" => {
                self.job(json!({"capability": "image.generate", "prompt": prompt, "width": 32, "height": 32}))
                    .await
            }
            "jobs.webhook" => {
                let mut answers = self
                    .job(json!({"capability": "image.generate", "prompt": prompt, "width": 16,
                                "height": 16, "webhookUrl": self.webhook}))
                    .await;
                if answers.first().is_some_and(|(status, _)| *status == 202) {
                    self.webhooks_sent.fetch_add(1, Ordering::Relaxed);
                }
                answers.truncate(1);
                answers
            }
            "jobs.cancel" => {
                let (status, created) = self
                    .host
                    .post("/api/v1/jobs", &json!({"capability": "image.generate", "prompt": prompt, "work_ms": 2000}))
                    .await;
                let mut answers = vec![(status, created.to_string())];
                if let Some(id) = created["job"]["id"].as_str() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let (status, body) = self
                        .host
                        .post(&format!("/api/v1/jobs/{id}/cancel"), &json!({}))
                        .await;
                    answers.push((status, body.to_string()));
                }
                answers
            }
            "jobs.poll_path" => {
                self.job(json!({"capability": "image.generate", "prompt": prompt, "delay_ms": 300}))
                    .await
            }
            "jobs.plugin_fault" => {
                self.job(json!({"capability": "image.generate", "model": "fault-panic/image", "prompt": prompt}))
                    .await
            }
            "jobs.demo_plugin" => {
                self.job(json!({"capability": "image.generate", "model": "demo/image", "prompt": prompt, "width": 64, "height": 64}))
                    .await
            }
            "assets.upload_and_edit" => self.upload_and_edit(&prompt).await,
            "pixel.image" => {
                let (status, body) = self
                    .host
                    .post("/api/v1/generations/image", &json!({"model": "offline/image", "prompt": prompt}))
                    .await;
                vec![(status, body.to_string())]
            }
            "llmage.chat" => {
                let (status, body) = self
                    .host
                    .post("/llmage/v1/chat/completions", &json!({"model": "offline/chat", "catelogid": "t2t", "prompt": prompt, "stream": false}))
                    .await;
                vec![(status, body.to_string())]
            }
            "llmage.chat_stream" => {
                self.whole_text(self.host.as_key(Method::POST, "/llmage/v1/chat/completions", "key-a").json(
                    &json!({"model": "offline/chat", "catelogid": "t2t", "prompt": prompt, "stream": true}),
                ))
                .await
            }
            "llmage.image_multipart" => {
                let form = multipart::Form::new()
                    .text("model", "offline/image")
                    .text("catelogid", "i2i")
                    .text("prompt", prompt)
                    .part(
                        "image_file",
                        multipart::Part::bytes(solid_png(16, 16, 200))
                            .file_name("in.png")
                            .mime_str("image/png")
                            .unwrap(),
                    );
                let (status, body) = send(
                    self.host
                        .as_key(Method::POST, "/llmage/v1/image/generations", "key-a")
                        .multipart(form),
                )
                .await;
                vec![(status, body.to_string())]
            }
            "openai.chat" => {
                let (status, body) = self
                    .host
                    .post("/v1/chat/completions", &json!({"model": "offline/chat", "messages": [{"role": "user", "content": prompt}]}))
                    .await;
                vec![(status, body.to_string())]
            }
            "openai.image" => {
                let (status, body) = self
                    .host
                    .post("/v1/images/generations", &json!({"model": "offline/image", "prompt": prompt, "size": "32x32"}))
                    .await;
                vec![(status, body.to_string())]
            }
            "sd.generate" => {
                let (status, body) = send(
                    self.host
                        .http
                        .post(self.host.url("/api/v1/generate"))
                        .header("X-API-Key", "key-a")
                        .json(&json!({"prompt": prompt, "width": 64, "height": 64, "num_inference_steps": 2})),
                )
                .await;
                vec![(status, body.to_string())]
            }
            other => unreachable!("unknown soak kind {other}"),
        }
    }

    /// Creates a job, then reads it once.
    async fn job(&self, body: Value) -> Answers {
        let (status, created) = self.host.post("/api/v1/jobs", &body).await;
        let mut answers = vec![(status, created.to_string())];
        if let Some(id) = created["job"]["id"].as_str() {
            let (status, job) = self.host.get(&format!("/api/v1/jobs/{id}")).await;
            answers.push((status, job.to_string()));
        }
        answers
    }

    async fn upload_and_edit(&self, prompt: &str) -> Answers {
        let form = multipart::Form::new().part(
            "files",
            multipart::Part::bytes(solid_png(24, 24, 60))
                .file_name("reference.png")
                .mime_str("image/png")
                .unwrap(),
        );
        let (status, uploaded) = send(
            self.host
                .as_key(Method::POST, "/api/v1/assets", "key-a")
                .multipart(form),
        )
        .await;
        let mut answers = vec![(status, uploaded.to_string())];
        if let Some(id) = uploaded["assets"][0]["id"].as_str() {
            answers.extend(
                self.job(
                    json!({"capability": "image.edit", "prompt": prompt, "inputAssetIds": [id]}),
                )
                .await,
            );
        }
        answers
    }

    /// Sends and reads the whole body (a stream runs to its end).
    async fn whole_text(&self, request: reqwest::RequestBuilder) -> Answers {
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.text().await {
                    Ok(text) => vec![(status, text)],
                    Err(error) => vec![(0, format!("stream broke: {error}"))],
                }
            }
            Err(error) => vec![(0, format!("transport: {error}"))],
        }
    }
}

async fn wait_for_plugins(host: &Host, ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, listed) = send(host.as_key(Method::GET, "/admin/plugins", ADMIN)).await;
        let loaded = |id: &&str| {
            listed["plugins"]
                .as_array()
                .is_some_and(|all| all.iter().any(|p| p["provider_id"] == *id))
        };
        if ids.iter().all(loaded) {
            return;
        }
        assert!(Instant::now() < deadline, "plugins did not load: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deploys a new build of a plugin: the same component with a custom section naming the
/// deploy (the host skips files whose hash did not change), written beside the live file and
/// renamed over it as an operator's deploy would. True once the host reports the new load.
async fn reload_plugin(host: &Host, file: PathBuf, deploy: usize) -> bool {
    let loaded_at = || async {
        let (_, listed) = send(host.as_key(Method::GET, "/admin/plugins", ADMIN)).await;
        listed["plugins"].as_array().and_then(|all| {
            all.iter()
                .find(|p| p["file"].as_str().is_some_and(|f| f.ends_with("demo.wasm")))
                .map(|p| p["loaded_at"].clone())
        })
    };
    let before = loaded_at().await;
    let mut component = std::fs::read(built_plugin("demo")).expect("reading the plugin");
    component.extend(custom_section("soak-deploy", deploy.to_string().as_bytes()));
    let staged = file.with_extension("wasm.new");
    std::fs::write(&staged, component).expect("staging the plugin");
    std::fs::rename(&staged, &file).expect("replacing the plugin");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let now = loaded_at().await;
        if now.is_some() && now != before {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A wasm custom section, valid at the end of a module or a component.
fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    use wasm_encoder::Section;
    let mut section = Vec::new();
    wasm_encoder::CustomSection {
        name: name.into(),
        data: payload.into(),
    }
    .append_to(&mut section);
    section
}

/// Waits up to a minute for every job to end; returns those that did not.
async fn drain(host: &Host) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut open = Vec::new();
        for status in ["queued", "running"] {
            let (_, listed) = host
                .get(&format!("/api/v1/jobs?status={status}&limit=100"))
                .await;
            open.extend(listed["jobs"].as_array().cloned().unwrap_or_default());
        }
        if open.is_empty() || Instant::now() >= deadline {
            return open;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `VmRSS` of a process, in MiB.
fn resident_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
