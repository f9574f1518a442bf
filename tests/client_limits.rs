//! Per-client limits and budgets (issue 18, item 4): set through the admin routes, enforced in
//! the database so that hosts sharing one PostgreSQL enforce one limit, refused with 429 in
//! each API's own shape with `Retry-After` and `x-ratelimit-*` headers.

use std::time::Duration;

use easel_tests::{ADMIN_KEY, Backend, Host, Options, charging, send};
use futures::future::join_all;
use reqwest::{Method, Response};
use serde_json::{Value, json};

async fn set_limits(host: &Host, client: &str, limits: Value) -> (u16, Value) {
    send(
        host.as_admin(Method::PUT, &format!("/admin/clients/{client}/limits"))
            .json(&limits),
    )
    .await
}

fn image(prompt: &str) -> Value {
    json!({"capability": "image.generate", "model": "offline/image", "prompt": prompt,
           "width": 16, "height": 16})
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// Two API-only hosts (nothing runs, so every accepted task stays queued) on one fresh
/// PostgreSQL database, with `toml`.
async fn two_hosts(toml: &str) -> (Host, Host) {
    let options = |backend| {
        Options::new(backend)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .toml(toml)
    };
    let first = Host::start(options(Backend::Postgres)).await;
    let database = first.database_url().unwrap().to_string();
    let second = Host::start(options(Backend::Postgres).env("DATABASE_URL", &database)).await;
    (first, second)
}

/// Hosts that share a database: PostgreSQL only.
mod a_limit_of_30_per_minute_admits_exactly_30_of_100_across_two_hosts {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_limit_of_30_per_minute_admits_exactly_30_of_100_across_two_hosts().await
    }
}

async fn a_limit_of_30_per_minute_admits_exactly_30_of_100_across_two_hosts() {
    let (first, second) = two_hosts("[engine]\nworkers = 0").await;
    let (status, set) = set_limits(&first, "partner-a", json!({"requests_per_minute": 30})).await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["limits"][0]["requests_per_minute"], 30);

    let requests = (0..100).map(|i| {
        let host = if i % 2 == 0 { &first } else { &second };
        host.as_key(Method::POST, "/api/v1/jobs", "key-a")
            .json(&image(&format!("burst {i}")))
            .send()
    });
    let responses: Vec<Response> = join_all(requests)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let admitted = responses.iter().filter(|r| r.status() == 202).count();
    let refused: Vec<&Response> = responses.iter().filter(|r| r.status() == 429).collect();
    assert_eq!(
        (admitted, refused.len()),
        (30, 70),
        "statuses: {:?}",
        responses.iter().map(|r| r.status()).collect::<Vec<_>>()
    );
    for response in &refused {
        let retry: u64 = header(response, "retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        assert_eq!(
            header(response, "x-ratelimit-remaining-requests").as_deref(),
            Some("0")
        );
        assert_eq!(
            header(response, "x-ratelimit-limit-requests").as_deref(),
            Some("30")
        );
    }
    // The refusal is seed 001's `{"error"}`, and another client is not limited.
    let (status, refusal) = second.post("/api/v1/jobs", &image("one more")).await;
    assert_eq!(status, 429);
    assert!(
        refusal["error"]
            .as_str()
            .unwrap()
            .contains("30 requests per minute"),
        "{refusal}"
    );
    let (status, _) = send(
        second
            .as_key(Method::POST, "/api/v1/jobs", "key-b")
            .json(&image("other client")),
    )
    .await;
    assert_eq!(status, 202);
    // Exactly 30 of partner-a's tasks exist, on either host.
    let (_, listed) = first.get("/api/v1/jobs?limit=100").await;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 30, "{listed}");
}

/// On SQLite, inserts arriving together are committed as one group by one caller's task:
/// each response still carries its own admission's `x-ratelimit-*` headers, and each refusal
/// its `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_sqlite_reports_every_admission() {
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .toml("[engine]\nworkers = 0"),
    )
    .await;
    let (status, set) = set_limits(
        &host,
        "partner-a",
        json!({"requests_per_minute": 1000, "concurrent_tasks": 12}),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    let responses: Vec<Response> = join_all((0..24).map(|i| {
        host.as_key(Method::POST, "/api/v1/jobs", "key-a")
            .json(&image(&format!("burst {i}")))
            .send()
    }))
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        12,
        "{statuses:?}"
    );
    let mut left: Vec<i64> = Vec::new();
    for response in &responses {
        let tasks_left = header(response, "x-ratelimit-remaining-tasks");
        assert!(
            tasks_left.is_some() && header(response, "x-ratelimit-remaining-requests").is_some(),
            "{}: {:?}",
            response.status(),
            response.headers()
        );
        if response.status() == 202 {
            left.push(tasks_left.unwrap().parse().unwrap());
        } else {
            assert_eq!(response.status(), 429);
            assert_eq!(header(response, "retry-after").as_deref(), Some("1"));
        }
    }
    // Each admission reports what it left: 11 down to 0, once each.
    left.sort_unstable();
    assert_eq!(left, (0..12).collect::<Vec<i64>>());

    // A limit of 0 refuses every request, and says no wait will help: no Retry-After.
    let (status, set) = set_limits(&host, "partner-b", json!({"requests_per_minute": 0})).await;
    assert_eq!(status, 200, "{set}");
    let refused = host
        .as_key(Method::POST, "/api/v1/jobs", "key-b")
        .json(&image("never"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(
        header(&refused, "retry-after"),
        None,
        "{:?}",
        refused.headers()
    );
    assert_eq!(
        header(&refused, "x-ratelimit-limit-requests").as_deref(),
        Some("0")
    );
}

/// Hosts that share a database: PostgreSQL only.
mod a_daily_budget_stops_a_burst_of_jobs_and_chat_streams_with_nothing_charged_past_it {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_daily_budget_stops_a_burst_of_jobs_and_chat_streams_with_nothing_charged_past_it()
            .await
    }
}

async fn a_daily_budget_stops_a_burst_of_jobs_and_chat_streams_with_nothing_charged_past_it() {
    let (first, second) =
        two_hosts(&charging(&[("offline/image", 1.0), ("offline/chat", 1.0)])).await;
    first.grant("partner-a", 100.0).await;
    let (status, set) = set_limits(
        &second,
        "partner-a",
        json!({"budget": 5, "budget_period": "day"}),
    )
    .await;
    assert_eq!(status, 200, "{set}");

    // Eight jobs and eight streaming chats at once, spread over both hosts: five fit.
    let jobs = (0..8).map(|i| {
        let host = if i % 2 == 0 { &first } else { &second };
        host.as_key(Method::POST, "/api/v1/jobs", "key-a")
            .json(&image(&format!("budget {i}")))
            .send()
    });
    let chats = (0..8).map(|i| {
        let host = if i % 2 == 0 { &second } else { &first };
        host.as_key(Method::POST, "/v1/chat/completions", "key-a")
            .json(&json!({"model": "offline/chat", "stream": true, "work_ms": 400,
                          "messages": [{"role": "user", "content": format!("a streamed answer {i}")}]}))
            .send()
    });
    let (jobs, chats) = futures::join!(join_all(jobs), join_all(chats));
    let jobs: Vec<Response> = jobs.into_iter().map(|r| r.unwrap()).collect();
    let chats: Vec<Response> = chats.into_iter().map(|r| r.unwrap()).collect();
    let accepted = jobs.iter().filter(|r| r.status() == 202).count()
        + chats.iter().filter(|r| r.status() == 200).count();
    let refused = jobs
        .iter()
        .chain(&chats)
        .filter(|r| r.status() == 429)
        .count();
    assert_eq!((accepted, refused), (5, 11));
    for response in jobs.iter().chain(&chats).filter(|r| r.status() == 429) {
        assert!(header(response, "retry-after").is_some());
        assert_eq!(
            header(response, "x-ratelimit-remaining-credits").as_deref(),
            Some("0")
        );
    }
    let mut refused_chat = None;
    let mut streams = Vec::new();
    for response in chats {
        if response.status() == 429 {
            refused_chat = Some(response.json::<Value>().await.unwrap());
        } else {
            streams.push(response.text());
        }
    }
    // The streams run to their end; the refused chat speaks OpenAI's error object.
    for text in join_all(streams).await {
        assert!(text.unwrap().contains("[DONE]"));
    }
    let refused_chat = refused_chat.expect("a chat was refused");
    assert!(
        refused_chat["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Budget reached: 5 credits per day"),
        "{refused_chat}"
    );
    assert_eq!(
        (
            &refused_chat["error"]["type"],
            &refused_chat["error"]["code"]
        ),
        (&json!("insufficient_quota"), &json!("insufficient_quota")),
        "a budget is the client's quota, not a rate limit: {refused_chat}"
    );
    // Once everything finished, exactly the budget was charged.
    for _ in 0..100 {
        let usage = first.usage("partner-a").await;
        if usage["reserved"] == 0.0 {
            assert_eq!(usage["balance"], 95.0, "{usage}");
            let (status, refusal) = first.post("/api/v1/jobs", &image("after")).await;
            assert_eq!(status, 429, "{refusal}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("tasks never finished");
}

/// One host on SQLite: tasks at once per model, the headers of an admitted request, every
/// dialect's 429, budgets, and the admin routes' checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_on_one_sqlite_host() {
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .toml(&charging(&[("offline/image", 2.0)])),
    )
    .await;
    host.grant("partner-a", 100.0).await;

    // The admin routes check what they store.
    let (status, _) = set_limits(&host, "nobody", json!({"requests_per_minute": 1})).await;
    assert_eq!(status, 404);
    for bad in [
        json!({"requests_per_minute": -1}),
        json!({"budget": 5}),
        json!({"budget": 5, "budget_period": "week"}),
        json!({"model": "image", "concurrent_tasks": 1}),
        json!({"model": "nosuch/model", "concurrent_tasks": 1}),
    ] {
        let (status, body) = set_limits(&host, "partner-a", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // A misspelt limit is not ignored; the admin routes refuse a body as the key routes do.
    let (status, body) = set_limits(&host, "partner-a", json!({"rpm": 3})).await;
    assert_eq!(status, 400, "a misspelt limit is not ignored: {body}");
    assert!(body["error"].as_str().unwrap().contains("rpm"), "{body}");
    // A value of the wrong kind is refused naming its field; a budget past the largest
    // balance is refused, not stored as some other number.
    for (wrong, field) in [
        (json!({"requests_per_minute": "30"}), "requests_per_minute"),
        (json!({"concurrent_tasks": 1.5}), "concurrent_tasks"),
        (json!({"requests_per_minute": 1e20}), "requests_per_minute"),
        (json!({"budget": 1e300, "budget_period": "month"}), "budget"),
    ] {
        let (status, body) = set_limits(&host, "partner-a", wrong.clone()).await;
        assert_eq!(status, 400, "{wrong}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(field), "{wrong}: {message}");
    }
    let (status, body) = send(
        host.as_admin(Method::POST, "/admin/clients/partner-a/credits")
            .json(&json!({"amount": "abc"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // A note the grant would not keep is refused, not dropped unsaid.
    let (status, body) = send(
        host.as_admin(Method::POST, "/admin/clients/partner-a/credits")
            .json(&json!({"amount": 1, "reason": "promo"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("reason"), "{body}");
    let (status, _) =
        send(host.as_key(Method::GET, "/admin/clients/partner-a/limits", "key-a")).await;
    assert_eq!(status, 401);

    // One offline image at a time; other models are not limited.
    let (status, set) = set_limits(
        &host,
        "partner-a",
        json!({"model": "offline/image", "concurrent_tasks": 1}),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["limits"][0]["model"], "offline/image");
    let mut slow = image("slow");
    slow["work_ms"] = 1500.into();
    let first = host
        .as_key(Method::POST, "/api/v1/jobs", "key-a")
        .json(&slow)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 202);
    assert_eq!(
        header(&first, "x-ratelimit-remaining-tasks").as_deref(),
        Some("0")
    );
    assert_eq!(
        header(&first, "x-ratelimit-limit-tasks").as_deref(),
        Some("1")
    );
    let id = first.json::<Value>().await.unwrap()["job"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Refused in each API's own shape.
    let (status, jobs) = host.post("/api/v1/jobs", &image("second")).await;
    assert_eq!((status, jobs["error"].is_string()), (429, true), "{jobs}");
    assert!(
        jobs["error"]
            .as_str()
            .unwrap()
            .contains("1 task at once for model offline/image")
    );
    let (status, pixel) = host
        .post(
            "/api/v1/generations/image",
            &json!({"model": "offline/image", "prompt": "pixel"}),
        )
        .await;
    assert_eq!(
        (status, pixel["code"].as_str()),
        (429, Some("429")),
        "{pixel}"
    );
    let (status, sd) = host
        .post("/api/v1/generate", &json!({"prompt": "sd"}))
        .await;
    assert_eq!(status, 429, "{sd}");
    assert!(
        sd["detail"].as_str().unwrap().contains("1 task at once"),
        "{sd}"
    );
    let openai = host
        .as_key(Method::POST, "/v1/images/generations", "key-a")
        .json(&json!({"model": "offline/image", "prompt": "openai", "size": "64x64"}))
        .send()
        .await
        .unwrap();
    assert_eq!(openai.status(), 429);
    assert_eq!(header(&openai, "retry-after").as_deref(), Some("1"));
    let body: Value = openai.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 task at once"),
        "{body}"
    );
    assert_eq!(
        (&body["error"]["type"], &body["error"]["code"]),
        (&json!("tasks"), &json!("rate_limit_exceeded")),
        "OpenAI's type names the kind of limit"
    );
    let (status, chat) = host
        .post(
            "/v1/chat/completions",
            &json!({"model": "offline/chat", "messages": [{"role": "user", "content": "free"}]}),
        )
        .await;
    assert_eq!(status, 200, "another model is not limited: {chat}");

    // Once the first finished, the next one fits.
    host.wait_terminal(&id).await;
    let (status, _) = host.post("/api/v1/jobs", &image("third")).await;
    assert_eq!(status, 202);

    // A monthly budget of 5 at 2 credits an image: the client-wide row and the model's own
    // both apply; two more images would take the month past 5 with the one already charged.
    let (status, _) = set_limits(&host, "partner-a", json!({"model": "offline/image"})).await;
    assert_eq!(status, 200);
    let (status, set) = set_limits(
        &host,
        "partner-a",
        json!({"budget": 7, "budget_period": "month", "requests_per_minute": 100}),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        set["limits"].as_array().unwrap().len(),
        1,
        "all-null removed the model's row: {set}"
    );
    // Charged so far: 2 + 2 (the refused requests charged nothing, the chat is free) = 4.
    let admitted = host
        .as_key(Method::POST, "/api/v1/jobs", "key-a")
        .json(&image("fits"))
        .send()
        .await
        .unwrap();
    assert_eq!(admitted.status(), 202);
    assert_eq!(
        header(&admitted, "x-ratelimit-remaining-credits").as_deref(),
        Some("1")
    );
    let refused = host
        .as_key(Method::POST, "/api/v1/jobs", "key-a")
        .json(&image("past the budget"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let retry: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=31 * 86_400).contains(&retry),
        "until next month: {retry}"
    );
    let usage = host.usage("partner-a").await;
    // Reservations are taken from the balance at once.
    assert_eq!(
        usage["balance"].as_f64().unwrap(),
        94.0,
        "three images charged, nothing past the budget: {usage}"
    );
    let (status, listed) =
        send(host.as_admin(Method::GET, "/admin/clients/partner-a/limits")).await;
    assert_eq!(status, 200);
    assert_eq!(listed["limits"][0]["budget"], 7.0, "{listed}");
    assert_eq!(listed["limits"][0]["model"], Value::Null);

    // Each client reads its own limits, as the operator sees them, and no other client's.
    let (status, own) = send(host.as_key(Method::GET, "/api/v1/limits", "key-a")).await;
    assert_eq!((status, &own), (200, &listed));
    let (status, other) = send(host.as_key(Method::GET, "/api/v1/limits", "key-b")).await;
    assert_eq!(status, 200);
    assert_eq!(other, json!({"client_id": "partner-b", "limits": []}));
    let (status, _) = send(host.http.get(host.url("/api/v1/limits"))).await;
    assert_eq!(status, 401, "a client key is needed");
}

/// A request its limits let through but its balance refuses took nothing: the rate-limit
/// headers of that 429 say what is still left, the same each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_for_the_balance_counts_against_no_limit() {
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .env("EASEL_ADMIN_KEY", ADMIN_KEY)
            .toml(&charging(&[("offline/image", 2.0)])),
    )
    .await;
    let limits = json!({"requests_per_minute": 5, "budget": 10, "budget_period": "day"});
    let (status, set) = set_limits(&host, "partner-b", limits).await;
    assert_eq!(status, 200, "{set}");
    for _ in 0..2 {
        let refused = host
            .as_key(Method::POST, "/api/v1/jobs", "key-b")
            .json(&image("no credits"))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 429);
        assert_eq!(
            header(&refused, "x-ratelimit-remaining-requests").as_deref(),
            Some("5")
        );
        assert_eq!(
            header(&refused, "x-ratelimit-remaining-credits").as_deref(),
            Some("10")
        );
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "Insufficient balance", "{body}");
    }
}

/// `[engine] keep_ended_secs` deletes no task a client's limits still count: a client with a
/// daily budget keeps today's succeeded jobs (and stays held to the budget), one with a
/// request rate its last minute's, while another client's ended jobs go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_ended_tasks_gives_no_client_back_what_its_limits_count() {
    let config = format!(
        "[engine]\nkeep_ended_secs = 1\n{}",
        charging(&[("offline/image", 1.0)])
    );
    let host = Host::start(
        Options::new(Backend::Sqlite)
            .toml(&config)
            .env(
                "EASEL_API_KEYS",
                "partner-a:key-a,partner-b:key-b,partner-c:key-c",
            )
            .env("EASEL_ADMIN_KEY", ADMIN_KEY),
    )
    .await;
    for (client, limits) in [
        ("partner-a", json!({"budget": 2, "budget_period": "day"})),
        ("partner-c", json!({"requests_per_minute": 100})),
    ] {
        let (status, set) = set_limits(&host, client, limits).await;
        assert_eq!(status, 200, "{set}");
    }
    let get = async |id: &str, key: &str| {
        send(host.as_key(Method::GET, &format!("/api/v1/jobs/{id}"), key)).await
    };
    let run = async |key: &str, prompt: &str| {
        let (status, created) = send(
            host.as_key(Method::POST, "/api/v1/jobs", key)
                .json(&image(prompt)),
        )
        .await;
        assert_eq!(status, 202, "{created}");
        let id = created["job"]["id"].as_str().unwrap().to_owned();
        while get(&id, key).await.1["job"]["status"] != "succeeded" {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        id
    };
    let mut kept = Vec::new();
    for (client, key) in [("partner-a", "key-a"), ("partner-c", "key-c")] {
        host.grant(client, 10.0).await;
        kept.push(run(key, "counted 1").await);
        kept.push(run(key, "counted 2").await);
    }
    host.grant("partner-b", 10.0).await;
    let gone = run("key-b", "not counted").await;
    let start = std::time::Instant::now();
    while get(&gone, "key-b").await.0 != 404 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing was deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (id, key) in kept.iter().zip(["key-a", "key-a", "key-c", "key-c"]) {
        let (status, job) = get(id, key).await;
        assert_eq!(status, 200, "a counted job was deleted: {job}");
    }
    let (status, refused) = send(
        host.as_key(Method::POST, "/api/v1/jobs", "key-a")
            .json(&image("past the budget")),
    )
    .await;
    assert_eq!(
        status, 429,
        "the budget's two credits were spent: {refused}"
    );
}
