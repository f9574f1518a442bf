//! Offline tests against MiniMax's documented wire format: method, URL, bearer key and
//! JSON bodies are checked by `testing::Script`.

use super::*;
use easel_sdk::serde_json::{Value, json};
use easel_sdk::testing::{Expect, Reply, Script};
use easel_sdk::{ChatEvent, InputMedia, Output, collect_chat};

const AUTH: &str = "Bearer mm-key";

fn script() -> Script {
    Script::new().secret(API_KEY_SECRET, "mm-key")
}

fn ok(mut body: Value) -> Reply {
    body["base_resp"] = json!({"status_code": 0, "status_msg": "success"});
    Reply::json(200, body)
}

fn base_error(code: i64, message: &str) -> Reply {
    Reply::json(200, json!({"base_resp": {"status_code": code, "status_msg": message}}))
}

fn video(prompt: &str) -> GenerationRequest {
    GenerationRequest::new("video.generate", "MiniMax-Hailuo-02", prompt)
}

fn handle_of(s: Submission) -> String {
    match s {
        Submission::Pending(p) => {
            assert_eq!(p.poll_after_ms, 15_000);
            p.handle
        }
        other => panic!("expected pending, got {other:?}"),
    }
}

fn video_error(reply: Reply) -> Error {
    let _s = script().exchange(Expect::post(format!("{API_BASE}/video_generation")), reply).install();
    MiniMax.submit(video("a fox")).unwrap_err()
}

#[test]
fn manifest_lists_video_speech_and_chat_models() {
    let m = MiniMax.manifest();
    assert_eq!(m.id, "minimax");
    assert_eq!(
        m.allowed_hosts,
        [
            "api.minimax.io",
            "api.minimaxi.com",
            "video-product.cdn.minimax.io",
            "public-cdn-video-data-algeng.oss-cn-wulanchabu.aliyuncs.com",
            "public-cdn-video-data-algeng-us.oss-us-east-1.aliyuncs.com"
        ]
    );
    assert_eq!(m.secrets, ["MINIMAX_API_KEY", "MINIMAX_REGION"]);
    assert!(!m.idempotent_submit);
    let kinds: Vec<_> = m.models.iter().map(|m| (m.key.as_str(), m.kind.as_str())).collect();
    assert_eq!(
        kinds,
        [("MiniMax-Hailuo-02", "video"), ("speech-02-hd", "audio"), ("speech-02-turbo", "audio"), ("MiniMax-M2", "chat"), ("MiniMax-Text-01", "chat")]
    );
    assert_eq!(m.models[0].params_schema["properties"]["duration"]["enum"], json!([6, 10]));
    assert_eq!(m.models[1].params_schema["properties"]["speed"]["default"], 1.0);
    assert_eq!(m.models[1].extra["voices"][0], json!({"id": "male-qn-qingse", "name": "青涩青年", "language": "zh"}));
    let chat = &m.models[3].params_schema["properties"];
    assert_eq!(chat["tools"]["type"], "array");
    assert_eq!(chat["tool_choice"]["anyOf"][0], json!({"enum": ["none", "auto"]}));
    assert_eq!(chat["tool_choice"]["anyOf"][1]["required"], json!(["type", "function"]));
    assert_eq!(chat["parallel_tool_calls"]["enum"], json!([true]));
}

#[test]
fn video_submit_sends_the_documented_body() {
    let last = InputMedia { kind: "image".into(), role: Some("last_frame".into()), data: vec![9].into(), content_type: Some("image/png".into()), ..Default::default() };
    let s = script()
        .exchange(
            Expect::post(format!("{API_BASE}/video_generation")).header("authorization", AUTH).json(json!({
                "model": "MiniMax-Hailuo-02", "prompt": "a fox", "duration": 6, "resolution": "768P", "prompt_optimizer": true
            })),
            ok(json!({"task_id": "106916112212032"})),
        )
        .exchange(
            Expect::post(format!("{API_BASE}/video_generation")).json(json!({
                "model": "MiniMax-Hailuo-02", "duration": 10, "resolution": "1080P", "prompt_optimizer": false,
                "first_frame_image": "https://cdn.example.com/f.png", "last_frame_image": "data:image/png;base64,CQ=="
            })),
            ok(json!({"task_id": "t2"})),
        )
        .install();
    assert_eq!(handle_of(MiniMax.submit(video("a fox")).unwrap()), "minimax:v1:106916112212032");
    let framed = video("")
        .param("duration", 10)
        .param("resolution", "1080P")
        .param("prompt_optimizer", false)
        .input(InputMedia { kind: "image".into(), role: Some("first_frame".into()), url: Some("https://cdn.example.com/f.png".into()), ..Default::default() })
        .input(last);
    handle_of(MiniMax.submit(framed).unwrap());
    assert!(matches!(MiniMax.submit(video("")), Err(Error::InvalidRequest(_))));
    s.finish();
}

#[test]
fn pending_then_success_fetches_the_download_url() {
    let query = format!("{API_BASE}/query/video_generation?task_id=t9");
    let s = script()
        .exchange(Expect::post(format!("{API_BASE}/video_generation")), ok(json!({"task_id": "t9"})))
        .exchange(Expect::get(&query).header("authorization", AUTH), ok(json!({"task_id": "t9", "status": "Queueing"})))
        .exchange(Expect::get(&query), ok(json!({"task_id": "t9", "status": "Processing"})))
        .exchange(Expect::get(&query), ok(json!({"task_id": "t9", "status": "Success", "file_id": "205258526306433", "video_width": 1366, "video_height": 768})))
        .exchange(
            Expect::get(format!("{API_BASE}/files/retrieve?file_id=205258526306433")).header("authorization", AUTH),
            ok(json!({"file": {"file_id": 205258526306433_u64, "filename": "output.mp4", "download_url": "https://public-cdn-video-data.oss.minimaxi.com/v.mp4"}})),
        )
        .install();
    let h = handle_of(MiniMax.submit(video("a fox")).unwrap());
    for _ in 0..2 {
        assert_eq!(MiniMax.poll(&h).unwrap(), PollOutcome::Running { progress: None, poll_after_ms: 15_000 });
    }
    let PollOutcome::Finished(done) = MiniMax.poll(&h).unwrap() else { panic!("expected finished") };
    assert_eq!(done.outputs, [Output::Url { url: "https://public-cdn-video-data.oss.minimaxi.com/v.mp4".into(), content_type: Some("video/mp4".into()) }]);
    assert_eq!(done.usage, Some(json!({"video_width": 1366, "video_height": 768})));
    s.finish();
}

#[test]
fn failed_video_tasks_carry_their_reason() {
    let query = format!("{API_BASE}/query/video_generation?task_id=t4");
    let s = script()
        .exchange(Expect::get(&query), Reply::json(200, json!({"status": "Fail", "base_resp": {"status_code": 1027, "status_msg": "output video sensitive"}})))
        .install();
    assert!(matches!(MiniMax.poll("minimax:v1:t4").unwrap(), PollOutcome::Failed(Error::ContentRejected(_))));
    for bad in ["minimax:v1:t4&x=1", "minimax:v1:", "minimax-us:v1:t4", "minimax-cn:t4", "minimax:v2:t4"] {
        assert!(matches!(MiniMax.poll(bad), Err(Error::InvalidRequest(_))), "{bad}");
    }
    s.finish();
}

/// A task MiniMax calls a success but that names no file, or whose file has no link, will
/// never have one: it fails now, naming why, instead of being polled as an outage for a
/// day. The file fetch itself failing is an outage, polled again.
#[test]
fn a_success_without_a_file_or_a_link_fails_the_task_but_a_failed_file_fetch_is_retried() {
    let query = format!("{API_BASE}/query/video_generation?task_id=t7");
    let retrieve = format!("{API_BASE}/files/retrieve?file_id=f7");
    let success = || ok(json!({"task_id": "t7", "status": "Success", "file_id": "f7"}));
    let s = script()
        .exchange(Expect::get(&query), ok(json!({"task_id": "t7", "status": "Success"})))
        .exchange(Expect::get(&query), ok(json!({"task_id": "t7", "status": "Success", "file_id": ""})))
        .exchange(Expect::get(&query), success())
        .exchange(Expect::get(&retrieve), ok(json!({"file": {"file_id": "f7", "filename": "output.mp4"}})))
        .exchange(Expect::get(&query), success())
        .exchange(Expect::get(&retrieve), Reply::text(503, "busy"))
        .exchange(Expect::get(&query), success())
        .exchange(Expect::get(&retrieve), Reply::fail(Error::upstream("timed out")))
        .install();
    let no_output = |missing: &str| {
        let outcome = MiniMax.poll("minimax:v1:t7").unwrap();
        let PollOutcome::Failed(Error::UpstreamUnavailable(m)) = &outcome else { panic!("expected failed, got {outcome:?}") };
        assert!(m.contains("task t7 succeeded but returned no output") && m.contains(missing), "{m}");
    };
    no_output("no file_id");
    no_output("no file_id");
    no_output("no file.download_url for its file f7");
    assert!(matches!(MiniMax.poll("minimax:v1:t7"), Err(Error::UpstreamUnavailable(_))));
    assert!(matches!(MiniMax.poll("minimax:v1:t7"), Err(Error::UpstreamUnavailable(m)) if m.contains("timed out")));
    s.finish();
}

#[test]
fn errors_map_to_typed_errors() {
    assert!(matches!(video_error(base_error(1004, "login fail")), Error::Unauthorized(_)));
    assert!(matches!(video_error(Reply::json(401, json!({}))), Error::Unauthorized(_)));
    assert_eq!(video_error(base_error(1002, "rate limit")), Error::RateLimited(None));
    assert!(matches!(video_error(base_error(1008, "insufficient balance")), Error::Unauthorized(m) if m.contains("balance")));
    assert_eq!(video_error(Reply::json(429, json!({})).header("Retry-After", "3")), Error::RateLimited(Some(3)));
    assert!(matches!(video_error(base_error(1026, "input new_sensitive")), Error::ContentRejected(_)));
    assert!(matches!(video_error(base_error(2013, "invalid params, duration")), Error::InvalidRequest(m) if m.contains("duration")));
    assert!(matches!(video_error(base_error(1013, "internal")), Error::UpstreamUnavailable(_)));
    assert!(matches!(video_error(Reply::text(503, "down")), Error::UpstreamUnavailable(_)));
    let _s = Script::new().install();
    assert!(matches!(MiniMax.submit(video("x")), Err(Error::Unauthorized(m)) if m.contains("MINIMAX_API_KEY")));
}

#[test]
fn every_documented_status_code_has_its_class() {
    for code in [1004, 2049, 2038, 1008] {
        assert!(matches!(errors::by_code(code, "m", None), Some(Error::Unauthorized(_))), "{code}");
    }
    for code in [1002, 1039, 1041, 2045, 2056] {
        assert_eq!(errors::by_code(code, "m", Some(2)), Some(Error::RateLimited(Some(2))), "{code}");
    }
    for code in [1026, 1027] {
        assert!(matches!(errors::by_code(code, "m", None), Some(Error::ContentRejected(_))), "{code}");
    }
    for code in [2013, 1042, 20132, 2042, 1043, 1044, 2037, 2039, 2048] {
        assert!(matches!(errors::by_code(code, "m", None), Some(Error::InvalidRequest(_))), "{code}");
    }
    for code in [1000, 1001, 1013, 1024, 1033, 9999] {
        assert!(matches!(errors::by_code(code, "m", None), Some(Error::UpstreamUnavailable(_))), "{code}");
    }
    assert_eq!(errors::by_code(0, "success", None), None);
}

#[test]
fn a_plan_usage_limit_is_rate_limited() {
    assert_eq!(video_error(base_error(2056, "usage limit exceeded")), Error::RateLimited(None));
    assert_eq!(video_error(base_error(2045, "rate growth limit")), Error::RateLimited(None));
}

#[test]
fn speech_decodes_hex_audio() {
    let s = script()
        .exchange(
            Expect::post(format!("{API_BASE}/t2a_v2")).header("authorization", AUTH).json(json!({
                "model": "speech-02-hd", "text": "你好", "stream": false,
                "voice_setting": {"voice_id": "female-shaonv", "speed": 1.5, "vol": 1.0, "pitch": 0},
                "audio_setting": {"sample_rate": 32000, "bitrate": 128000, "format": "mp3", "channel": 1}
            })),
            ok(json!({"data": {"audio": "494433ff", "status": 2}, "extra_info": {"audio_length": 900, "usage_characters": 2}})),
        )
        .install();
    let r = GenerationRequest::new("audio.speech", "speech-02-hd", "你好").param("voice", "female-shaonv").param("speed", 1.5);
    let Submission::Finished(done) = MiniMax.submit(r).unwrap() else { panic!("expected finished") };
    assert_eq!(done.outputs, [Output::bytes("audio/mpeg", vec![0x49, 0x44, 0x33, 0xff])]);
    assert_eq!(done.usage.unwrap()["usage_characters"], 2);
    s.finish();
}

#[test]
fn speech_errors_are_mapped() {
    let s = script()
        .exchange(Expect::post(format!("{API_BASE}/t2a_v2")), base_error(1042, "illegal characters"))
        .exchange(Expect::post(format!("{API_BASE}/t2a_v2")), base_error(20132, "invalid samples or voice_id"))
        .install();
    let r = GenerationRequest::new("audio.speech", "speech-02-turbo", "\u{0}");
    assert!(matches!(MiniMax.submit(r), Err(Error::InvalidRequest(_))));
    let r = GenerationRequest::new("audio.speech", "speech-02-turbo", "hi").param("voice", "female-shaonv");
    assert!(matches!(MiniMax.submit(r), Err(Error::InvalidRequest(m)) if m.contains("20132")));
    s.finish();
}

#[test]
fn chat_streams_deltas_usage_and_finish() {
    let s = script()
        .exchange(
            Expect::post(format!("{API_BASE}/text/chatcompletion_v2")).header("authorization", AUTH).json(json!({
                "model": "MiniMax-M2", "stream": true, "temperature": 0.7, "messages": [{"role": "user", "content": "hi"}]
            })),
            Reply::sse([
                r#"{"id":"a","choices":[{"index":0,"delta":{"content":"Hello","role":"assistant"}}],"object":"chat.completion.chunk"}"#,
                r#"{"id":"a","choices":[{"index":0,"delta":{"content":" there","role":"assistant"}}],"object":"chat.completion.chunk"}"#,
                r#"{"id":"a","choices":[{"finish_reason":"stop","index":0,"message":{"content":"Hello there","role":"assistant"}}],"usage":{"total_tokens":12,"prompt_tokens":9,"completion_tokens":3},"base_resp":{"status_code":0,"status_msg":""}}"#,
            ]),
        )
        .install();
    let mut r = ChatRequest::user("MiniMax-M2", "hi");
    r.params = json!({"temperature": 0.7});
    let events = collect_chat(MiniMax.chat(r).unwrap().as_mut()).unwrap();
    assert_eq!(
        events,
        [ChatEvent::Delta("Hello".into()), ChatEvent::Delta(" there".into()), ChatEvent::Usage { prompt: 9, completion: 3 }, ChatEvent::Finish("stop".into())]
    );
    s.finish();
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
}

#[test]
fn a_streamed_tool_call_is_read_piece_by_piece_and_the_tools_are_passed_on() {
    let s = script()
        .exchange(
            Expect::post(format!("{API_BASE}/text/chatcompletion_v2")).json(json!({
                "model": "MiniMax-M2", "stream": true, "messages": [{"role": "user", "content": "weather in Paris?"}],
                "tools": weather_tool(), "tool_choice": "auto"
            })),
            Reply::sse([
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_mm1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}"#,
                r#"{"choices":[{"finish_reason":"tool_calls","index":0,"message":{"role":"assistant","tool_calls":[{"id":"call_mm1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}}],"usage":{"prompt_tokens":20,"completion_tokens":9},"base_resp":{"status_code":0,"status_msg":""}}"#,
            ]),
        )
        .install();
    let mut r = ChatRequest::user("MiniMax-M2", "weather in Paris?");
    r.params = json!({"tools": weather_tool(), "tool_choice": "auto", "parallel_tool_calls": true});
    let events = collect_chat(MiniMax.chat(r).unwrap().as_mut()).unwrap();
    let call = |id: Option<&str>, name: Option<&str>, arguments: &str| ChatEvent::ToolCall {
        index: 0,
        id: id.map(Into::into),
        name: name.map(Into::into),
        arguments: arguments.into(),
    };
    // The last chunk's `message` repeats the call whole; it is not read a second time.
    assert_eq!(
        events,
        [
            call(Some("call_mm1"), Some("get_weather"), ""),
            call(None, None, r#"{"city":"#),
            call(None, None, r#""Paris"}"#),
            ChatEvent::Usage { prompt: 20, completion: 9 },
            ChatEvent::Finish("tool_calls".into())
        ]
    );
    s.finish();
}

#[test]
fn a_client_that_does_not_stream_gets_the_whole_answer_with_its_calls() {
    let s = script()
        .exchange(
            Expect::post(format!("{API_BASE}/text/chatcompletion_v2")).json(json!({
                "model": "MiniMax-Text-01", "stream": false, "messages": [{"role": "user", "content": "weather?"}],
                "tools": weather_tool()
            })),
            ok(json!({
                "choices": [{"finish_reason": "tool_calls", "index": 0, "message": {"role": "assistant", "content": "Checking.",
                    "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 4}
            })),
        )
        .exchange(Expect::post(format!("{API_BASE}/text/chatcompletion_v2")), base_error(1026, "input sensitive"))
        .install();
    let mut r = ChatRequest::user("MiniMax-Text-01", "weather?");
    r.params = json!({"stream": false, "tools": weather_tool()});
    let events = collect_chat(MiniMax.chat(r.clone()).unwrap().as_mut()).unwrap();
    assert_eq!(
        events,
        [
            ChatEvent::Delta("Checking.".into()),
            ChatEvent::ToolCall { index: 0, id: Some("call_a".into()), name: Some("get_weather".into()), arguments: "{}".into() },
            ChatEvent::Usage { prompt: 5, completion: 4 },
            ChatEvent::Finish("tool_calls".into())
        ]
    );
    // An error in a whole answer's `base_resp`, under status 200.
    assert!(matches!(MiniMax.chat(r).err(), Some(Error::ContentRejected(m)) if m.contains("1026")));
    s.finish();
}

#[test]
fn chat_errors_arrive_as_plain_json() {
    let s = script()
        .exchange(Expect::post(format!("{API_BASE}/text/chatcompletion_v2")), base_error(1039, "token limit"))
        .exchange(Expect::post(format!("{API_BASE}/text/chatcompletion_v2")), Reply::sse([r#"{"base_resp":{"status_code":1027,"status_msg":"output sensitive"}}"#]))
        .install();
    assert_eq!(MiniMax.chat(ChatRequest::user("MiniMax-M2", "x")).err(), Some(Error::RateLimited(None)));
    let mut stream = MiniMax.chat(ChatRequest::user("MiniMax-Text-01", "x")).unwrap();
    assert!(matches!(stream.next(), Err(Error::ContentRejected(_))));
    assert!(MiniMax.chat(ChatRequest::user("speech-02-hd", "x")).is_err());
    s.finish();
}

#[test]
fn cancel_is_not_offered_by_minimax_and_sends_nothing() {
    let s = script().install();
    assert!(matches!(MiniMax.cancel("minimax:v1:t1"), Err(Error::Internal(_))));
    assert!(s.requests().is_empty());
    s.finish();
}

#[test]
fn the_mainland_platform_serves_video_speech_and_chat_when_chosen() {
    let query = format!("{API_BASE_CN}/query/video_generation?task_id=cn1");
    let s = script()
        .secret(REGION_SECRET, "cn")
        .exchange(Expect::post(format!("{API_BASE_CN}/video_generation")).header("authorization", AUTH), ok(json!({"task_id": "cn1"})))
        .exchange(Expect::get(&query), ok(json!({"task_id": "cn1", "status": "Processing"})))
        .exchange(Expect::get(&query), ok(json!({"task_id": "cn1", "status": "Success", "file_id": "f1"})))
        .exchange(
            Expect::get(format!("{API_BASE_CN}/files/retrieve?file_id=f1")),
            ok(json!({"file": {"file_id": "f1", "download_url": "https://cdn.minimaxi.com/v.mp4"}})),
        )
        .exchange(Expect::post(format!("{API_BASE_CN}/t2a_v2")), ok(json!({"data": {"audio": "4944", "status": 2}})))
        .exchange(
            Expect::post(format!("{API_BASE_CN}/text/chatcompletion_v2")),
            Reply::sse([r#"{"choices":[{"finish_reason":"stop","index":0,"delta":{"content":"好"}}],"base_resp":{"status_code":0,"status_msg":""}}"#]),
        )
        .install();
    let handle = handle_of(MiniMax.submit(video("a fox")).unwrap());
    assert_eq!(handle, "minimax-cn:v1:cn1");
    assert!(matches!(MiniMax.poll(&handle).unwrap(), PollOutcome::Running { .. }));
    assert!(matches!(MiniMax.poll(&handle).unwrap(), PollOutcome::Finished(_)));
    let speech = GenerationRequest::new("audio.speech", "speech-02-hd", "你好");
    assert!(matches!(MiniMax.submit(speech).unwrap(), Submission::Finished(_)));
    let events = collect_chat(MiniMax.chat(ChatRequest::user("MiniMax-M2", "hi")).unwrap().as_mut()).unwrap();
    assert_eq!(events[0], ChatEvent::Delta("好".into()));
    s.finish();
}

#[test]
fn a_handle_keeps_its_platform_when_the_setting_changes() {
    let s = script()
        .secret(REGION_SECRET, "cn")
        .exchange(Expect::get(format!("{API_BASE}/query/video_generation?task_id=g1")), ok(json!({"status": "Queueing"})))
        .install();
    assert!(matches!(MiniMax.poll("minimax:v1:g1").unwrap(), PollOutcome::Running { .. }));
    s.finish();
    let s = script()
        .exchange(Expect::get(format!("{API_BASE_CN}/query/video_generation?task_id=c1")), ok(json!({"status": "Preparing"})))
        .install();
    assert!(matches!(MiniMax.poll("minimax-cn:v1:c1").unwrap(), PollOutcome::Running { .. }));
    s.finish();
}

#[test]
fn an_unknown_region_is_a_configuration_error_before_any_request() {
    let _s = script().secret(REGION_SECRET, "china").install();
    assert!(matches!(MiniMax.submit(video("a fox")), Err(Error::Internal(m)) if m.contains("MINIMAX_REGION")));
    let speech = GenerationRequest::new("audio.speech", "speech-02-hd", "你好");
    assert!(matches!(MiniMax.submit(speech), Err(Error::Internal(_))));
    assert!(matches!(MiniMax.chat(ChatRequest::user("MiniMax-M2", "hi")).err(), Some(Error::Internal(_))));
}
