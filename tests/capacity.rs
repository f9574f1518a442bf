//! Capacity and claim order (issue 17, item 3): `[capacity]` limits how many tasks of a
//! provider are in flight at once over every host on the database, counted by the vendor
//! itself; claims take the highest priority first; a queued job shows its place in that order.

mod fakes;

use std::time::Duration;

use easel_tests::{ADMIN_KEY, Backend, Host, Options, on_both_backends, send};
use fakes::{Fake, dashscope, easel::plugin_options};
use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

/// 20 jobs on a vendor that takes at least 400 ms a task, with `max_in_flight = 2`: on
/// PostgreSQL submitted across two API hosts, each running workers, plus a worker process; on
/// SQLite through one host and a worker process on its file. The fake counts its own tasks in
/// flight (accepted, not yet reported finished).
async fn max_in_flight_holds_across_hosts(backend: Backend) {
    let fake = Fake::start(dashscope::routes).await;
    fake.tasks().take_at_least(Duration::from_millis(400));
    let (options, _plugins) = plugin_options(
        backend,
        &["dashscope"],
        &[(dashscope::HOST, &fake)],
        &[("DASHSCOPE_API_KEY", dashscope::KEY)],
        "[capacity]\nproviders = { dashscope = 2 }",
    );
    let first = Host::start(options.clone()).await;
    let mut hosts = vec![first];
    if backend == Backend::Postgres {
        let database = hosts[0].database_url().unwrap().to_string();
        hosts.push(Host::start(options.env("DATABASE_URL", &database)).await);
    }
    let mut worker = hosts.last().unwrap().spawn_worker();

    let submitted = join_all((0..20).map(|n| {
        let host = &hosts[n % hosts.len()];
        let body = json!({"capability": "image.generate", "model": "dashscope/wan2.2-t2i-flash",
                          "prompt": format!("lighthouse {n}"), "n": 1});
        async move { host.post("/api/v1/jobs", &body).await }
    }))
    .await;
    let ids: Vec<String> = submitted
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 202, "{body}");
            body["job"]["id"].as_str().unwrap().to_string()
        })
        .collect();
    for (n, id) in ids.iter().enumerate() {
        let job = hosts[n % hosts.len()].wait_terminal(id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let _ = worker.kill();
    let _ = worker.wait();
    let most = fake.tasks().most_in_flight();
    eprintln!("{backend:?}: at most {most} tasks in flight at the vendor");
    assert_eq!(
        most, 2,
        "the vendor saw {most} tasks at once, with max_in_flight = 2"
    );
}

/// A host whose offline provider runs one task at a time, with the admin key.
async fn one_at_a_time(backend: Backend) -> Host {
    Host::start(
        Options::new(backend)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .toml("[capacity]\nproviders = { offline = 1 }"),
    )
    .await
}

/// Submits an offline image job as `key` with `fields` added; its id.
async fn submit(host: &Host, key: &str, fields: Value) -> String {
    let mut body = json!({"capability": "image.generate", "model": "offline/image",
                          "prompt": "a lighthouse", "width": 16, "height": 16});
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    let (status, created) = send(host.as_key(Method::POST, "/api/v1/jobs", key).json(&body)).await;
    assert_eq!(status, 202, "{created}");
    created["job"]["id"].as_str().unwrap().to_string()
}

async fn running(host: &Host, id: &str) -> Value {
    host.wait_job(id, Duration::from_secs(20), |job| {
        job["status"] == "running"
    })
    .await
}

async fn all_succeed(host: &Host, key: &str, ids: &[&String]) {
    for id in ids {
        let path = format!("/api/v1/jobs/{id}");
        loop {
            let (_, body) = send(host.as_key(Method::GET, &path, key)).await;
            match body["job"]["status"].as_str() {
                Some("queued" | "running") => tokio::time::sleep(Duration::from_millis(50)).await,
                _ => {
                    assert_eq!(body["job"]["status"], "succeeded", "{body}");
                    break;
                }
            }
        }
    }
}

async fn a_high_priority_job_submitted_last_is_claimed_before_the_queued_low_ones(
    backend: Backend,
) {
    let host = one_at_a_time(backend).await;
    let blocker = submit(&host, "key-a", json!({"work_ms": 1500})).await;
    running(&host, &blocker).await;
    let mut low = Vec::new();
    for n in 0..3 {
        low.push(submit(&host, "key-a", json!({"prompt": format!("low {n}")})).await);
    }
    let high = submit(&host, "key-a", json!({"priority": 10, "work_ms": 1000})).await;

    let taken = host
        .wait_job(&high, Duration::from_secs(20), |job| {
            job["status"] != "queued"
        })
        .await;
    assert_eq!(taken["priority"], 10, "{taken}");
    // The only slot is the high one's for a second: every low one is still waiting.
    for id in &low {
        let (_, body) = host.get(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(body["job"]["status"], "queued", "{body}");
        assert_eq!(body["job"]["priority"], 0, "{body}");
    }
    let every: Vec<&String> = low.iter().chain([&high, &blocker]).collect();
    all_succeed(&host, "key-a", &every).await;
}

async fn queued_jobs_show_their_place_in_claim_order(backend: Backend) {
    let host = one_at_a_time(backend).await;
    // partner-b's jobs that name no priority get 5.
    let (status, limits) = send(
        host.as_admin(Method::PUT, "/admin/clients/partner-b/limits")
            .json(&json!({"priority": 5})),
    )
    .await;
    assert_eq!(status, 200, "{limits}");
    assert_eq!(limits["limits"][0]["priority"], 5, "{limits}");
    let (status, refused) = host
        .post(
            "/api/v1/jobs",
            &json!({"capability": "image.generate", "prompt": "x", "priority": 5000}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");

    let blocker = submit(&host, "key-a", json!({"work_ms": 30_000})).await;
    let held = running(&host, &blocker).await;
    assert!(held.get("queuePosition").is_none(), "{held}");
    let first_a = submit(&host, "key-a", json!({})).await;
    let second_a = submit(&host, "key-a", json!({})).await;
    let b = submit(&host, "key-b", json!({})).await;

    let place = |key: &'static str, id: &String| {
        let request = host.as_key(Method::GET, &format!("/api/v1/jobs/{id}"), key);
        async move {
            let (status, body) = send(request).await;
            assert_eq!(status, 200, "{body}");
            body["job"].clone()
        }
    };
    let b_job = place("key-b", &b).await;
    assert_eq!(
        (b_job["priority"].as_i64(), b_job["queuePosition"].as_i64()),
        (Some(5), Some(1)),
        "{b_job}"
    );
    assert_eq!(place("key-a", &first_a).await["queuePosition"], 2);
    assert_eq!(place("key-a", &second_a).await["queuePosition"], 3);
    // The console's task detail shows the same place.
    let (status, detail) = host.get(&format!("/api/v1/jobs/{second_a}/detail")).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["job"]["queuePosition"], 3, "{detail}");

    let (status, _) = host
        .post(&format!("/api/v1/jobs/{blocker}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    all_succeed(&host, "key-b", &[&b]).await;
    all_succeed(&host, "key-a", &[&first_a, &second_a]).await;
}

on_both_backends!(
    max_in_flight_holds_across_hosts,
    a_high_priority_job_submitted_last_is_claimed_before_the_queued_low_ones,
    queued_jobs_show_their_place_in_claim_order,
);
