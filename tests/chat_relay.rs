//! The chat relay's hot path (issue 15): `/v1/chat/completions` through the `openai` plugin
//! to a fake OpenAI on loopback (`tests/fakes/openai.rs`).
//!
//! - A streamed answer is about as quick as a whole one: no Nagle stall (about 40 ms, Nagle's
//!   algorithm meeting the peer's delayed ACK) on easel's accepted or outbound sockets.
//! - The plugin asks its upstream for what the client asked for: a whole answer, or a stream.
//! - A client that leaves before the provider's first byte cancels its chat at once:
//!   cancelled (not failed by the sweeper when the lease lapses), refunded; so does one that
//!   leaves while its chat's insert commits.
//! - A stream's head waits for the first event only briefly: a slow first token does not
//!   hold it back. What came with the finish waits for the end only briefly too: a slow end
//!   does not hold back the answer's text.
//! - A chat holds its lease for as long as it runs, and a cancel from another host of the
//!   fleet stops it within a third of a lease.
//! - A chat's plugin instance is kept for its own client's next chat, never another's.
//! - Tool calls pass through, whole and streamed, and are recorded with the answer.
//! - A chat OpenAI would refuse is refused at the front door, naming the parameter, before the
//!   vendor hears of it or anything is stored.

#[path = "fakes/mod.rs"]
mod fakes;

use std::time::{Duration, Instant};

use easel_tests::{
    ADMIN_KEY, Backend, Host, charging,
    exposition::{samples, total},
    send,
};
use fakes::{
    Fake,
    easel::{Easel, plugin_options},
    openai,
};
use reqwest::Method;
use serde_json::{Value, json};

async fn easel_with_openai(toml: &str) -> (Easel, Fake) {
    let fake = Fake::start(openai::routes).await;
    let easel = Easel::start_with(
        "openai",
        &[(openai::HOST, &fake)],
        &[
            ("OPENAI_API_KEY", openai::KEY),
            ("EASEL_ADMIN_KEY", ADMIN_KEY),
        ],
        toml,
    )
    .await;
    (easel, fake)
}

fn chat(content: &str, stream: bool) -> Value {
    json!({"model": "openai/gpt-4o-mini", "stream": stream,
           "messages": [{"role": "user", "content": content}]})
}

/// The `data` of each server-sent event in `text`, in order.
fn sse_data(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_comes_as_fast_as_a_whole_one() {
    let (easel, _fake) = easel_with_openai("").await;
    // One kept-alive connection, as a client making calls one after another has.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let post = |body: Value| {
        client
            .post(easel.host.url("/v1/chat/completions"))
            .bearer_auth("key-a")
            .json(&body)
            .send()
    };
    let (mut whole, mut first, mut done) = (Vec::new(), Vec::new(), Vec::new());
    // Interleaved, so the machine's load weighs on both alike; the first rounds warm up.
    for round in 0..40 {
        let start = Instant::now();
        let answer = post(chat("hello there", false)).await.unwrap();
        assert_eq!(answer.status(), 200);
        let answer: Value = answer.json().await.unwrap();
        let took = start.elapsed();
        assert_eq!(answer["choices"][0]["message"]["content"], "hello there");

        let start = Instant::now();
        let mut stream = post(chat("hello there", true)).await.unwrap();
        assert_eq!(stream.status(), 200);
        let mut text = String::new();
        let mut first_at = None;
        while let Some(bytes) = stream.chunk().await.unwrap() {
            first_at.get_or_insert_with(|| start.elapsed());
            text.push_str(std::str::from_utf8(&bytes).unwrap());
        }
        let done_at = start.elapsed();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        assert!(text.contains("hello there"), "{text}");
        if round >= 10 {
            whole.push(took);
            first.push(first_at.unwrap());
            done.push(done_at);
        }
    }
    let (whole, first, done) = (median(whole), median(first), median(done));
    // A Nagle stall costs at least 40 ms (Linux's shortest delayed ACK) on every round, so
    // it shows in the medians; a stream's extra frames cost a few milliseconds on a busy
    // two-core machine, which is not what this test guards.
    let slack = Duration::from_millis(15);
    assert!(
        first <= whole + slack && done <= whole + slack,
        "a stream's first byte after {first:?} and its [DONE] after {done:?} (medians), \
         a whole answer after {whole:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_is_asked_for_what_the_client_asked_for() {
    let (easel, fake) = easel_with_openai("").await;
    let host = &easel.host;
    let (status, whole) = host
        .post("/v1/chat/completions", &chat("a whole answer", false))
        .await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["choices"][0]["message"]["content"], "a whole answer");
    assert_eq!(whole["usage"]["total_tokens"], 12, "{whole}");
    // OpenAI's typed clients read these as always there, `null` or empty when there is none.
    assert_eq!(whole["choices"][0].get("logprobs"), Some(&Value::Null));
    assert_eq!(
        whole["choices"][0]["message"].get("refusal"),
        Some(&Value::Null)
    );
    assert_eq!(whole["choices"][0]["message"]["annotations"], json!([]));
    // What OpenAI said of the answer reaches the client: its finer counts inside the usage
    // (and recorded with it), its fingerprint and tier beside it.
    assert_eq!(
        whole["usage"]["prompt_tokens_details"]["cached_tokens"], 2,
        "{whole}"
    );
    assert_eq!(
        whole["usage"]["completion_tokens_details"]["reasoning_tokens"], 3,
        "{whole}"
    );
    assert_eq!(whole["system_fingerprint"], openai::FINGERPRINT, "{whole}");
    assert_eq!(whole["service_tier"], "default", "{whole}");
    let job = host.wait_terminal(whole["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["usage"], whole["usage"]);

    let mut counted = chat("a streamed answer", true);
    counted["stream_options"] = json!({"include_usage": true});
    let streamed = host.post_text("/v1/chat/completions", &counted).await;
    assert!(streamed.contains("a streamed answer"), "{streamed}");
    assert!(streamed.ends_with("data: [DONE]\n\n"), "{streamed}");
    let chunks: Vec<Value> = sse_data(&streamed)
        .iter()
        .filter(|data| **data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert!(chunks.len() >= 4, "{streamed}");
    for chunk in &chunks {
        assert_eq!(chunk["system_fingerprint"], openai::FINGERPRINT, "{chunk}");
        assert_eq!(chunk["service_tier"], "default", "{chunk}");
    }
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["total_tokens"], 12, "{streamed}");
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"], 2,
        "{usage}"
    );

    let asked: Vec<Value> = fake
        .calls_to("POST /v1/chat/completions")
        .iter()
        .map(|call| call.json())
        .collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[0]["stream"], false, "{}", asked[0]);
    assert!(asked[0].get("stream_options").is_none(), "{}", asked[0]);
    assert_eq!(asked[1]["stream"], true, "{}", asked[1]);
    assert_eq!(asked[1]["stream_options"]["include_usage"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_openai_would_refuse_is_refused_before_it_reaches_openai() {
    let (easel, fake) = easel_with_openai("").await;
    let host = &easel.host;
    let with = |more: Value| {
        let mut body = chat("hi", false);
        body.as_object_mut()
            .unwrap()
            .extend(more.as_object().unwrap().clone());
        body
    };
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    for (body, param) in [
        (
            with(json!({"stream_options": {"include_usage": true}})),
            "stream_options",
        ),
        (
            with(json!({"stream": true, "stream_options": {"include_usage": "yes"}})),
            "stream_options",
        ),
        (
            with(
                json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            ),
            "tool_choice",
        ),
        (
            with(json!({"response_format": {"type": "json_schema"}})),
            "response_format",
        ),
        (with(json!({"reasoning_effort": "zzz"})), "reasoning_effort"),
        (with(json!({"service_tier": "zzz"})), "service_tier"),
        (with(json!({"metadata": "x"})), "metadata"),
        (with(json!({"logit_bias": "x"})), "logit_bias"),
        (with(json!({"seed": 1e308})), "seed"),
        (
            with(json!({"messages": [{"role": "user", "content": [{"type": "zzz"}]}]})),
            "messages[0].content[0]",
        ),
        (
            with(json!({"messages": [{"role": "user", "content": "hi", "name": 5}]})),
            "messages[0].name",
        ),
        (with(json!({"seed": 1.5})), "seed"),
        // A model that exists but does not chat is refused as such, not as unknown.
        (with(json!({"model": "openai/gpt-image-1"})), "model"),
    ] {
        let (status, refused) = host.post("/v1/chat/completions", &body).await;
        assert_eq!(status, 400, "{body}: {refused}");
        assert_eq!(
            refused["error"]["type"], "invalid_request_error",
            "{refused}"
        );
        assert_eq!(refused["error"]["param"], param, "{body}: {refused}");
    }
    assert!(fake.calls_to("POST /v1/chat/completions").is_empty());
    let (_, tasks) = host.get("/api/v1/jobs?limit=50").await;
    assert_eq!(tasks["jobs"], json!([]), "nothing stored: {tasks}");
    // The same parameters, well formed, go through.
    let fine = with(json!({"reasoning_effort": "low", "metadata": {"team": "a"},
                           "logit_bias": {"50256": -100}, "seed": -7,
                           "response_format": {"type": "json_schema",
                                               "json_schema": {"name": "n", "schema": {"type": "object"}}}}));
    let (status, answer) = host.post("/v1/chat/completions", &fine).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_token_does_not_hold_back_the_streams_head() {
    let (easel, _fake) = easel_with_openai("").await;
    let start = Instant::now();
    let response = easel
        .host
        .as_key(Method::POST, "/v1/chat/completions", "key-a")
        .json(&chat("first:2000 slowly", true))
        .send()
        .await
        .unwrap();
    let head_at = start.elapsed();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let done_at = start.elapsed();
    assert!(
        head_at < Duration::from_millis(1500),
        "the head came after {head_at:?}, with the first token"
    );
    assert!(
        done_at >= Duration::from_millis(2000),
        "done after {done_at:?}"
    );
    let data = sse_data(&text);
    assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["role"], "assistant",
        "{text}"
    );
    let said: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(said, "first:2000 slowly");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop",
        "the finishing chunk goes out just before [DONE]: {text}"
    );
    // The opening chunk waited for the first event, so it carries what the vendor said of
    // the answer, as every chunk does.
    for chunk in &chunks {
        assert_eq!(chunk["system_fingerprint"], openai::FINGERPRINT, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_end_does_not_hold_back_the_text_that_came_with_the_finish() {
    let (easel, _fake) = easel_with_openai("").await;
    let start = Instant::now();
    let mut response = easel
        .host
        .as_key(Method::POST, "/v1/chat/completions", "key-a")
        .json(&chat("then:2000 at once", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut text = String::new();
    let mut said_at = None;
    while let Some(bytes) = response.chunk().await.unwrap() {
        text.push_str(std::str::from_utf8(&bytes).unwrap());
        if said_at.is_none() && text.contains(r#""content":"then:2000 at once""#) {
            said_at = Some(start.elapsed());
        }
    }
    let done_at = start.elapsed();
    let said_at = said_at.unwrap_or_else(|| panic!("the text never came: {text}"));
    assert!(
        said_at < Duration::from_millis(1500),
        "the text came after {said_at:?}, with the end"
    );
    assert!(
        done_at >= Duration::from_millis(2000),
        "done after {done_at:?}"
    );
    let data = sse_data(&text);
    assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
    let finish: Value = serde_json::from_str(data[data.len() - 2]).unwrap();
    assert_eq!(
        finish["choices"][0]["finish_reason"], "stop",
        "the finishing chunk waits for the end, just before [DONE]: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_before_the_first_byte_cancels_its_chat_at_once() {
    let (easel, fake) = easel_with_openai(&charging(&[("openai/gpt-4o-mini", 2.0)])).await;
    let host = &easel.host;
    host.grant("partner-a", 10.0).await;

    for stream in [true, false] {
        // The fake holds its answer for a minute; the client gives up once easel asked it.
        let asked_before = fake.calls_to("POST /v1/chat/completions").len();
        let request = host
            .as_key(Method::POST, "/v1/chat/completions", "key-a")
            .json(&chat("wait:60000 take your time", stream))
            .send();
        let client = tokio::spawn(request);
        let deadline = Instant::now() + Duration::from_secs(20);
        while fake.calls_to("POST /v1/chat/completions").len() == asked_before {
            assert!(Instant::now() < deadline, "easel never asked the upstream");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let account = host.usage("partner-a").await;
        assert_eq!(
            account["reserved"], 2.0,
            "the chat holds its price: {account}"
        );
        client.abort();
        let left = Instant::now();

        let (_, listed) = host.get("/api/v1/jobs").await;
        let id = listed["jobs"][0]["id"].as_str().unwrap().to_string();
        // The test host's lease is 1.5 s: a chat left to the sweeper would end failed.
        let job = host
            .wait_job(&id, Duration::from_secs(20), |job| {
                job["status"] != "running" && job["status"] != "queued"
            })
            .await;
        assert_eq!(job["status"], "cancelled", "stream: {stream}: {job}");
        assert!(
            left.elapsed() < Duration::from_secs(5),
            "cancelled {:?} after the client left",
            left.elapsed()
        );
        let account = host.usage("partner-a").await;
        assert_eq!(account["reserved"], 0.0, "{account}");
        assert_eq!(account["balance"], 10.0, "refunded: {account}");
    }
}

/// Clients that give up at any moment (their chat's insert perhaps still committing in a
/// group with others', on SQLite) leave no chat behind: each ends cancelled at once, or
/// succeeded when its answer came first, and is refunded; none is left running until its
/// lease lapses and the sweeper fails it. Before, one that left while its insert was being
/// committed by another chat's writer left its chat running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_leave_at_any_moment_leave_no_chat_to_the_sweeper() {
    const CLIENTS: u64 = 16;
    const EACH: u64 = 25;
    let (easel, _fake) = easel_with_openai(&charging(&[("openai/gpt-4o-mini", 1.0)])).await;
    let host = &easel.host;
    host.grant("partner-a", 1000.0).await;
    futures::future::join_all((0..CLIENTS).map(|c| async move {
        for i in 0..EACH {
            // Spread over the chat's few milliseconds: its front door, its insert, the
            // upstream's answer (held 2 ms by the fake), the relay.
            let patience = Duration::from_micros((c * 131 + i * 977) % 5000);
            let request = host
                .as_key(Method::POST, "/v1/chat/completions", "key-a")
                .json(&chat("wait:2 hello", (c + i) % 2 == 1))
                .send();
            let _ = tokio::time::timeout(patience, request).await;
        }
    }))
    .await;

    let listed = |status: &'static str| async move {
        let (code, listed) = host
            .get(&format!("/api/v1/jobs?status={status}&limit=200"))
            .await;
        assert_eq!(code, 200, "{listed}");
        listed["jobs"].as_array().unwrap().len()
    };
    // The test host's lease is 1.5 s: a chat left running would be failed by the sweeper.
    // A request that easel reads only after its client gave up starts late, so the end is
    // taken as nothing running and nothing reserved, twice in a row.
    let settled = || async {
        listed("running").await == 0 && host.usage("partner-a").await["reserved"] == 0.0
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut settled_twice = 0;
    while settled_twice < 2 {
        assert!(
            Instant::now() < deadline,
            "chats still running or holding credits: {}",
            host.usage("partner-a").await
        );
        settled_twice = if settled().await {
            settled_twice + 1
        } else {
            0
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(listed("failed").await, 0, "chats failed by the sweeper");
    assert!(listed("cancelled").await > 0, "no client left mid-chat");
    // A chat dropped before its insert returned is still counted as created once it ends.
    let metrics = host.metrics().await;
    let s = samples(&metrics);
    let openai = ["provider=\"openai\""];
    let created = total(&s, "easel_tasks_created_total", &openai);
    assert!(created > 0.0, "{metrics}");
    assert_eq!(
        created,
        total(&s, "easel_tasks_finished_total", &openai),
        "{metrics}"
    );
}

/// Chats answered at once have their tasks' writes committed together (SQLite's group
/// commit); whatever a client received is already recorded and charged, each chat once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_chat_is_recorded_and_charged_once() {
    let (easel, _fake) = easel_with_openai(&charging(&[("openai/gpt-4o-mini", 1.0)])).await;
    let host = &easel.host;
    host.grant("partner-a", 100.0).await;

    const CHATS: usize = 24;
    let answers = futures::future::join_all((0..CHATS).map(|n| async move {
        let stream = n % 2 == 1;
        let answer = host
            .as_key(Method::POST, "/v1/chat/completions", "key-a")
            .json(&chat(&format!("answer {n}"), stream))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let text = answer.text().await.unwrap();
        assert!(text.contains(&format!("answer {n}")), "{text}");
        // The id of the answer (whole) or of its chunks (streamed): the task's.
        let at = text.find("\"id\":\"").unwrap() + "\"id\":\"".len();
        let id = text[at..].split('"').next().unwrap().to_string();
        // Read at once, without waiting: the answer went out after its task was recorded.
        let (status, job) = host.get(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(status, 200, "{job}");
        assert_eq!(
            job["job"]["status"], "succeeded",
            "answered before recorded: {job}"
        );
        id
    }))
    .await;
    let distinct: std::collections::HashSet<_> = answers.iter().collect();
    assert_eq!(distinct.len(), CHATS, "{answers:?}");

    let account = host.usage("partner-a").await;
    assert_eq!(account["reserved"], 0.0, "{account}");
    assert_eq!(
        account["balance"],
        (100 - CHATS) as f64,
        "charged once per chat: {account}"
    );
}

/// A plugin that stops reading a streamed answer at `data: [DONE]` leaves only the end of the
/// body unread: easel reads it for the plugin and keeps the upstream connection, so streamed
/// chats one after another share one connection, as whole ones do (before, each streamed chat
/// opened a new one: a TLS handshake per chat with a real vendor). So it does whether the end
/// has already arrived when the plugin lets go of the body or comes 30 ms later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chats_keep_their_upstream_connection() {
    let (easel, fake) = easel_with_openai("").await;
    let client = reqwest::Client::new();
    for (stream, said) in [
        (false, "hello there"),
        (true, "hello there"),
        (true, "hello there end:30"),
    ] {
        let before = fake.connections();
        for _ in 0..10 {
            let answer = client
                .post(easel.host.url("/v1/chat/completions"))
                .bearer_auth("key-a")
                .json(&chat(said, stream))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
            let text = answer.text().await.unwrap();
            assert!(text.contains("hello"), "{text}");
            // The connection goes back to the pool just after the body's end.
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        let opened = fake.connections() - before;
        assert!(
            opened <= 1,
            "stream: {stream}, {said:?}: 10 chats opened {opened} upstream connections"
        );
    }
}

/// Chats outlast the test hosts' 1.5 s lease, waiting for the upstream's answer (whole) or for
/// its first token (streamed): the process that holds them keeps their leases, so none is
/// failed by a sweeper. The same chats held for a minute are cancelled through the jobs API of
/// another host on the same database: they stop within a third of a lease, cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_keeps_its_lease_and_stops_when_another_host_cancels_it() {
    let fake = Fake::start(openai::routes).await;
    let (options, _plugins) = plugin_options(
        Backend::Postgres,
        &["openai"],
        &[(openai::HOST, &fake)],
        &[("OPENAI_API_KEY", openai::KEY)],
        "",
    );
    let holder = Host::start(options.clone()).await;
    let other = Host::start(options.env("DATABASE_URL", holder.database_url().unwrap())).await;
    let open = |content: &str, stream: bool| {
        let request = holder
            .as_key(Method::POST, "/v1/chat/completions", "key-a")
            .json(&chat(content, stream))
            .send();
        tokio::spawn(async move { request.await.unwrap().text().await.unwrap() })
    };
    let id_of = |answer: &str| {
        let at = answer.find("\"id\":\"").unwrap() + "\"id\":\"".len();
        answer[at..].split('"').next().unwrap().to_string()
    };

    for stream in [false, true] {
        let held = if stream {
            "first:4000 held"
        } else {
            "wait:4000 held"
        };
        let answer = open(held, stream).await.unwrap();
        assert!(answer.contains("held"), "{answer}");
        let (_, job) = holder
            .get(&format!("/api/v1/jobs/{}", id_of(&answer)))
            .await;
        assert_eq!(job["job"]["status"], "succeeded", "stream: {stream}: {job}");
    }

    for stream in [false, true] {
        let asked_before = fake.calls_to("POST /v1/chat/completions").len();
        let held = if stream {
            "first:60000 held"
        } else {
            "wait:60000 held"
        };
        let client = open(held, stream);
        let deadline = Instant::now() + Duration::from_secs(20);
        while fake.calls_to("POST /v1/chat/completions").len() == asked_before {
            assert!(Instant::now() < deadline, "easel never asked the upstream");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (_, listed) = other.get("/api/v1/jobs?status=running").await;
        let id = listed["jobs"][0]["id"].as_str().unwrap().to_string();
        let (status, cancelled) = other
            .post(&format!("/api/v1/jobs/{id}/cancel"), &json!({}))
            .await;
        assert_eq!(status, 200, "{cancelled}");
        let asked = Instant::now();
        let job = other
            .wait_job(&id, Duration::from_secs(10), |job| {
                job["status"] != "running"
            })
            .await;
        assert_eq!(job["status"], "cancelled", "stream: {stream}: {job}");
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "stopped {:?} after the cancel",
            asked.elapsed()
        );
        // The client's answer ends too: an error (whole) or an error event (streamed).
        let answer = tokio::time::timeout(Duration::from_secs(5), client)
            .await
            .expect("the client still waits")
            .unwrap();
        assert!(!answer.contains("held"), "{answer}");
    }
}

/// Each client's chats after its first run in the instance its last chat left; another
/// client's first chat starts in a fresh one (`GET /admin/plugins` counts them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chats_instance_is_kept_for_its_own_clients_next_chat_only() {
    let (easel, _fake) = easel_with_openai("").await;
    let host = &easel.host;
    let chats = || async {
        let (status, listed) = send(host.as_admin(Method::GET, "/admin/plugins")).await;
        assert_eq!(status, 200, "{listed}");
        let plugins = listed["plugins"].as_array().unwrap();
        let openai = plugins.iter().find(|p| p["provider_id"] == "openai");
        openai.unwrap()["chats"].clone()
    };
    let answered = |key: &'static str, stream: bool| async move {
        let answer = host
            .as_key(Method::POST, "/v1/chat/completions", key)
            .json(&chat("hello there", stream))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert!(answer.text().await.unwrap().contains("hello"));
    };

    answered("key-a", false).await;
    answered("key-a", true).await;
    assert_eq!(chats().await, json!({"fresh": 1, "kept": 1}));
    answered("key-b", false).await;
    assert_eq!(
        chats().await,
        json!({"fresh": 2, "kept": 1}),
        "partner-b's first chat in partner-a's instance"
    );
    answered("key-b", true).await;
    answered("key-a", false).await;
    assert_eq!(chats().await, json!({"fresh": 2, "kept": 3}));
}

/// Tool calls through the `openai` plugin: whole (the vendor asked for a whole answer) and
/// streamed, two calls each, with the tools, the choice and `parallel_tool_calls` passed on;
/// the answer is recorded with its calls and charged like any other.
/// A request the vendor refuses as the client's fault keeps OpenAI's code and parameter, which
/// OpenAI's clients branch on (a conversation too long for the model is trimmed), streamed or
/// not; the chat is refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_keeps_the_vendors_code_and_param() {
    let (easel, _fake) = easel_with_openai(&charging(&[("openai/gpt-4o-mini", 1.0)])).await;
    let host = &easel.host;
    host.grant("partner-a", 10.0).await;
    for stream in [false, true] {
        let (status, refused) = host
            .post("/v1/chat/completions", &chat("too_long", stream))
            .await;
        assert_eq!(status, 400, "{refused}");
        let error = &refused["error"];
        assert_eq!(error["code"], "context_length_exceeded", "{refused}");
        assert_eq!(error["param"], "messages", "{refused}");
        assert_eq!(error["type"], "invalid_request_error", "{refused}");
        // OpenAI's words as they are: the code says what kind of refusal it is.
        assert_eq!(
            error["message"], "This model's maximum context length is 128000 tokens.",
            "{refused}"
        );
    }
    assert_eq!(host.usage("partner-a").await["balance"], 10.0);
}

/// A vendor that asks for a wait is passed on with its wait, on both chat APIs, streamed or
/// not (the refusal comes before the stream opens); the chat is refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendors_rate_limit_reaches_the_client_with_its_wait() {
    let (easel, _fake) = easel_with_openai(&charging(&[("openai/gpt-4o-mini", 1.0)])).await;
    let host = &easel.host;
    host.grant("partner-a", 10.0).await;
    let wait = fakes::RETRY_AFTER_SECS.to_string();
    for stream in [false, true] {
        for (path, body) in [
            ("/v1/chat/completions", chat("busy", stream)),
            (
                "/llmage/v1/chat/completions",
                json!({"model": "openai/gpt-4o-mini", "prompt": "busy", "stream": stream}),
            ),
        ] {
            let response = host
                .as_key(Method::POST, path, "key-a")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 429, "{path}");
            let header = response.headers().get("retry-after").cloned();
            assert_eq!(
                header.as_ref().and_then(|h| h.to_str().ok()),
                Some(wait.as_str()),
                "{path}, stream: {stream}"
            );
        }
    }
    assert_eq!(host.usage("partner-a").await["balance"], 10.0);
}

/// A model that declines to answer (most often a structured answer) is told apart from its
/// text, as OpenAI's clients read it: `refusal` on the message, or in the deltas, with no
/// content beside it; the chat is recorded with it, and charged (the vendor charged for it).
/// llmage, whose answers have one text field, shows it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_reaches_the_client_apart_from_the_text() {
    let (easel, _fake) = easel_with_openai(&charging(&[("openai/gpt-4o-mini", 1.0)])).await;
    let host = &easel.host;
    host.grant("partner-a", 10.0).await;
    let (status, whole) = host
        .post("/v1/chat/completions", &chat("refuse", false))
        .await;
    assert_eq!(status, 200, "{whole}");
    let message = &whole["choices"][0]["message"];
    assert_eq!(message["refusal"], openai::REFUSAL, "{whole}");
    assert_eq!(message["content"], Value::Null, "{whole}");
    assert_eq!(whole["choices"][0]["finish_reason"], "stop", "{whole}");

    let streamed = host
        .post_text("/v1/chat/completions", &chat("refuse", true))
        .await;
    assert!(streamed.ends_with("data: [DONE]\n\n"), "{streamed}");
    let deltas: Vec<Value> = sse_data(&streamed)
        .into_iter()
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str::<Value>(data).unwrap()["choices"][0]["delta"].clone())
        .collect();
    assert_eq!(deltas[0]["role"], "assistant", "{streamed}");
    let refusal: String = deltas
        .iter()
        .filter_map(|delta| delta["refusal"].as_str())
        .collect();
    assert_eq!(refusal, openai::REFUSAL, "{streamed}");
    assert!(
        deltas.iter().all(|delta| delta.get("content").is_none()),
        "{streamed}"
    );

    let first: Value = serde_json::from_str(sse_data(&streamed)[0]).unwrap();
    for id in [whole["id"].as_str().unwrap(), first["id"].as_str().unwrap()] {
        let (_, detail) = host.get(&format!("/api/v1/jobs/{id}/detail")).await;
        assert_eq!(detail["job"]["status"], "succeeded", "{detail}");
        assert_eq!(detail["job"]["refusal"], openai::REFUSAL, "{detail}");
    }
    assert_eq!(host.usage("partner-a").await["balance"], 8.0);

    // llmage's one text field, `content`, holds it, whole and streamed.
    let llmage = |stream: bool| {
        json!({"model": "openai/gpt-4o-mini", "catelogid": "t2t", "prompt": "refuse",
               "sys_prompt": "", "stream": stream})
    };
    let (status, whole) = host
        .post("/llmage/v1/chat/completions", &llmage(false))
        .await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["content"], openai::REFUSAL, "{whole}");
    assert_eq!(whole["choices"][0]["message"]["refusal"], openai::REFUSAL);
    let streamed = host
        .post_text("/llmage/v1/chat/completions", &llmage(true))
        .await;
    let content: String = sse_data(&streamed)
        .into_iter()
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| {
            let chunk: Value = serde_json::from_str(data).unwrap();
            chunk["content"].as_str().map(String::from)
        })
        .collect();
    assert_eq!(content, openai::REFUSAL, "{streamed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_reach_the_client_whole_and_streamed_and_are_recorded() {
    let (easel, fake) = easel_with_openai(&charging(&[("openai/gpt-4o-mini", 1.0)])).await;
    let host = &easel.host;
    host.grant("partner-a", 10.0).await;
    let tools = json!([
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "time"}}
    ]);
    let asked = |stream: bool| {
        let mut body = chat("Oslo", stream);
        body["tools"] = tools.clone();
        body["tool_choice"] = json!("required");
        body["parallel_tool_calls"] = json!(true);
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    };
    let arguments = r#"{"said":"Oslo"}"#;
    let expected = json!([
        {"id": "call_oa_0", "type": "function", "function": {"name": "weather", "arguments": arguments}},
        {"id": "call_oa_1", "type": "function", "function": {"name": "time", "arguments": arguments}}
    ]);

    let (status, whole) = host.post("/v1/chat/completions", &asked(false)).await;
    assert_eq!(status, 200, "{whole}");
    let choice = &whole["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{whole}");
    assert_eq!(choice["message"]["content"], Value::Null, "{whole}");
    assert_eq!(choice["message"]["tool_calls"], expected, "{whole}");
    assert_eq!(whole["usage"]["total_tokens"], 12, "{whole}");

    let streamed = host.post_text("/v1/chat/completions", &asked(true)).await;
    let chunks: Vec<Value> = sse_data(&streamed)
        .into_iter()
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert!(streamed.ends_with("data: [DONE]\n\n"), "{streamed}");
    // Put back together as a client does; a call's first piece alone names it.
    let mut calls: Vec<Value> = Vec::new();
    for piece in chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
    {
        let index = piece["index"].as_u64().unwrap() as usize;
        if let Some(id) = piece.get("id") {
            assert_eq!(piece["type"], "function", "{piece}");
            assert_eq!(index, calls.len(), "{piece}");
            calls.push(json!({"id": id, "type": "function",
                              "function": {"name": piece["function"]["name"], "arguments": ""}}));
        } else {
            assert!(piece["function"].get("name").is_none(), "{piece}");
        }
        let so_far = calls[index]["function"]["arguments"]
            .as_str()
            .unwrap()
            .to_string();
        let more = piece["function"]["arguments"].as_str().unwrap();
        calls[index]["function"]["arguments"] = json!(so_far + more);
    }
    assert_eq!(Value::Array(calls), expected, "{streamed}");
    let finishes: Vec<_> = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finishes, ["tool_calls"], "{streamed}");
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 12);

    // A stream opens before it is known whether text or calls follow: without `content`, so
    // that a client joining the pieces keeps no text (null) beside the calls, however long
    // the first piece takes.
    for said in ["Oslo", "first:200 Oslo"] {
        let mut body = asked(true);
        body["messages"][0]["content"] = json!(said);
        let streamed = host.post_text("/v1/chat/completions", &body).await;
        let opening: Value = serde_json::from_str(sse_data(&streamed)[0]).unwrap();
        let delta = &opening["choices"][0]["delta"];
        assert_eq!(delta["role"], "assistant", "{streamed}");
        assert!(delta.get("content").is_none(), "{said}: {streamed}");
        let contents: Vec<_> = sse_data(&streamed)
            .into_iter()
            .filter(|data| *data != "[DONE]")
            .filter_map(|data| {
                let chunk: Value = serde_json::from_str(data).unwrap();
                chunk["choices"][0]["delta"].get("content").cloned()
            })
            .collect();
        assert!(contents.is_empty(), "{said}: {contents:?}");
    }

    // The vendor got the tools, the choice and parallel_tool_calls as the client wrote them.
    let vendor_bodies: Vec<Value> = fake
        .calls_to("POST /v1/chat/completions")
        .iter()
        .map(|call| call.json())
        .collect();
    assert_eq!(vendor_bodies.len(), 4);
    for body in &vendor_bodies {
        assert_eq!(body["tools"], tools, "{body}");
        assert_eq!(body["tool_choice"], "required", "{body}");
        assert_eq!(body["parallel_tool_calls"], true, "{body}");
    }

    // Recorded with the calls, and charged once each.
    let id = chunks[0]["id"].as_str().unwrap();
    for id in [whole["id"].as_str().unwrap(), id] {
        let (status, detail) = host.get(&format!("/api/v1/jobs/{id}/detail")).await;
        assert_eq!(status, 200, "{detail}");
        assert_eq!(detail["job"]["status"], "succeeded", "{detail}");
        assert_eq!(detail["job"]["toolCalls"], expected, "{detail}");
    }
    let account = host.usage("partner-a").await;
    assert_eq!(account["balance"], 6.0, "{account}");
}
