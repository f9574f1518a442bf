//! Offline tests against a scripted DashScope: each test lists the exact requests the
//! plugin must send (method, URL, auth, body) and the vendor's documented answers.

mod chat;
mod errors;
mod image;
mod manifest;
mod tts;
mod video;

use crate::DashScope;
use easel_sdk::serde_json::{Value, json};
use easel_sdk::testing::{Expect, Reply};
use easel_sdk::{Finished, InputMedia, PollOutcome, Provider, Submission};

const KEY: &str = "sk-test";
const BJ: &str = "https://dashscope.aliyuncs.com/api/v1";

fn post(path: &str) -> Expect {
    Expect::post(format!("{BJ}{path}")).header("authorization", format!("Bearer {KEY}"))
}

fn async_post(path: &str) -> Expect {
    post(path).header("x-dashscope-async", "enable").header("content-type", "application/json")
}

fn get(path: &str) -> Expect {
    Expect::get(format!("{BJ}{path}")).header("authorization", format!("Bearer {KEY}"))
}

fn created(task_id: &str) -> Reply {
    Reply::json(200, json!({"request_id": "r-1", "output": {"task_id": task_id, "task_status": "PENDING"}}))
}

fn task_status(task_id: &str, status: &str) -> Reply {
    Reply::json(200, json!({"request_id": "r-2", "output": {"task_id": task_id, "task_status": status}}))
}

fn task_answer(output: Value, usage: Value) -> Reply {
    Reply::json(200, json!({"request_id": "r-3", "output": output, "usage": usage}))
}

fn pending(s: Submission) -> (String, u64) {
    match s {
        Submission::Pending(p) => (p.handle, p.poll_after_ms),
        Submission::Finished(f) => panic!("expected pending, got {f:?}"),
    }
}

fn finished(outcome: PollOutcome) -> Finished {
    match outcome {
        PollOutcome::Finished(f) => f,
        other => panic!("expected finished, got {other:?}"),
    }
}

fn url_input(kind: &str, role: Option<&str>, url: &str) -> InputMedia {
    InputMedia { kind: kind.into(), role: role.map(str::to_string), url: Some(url.into()), ..Default::default() }
}

fn poll(handle: &str) -> PollOutcome {
    DashScope.poll(handle).unwrap()
}
