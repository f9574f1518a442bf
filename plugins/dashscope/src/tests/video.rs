use super::*;
use easel_sdk::testing::Script;
use easel_sdk::{Error, GenerationRequest, Output};

const SYNTHESIS: &str = "/services/aigc/video-generation/video-synthesis";

fn video_done(task: &str, url: &str) -> Reply {
    task_answer(
        json!({"task_id": task, "task_status": "SUCCEEDED", "video_url": url}),
        json!({"video_duration": 5, "video_ratio": "1280*720", "video_count": 1}),
    )
}

#[test]
fn wan_t2v_sends_seed_defaults_and_finishes_with_the_video_url() {
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .exchange(
            async_post(SYNTHESIS).json(json!({
                "model": "wan2.6-t2v",
                "input": {"prompt": "a fox in the snow"},
                "parameters": {"size": "1920*1080", "duration": 15, "shot_type": "multi"}
            })),
            created("t-v"),
        )
        .exchange(get("/tasks/t-v"), task_status("t-v", "RUNNING"))
        .exchange(get("/tasks/t-v"), video_done("t-v", "https://dashscope-result.oss.example/v.mp4"))
        .install();
    let request = GenerationRequest::new("video.generate", "wan2.6-t2v", "a fox in the snow").param("shot_type", "multi");
    let (handle, after) = pending(DashScope.submit(request).unwrap());
    assert_eq!((handle.as_str(), after), ("dashscope-task:v1:cn:video:t-v", 15_000));
    assert_eq!(poll(&handle), PollOutcome::Running { progress: None, poll_after_ms: 15_000 });
    let done = finished(poll(&handle));
    assert_eq!(
        done.outputs,
        [Output::Url { url: "https://dashscope-result.oss.example/v.mp4".into(), content_type: Some("video/mp4".into()) }]
    );
    assert_eq!(done.usage.unwrap()["video_duration"], 5);
    script.finish();
}

#[test]
fn pixel_wan_video_uses_i2v_with_a_first_frame_and_t2v_without() {
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .exchange(
            async_post(SYNTHESIS).json(json!({
                "model": "wan2.6-i2v",
                "input": {"prompt": "the cat plays", "negative_prompt": "static",
                          "img_url": "https://assets.example/first.jpg"},
                "parameters": {"resolution": "1080P", "duration": 10}
            })),
            created("t-i2v"),
        )
        .exchange(
            async_post(SYNTHESIS).json(json!({
                "model": "wan2.6-t2v",
                "input": {"prompt": "the cat plays"},
                "parameters": {"size": "1280*720", "duration": 5}
            })),
            created("t-t2v"),
        )
        .install();
    let with_frame = GenerationRequest::new("video.generate", "wan2.6-video", "the cat plays")
        .param("negativePrompt", "static")
        .param("duration", "10s")
        .param("resolution", "1080p")
        .input(url_input("image", Some("first_frame"), "https://assets.example/first.jpg"));
    assert_eq!(pending(DashScope.submit(with_frame).unwrap()).0, "dashscope-task:v1:cn:video:t-i2v");
    let plain = GenerationRequest::new("video.generate", "wan2.6-video", "the cat plays");
    assert_eq!(pending(DashScope.submit(plain).unwrap()).0, "dashscope-task:v1:cn:video:t-t2v");
    script.finish();
}

#[test]
fn wan_r2v_sends_reference_urls_and_needs_public_urls() {
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .exchange(
            async_post(SYNTHESIS).json(json!({
                "model": "wan2.6-r2v",
                "input": {"prompt": "character1 waves at character2",
                          "reference_urls": ["https://assets.example/a.png", "https://assets.example/b.mp4"]},
                "parameters": {"size": "1280*720", "duration": 5}
            })),
            created("t-r2v"),
        )
        .install();
    let request = GenerationRequest::new("video.generate", "wan2.6-r2v", "character1 waves at character2")
        .param("size", "1280*720")
        .param("duration", 5)
        .input(url_input("image", Some("reference"), "https://assets.example/a.png"))
        .input(url_input("video", Some("reference"), "https://assets.example/b.mp4"));
    pending(DashScope.submit(request).unwrap());
    let bytes_only = GenerationRequest::new("video.generate", "wan2.6-r2v", "x").input(InputMedia {
        kind: "image".into(),
        data: Some(vec![1, 2, 3]),
        ..Default::default()
    });
    assert!(matches!(DashScope.submit(bytes_only), Err(Error::InvalidRequest(m)) if m.contains("public URL")));
    let none = GenerationRequest::new("video.generate", "wan2.6-r2v", "x");
    assert!(matches!(DashScope.submit(none), Err(Error::InvalidRequest(_))));
    script.finish();
}

#[test]
fn happyhorse_models_send_media_by_type_with_their_seed_defaults() {
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .exchange(
            async_post(SYNTHESIS).json(json!({
                "model": "happyhorse-1.0-t2v",
                "input": {"prompt": "pumpkins fly"},
                "parameters": {"resolution": "720P", "duration": 4, "ratio": "4:3"}
            })),
            created("t-h1"),
        )
        .exchange(
            async_post(SYNTHESIS).json(json!({
                "model": "happyhorse-1.0-i2v",
                "input": {"prompt": "it moves", "media": [{"type": "first_frame", "url": "https://assets.example/f.jpg"}]},
                "parameters": {"resolution": "720P", "duration": 5}
            })),
            created("t-h2"),
        )
        .exchange(
            async_post(SYNTHESIS).json(json!({
                "model": "happyhorse-1.0-r2v",
                "input": {"prompt": "[Image 1] meets [Image 2]", "media": [
                    {"type": "reference_image", "url": "https://assets.example/1.jpg"},
                    {"type": "reference_image", "url": "data:image/jpeg;base64,/9j/"}
                ]},
                "parameters": {"resolution": "1080P", "duration": 15}
            })),
            created("t-h3"),
        )
        .install();
    let t2v = GenerationRequest::new("video.generate", "happyhorse-1.0-t2v", "pumpkins fly")
        .param("ratio", "4:3")
        .param("duration", 4);
    pending(DashScope.submit(t2v).unwrap());
    let i2v = GenerationRequest::new("video.generate", "happyhorse-1.0-i2v", "it moves")
        .input(url_input("image", None, "https://assets.example/f.jpg"));
    pending(DashScope.submit(i2v).unwrap());
    let r2v = GenerationRequest::new("video.generate", "happyhorse-1.0-r2v", "[Image 1] meets [Image 2]")
        .input(url_input("image", Some("reference"), "https://assets.example/1.jpg"))
        .input(InputMedia { kind: "image".into(), data: Some(vec![0xff, 0xd8, 0xff]), ..Default::default() });
    pending(DashScope.submit(r2v).unwrap());
    let missing = GenerationRequest::new("video.generate", "happyhorse-1.0-i2v", "x");
    assert!(matches!(DashScope.submit(missing), Err(Error::InvalidRequest(m)) if m.contains("first_frame")));
    script.finish();
}

#[test]
fn cancel_posts_to_the_task_cancel_endpoint() {
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .exchange(post("/tasks/t-v/cancel"), Reply::json(200, json!({"request_id": "r"})))
        .exchange(
            post("/tasks/t-v/cancel"),
            Reply::json(400, json!({"request_id": "r", "code": "UnsupportedOperation",
                                   "message": "Failed to cancel the task, please confirm if the task is in PENDING status."})),
        )
        .install();
    DashScope.cancel("dashscope-task:v1:cn:video:t-v").unwrap();
    let e = DashScope.cancel("dashscope-task:v1:cn:video:t-v").unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(m) if m.contains("PENDING")));
    assert!(matches!(DashScope.cancel("kling:v1:x"), Err(Error::InvalidRequest(_))));
    script.finish();
}

#[test]
fn cancelled_and_unknown_tasks_fail() {
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .exchange(get("/tasks/t-c"), task_status("t-c", "CANCELED"))
        .exchange(get("/tasks/t-c"), task_status("t-c", "UNKNOWN"))
        .install();
    assert!(matches!(poll("dashscope-task:v1:cn:video:t-c"), PollOutcome::Failed(Error::Internal(_))));
    assert!(matches!(poll("dashscope-task:v1:cn:video:t-c"), PollOutcome::Failed(Error::UpstreamUnavailable(_))));
    script.finish();
}

/// A task DashScope calls `SUCCEEDED` but that has no image or video will never have one: it
/// fails now, saying so and naming the task, not as an unavailable vendor.
#[test]
fn a_success_without_images_or_a_video_fails_the_task_naming_why() {
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .exchange(get("/tasks/t-e"), task_status("t-e", "SUCCEEDED"))
        .exchange(get("/tasks/t-e"), task_answer(json!({"task_id": "t-e", "task_status": "SUCCEEDED", "results": []}), json!({})))
        .exchange(get("/tasks/t-e"), task_answer(json!({"task_id": "t-e", "task_status": "SUCCEEDED", "video_url": ""}), json!({})))
        .install();
    for (handle, missing) in [
        ("dashscope-task:v1:cn:video:t-e", "output.video_url"),
        ("dashscope-task:v1:cn:image:t-e", "output.results[].url"),
        ("dashscope-task:v1:cn:video:t-e", "output.video_url"),
    ] {
        let outcome = poll(handle);
        assert!(
            matches!(&outcome, PollOutcome::Failed(Error::UpstreamUnavailable(m))
                if m.contains("DashScope reported that task t-e succeeded but returned no output") && m.contains(missing)),
            "{outcome:?}"
        );
    }
    script.finish();
}
