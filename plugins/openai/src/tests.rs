//! Offline tests against a scripted OpenAI API.

use super::*;
use easel_sdk::serde_json::json;
use easel_sdk::testing::{Expect, Reply, Script};
use easel_sdk::{ChatEvent, InputMedia, Output, collect_chat};

const KEY: &str = "sk-openai-test";

fn post(path: &str) -> Expect {
    Expect::post(format!("https://api.openai.com/v1{path}"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
}

fn openai_error(status: u16, kind: &str, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
}

fn finished(s: Submission) -> easel_sdk::Finished {
    match s {
        Submission::Finished(f) => f,
        other => panic!("{other:?}"),
    }
}

#[test]
fn manifest_declares_models_host_and_key() {
    let m = OpenAi.manifest();
    assert_eq!(m.id, "openai");
    assert_eq!(m.allowed_hosts, ["api.openai.com", "oaidalleapiprodscus.blob.core.windows.net"]);
    assert_eq!(m.secrets, ["OPENAI_API_KEY"]);
    assert!(!m.idempotent_submit);
    let keys: Vec<&str> = m.models.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["gpt-image-1", "dall-e-3", "gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "gpt-4o-mini-tts", "tts-1"]);
    assert_eq!(m.models[0].params_schema["properties"]["quality"]["default"], "auto");
    assert!(m.models[5].params_schema["properties"].get("instructions").is_some());
    assert!(m.models[6].params_schema["properties"].get("instructions").is_none());
    let declares_tools = |key: &str| {
        let model = m.models.iter().find(|m| m.key == key).unwrap();
        model.params_schema["properties"].get("tools").is_some()
    };
    assert!(["gpt-4o", "gpt-4o-mini", "gpt-4.1-mini"].iter().all(|k| declares_tools(k)));
    assert!(!["gpt-image-1", "dall-e-3", "tts-1"].iter().any(|k| declares_tools(k)));
    let gpt = &m.models[2].params_schema["properties"];
    assert_eq!(gpt["tools"]["maxItems"], 128);
    assert_eq!(gpt["tool_choice"]["anyOf"][0]["enum"], json!(["none", "auto", "required"]));
    assert_eq!(gpt["parallel_tool_calls"]["type"], "boolean");
}

/// A conversation that already called a tool, with the tools still on offer: the body carries
/// the tools, the choice, the assistant's call and the tool's answer exactly as given, and the
/// model's next calls come back piece by piece.
#[test]
fn chat_sends_tools_and_tool_messages_and_relays_the_calls() {
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
         "strict": true}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
    ]);
    let messages = json!([
        {"role": "user", "content": "Weather in Paris, then the time in Tokyo and Oslo?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_w1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_w1", "content": "{\"sky\":\"sunny\",\"c\":21}"}
    ]);
    let script = Script::new()
        .secret("OPENAI_API_KEY", KEY)
        .exchange(
            post("/chat/completions").json(json!({
                "model": "gpt-4o",
                "messages": messages,
                "stream": true,
                "stream_options": {"include_usage": true},
                "tools": tools,
                "tool_choice": "required",
                "parallel_tool_calls": true
            })),
            Reply::sse([
                r#"{"id":"chatcmpl-2","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_t1","type":"function","function":{"name":"get_time","arguments":""}}]},"finish_reason":null}],"usage":null}"#,
                r#"{"id":"chatcmpl-2","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\""}}]},"finish_reason":null}],"usage":null}"#,
                r#"{"id":"chatcmpl-2","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":\"Tokyo\"}"}}]},"finish_reason":null}],"usage":null}"#,
                r#"{"id":"chatcmpl-2","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_t2","type":"function","function":{"name":"get_time","arguments":""}}]},"finish_reason":null}],"usage":null}"#,
                r#"{"id":"chatcmpl-2","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"city\":\"Oslo\"}"}}]},"finish_reason":null}],"usage":null}"#,
                r#"{"id":"chatcmpl-2","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":null}"#,
                r#"{"id":"chatcmpl-2","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":120,"completion_tokens":41,"total_tokens":161}}"#,
                "[DONE]",
            ]),
        )
        .install();
    let request = ChatRequest {
        model: "gpt-4o".into(),
        messages: messages.clone(),
        params: json!({"tools": tools, "tool_choice": "required", "parallel_tool_calls": true,
                       "functions": [{"name": "x"}]}),
    };
    let mut stream = OpenAi.chat(request).unwrap();
    let call = |index: u32, id: Option<&str>, name: Option<&str>, arguments: &str| ChatEvent::ToolCall {
        index,
        id: id.map(Into::into),
        name: name.map(Into::into),
        arguments: arguments.into(),
    };
    assert_eq!(
        collect_chat(stream.as_mut()).unwrap(),
        [
            call(0, Some("call_t1"), Some("get_time"), ""),
            call(0, None, None, r#"{"city""#),
            call(0, None, None, r#":"Tokyo"}"#),
            call(1, Some("call_t2"), Some("get_time"), ""),
            call(1, None, None, r#"{"city":"Oslo"}"#),
            ChatEvent::Usage { prompt: 120, completion: 41 },
            ChatEvent::Finish("tool_calls".into())
        ]
    );
    script.finish();
}

/// Read whole (`stream: false`), the calls come back one whole piece each.
#[test]
fn chat_relays_whole_tool_calls_when_the_client_reads_no_stream() {
    let tools = json!([{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]);
    let choice = json!({"type": "function", "function": {"name": "get_time"}});
    let script = Script::new()
        .secret("OPENAI_API_KEY", KEY)
        .exchange(
            post("/chat/completions").json(json!({
                "model": "gpt-4.1-mini",
                "messages": [{"role": "user", "content": "Time in Oslo?"}],
                "stream": false,
                "tools": tools,
                "tool_choice": choice
            })),
            Reply::json(
                200,
                json!({"id": "chatcmpl-3", "object": "chat.completion", "model": "gpt-4.1-mini",
                       "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
                           "content": null, "refusal": null, "tool_calls": [{"id": "call_o", "type": "function",
                           "function": {"name": "get_time", "arguments": "{\"city\":\"Oslo\"}"}}]}}],
                       "usage": {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}}),
            ),
        )
        .install();
    let mut request = ChatRequest::user("gpt-4.1-mini", "Time in Oslo?");
    request.params = json!({"stream": false, "tools": tools, "tool_choice": choice});
    let mut stream = OpenAi.chat(request).unwrap();
    assert_eq!(
        collect_chat(stream.as_mut()).unwrap(),
        [
            ChatEvent::ToolCall {
                index: 0,
                id: Some("call_o".into()),
                name: Some("get_time".into()),
                arguments: r#"{"city":"Oslo"}"#.into()
            },
            ChatEvent::Usage { prompt: 30, completion: 9 },
            ChatEvent::Finish("tool_calls".into())
        ]
    );
    script.finish();
}

#[test]
fn chat_streams_with_max_completion_tokens() {
    let script = Script::new()
        .secret("OPENAI_API_KEY", KEY)
        .exchange(
            post("/chat/completions").json(json!({
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "Say hi"}],
                "stream": true,
                "stream_options": {"include_usage": true},
                "temperature": 0.2,
                "max_completion_tokens": 16
            })),
            Reply::sse([
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}"#,
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}"#,
                "[DONE]",
            ]),
        )
        .install();
    let mut request = ChatRequest::user("gpt-4o-mini", "Say hi");
    request.params = json!({"temperature": 0.2, "max_tokens": 16});
    let mut stream = OpenAi.chat(request).unwrap();
    assert_eq!(
        collect_chat(stream.as_mut()).unwrap(),
        [ChatEvent::Delta("Hi".into()), ChatEvent::Usage { prompt: 9, completion: 1 }, ChatEvent::Finish("stop".into())]
    );
    script.finish();
}

#[test]
fn chat_asks_for_a_whole_answer_when_the_client_reads_no_stream_under_the_current_names() {
    let script = Script::new()
        .secret("OPENAI_API_KEY", KEY)
        .exchange(
            post("/chat/completions").json(json!({
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "Say hi"}],
                "stream": false,
                "max_completion_tokens": 8,
                "response_format": {"type": "json_object"}, "logit_bias": {"1": 5}
            })),
            Reply::json(
                200,
                json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}}),
            ),
        )
        .install();
    let mut request = ChatRequest::user("gpt-4o-mini", "Say hi");
    request.params = json!({"stream": false, "max_tokens": 16, "max_completion_tokens": 8,
                            "response_format": {"type": "json_object"}, "logit_bias": {"1": 5}});
    let mut stream = OpenAi.chat(request).unwrap();
    assert_eq!(
        collect_chat(stream.as_mut()).unwrap(),
        [ChatEvent::Delta("Hi".into()), ChatEvent::Usage { prompt: 9, completion: 1 }, ChatEvent::Finish("stop".into())]
    );
    script.finish();
}

#[test]
fn gpt_image_returns_decoded_bytes() {
    let script = Script::new()
        .secret("OPENAI_API_KEY", KEY)
        .exchange(
            post("/images/generations").json(json!({
                "model": "gpt-image-1", "prompt": "a lighthouse", "n": 1,
                "size": "1024x1536", "quality": "high", "output_format": "png"
            })),
            Reply::json(200, json!({
                "created": 1713833628,
                "data": [{"b64_json": "iVBORw0KGgo="}],
                "usage": {"total_tokens": 100, "input_tokens": 50, "output_tokens": 50}
            })),
        )
        .install();
    let request = GenerationRequest::new("image.generate", "gpt-image-1", "a lighthouse")
        .param("size", "1024x1536")
        .param("quality", "high");
    let done = finished(OpenAi.submit(request).unwrap());
    assert_eq!(done.outputs, [Output::bytes("image/png", b"\x89PNG\r\n\x1a\n".to_vec())]);
    assert_eq!(done.usage.unwrap()["total_tokens"], 100);
    script.finish();
}

#[test]
fn gpt_image_edits_and_inpaints_with_the_files_in_a_form() {
    let edits = || {
        let boundary = easel_sdk::http::Form::BOUNDARY;
        Expect::post("https://api.openai.com/v1/images/edits")
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
    };
    let script = Script::new()
        .secret("OPENAI_API_KEY", KEY)
        .exchange(edits(), Reply::json(200, json!({"created": 1, "data": [{"b64_json": "iVBORw0KGgo="}]})))
        .exchange(edits(), Reply::json(200, json!({"created": 2, "data": [{"b64_json": "iVBORw0KGgo="}]})))
        .install();
    let file = |kind: &str, content_type: &str, data: &[u8]| InputMedia {
        kind: kind.into(),
        content_type: Some(content_type.into()),
        data: Some(data.to_vec()),
        ..Default::default()
    };
    let edit = GenerationRequest::new("image.edit", "gpt-image-1", "bluer")
        .param("quality", "low")
        .param("input_fidelity", "high")
        .input(file("image", "image/png", b"\x89PNG first"))
        .input(file("image", "image/png", b"\xff\xd8\xff second"));
    let done = finished(OpenAi.submit(edit).unwrap());
    assert_eq!(done.outputs, [Output::bytes("image/png", b"\x89PNG\r\n\x1a\n".to_vec())]);
    let inpaint = GenerationRequest::new("image.inpaint", "gpt-image-1", "a kite")
        .input(file("image", "image/png", b"\x89PNG photo"))
        .input(file("mask", "image/png", b"\x89PNG holes"));
    finished(OpenAi.submit(inpaint).unwrap());
    let sent = script.requests();
    let form = |i: usize| String::from_utf8_lossy(sent[i].body_bytes()).into_owned();
    for part in [
        "name=\"model\"\r\n\r\ngpt-image-1\r\n",
        "name=\"prompt\"\r\n\r\nbluer\r\n",
        "name=\"n\"\r\n\r\n1\r\n",
        "name=\"size\"\r\n\r\nauto\r\n",
        "name=\"quality\"\r\n\r\nlow\r\n",
        "name=\"output_format\"\r\n\r\npng\r\n",
        "name=\"input_fidelity\"\r\n\r\nhigh\r\n",
        "name=\"image[]\"; filename=\"image-0.png\"\r\nContent-Type: image/png\r\n\r\n\u{fffd}PNG first\r\n",
        "name=\"image[]\"; filename=\"image-1.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\u{fffd}\u{fffd}\u{fffd} second\r\n",
    ] {
        assert!(form(0).contains(part), "{part:?} in {}", form(0));
    }
    assert!(!form(0).contains("name=\"mask\""));
    assert!(form(1).contains("name=\"mask\"; filename=\"mask.png\"\r\nContent-Type: image/png\r\n\r\n\u{fffd}PNG holes\r\n"), "{}", form(1));
    script.finish();

    // A linked image cannot be sent as a file, and a mask belongs to inpainting.
    let linked = InputMedia { kind: "image".into(), url: Some("https://a.example/p.png".into()), ..Default::default() };
    let request = GenerationRequest::new("image.edit", "gpt-image-1", "x").input(linked);
    assert!(matches!(OpenAi.submit(request), Err(Error::InvalidRequest(m)) if m.contains("upload")));
    let request = GenerationRequest::new("image.edit", "gpt-image-1", "x")
        .input(file("image", "image/png", b"\x89PNG p"))
        .input(file("mask", "image/png", b"\x89PNG m"));
    assert!(matches!(OpenAi.submit(request), Err(Error::InvalidRequest(m)) if m.contains("inpaint")));
    // Only the types OpenAI reads: no GIF image, and a mask must be a PNG (its alpha says where).
    let request = GenerationRequest::new("image.edit", "gpt-image-1", "x").input(file("image", "image/gif", b"GIF89a"));
    assert!(matches!(OpenAi.submit(request), Err(Error::InvalidRequest(m)) if m.contains("image/gif")));
    let request = GenerationRequest::new("image.inpaint", "gpt-image-1", "x")
        .input(file("image", "image/png", b"\x89PNG p"))
        .input(file("mask", "image/jpeg", b"\xff\xd8\xff m"));
    assert!(matches!(OpenAi.submit(request), Err(Error::InvalidRequest(m)) if m.contains("image/png files as the mask")));
}

#[test]
fn dalle3_asks_for_urls_and_returns_them() {
    let script = Script::new()
        .secret("OPENAI_API_KEY", KEY)
        .exchange(
            post("/images/generations").json(json!({
                "model": "dall-e-3", "prompt": "a lighthouse", "n": 1, "size": "1792x1024",
                "quality": "standard", "style": "natural", "response_format": "url"
            })),
            Reply::json(200, json!({"created": 1, "data": [{"url": "https://oaidalleapiprodscus.blob.example/img.png",
                                                          "revised_prompt": "a lighthouse at dusk"}]})),
        )
        .install();
    let request = GenerationRequest::new("image.generate", "dall-e-3", "a lighthouse")
        .param("size", "1792x1024")
        .param("style", "natural");
    let done = finished(OpenAi.submit(request).unwrap());
    assert_eq!(done.outputs, [Output::Url {
        url: "https://oaidalleapiprodscus.blob.example/img.png".into(),
        content_type: Some("image/png".into())
    }]);
    script.finish();
}

#[test]
fn speech_returns_the_audio_body() {
    let script = Script::new()
        .secret("OPENAI_API_KEY", KEY)
        .exchange(
            post("/audio/speech").json(json!({
                "model": "gpt-4o-mini-tts", "input": "Hello", "voice": "coral", "response_format": "wav",
                "speed": 1.0, "instructions": "cheerful"
            })),
            Reply::status(200).header("content-type", "audio/wav").chunk(b"RIFF\x24\0\0\0WAVE".to_vec()),
        )
        .install();
    let request = GenerationRequest::new("audio.speech", "gpt-4o-mini-tts", "Hello")
        .param("voice", "coral")
        .param("response_format", "wav")
        .param("instructions", "cheerful");
    let done = finished(OpenAi.submit(request).unwrap());
    assert_eq!(done.outputs, [Output::bytes("audio/wav", b"RIFF\x24\0\0\0WAVE".to_vec())]);
    script.finish();
}

#[test]
fn a_page_answered_for_speech_is_not_audio() {
    for (kind, body) in [("text/html; charset=utf-8", "<html>Service Unavailable</html>"), ("application/json", "{}")] {
        let script = Script::new()
            .secret("OPENAI_API_KEY", KEY)
            .exchange(post("/audio/speech"), Reply::status(200).header("content-type", kind).chunk(body.as_bytes().to_vec()))
            .install();
        let e = OpenAi.submit(GenerationRequest::new("audio.speech", "tts-1", "Hello")).unwrap_err();
        assert!(matches!(&e, Error::UpstreamUnavailable(m) if m.contains(kind) && m.contains(body)), "{e:?}");
        script.finish();
    }
}

fn image_error(reply: Reply) -> Error {
    let script = Script::new().secret("OPENAI_API_KEY", KEY).exchange(post("/images/generations"), reply).install();
    let e = OpenAi.submit(GenerationRequest::new("image.generate", "dall-e-3", "x")).unwrap_err();
    script.finish();
    e
}

#[test]
fn errors_map_onto_the_contract() {
    let e = image_error(openai_error(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-xx."));
    assert!(matches!(e, Error::Unauthorized(m) if m.contains("invalid_api_key")));
    let e = image_error(openai_error(429, "requests", "rate_limit_exceeded", "Rate limit reached").header("retry-after", "7"));
    assert_eq!(e, Error::RateLimited(Some(7)));
    // An exhausted balance comes as a 429 too, but no wait makes it pass.
    let e = image_error(openai_error(429, "insufficient_quota", "insufficient_quota", "You exceeded your current quota"));
    assert!(matches!(e, Error::Unauthorized(m) if m.contains("insufficient_quota")));
    let e = image_error(openai_error(400, "invalid_request_error", "content_policy_violation", "Your request was rejected by our safety system."));
    assert!(matches!(e, Error::ContentRejected(f) if f.code.as_deref() == Some("content_policy_violation")));
    let e = image_error(openai_error(400, "invalid_request_error", "moderation_blocked", "Request blocked by moderation."));
    assert!(matches!(e, Error::ContentRejected(_)));
    let e = image_error(openai_error(400, "invalid_request_error", "invalid_value", "Invalid size"));
    assert_eq!(e, Error::invalid("Invalid size").with_code("invalid_value"));
    let e = image_error(openai_error(500, "server_error", "", "The server had an error"));
    assert!(matches!(e, Error::UpstreamUnavailable(m) if m.contains("server_error")));
    assert_eq!(image_error(Reply::fail(Error::upstream("timed out"))), Error::upstream("timed out"));
    let _s = Script::new().install();
    assert!(matches!(OpenAi.submit(GenerationRequest::new("image.generate", "dall-e-3", "x")), Err(Error::Unauthorized(_))));
}

#[test]
fn chat_errors_and_wrong_models_are_mapped() {
    let script = Script::new()
        .secret("OPENAI_API_KEY", KEY)
        .exchange(post("/chat/completions"), openai_error(503, "server_error", "", "overloaded"))
        .install();
    assert!(matches!(OpenAi.chat(ChatRequest::user("gpt-4o", "x")).err().unwrap(), Error::UpstreamUnavailable(_)));
    assert!(matches!(OpenAi.chat(ChatRequest::user("dall-e-3", "x")).err().unwrap(), Error::InvalidRequest(_)));
    assert!(matches!(OpenAi.submit(GenerationRequest::new("video.generate", "gpt-4o", "x")), Err(Error::InvalidRequest(_))));
    script.finish();
}

#[test]
fn nothing_is_pending_so_poll_and_cancel_explain_themselves() {
    // OpenAI answers every call synchronously: no handle is ever issued.
    assert!(matches!(OpenAi.poll("anything"), Err(Error::Internal(m)) if m.contains("does not implement Provider::poll")));
    assert!(matches!(OpenAi.cancel("anything"), Err(Error::Internal(m)) if m.contains("cannot cancel")));
}
