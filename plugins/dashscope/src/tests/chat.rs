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
                "enable_search": true,
                "response_format": {"type": "json_object"}
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
        params: json!({"temperature": 0.3, "enable_search": true, "unknown_knob": 1,
                       "response_format": {"type": "json_object"}}),
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

/// Tools and a conversation that answered a call go to compatible mode as given; the calls
/// stream back the way DashScope sends them (later pieces repeat an empty `id`).
#[test]
fn chat_sends_tools_and_relays_streamed_calls() {
    let tools = json!([{"type": "function", "function": {"name": "get_current_weather", "description": "天气",
                        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
    let messages = json!([
        {"role": "user", "content": "杭州和上海天气怎么样"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function",
         "function": {"name": "get_current_weather", "arguments": "{\"location\": \"杭州\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "晴"}
    ]);
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .exchange(
            chat_post().json(json!({
                "model": "qwen-plus",
                "messages": messages,
                "stream": true,
                "stream_options": {"include_usage": true},
                "tools": tools,
                "tool_choice": "auto",
                "parallel_tool_calls": false
            })),
            Reply::sse([
                r#"{"choices":[{"index":0,"delta":{"content":null,"role":"assistant","tool_calls":[{"index":0,"id":"call_8f08","type":"function","function":{"name":"get_current_weather","arguments":""}}]},"finish_reason":null}],"object":"chat.completion.chunk","model":"qwen-plus"}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"","type":"function","function":{"arguments":"{\"location\":"}}]},"finish_reason":null}],"object":"chat.completion.chunk"}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"","type":"function","function":{"arguments":" \"上海\"}"}}]},"finish_reason":null}],"object":"chat.completion.chunk"}"#,
                r#"{"choices":[{"index":0,"delta":{"content":null},"finish_reason":"tool_calls"}],"object":"chat.completion.chunk"}"#,
                r#"{"choices":[],"object":"chat.completion.chunk","usage":{"prompt_tokens":230,"completion_tokens":20,"total_tokens":250}}"#,
                "[DONE]",
            ]),
        )
        .install();
    let request = ChatRequest {
        model: "qwen-plus".into(),
        messages: messages.clone(),
        params: json!({"tools": tools, "tool_choice": "auto", "parallel_tool_calls": false}),
    };
    let mut stream = DashScope.chat(request).unwrap();
    let piece = |id: Option<&str>, name: Option<&str>, arguments: &str| ChatEvent::ToolCall {
        index: 0,
        id: id.map(Into::into),
        name: name.map(Into::into),
        arguments: arguments.into(),
    };
    assert_eq!(
        collect_chat(stream.as_mut()).unwrap(),
        [
            piece(Some("call_8f08"), Some("get_current_weather"), ""),
            piece(None, None, r#"{"location":"#),
            piece(None, None, r#" "上海"}"#),
            ChatEvent::Usage { prompt: 230, completion: 20 },
            ChatEvent::Finish("tool_calls".into())
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
