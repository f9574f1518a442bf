use super::*;
use easel_sdk::testing::Script;
use easel_sdk::{ChatEvent, ChatRequest, Error, GenerationRequest, Output, collect_chat};

#[test]
fn seedream_generates_synchronously_and_edits_with_input_images() {
    let script = Script::new()
        .secret("ARK_API_KEY", KEY)
        .exchange(
            ark(Expect::post, "/images/generations").json(json!({
                "model": "doubao-seedream-4-0-250828",
                "prompt": "一只猫坐在月亮上",
                "size": "2K",
                "response_format": "url",
                "sequential_image_generation": "disabled",
                "watermark": false,
                "seed": 42
            })),
            Reply::json(200, json!({
                "model": "doubao-seedream-4-0-250828", "created": 1757321139,
                "data": [{"url": "https://ark-content-generation.tos.example/i.jpeg", "size": "2048x2048"}],
                "usage": {"generated_images": 1, "output_tokens": 16384, "total_tokens": 16384}
            })),
        )
        .exchange(
            ark(Expect::post, "/images/generations").json(json!({
                "model": "doubao-seedream-4-0-250828",
                "prompt": "换成夜景",
                "size": "1024x1024",
                "response_format": "url",
                "sequential_image_generation": "disabled",
                "watermark": false,
                "image": ["https://assets.example/a.png", "data:image/jpeg;base64,/9j/"]
            })),
            Reply::json(200, json!({"data": [{"url": "https://ark-content-generation.tos.example/e.jpeg"}]})),
        )
        .install();
    let generate = GenerationRequest::new("image.generate", "doubao-seedream-4-0-250828", "一只猫坐在月亮上").param("seed", 42);
    match Volcengine.submit(generate).unwrap() {
        Submission::Finished(f) => {
            assert_eq!(f.outputs, [Output::Url {
                url: "https://ark-content-generation.tos.example/i.jpeg".into(),
                content_type: Some("image/jpeg".into())
            }]);
            assert_eq!(f.usage.unwrap()["generated_images"], 1);
        }
        other => panic!("{other:?}"),
    }
    let edit = GenerationRequest::new("image.edit", "doubao-seedream-4-0-250828", "换成夜景")
        .param("size", "1024x1024")
        .input(input("image", None, "https://assets.example/a.png"))
        .input(InputMedia { kind: "image".into(), data: Some(vec![0xff, 0xd8, 0xff]), ..Default::default() });
    assert!(matches!(Volcengine.submit(edit).unwrap(), Submission::Finished(f) if f.outputs.len() == 1));
    script.finish();
}

#[test]
fn doubao_chat_streams_through_ark() {
    let script = Script::new()
        .secret("ARK_API_KEY", KEY)
        .exchange(
            ark(Expect::post, "/chat/completions").json(json!({
                "model": "doubao-seed-1-6-250615",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_tokens": 64,
                "thinking": {"type": "disabled"},
                "response_format": {"type": "json_object"}
            })),
            Reply::sse([
                r#"{"choices":[{"delta":{"content":"Hello","role":"assistant"},"index":0}],"created":1,"id":"x","model":"doubao-seed-1-6-250615","object":"chat.completion.chunk"}"#,
                r#"{"choices":[{"delta":{"content":"!","role":"assistant"},"finish_reason":"stop","index":0}],"id":"x","object":"chat.completion.chunk"}"#,
                r#"{"choices":[],"id":"x","object":"chat.completion.chunk","usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
                "[DONE]",
            ]),
        )
        .exchange(ark(Expect::post, "/chat/completions"), ark_error(400, "SensitiveContentDetected", "The request failed because the input text may contain sensitive information."))
        .install();
    let mut request = ChatRequest::user("doubao-seed-1-6-250615", "hi");
    request.params = json!({"max_tokens": 64, "thinking": {"type": "disabled"},
                            "response_format": {"type": "json_object"}});
    let mut stream = Volcengine.chat(request).unwrap();
    assert_eq!(
        collect_chat(stream.as_mut()).unwrap(),
        [
            ChatEvent::Delta("Hello".into()),
            ChatEvent::Delta("!".into()),
            ChatEvent::Usage { prompt: 5, completion: 2 },
            ChatEvent::Finish("stop".into())
        ]
    );
    let e = Volcengine.chat(ChatRequest::user("doubao-1-5-pro-32k-250115", "hi")).err().unwrap();
    assert!(matches!(e, Error::ContentRejected(_)));
    script.finish();
}

/// Tools go to Ark as given, and Doubao's streamed call comes back piece by piece, text before
/// it included.
#[test]
fn doubao_chat_sends_tools_and_relays_the_call() {
    let tools = json!([{"type": "function", "function": {"name": "get_current_weather", "description": "查询天气",
                        "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                                       "required": ["location"]}}}]);
    let script = Script::new()
        .secret("ARK_API_KEY", KEY)
        .exchange(
            ark(Expect::post, "/chat/completions").json(json!({
                "model": "doubao-1-5-pro-32k-250115",
                "messages": [{"role": "user", "content": "北京天气怎么样"}],
                "stream": true,
                "stream_options": {"include_usage": true},
                "tools": tools,
                "tool_choice": {"type": "function", "function": {"name": "get_current_weather"}}
            })),
            Reply::sse([
                r#"{"choices":[{"delta":{"content":"查询一下。","role":"assistant"},"index":0}],"id":"x","object":"chat.completion.chunk"}"#,
                r#"{"choices":[{"delta":{"content":"","role":"assistant","tool_calls":[{"id":"call_dbf1","index":0,"type":"function","function":{"name":"get_current_weather","arguments":""}}]},"index":0}],"id":"x","object":"chat.completion.chunk"}"#,
                r#"{"choices":[{"delta":{"content":"","role":"assistant","tool_calls":[{"index":0,"type":"function","function":{"arguments":"{\"location\": \"北京\"}"}}]},"index":0}],"id":"x","object":"chat.completion.chunk"}"#,
                r#"{"choices":[{"delta":{"content":"","role":"assistant"},"finish_reason":"tool_calls","index":0}],"id":"x","object":"chat.completion.chunk"}"#,
                r#"{"choices":[],"id":"x","object":"chat.completion.chunk","usage":{"prompt_tokens":90,"completion_tokens":25,"total_tokens":115}}"#,
                "[DONE]",
            ]),
        )
        .install();
    let mut request = ChatRequest::user("doubao-1-5-pro-32k-250115", "北京天气怎么样");
    let choice = json!({"type": "function", "function": {"name": "get_current_weather"}});
    request.params = json!({"tools": tools, "tool_choice": choice});
    let mut stream = Volcengine.chat(request).unwrap();
    assert_eq!(
        collect_chat(stream.as_mut()).unwrap(),
        [
            ChatEvent::Delta("查询一下。".into()),
            ChatEvent::ToolCall {
                index: 0,
                id: Some("call_dbf1".into()),
                name: Some("get_current_weather".into()),
                arguments: String::new()
            },
            ChatEvent::ToolCall { index: 0, id: None, name: None, arguments: r#"{"location": "北京"}"#.into() },
            ChatEvent::Usage { prompt: 90, completion: 25 },
            ChatEvent::Finish("tool_calls".into())
        ]
    );
    script.finish();
}
