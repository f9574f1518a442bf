use super::*;
use easel_sdk::testing::Script;
use easel_sdk::{ChatEvent, ChatRequest, Error, collect_chat};

const COMPAT: &str = "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions";

fn chat_post() -> Expect {
    Expect::post(COMPAT).header("authorization", format!("Bearer {KEY}")).header("content-type", "application/json")
}

#[test]
fn chat_streams_deltas_usage_and_finish_from_compatible_mode() {
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .exchange(
            chat_post().json(json!({
                "model": "qwen3-max",
                "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "你是谁"}],
                "stream": true,
                "stream_options": {"include_usage": true},
                "temperature": 0.3,
                "enable_search": true
            })),
            Reply::sse([
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"qwen3-max","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"qwen3-max","choices":[{"index":0,"delta":{"content":"我是"},"finish_reason":null}]}"#,
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"qwen3-max","choices":[{"index":0,"delta":{"content":"通义千问"},"finish_reason":"stop"}]}"#,
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"qwen3-max","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":4,"total_tokens":16}}"#,
                "[DONE]",
            ]),
        )
        .install();
    let request = ChatRequest {
        model: "qwen3-max".into(),
        messages: json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "你是谁"}]),
        params: json!({"temperature": 0.3, "enable_search": true, "unknown_knob": 1}),
    };
    let mut stream = DashScope.chat(request).unwrap();
    assert_eq!(
        collect_chat(stream.as_mut()).unwrap(),
        [
            ChatEvent::Delta("我是".into()),
            ChatEvent::Delta("通义千问".into()),
            ChatEvent::Usage { prompt: 12, completion: 4 },
            ChatEvent::Finish("stop".into())
        ]
    );
    script.finish();
}

#[test]
fn chat_errors_in_compatible_mode_shape_are_mapped() {
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .exchange(
            chat_post(),
            Reply::json(401, json!({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                              "code": "invalid_api_key"}})),
        )
        .exchange(
            chat_post(),
            Reply::json(400, json!({"error": {"message": "Input data may contain inappropriate content.",
                                              "type": "data_inspection_failed", "code": "data_inspection_failed"}})),
        )
        .exchange(
            chat_post(),
            Reply::json(429, json!({"error": {"message": "Requests rate limit exceeded", "code": "limit_requests"}}))
                .header("retry-after", "3"),
        )
        .install();
    let chat = || DashScope.chat(ChatRequest::user("qwen-plus", "hi")).err().unwrap();
    assert!(matches!(chat(), Error::Unauthorized(m) if m.contains("invalid_api_key")));
    assert!(matches!(chat(), Error::ContentRejected(_)));
    assert_eq!(chat(), Error::RateLimited(Some(3)));
    script.finish();
}

#[test]
fn chat_refuses_models_that_are_not_chat_models() {
    let _script = Script::new().secret("DASHSCOPE_API_KEY", KEY).install();
    assert!(matches!(DashScope.chat(ChatRequest::user("qwen-image", "hi")), Err(Error::InvalidRequest(_))));
}
