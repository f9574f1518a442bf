//! Offline tests against scripted Ark and Doubao speech endpoints.

mod chat_image;
mod errors;
mod manifest;
mod tts;
mod video;

use crate::Volcengine;
use easel_sdk::serde_json::{Value, json};
use easel_sdk::testing::{Expect, Reply};
use easel_sdk::{InputMedia, PollOutcome, Provider, Submission};

const KEY: &str = "ark-test-key";
const ARK: &str = "https://ark.cn-beijing.volces.com/api/v3";

fn ark(method: fn(String) -> Expect, path: &str) -> Expect {
    method(format!("{ARK}{path}")).header("authorization", format!("Bearer {KEY}"))
}

fn ark_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"error": {"code": code, "message": message, "param": "", "type": "BadRequest"}}))
}

fn input(kind: &str, role: Option<&str>, url: &str) -> InputMedia {
    InputMedia { kind: kind.into(), role: role.map(str::to_string), url: Some(url.into()), ..Default::default() }
}

fn pending_handle(s: Submission) -> String {
    match s {
        Submission::Pending(p) => p.handle,
        other => panic!("expected pending, got {other:?}"),
    }
}

fn task(id: &str, status: &str, extra: Value) -> Reply {
    let mut body = json!({"id": id, "model": "doubao-seedance-2-0-260128", "status": status,
                          "created_at": 1743414619, "updated_at": 1743414673});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    Reply::json(200, body)
}
