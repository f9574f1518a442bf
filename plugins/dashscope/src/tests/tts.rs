use super::*;
use easel_sdk::testing::Script;
use easel_sdk::{Error, GenerationRequest, Output};

#[test]
fn speech_is_synthesized_synchronously_and_returns_the_audio_url() {
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .exchange(
            post("/services/aigc/multimodal-generation/generation").json(json!({
                "model": "qwen3-tts-flash",
                "input": {"text": "你好，欢迎", "voice": "Ethan", "language_type": "Chinese"}
            })),
            Reply::json(200, json!({
                "output": {"finish_reason": "stop", "audio": {"url": "https://dashscope-result.oss.example/a.wav",
                           "id": "audio_1", "expires_at": 1758000000}},
                "usage": {"characters": 5},
                "request_id": "r"
            })),
        )
        .exchange(
            post("/services/aigc/multimodal-generation/generation")
                .json(json!({"model": "qwen3-tts-flash", "input": {"text": "x", "voice": "Cherry", "language_type": "Auto"}})),
            Reply::json(400, json!({"code": "InvalidParameter", "message": "Voice not found"})),
        )
        .install();
    let request = GenerationRequest::new("audio.speech", "qwen3-tts-flash", "你好，欢迎")
        .param("voice", "Ethan")
        .param("language_type", "Chinese");
    match DashScope.submit(request).unwrap() {
        Submission::Finished(f) => {
            assert_eq!(f.outputs, [Output::Url {
                url: "https://dashscope-result.oss.example/a.wav".into(),
                content_type: Some("audio/wav".into())
            }]);
            assert_eq!(f.usage, Some(json!({"characters": 5})));
        }
        other => panic!("{other:?}"),
    }
    let e = DashScope.submit(GenerationRequest::new("audio.speech", "qwen3-tts-flash", "x")).unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(m) if m.contains("Voice not found")));
    script.finish();
}
