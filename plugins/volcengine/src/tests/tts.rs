use super::*;
use easel_sdk::testing::Script;
use easel_sdk::{Error, GenerationRequest, Output};

const TTS: &str = "https://openspeech.bytedance.com/api/v1/tts";

fn tts_script(reply: Reply) -> easel_sdk::testing::ScriptGuard {
    Script::new()
        .secret("VOLC_TTS_APP_ID", "app-123")
        .secret("VOLC_TTS_ACCESS_TOKEN", "tok-456")
        .exchange(Expect::post(TTS).header("authorization", "Bearer;tok-456").header("content-type", "application/json"), reply)
        .install()
}

#[test]
fn doubao_tts_sends_app_voice_and_text_and_returns_the_decoded_audio() {
    let script = tts_script(Reply::json(200, json!({
        "reqid": "r", "code": 3000, "operation": "query", "message": "Success", "sequence": -1,
        "data": "SUQzBAAAAAAA", "addition": {"duration": "1960"}
    })));
    let request = GenerationRequest::new("audio.speech", "doubao-tts", "Hello, welcome to Pixel AI!")
        .param("voice", "zh_female_qingxin")
        .param("speed", 1.2);
    let done = match Volcengine.submit(request).unwrap() {
        Submission::Finished(f) => f,
        other => panic!("{other:?}"),
    };
    assert_eq!(done.outputs, [Output::bytes("audio/mpeg", b"ID3\x04\0\0\0\0\0".to_vec())]);
    assert_eq!(done.usage.unwrap()["duration_ms"], 1960);
    let sent: Value = easel_sdk::serde_json::from_slice(script.requests()[0].body_bytes()).unwrap();
    assert_eq!(sent["app"], json!({"appid": "app-123", "token": "access_token", "cluster": "volcano_tts"}));
    assert_eq!(
        sent["audio"],
        json!({"voice_type": "zh_female_qingxinnvsheng_mars_bigtts", "encoding": "mp3", "speed_ratio": 1.2})
    );
    assert_eq!(sent["request"]["text"], "Hello, welcome to Pixel AI!");
    assert_eq!(sent["request"]["operation"], "query");
    assert_eq!(sent["request"]["text_type"], "plain");
    assert!(sent["request"]["reqid"].as_str().unwrap().starts_with("easel-"));
    script.finish();
}

#[test]
fn doubao_tts_codes_map_onto_errors() {
    let cases = [
        (Reply::json(401, json!({"code": 3001, "message": "invalid auth token"})), "unauthorized"),
        (Reply::json(200, json!({"code": 3003, "message": "concurrency exceeded"})), "rate"),
        (Reply::json(400, json!({"code": 3050, "message": "voice_type not exists"})), "invalid"),
        (Reply::json(200, json!({"code": 3010, "message": "text too long"})), "invalid"),
        (Reply::json(500, json!({"code": 3031, "message": "processing error"})), "upstream"),
        (Reply::json(200, json!({"code": 3005, "message": "backend busy"})), "upstream"),
    ];
    for (reply, kind) in cases {
        let script = tts_script(reply);
        let e = Volcengine.submit(GenerationRequest::new("audio.speech", "doubao-tts", "x")).unwrap_err();
        let ok = match kind {
            "unauthorized" => matches!(e, Error::Unauthorized(_)),
            "rate" => e == Error::RateLimited(None),
            "invalid" => matches!(e, Error::InvalidRequest(_)),
            _ => matches!(e, Error::UpstreamUnavailable(_)),
        };
        assert!(ok, "{kind}: {e:?}");
        script.finish();
    }
}

#[test]
fn doubao_tts_needs_both_credentials() {
    let _s = Script::new().secret("VOLC_TTS_APP_ID", "app-123").install();
    let e = Volcengine.submit(GenerationRequest::new("audio.speech", "doubao-tts", "x")).unwrap_err();
    assert!(matches!(e, Error::Unauthorized(m) if m.contains("VOLC_TTS_ACCESS_TOKEN")));
}
