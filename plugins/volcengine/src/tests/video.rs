use super::*;
use easel_sdk::testing::Script;
use easel_sdk::{Error, GenerationRequest, Output};

#[test]
fn seedance_2_text_to_video_is_queued_then_runs_then_succeeds() {
    let script = Script::new()
        .secret("ARK_API_KEY", KEY)
        .exchange(
            ark(Expect::post, "/contents/generations/tasks").header("content-type", "application/json").json(json!({
                "model": "doubao-seedance-2-0-260128",
                "content": [{"type": "text", "text": "小猫在抓老鼠"}],
                "resolution": "720p",
                "duration": 5,
                "ratio": "adaptive"
            })),
            Reply::json(200, json!({"id": "cgt-20250331175019-68d9t"})),
        )
        .exchange(ark(Expect::get, "/contents/generations/tasks/cgt-20250331175019-68d9t"), task("cgt-20250331175019-68d9t", "queued", json!({})))
        .exchange(ark(Expect::get, "/contents/generations/tasks/cgt-20250331175019-68d9t"), task("cgt-20250331175019-68d9t", "running", json!({})))
        .exchange(
            ark(Expect::get, "/contents/generations/tasks/cgt-20250331175019-68d9t"),
            task("cgt-20250331175019-68d9t", "succeeded", json!({
                "content": {"video_url": "https://ark-content-generation.tos.example/v.mp4"},
                "usage": {"completion_tokens": 108900, "total_tokens": 108900},
                "resolution": "720p", "ratio": "16:9", "duration": 5
            })),
        )
        .install();
    let submission = Volcengine.submit(GenerationRequest::new("video.generate", "doubao-seedance-2-0-260128", "小猫在抓老鼠")).unwrap();
    assert_eq!(submission, Submission::pending("volcengine-task:v1:cgt-20250331175019-68d9t", 10_000));
    let handle = pending_handle(submission);
    assert_eq!(Volcengine.poll(&handle).unwrap(), PollOutcome::Running { progress: None, poll_after_ms: 10_000 });
    assert!(matches!(Volcengine.poll(&handle).unwrap(), PollOutcome::Running { .. }));
    match Volcengine.poll(&handle).unwrap() {
        PollOutcome::Finished(f) => {
            assert_eq!(f.outputs, [Output::Url {
                url: "https://ark-content-generation.tos.example/v.mp4".into(),
                content_type: Some("video/mp4".into())
            }]);
            assert_eq!(f.usage.unwrap()["completion_tokens"], 108900);
        }
        other => panic!("{other:?}"),
    }
    script.finish();
}

#[test]
fn the_last_frame_is_asked_for_and_returned_after_the_video() {
    let script = Script::new()
        .secret("ARK_API_KEY", KEY)
        .exchange(
            ark(Expect::post, "/contents/generations/tasks").json(json!({
                "model": "doubao-seedance-1-5-pro-251215",
                "content": [{"type": "text", "text": "一只猫"}],
                "resolution": "1080p",
                "duration": 12,
                "return_last_frame": true
            })),
            Reply::json(200, json!({"id": "cgt-7"})),
        )
        .exchange(
            ark(Expect::get, "/contents/generations/tasks/cgt-7"),
            task("cgt-7", "succeeded", json!({"content": {
                "video_url": "https://ark-content-generation.tos.example/v.mp4",
                "last_frame_url": "https://ark-content-generation.tos.example/last.png"
            }})),
        )
        .install();
    let request = GenerationRequest::new("video.generate", "doubao-seedance-1-5-pro-251215", "一只猫").param("return_last_frame", true);
    let handle = pending_handle(Volcengine.submit(request).unwrap());
    let PollOutcome::Finished(done) = Volcengine.poll(&handle).unwrap() else { panic!("expected finished") };
    assert_eq!(done.outputs, [
        Output::Url { url: "https://ark-content-generation.tos.example/v.mp4".into(), content_type: Some("video/mp4".into()) },
        Output::Url { url: "https://ark-content-generation.tos.example/last.png".into(), content_type: Some("image/png".into()) },
    ]);
    script.finish();
}

#[test]
fn frames_become_first_and_last_frame_items_with_data_urls_for_bytes() {
    let script = Script::new()
        .secret("ARK_API_KEY", KEY)
        .exchange(
            ark(Expect::post, "/contents/generations/tasks").json(json!({
                "model": "doubao-seedance-1-5-pro-251215",
                "content": [
                    {"type": "text", "text": "从图片1到图片2丝滑转换"},
                    {"type": "image_url", "image_url": {"url": "https://assets.example/1.jpg"}, "role": "first_frame"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}, "role": "last_frame"}
                ],
                "resolution": "480p",
                "duration": 5,
                "ratio": "16:9",
                "generate_audio": false
            })),
            Reply::json(200, json!({"id": "cgt-2"})),
        )
        .install();
    let request = GenerationRequest::new("video.generate", "doubao-seedance-1-5-pro-251215", "从图片1到图片2丝滑转换")
        .param("resolution", "480p")
        .param("duration", 5)
        .param("ratio", "16:9")
        .param("generate_audio", false)
        .input(input("image", None, "https://assets.example/1.jpg"))
        .input(InputMedia { kind: "image".into(), data: Some(b"\x89PNG\r\n".to_vec()), ..Default::default() });
    assert_eq!(pending_handle(Volcengine.submit(request).unwrap()), "volcengine-task:v1:cgt-2");
    script.finish();
}

#[test]
fn seedance_2_references_take_images_videos_and_audio_with_reference_mode_defaults() {
    let script = Script::new()
        .secret("ARK_API_KEY", KEY)
        .exchange(
            ark(Expect::post, "/contents/generations/tasks").json(json!({
                "model": "doubao-seedance-2-0-fast-260128",
                "content": [
                    {"type": "text", "text": "平滑过渡"},
                    {"type": "image_url", "image_url": {"url": "https://assets.example/1.jpg"}, "role": "reference_image"},
                    {"type": "image_url", "image_url": {"url": "https://assets.example/2.jpg"}, "role": "reference_image"},
                    {"type": "video_url", "video_url": {"url": "https://assets.example/v.mp4"}, "role": "reference_video"},
                    {"type": "audio_url", "audio_url": {"url": "https://assets.example/a.mp3"}, "role": "reference_audio"}
                ],
                "resolution": "1080p",
                "duration": 12,
                "ratio": "4:3"
            })),
            Reply::json(200, json!({"id": "cgt-3"})),
        )
        .install();
    let request = GenerationRequest::new("video.generate", "doubao-seedance-2-0-fast-260128", "平滑过渡")
        .param("ratio", "4:3")
        .input(input("image", Some("reference"), "https://assets.example/1.jpg"))
        .input(input("image", Some("reference"), "https://assets.example/2.jpg"))
        .input(input("video", Some("reference"), "https://assets.example/v.mp4"))
        .input(input("audio", Some("reference"), "https://assets.example/a.mp3"));
    pending_handle(Volcengine.submit(request).unwrap());
    script.finish();
}

#[test]
fn inputs_seedance_cannot_take_are_refused_before_any_request() {
    let _script = Script::new().secret("ARK_API_KEY", KEY).install();
    let video_ref = GenerationRequest::new("video.generate", "doubao-seedance-1-5-pro-251215", "x")
        .input(input("video", Some("reference"), "https://assets.example/v.mp4"));
    assert!(matches!(Volcengine.submit(video_ref), Err(Error::InvalidRequest(m)) if m.contains("Seedance 2.0")));
    let bytes_video = GenerationRequest::new("video.generate", "doubao-seedance-2-0-260128", "x")
        .input(InputMedia { kind: "video".into(), data: Some(vec![0; 8]), ..Default::default() });
    assert!(matches!(Volcengine.submit(bytes_video), Err(Error::InvalidRequest(m)) if m.contains("public URL")));
    let three = GenerationRequest::new("video.generate", "doubao-seedance-2-0-260128", "x")
        .input(input("image", None, "u1"))
        .input(input("image", None, "u2"))
        .input(input("image", None, "u3"));
    assert!(matches!(Volcengine.submit(three), Err(Error::InvalidRequest(_))));
}

#[test]
fn cancel_deletes_the_task_and_passes_on_a_refusal() {
    let script = Script::new()
        .secret("ARK_API_KEY", KEY)
        .exchange(ark(Expect::delete, "/contents/generations/tasks/cgt-9"), Reply::json(200, json!({})))
        .exchange(
            ark(Expect::delete, "/contents/generations/tasks/cgt-9"),
            ark_error(409, "InvalidAction.TaskRunning", "The task is running and cannot be cancelled."),
        )
        .install();
    Volcengine.cancel("volcengine-task:v1:cgt-9").unwrap();
    assert!(matches!(Volcengine.cancel("volcengine-task:v1:cgt-9"), Err(Error::InvalidRequest(m)) if m.contains("running")));
    assert!(matches!(Volcengine.cancel("dashscope-task:v1:x"), Err(Error::InvalidRequest(_))));
    script.finish();
}

#[test]
fn failed_cancelled_and_expired_tasks_fail_with_mapped_errors() {
    let path = "/contents/generations/tasks/cgt-f";
    let script = Script::new()
        .secret("ARK_API_KEY", KEY)
        .exchange(ark(Expect::get, path), task("cgt-f", "failed", json!({"error": {
            "code": "OutputVideoSensitiveContentDetected", "message": "The generated video may contain sensitive content."}})))
        .exchange(ark(Expect::get, path), task("cgt-f", "failed", json!({"error": {
            "code": "InvalidParameter", "message": "duration is out of range"}})))
        .exchange(ark(Expect::get, path), task("cgt-f", "failed", json!({"error": {
            "code": "InternalServiceError", "message": "retry later"}})))
        .exchange(ark(Expect::get, path), task("cgt-f", "cancelled", json!({})))
        .exchange(ark(Expect::get, path), task("cgt-f", "expired", json!({})))
        .install();
    let poll = || Volcengine.poll("volcengine-task:v1:cgt-f").unwrap();
    assert!(matches!(poll(), PollOutcome::Failed(Error::ContentRejected(m)) if m.contains("sensitive")));
    assert!(matches!(poll(), PollOutcome::Failed(Error::InvalidRequest(_))));
    assert!(matches!(poll(), PollOutcome::Failed(Error::UpstreamUnavailable(_))));
    assert!(matches!(poll(), PollOutcome::Failed(Error::Internal(_))));
    assert!(matches!(poll(), PollOutcome::Failed(Error::UpstreamUnavailable(m)) if m.contains("expired")));
    script.finish();
}

/// A task Ark calls a success but that has no video will never have one: it fails now,
/// naming why, instead of being polled as an outage for a day. A last frame alone is no video.
#[test]
fn a_success_without_a_video_fails_the_task() {
    let path = "/contents/generations/tasks/cgt-e";
    let script = Script::new()
        .secret("ARK_API_KEY", KEY)
        .exchange(ark(Expect::get, path), task("cgt-e", "succeeded", json!({"content": {}})))
        .exchange(
            ark(Expect::get, path),
            task("cgt-e", "succeeded", json!({"content": {"video_url": "", "last_frame_url": "https://ark.example/last.png"}})),
        )
        .install();
    for _ in 0..2 {
        let outcome = Volcengine.poll("volcengine-task:v1:cgt-e").unwrap();
        assert!(
            matches!(&outcome, PollOutcome::Failed(Error::UpstreamUnavailable(m))
                if m.contains("Ark reported that task cgt-e succeeded but returned no output") && m.contains("content.video_url")),
            "{outcome:?}"
        );
    }
    script.finish();
}
