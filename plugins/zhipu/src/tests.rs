//! Offline tests against Zhipu's documented wire format: each request's method, URL,
//! bearer key and JSON body are checked by `testing::Script`.

use super::*;
use easel_sdk::testing::{Expect, Reply, Script};
use easel_sdk::{ChatEvent, collect_chat};

const AUTH: &str = "Bearer zp-key";

fn script() -> Script {
    Script::new().secret(API_KEY_SECRET, "zp-key")
}

fn images_url() -> String {
    format!("{API_BASE}/images/generations")
}

fn chat_url() -> String {
    format!("{API_BASE}/chat/completions")
}

fn image(prompt: &str) -> GenerationRequest {
    GenerationRequest::new("image.generate", "cogview-3-flash", prompt)
}

fn zhipu_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"error": {"code": code, "message": message}}))
}

fn image_error(reply: Reply) -> Error {
    let _s = script()
        .exchange(Expect::post(images_url()), reply)
        .install();
    Zhipu.submit(image("a cat")).unwrap_err()
}

fn chat_error(reply: Reply) -> Error {
    let _s = script().exchange(Expect::post(chat_url()), reply).install();
    Zhipu
        .chat(ChatRequest::user("glm-4.6", "hi"))
        .err()
        .expect("chat should fail")
}

#[test]
fn manifest_lists_cogview_and_glm_models() {
    let m = Zhipu.manifest();
    assert_eq!(m.id, "zhipu");
    assert_eq!(m.allowed_hosts, ["open.bigmodel.cn", "aigc-files.bigmodel.cn"]);
    assert_eq!(m.secrets, ["ZHIPU_API_KEY"]);
    assert!(!m.idempotent_submit);
    let keys: Vec<_> = m.models.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(
        keys,
        ["cogview-3-flash", "glm-4.6", "glm-4.5-air", "glm-4.5-flash"]
    );
    let cogview = &m.models[0];
    assert_eq!(
        (cogview.kind.as_str(), cogview.capabilities.as_slice()),
        ("image", ["image.generate".to_string()].as_slice())
    );
    assert_eq!(
        cogview.params_schema["properties"]["size"]["default"],
        "1024x1024"
    );
    assert!(cogview.params_schema["properties"]["negative_prompt"].is_object());
    assert_eq!(cogview.extra["resolutions"]["1K"]["1:1"], "1024*1024");
    assert!(
        m.models[1..]
            .iter()
            .all(|c| c.kind == "chat" && c.capabilities == ["chat"])
    );
    assert!(cogview.params_schema["properties"].get("tools").is_none());
    for glm in &m.models[1..] {
        let props = &glm.params_schema["properties"];
        assert_eq!(props["tools"]["maxItems"], 128, "{}", glm.key);
        assert_eq!(props["tool_choice"], json!({"enum": ["auto"], "description": "Zhipu takes only auto."}));
        assert_eq!(props["parallel_tool_calls"]["enum"], json!([true]));
        assert_eq!(props["response_format"]["properties"]["type"]["enum"], json!(["text", "json_object"]));
    }
}

/// Tools and the conversation's tool messages go to Zhipu (`parallel_tool_calls`, which it does
/// not take, stays behind); GLM's calls arrive whole, one chunk each, and pass on as such.
#[test]
fn chat_sends_tools_and_relays_whole_calls() {
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "查询天气",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let messages = json!([
        {"role": "user", "content": "北京和上海的天气"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"北京\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "晴, 25°C"}
    ]);
    let s = script()
        .exchange(
            Expect::post(chat_url()).header("authorization", AUTH).json(json!({
                "model": "glm-4.6", "stream": true, "messages": messages, "tools": tools, "tool_choice": "auto"
            })),
            Reply::sse([
                r#"{"id":"2","choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_-8","index":0,"type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"上海\"}"}}]}}]}"#,
                r#"{"id":"2","choices":[{"index":0,"finish_reason":"tool_calls","delta":{"role":"assistant","content":""}}],"usage":{"prompt_tokens":180,"completion_tokens":14,"total_tokens":194}}"#,
                "[DONE]",
            ]),
        )
        .install();
    let request = ChatRequest {
        model: "glm-4.6".into(),
        messages: messages.clone(),
        params: json!({"tools": tools, "tool_choice": "auto", "parallel_tool_calls": true}),
    };
    let mut stream = Zhipu.chat(request).unwrap();
    assert_eq!(
        collect_chat(stream.as_mut()).unwrap(),
        [
            ChatEvent::ToolCall {
                index: 0,
                id: Some("call_-8".into()),
                name: Some("get_weather".into()),
                arguments: r#"{"city": "上海"}"#.into()
            },
            ChatEvent::Usage { prompt: 180, completion: 14 },
            ChatEvent::Finish("tool_calls".into())
        ]
    );
    s.finish();
}

#[test]
fn image_generation_is_synchronous_and_returns_the_url() {
    let s = script()
        .exchange(
            Expect::post(images_url())
                .header("authorization", AUTH)
                .json(json!({"model": "cogview-3-flash", "prompt": "a cat on the moon", "size": "1024x1024"})),
            Reply::json(200, json!({"created": 1760000000, "data": [{"url": "https://aigc-files.bigmodel.cn/api/cogview/x.png"}]})),
        )
        .install();
    let Submission::Finished(done) = Zhipu.submit(image("a cat on the moon")).unwrap() else {
        panic!("expected finished")
    };
    assert_eq!(
        done.outputs,
        [Output::Url {
            url: "https://aigc-files.bigmodel.cn/api/cogview/x.png".into(),
            content_type: Some("image/png".into())
        }]
    );
    s.finish();
}

#[test]
fn size_width_height_and_negative_prompt_are_translated() {
    let s = script()
        .exchange(
            Expect::post(images_url()).json(json!({"model": "cogview-3-flash", "prompt": "a cat\nAvoid: blur", "size": "1344x768"})),
            Reply::json(200, json!({"data": [{"url": "https://aigc-files.bigmodel.cn/1.png"}]})),
        )
        .exchange(
            Expect::post(images_url()).json(json!({"model": "cogview-3-flash", "prompt": "a cat", "size": "1024x1536"})),
            Reply::json(200, json!({"data": [{"url": "https://aigc-files.bigmodel.cn/2.png"}]})),
        )
        .install();
    Zhipu
        .submit(
            image("a cat")
                .param("size", "1344x768")
                .param("negative_prompt", "blur"),
        )
        .unwrap();
    Zhipu
        .submit(image("a cat").param("width", 1024).param("height", 1536))
        .unwrap();
    assert!(matches!(
        Zhipu.submit(image("a cat").param("width", 2048).param("height", 2048)),
        Err(Error::InvalidRequest(_))
    ));
    assert!(matches!(
        Zhipu.submit(image("a cat").param("width", 1024)),
        Err(Error::InvalidRequest(_))
    ));
    assert!(
        matches!(Zhipu.submit(image(" ")), Err(Error::InvalidRequest(m)) if m == "Missing required parameter: prompt")
    );
    s.finish();
}

#[test]
fn image_errors_map_to_typed_errors() {
    assert!(matches!(
        image_error(zhipu_error(401, "1002", "Authorization Token非法")),
        Error::Unauthorized(_)
    ));
    assert_eq!(
        image_error(zhipu_error(429, "1302", "并发数过高").header("Retry-After", "5")),
        Error::RateLimited(Some(5))
    );
    assert!(matches!(
        image_error(zhipu_error(429, "1113", "余额不足或无可用资源包")),
        Error::Unauthorized(m) if m.contains("1113")
    ));
    assert!(
        matches!(image_error(zhipu_error(400, "1301", "系统检测到输入或生成内容可能包含不安全或敏感内容")), Error::ContentRejected(m) if m.contains("1301"))
    );
    assert!(
        matches!(image_error(zhipu_error(400, "1214", "size 参数非法")), Error::InvalidRequest(m) if m.contains("size"))
    );
    assert!(matches!(
        image_error(zhipu_error(500, "500", "内部错误")),
        Error::UpstreamUnavailable(_)
    ));
    assert!(matches!(
        image_error(Reply::text(503, "busy")),
        Error::UpstreamUnavailable(_)
    ));
}

#[test]
fn every_documented_business_code_has_its_class() {
    for code in [
        "1000", "1001", "1002", "1003", "1004", "1110", "1111", "1112", "1113", "1121", "1220",
        "1310", "1311",
    ] {
        assert!(
            matches!(
                errors::by_code(code, "m", None),
                Some(Error::Unauthorized(_))
            ),
            "{code}"
        );
    }
    for code in [
        "1302", "1303", "1304", "1305", "1308", "1309", "1312", "1313",
    ] {
        assert_eq!(
            errors::by_code(code, "m", Some(9)),
            Some(Error::RateLimited(Some(9))),
            "{code}"
        );
    }
    assert!(matches!(
        errors::by_code("1301", "m", None),
        Some(Error::ContentRejected(_))
    ));
    for code in [
        "1210", "1211", "1212", "1213", "1214", "1215", "1221", "1222", "1261",
    ] {
        assert!(
            matches!(
                errors::by_code(code, "m", None),
                Some(Error::InvalidRequest(_))
            ),
            "{code}"
        );
    }
    for code in ["500", "1120", "1230", "1234"] {
        assert!(
            matches!(
                errors::by_code(code, "m", None),
                Some(Error::UpstreamUnavailable(_))
            ),
            "{code}"
        );
    }
    // Codes the table leaves to the HTTP status.
    for code in ["1100", "1200", "1231", "1300", "9999", ""] {
        assert_eq!(errors::by_code(code, "m", None), None, "{code}");
    }
}

#[test]
fn a_locked_account_is_unauthorized_although_sent_with_429() {
    assert!(matches!(
        image_error(zhipu_error(429, "1112", "您的账户已被锁定，请联系客服解锁")),
        Error::Unauthorized(m) if m.contains("1112")
    ));
    assert_eq!(
        chat_error(zhipu_error(429, "1312", "该模型当前访问量过大")),
        Error::RateLimited(None)
    );
}

#[test]
fn a_missing_key_is_unauthorized() {
    let _s = Script::new().install();
    assert!(
        matches!(Zhipu.submit(image("a cat")), Err(Error::Unauthorized(m)) if m.contains("ZHIPU_API_KEY"))
    );
}

#[test]
fn chat_streams_deltas_usage_and_finish() {
    let s = script()
        .exchange(
            Expect::post(chat_url()).header("authorization", AUTH).json(json!({
                "model": "glm-4.6", "stream": true, "temperature": 0.5, "max_tokens": 64,
                "response_format": {"type": "json_object"},
                "messages": [{"role": "user", "content": "hello"}]
            })),
            Reply::sse([
                r#"{"id":"1","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}"#,
                r#"{"id":"1","choices":[{"index":0,"delta":{"role":"assistant","content":"lo!"}}]}"#,
                r#"{"id":"1","choices":[{"index":0,"finish_reason":"stop","delta":{"role":"assistant","content":""}}],"usage":{"prompt_tokens":8,"completion_tokens":2,"total_tokens":10}}"#,
                "[DONE]",
            ]),
        )
        .install();
    let mut request = ChatRequest::user("glm-4.6", "hello");
    request.params = json!({"temperature": 0.5, "max_tokens": 64, "ignored": true,
                            "response_format": {"type": "json_object"}});
    let mut stream = Zhipu.chat(request).unwrap();
    assert_eq!(
        collect_chat(stream.as_mut()).unwrap(),
        [
            ChatEvent::Delta("Hel".into()),
            ChatEvent::Delta("lo!".into()),
            ChatEvent::Usage {
                prompt: 8,
                completion: 2
            },
            ChatEvent::Finish("stop".into())
        ]
    );
    assert!(stream.next().unwrap().is_empty(), "the stream stays ended");
    s.finish();
}

#[test]
fn a_moderated_stream_finishes_with_content_filter() {
    let s = script()
        .exchange(
            Expect::post(chat_url()),
            Reply::sse([
                r#"{"choices":[{"index":0,"delta":{"content":"Sure"}}]}"#,
                r#"{"choices":[{"index":0,"finish_reason":"sensitive","delta":{"content":""}}]}"#,
            ]),
        )
        .install();
    let events = collect_chat(
        Zhipu
            .chat(ChatRequest::user("glm-4.5-flash", "x"))
            .unwrap()
            .as_mut(),
    )
    .unwrap();
    assert_eq!(
        events,
        [
            ChatEvent::Delta("Sure".into()),
            ChatEvent::Finish("content_filter".into())
        ]
    );
    s.finish();
}

#[test]
fn an_error_event_mid_stream_is_mapped() {
    let s = script()
        .exchange(
            Expect::post(chat_url()),
            Reply::sse([r#"{"error":{"code":"1301","message":"unsafe"}}"#]),
        )
        .install();
    let mut stream = Zhipu.chat(ChatRequest::user("glm-4.6", "x")).unwrap();
    assert!(matches!(stream.next(), Err(Error::ContentRejected(_))));
    s.finish();
}

#[test]
fn chat_errors_map_to_typed_errors() {
    assert!(matches!(
        chat_error(zhipu_error(401, "1000", "身份验证失败")),
        Error::Unauthorized(_)
    ));
    assert_eq!(
        chat_error(zhipu_error(429, "1303", "频率过高")),
        Error::RateLimited(None)
    );
    assert!(matches!(
        chat_error(zhipu_error(400, "1301", "unsafe")),
        Error::ContentRejected(_)
    ));
    assert!(matches!(
        chat_error(zhipu_error(400, "1211", "模型不存在")),
        Error::InvalidRequest(_)
    ));
    assert!(matches!(
        chat_error(Reply::text(502, "bad gateway")),
        Error::UpstreamUnavailable(_)
    ));
}

#[test]
fn unknown_models_and_capabilities_are_refused() {
    let _s = script().install();
    assert!(
        Zhipu
            .chat(ChatRequest::user("cogview-3-flash", "x"))
            .is_err()
    );
    assert!(matches!(
        Zhipu.submit(GenerationRequest::new("image.generate", "glm-4.6", "x")),
        Err(Error::InvalidRequest(_))
    ));
    assert!(Zhipu.poll("anything").is_err(), "nothing is ever pending");
}
