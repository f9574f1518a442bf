//! The easel side of the vendor tests: a real host with plugins whose vendor hosts are
//! routed (`[plugins] connect_to`) to fakes, the job-level checks every vendor shares, and
//! the drivers that play every scenario against a task API or a synchronous one.

use std::time::Duration;

use easel_tests::{Backend, Host, Options, built_plugin};
use reqwest::Method;
use serde_json::Value;

use super::{Fake, Scenario};

/// A host serving plugins against fake upstreams.
pub struct Easel {
    /// The running host.
    pub host: Host,
    _plugins: tempfile::TempDir,
}

/// A job submitted to play one scenario.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// What the fake was asked to play.
    pub scenario: Scenario,
    /// easel's job id.
    pub job: String,
}

impl Easel {
    /// Starts a host with `plugin`, its `secrets` in the environment, and each vendor host in
    /// `routes` sent to its fake.
    pub async fn start(plugin: &str, routes: &[(&str, &Fake)], secrets: &[(&str, &str)]) -> Easel {
        Self::start_with(plugin, routes, secrets, "").await
    }

    /// Like [`Easel::start`], with more `easel.toml` (aliases, credits).
    pub async fn start_with(
        plugin: &str,
        routes: &[(&str, &Fake)],
        secrets: &[(&str, &str)],
        toml: &str,
    ) -> Easel {
        Self::start_plugins(&[plugin], routes, secrets, toml).await
    }

    /// Like [`Easel::start_with`], serving several plugins at once.
    pub async fn start_plugins(
        names: &[&str],
        routes: &[(&str, &Fake)],
        secrets: &[(&str, &str)],
        toml: &str,
    ) -> Easel {
        // A refused submit fails at once, as the vendor answered it: these hosts test how each
        // plugin reads its vendor, and the engine's retries are tested on their own.
        let toml = format!("[engine]\nmax_attempts = 1\n{toml}");
        let (options, plugins) = plugin_options(Backend::Sqlite, names, routes, secrets, &toml);
        Easel {
            host: Host::start(options).await,
            _plugins: plugins,
        }
    }

    /// A host serving the DashScope and ModelScope plugins, which both serve `qwen-image`,
    /// each routed to its fake; the fakes come back with it, to be kept while it runs.
    pub async fn with_dashscope_and_modelscope() -> (Easel, [Fake; 2]) {
        use super::{dashscope, modelscope};
        let fakes = [
            Fake::start(dashscope::routes).await,
            Fake::start(modelscope::routes).await,
        ];
        let easel = Self::start_plugins(
            &["dashscope", "modelscope"],
            &[(dashscope::HOST, &fakes[0]), (modelscope::HOST, &fakes[1])],
            &[
                ("DASHSCOPE_API_KEY", dashscope::KEY),
                ("MODELSCOPE_API_KEY", modelscope::KEY),
            ],
            "",
        )
        .await;
        (easel, fakes)
    }

    /// Submits `request` (which carries a `prompt`) with the scenario's token appended.
    pub async fn submit(&self, request: &Value, scenario: Scenario) -> Submitted {
        let mut body = request.clone();
        let prompt = body["prompt"]
            .as_str()
            .expect("the request has a prompt")
            .to_string();
        body["prompt"] = Value::String(format!("{prompt} {}", scenario.token()));
        let (status, created) = self.host.post("/api/v1/jobs", &body).await;
        assert_eq!(status, 202, "{scenario:?}: {created}");
        Submitted {
            scenario,
            job: created["job"]["id"].as_str().unwrap().to_string(),
        }
    }

    /// Submits one job per scenario, all at once.
    pub async fn submit_each(&self, request: &Value, scenarios: &[Scenario]) -> Vec<Submitted> {
        futures::future::join_all(scenarios.iter().map(|s| self.submit(request, *s))).await
    }

    /// Waits until the job is terminal.
    pub async fn finished(&self, submitted: &Submitted) -> Value {
        self.host.wait_terminal(&submitted.job).await
    }

    /// Asserts the job succeeded and its outputs download as exactly `bytes` each, except a
    /// by-product of another kind than the first output (a video's cover), which must be the
    /// fakes' own file of its type.
    pub async fn expect_outputs(&self, submitted: &Submitted, bytes: &[u8]) -> Value {
        let job = self.finished(submitted).await;
        assert_eq!(
            job["status"], "succeeded",
            "{:?}: {job}",
            submitted.scenario
        );
        let assets = job["outputAssetIds"].as_array().expect("outputAssetIds");
        assert!(
            !assets.is_empty(),
            "{:?}: no outputs: {job}",
            submitted.scenario
        );
        let mut first_kind = None;
        for asset in assets {
            let path = format!("/api/v1/assets/{}/download", asset.as_str().unwrap());
            let download = self
                .host
                .as_key(Method::GET, &path, "key-a")
                .send()
                .await
                .unwrap();
            assert_eq!(download.status(), 200, "{path}");
            let content_type = download.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_string();
            let kind = content_type
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let wanted = if *first_kind.get_or_insert_with(|| kind.clone()) == kind {
                bytes
            } else {
                super::files::bytes_of_type(&content_type)
            };
            assert_eq!(
                download.bytes().await.unwrap().as_ref(),
                wanted,
                "{path} ({content_type}) is not the vendor's file"
            );
        }
        job
    }

    /// Asserts the job failed with the contract error its scenario stands for, and that the
    /// message carries `detail` (the vendor's code or message; for rate limits the
    /// `(retry after 7s)` that passes the vendor's `Retry-After` on), except for a refused key, whose
    /// message must not.
    pub async fn expect_mapped_error(&self, submitted: &Submitted, detail: &str) {
        let job = self.finished(submitted).await;
        assert_eq!(job["status"], "failed", "{:?}: {job}", submitted.scenario);
        let error = job["error"].as_str().unwrap_or_default();
        let prefix = match submitted.scenario {
            Scenario::AuthRejected => "unauthorized: ",
            Scenario::RateLimited => "rate limited",
            Scenario::ContentRejected | Scenario::FailsModeration => "content rejected: ",
            Scenario::BadParameter => "invalid request: ",
            Scenario::UpstreamDown => "upstream unavailable: ",
            other => panic!("{other:?} is not an error scenario"),
        };
        assert!(
            error.starts_with(prefix),
            "{:?} should fail with {prefix:?}, got {error:?}",
            submitted.scenario
        );
        if submitted.scenario == Scenario::AuthRejected {
            // The vendor's answer about the operator's key stays in the operator's log.
            assert!(
                !error.contains(detail)
                    && error.contains("credentials are missing or were refused"),
                "{error:?} should say the credentials were refused, without the vendor's {detail:?}"
            );
        } else {
            assert!(
                error.contains(detail),
                "{:?}: {error:?} should mention {detail:?}",
                submitted.scenario
            );
        }
    }

    /// Waits until the fake accepted the job's task, then cancels the job; returns the job.
    pub async fn cancel_once_pending(&self, submitted: &Submitted, fake: &Fake) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while fake.tasks().id_for(submitted.scenario).is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the fake never received the task to cancel"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let the host record the pending handle the plugin answered.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let path = format!("/api/v1/jobs/{}/cancel", submitted.job);
        let (status, body) =
            easel_tests::send(self.host.as_key(Method::POST, &path, "key-a")).await;
        assert_eq!(status, 200, "cancel: {body}");
        let job = self.finished(submitted).await;
        assert_eq!(job["status"], "cancelled", "{job}");
        // What became of the vendor's job is said: cancelled there, or perhaps still billing.
        let error = job["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("it was cancelled at its vendor")
                || error.contains("its vendor's job could not be cancelled"),
            "{job}"
        );
        job
    }
}

/// The options of a host on `backend` serving the plugins `names`, their `secrets` in the
/// environment, each vendor host in `routes` sent to its fake, with more `easel.toml`; and the
/// plugin folder they name, to be kept while hosts started with them run.
pub fn plugin_options(
    backend: Backend,
    names: &[&str],
    routes: &[(&str, &Fake)],
    secrets: &[(&str, &str)],
    toml: &str,
) -> (Options, tempfile::TempDir) {
    let plugins = tempfile::tempdir().unwrap();
    for plugin in names {
        std::fs::copy(
            built_plugin(plugin),
            plugins.path().join(format!("{plugin}.wasm")),
        )
        .unwrap();
    }
    let mut linked = std::collections::HashSet::new();
    for (host, fake) in routes {
        if linked.insert(fake.addr) {
            fake.state.link_files_through(host);
        }
    }
    let connect_to: Vec<String> = routes
        .iter()
        .map(|(host, fake)| format!("\"{host}\" = \"{}\"", fake.addr))
        .collect();
    let mut options = Options::new(backend)
        .env("EASEL_PLUGINS_DIR", plugins.path().to_str().unwrap())
        .toml(&format!(
            "[plugins]\nconnect_to = {{ {} }}",
            connect_to.join(", ")
        ))
        .toml(toml);
    for (name, value) in secrets {
        options = options.env(name, value);
    }
    (options, plugins)
}

/// Plays success, pending-then-success, every submit error, moderation of a running task
/// and cancel against a task API whose fake task ids start with `task_kind`, then checks the
/// polls the fake counted.
pub async fn plays_every_task_scenario(
    easel: &Easel,
    fake: &Fake,
    request: &Value,
    task_kind: &str,
    output: &[u8],
    detail: fn(Scenario) -> &'static str,
) {
    let jobs = easel.submit_each(request, &Scenario::ALL).await;
    easel
        .cancel_once_pending(playing(&jobs, Scenario::StaysPending), fake)
        .await;
    // A poll already on the wire when the cancel landed may still reach the fake; count
    // after it had time to arrive, then expect no more for the rest of the test.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancelled_id = fake
        .tasks()
        .id_for_kind(Scenario::StaysPending, task_kind)
        .expect("the fake accepted the task that was cancelled");
    let polls_at_cancel = fake.tasks().polls(&cancelled_id);
    easel
        .expect_outputs(playing(&jobs, Scenario::Success), output)
        .await;
    easel
        .expect_outputs(playing(&jobs, Scenario::PendingThenSuccess), output)
        .await;
    for scenario in Scenario::SUBMIT_ERRORS
        .into_iter()
        .chain([Scenario::FailsModeration])
    {
        easel
            .expect_mapped_error(playing(&jobs, scenario), detail(scenario))
            .await;
    }
    let tasks = fake.tasks();
    let polls = |s| {
        tasks.polls(
            &tasks
                .id_for_kind(s, task_kind)
                .unwrap_or_else(|| panic!("the fake never accepted {s:?}")),
        )
    };
    assert_eq!(
        polls(Scenario::Success),
        1,
        "a finished task is polled once"
    );
    assert_eq!(
        polls(Scenario::PendingThenSuccess),
        2,
        "running once, then done"
    );
    assert_eq!(polls(Scenario::FailsModeration), 1);
    // The other scenarios took several capped poll intervals (0.5 s) since the cancel.
    assert_eq!(
        tasks.polls(&cancelled_id),
        polls_at_cancel,
        "a cancelled job is not polled again"
    );
    for refused in Scenario::SUBMIT_ERRORS {
        assert!(
            tasks.id_for_kind(refused, task_kind).is_none(),
            "{refused:?} must not create a task"
        );
    }
}

/// Plays success and the vendor's `errors` against a synchronous API (no task, nothing to
/// cancel).
pub async fn plays_every_sync_scenario(
    easel: &Easel,
    request: &Value,
    output: &[u8],
    errors: &[Scenario],
    detail: fn(Scenario) -> &'static str,
) {
    let scenarios: Vec<Scenario> = [Scenario::Success]
        .into_iter()
        .chain(errors.iter().copied())
        .collect();
    let jobs = easel.submit_each(request, &scenarios).await;
    easel
        .expect_outputs(playing(&jobs, Scenario::Success), output)
        .await;
    for &scenario in errors {
        easel
            .expect_mapped_error(playing(&jobs, scenario), detail(scenario))
            .await;
    }
}

/// The bodies the fake received on `line` (e.g. `POST /api/v1/...`).
pub fn bodies(fake: &Fake, line: &str) -> Vec<Value> {
    fake.calls_to(line).iter().map(|c| c.json()).collect()
}

/// The submitted job playing `scenario`.
pub fn playing(jobs: &[Submitted], scenario: Scenario) -> &Submitted {
    jobs.iter()
        .find(|j| j.scenario == scenario)
        .unwrap_or_else(|| panic!("no job plays {scenario:?}"))
}
