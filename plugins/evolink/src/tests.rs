//! Offline tests against EvoLink's documented wire format.

use super::*;
use easel_sdk::InputMedia;
use easel_sdk::testing::{Expect, Reply, Script};

fn script() -> Script {
    Script::new().secret(API_KEY_SECRET, "ev-key")
}

fn image(url: &str) -> InputMedia {
    InputMedia { kind: "image".into(), url: Some(url.into()), ..Default::default() }
}

fn task(id: &str) -> Reply {
    Reply::json(200, json!({"id": id, "object": "image.generation.task", "status": "pending", "progress": 0}))
}

fn submit_error(reply: Reply) -> Error {
    let _s = script().exchange(Expect::post(format!("{API_BASE}/images/generations")), reply).install();
    EvoLink.submit(GenerationRequest::new("image.generate", GPT_IMAGE_2, "a cat")).unwrap_err()
}

#[test]
fn manifest_declares_quality_and_seed_001_video_settings() {
    let m = EvoLink.manifest();
    assert_eq!(m.id, "evolink");
    assert_eq!(m.allowed_hosts, ["api.evolink.ai", "files-api.evolink.ai", "files.evolink.ai"]);
    assert_eq!(m.secrets, ["EVOLINK_API_KEY"]);
    assert_eq!(m.models[0].capabilities, ["image.generate", "image.inpaint"]);
    assert_eq!(m.models[0].params_schema["properties"]["quality"]["enum"], json!(["low", "medium", "high"]));
    assert_eq!(m.models[0].params_schema["properties"]["quality"]["default"], "medium");
    let keys: Vec<&str> = m.models.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["gpt-image-2", "seedance-2.0", "seedance-2.0-fast"]);
    for video in &m.models[1..] {
        assert_eq!(video.capabilities, ["video.generate"]);
        let p = &video.params_schema["properties"];
        assert_eq!(p["ratio"]["enum"], json!(["16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive"]));
        assert_eq!((p["duration"]["minimum"].as_u64(), p["duration"]["maximum"].as_u64(), p["duration"]["default"].as_u64()), (Some(4), Some(15), Some(5)));
        assert_eq!(p["resolution"]["enum"], json!(["480p", "720p", "1080p"]));
    }
    // No model offers image.upscale: EvoLink documents no image upscaling model.
    assert!(m.models.iter().all(|m| !m.capabilities.iter().any(|c| c == "image.upscale")));
}

/// A task EvoLink calls completed without results ends at once, failed, rather than being
/// polled as if EvoLink were down until the pending timeout.
#[test]
fn a_success_without_results_fails_the_task() {
    let s = script()
        .exchange(Expect::get(format!("{API_BASE}/tasks/t-9")), Reply::json(200, json!({"status": "completed", "results": []})))
        .exchange(Expect::get(format!("{API_BASE}/tasks/t-9")), Reply::json(200, json!({"status": "completed", "results": [""]})))
        .install();
    for _ in 0..2 {
        let outcome = EvoLink.poll("evolink:v1:t-9").unwrap();
        assert!(
            matches!(&outcome, PollOutcome::Failed(Error::UpstreamUnavailable(m))
                if m.contains("EvoLink reported that task t-9 succeeded but returned no output") && m.contains("results")),
            "{outcome:?}"
        );
    }
    s.finish();
}

#[test]
fn generate_then_poll_to_results() {
    let s = script()
        .exchange(
            Expect::post(format!("{API_BASE}/images/generations")).header("authorization", "Bearer ev-key").json(json!({
                "model": "gpt-image-2", "prompt": "poster", "quality": "high", "size": "9:16", "n": 1,
                "image_urls": ["https://example.com/ref.png"]
            })),
            task("task-unified-1-abc"),
        )
        .exchange(Expect::get(format!("{API_BASE}/tasks/task-unified-1-abc")).header("authorization", "Bearer ev-key"), Reply::json(200, json!({"status": "processing", "progress": 50})))
        .exchange(Expect::get(format!("{API_BASE}/tasks/task-unified-1-abc")), Reply::json(200, json!({"status": "completed", "progress": 100, "results": ["https://files.evolink.ai/1.png"]})))
        .install();
    let r = GenerationRequest::new("image.generate", GPT_IMAGE_2, "poster").param("quality", "high").param("size", "9:16").input(image("https://example.com/ref.png"));
    let Submission::Pending(p) = EvoLink.submit(r).unwrap() else { panic!("expected pending") };
    assert_eq!(p.handle, "evolink:v1:task-unified-1-abc");
    assert_eq!(EvoLink.poll(&p.handle).unwrap(), PollOutcome::Running { progress: Some(0.5), poll_after_ms: 5_000 });
    let PollOutcome::Finished(done) = EvoLink.poll(&p.handle).unwrap() else { panic!("expected finished") };
    assert_eq!(done.outputs, [Output::Url { url: "https://files.evolink.ai/1.png".into(), content_type: Some("image/png".into()) }]);
    s.finish();
}

#[test]
fn inpaint_sends_the_original_and_the_mask() {
    let s = script()
        .exchange(
            Expect::post(format!("{API_BASE}/images/generations")).json(json!({
                "model": "gpt-image-2", "prompt": "新品上市", "quality": "medium", "size": "auto", "n": 1,
                "image_urls": ["https://example.com/original.png"], "mask_url": "https://example.com/mask.png"
            })),
            task("t2"),
        )
        .install();
    let r = GenerationRequest::new("image.inpaint", GPT_IMAGE_2, "新品上市").input(image("https://example.com/original.png")).input(image("https://example.com/mask.png"));
    assert!(matches!(EvoLink.submit(r).unwrap(), Submission::Pending(_)));
    s.finish();
}

#[test]
fn errors_map_to_typed_errors() {
    let e = |status: u16, code: &str, message: &str| Reply::json(status, json!({"error": {"code": code, "message": message, "type": "invalid_request_error"}}));
    assert!(matches!(submit_error(e(401, "unauthorized", "Invalid API key")), Error::Unauthorized(_)));
    // The account's balance ran out: no wait makes it pass.
    let out_of_credit = submit_error(e(402, "insufficient_quota", "Insufficient balance"));
    assert!(matches!(out_of_credit, Error::Unauthorized(m) if m.contains("Insufficient balance")));
    assert_eq!(submit_error(e(429, "rate_limit_exceeded", "slow down").header("Retry-After", "9")), Error::RateLimited(Some(9)));
    assert!(matches!(submit_error(e(400, "content_policy_violation", "prompt rejected")), Error::ContentRejected(_)));
    assert!(matches!(submit_error(e(400, "invalid_parameter", "size is invalid")), Error::InvalidRequest(_)));
    assert!(matches!(submit_error(e(503, "service_unavailable", "busy")), Error::UpstreamUnavailable(_)));
}

#[test]
fn failed_image_tasks_and_cancel() {
    let s = script()
        .exchange(Expect::get(format!("{API_BASE}/tasks/t3")), Reply::json(200, json!({"status": "failed", "error": {"code": "content_policy_violation", "message": "unsafe"}})))
        .install();
    assert!(matches!(EvoLink.poll("evolink:v1:t3").unwrap(), PollOutcome::Failed(Error::ContentRejected(_))));
    assert!(matches!(EvoLink.cancel("evolink:v1:t3"), Err(Error::Internal(_))));
    s.finish();
}

// ---- inputs given as bytes: EvoLink's base64 file upload ----

const UPLOAD: &str = "https://files-api.evolink.ai/api/v1/files/upload/base64";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";

fn bytes(kind: &str, role: Option<&str>, data: &[u8]) -> InputMedia {
    InputMedia { kind: kind.into(), role: role.map(str::to_string), data: Some(data.to_vec()), ..Default::default() }
}

fn uploaded(url: &str) -> Reply {
    Reply::json(200, json!({"success": true, "code": 200, "msg": "ok", "data": {"file_id": "file_1", "file_url": url, "expires_at": "2026-11-03T00:00:00+08:00"}}))
}

#[test]
fn bytes_only_images_are_uploaded_as_data_urls_then_referenced() {
    let s = script()
        .exchange(
            Expect::post(UPLOAD).header("authorization", "Bearer ev-key").json(json!({"base64_data": "data:image/png;base64,iVBORw0KGgo="})),
            uploaded("https://files.evolink.ai/u/original.png"),
        )
        .exchange(
            Expect::post(UPLOAD).json(json!({"base64_data": "data:image/png;base64,iVBORw0KGgo="})),
            uploaded("https://files.evolink.ai/u/mask.png"),
        )
        .exchange(
            Expect::post(format!("{API_BASE}/images/generations")).json(json!({
                "model": "gpt-image-2", "prompt": "新品上市", "quality": "low", "size": "auto", "n": 1,
                "image_urls": ["https://files.evolink.ai/u/original.png"], "mask_url": "https://files.evolink.ai/u/mask.png"
            })),
            task("t-bytes"),
        )
        .install();
    let r = GenerationRequest::new("image.inpaint", GPT_IMAGE_2, "新品上市").param("quality", "low").input(bytes("image", None, PNG)).input(bytes("mask", None, PNG));
    assert!(matches!(EvoLink.submit(r).unwrap(), Submission::Pending(p) if p.handle == "evolink:v1:t-bytes"));
    s.finish();
}

#[test]
fn upload_refusals_are_typed_and_nothing_else_is_sent() {
    let _s = script()
        .exchange(Expect::post(UPLOAD), Reply::json(401, json!({"error": {"code": "unauthorized", "message": "Invalid API key", "type": "authentication_error"}})))
        .install();
    let r = GenerationRequest::new("image.generate", GPT_IMAGE_2, "x").input(bytes("image", None, PNG));
    assert!(matches!(EvoLink.submit(r), Err(Error::Unauthorized(_))));
    let _s = script().exchange(Expect::post(UPLOAD), Reply::json(200, json!({"success": false, "code": 400, "msg": "unsupported file type"}))).install();
    let r = GenerationRequest::new("image.generate", GPT_IMAGE_2, "x").input(bytes("image", None, PNG));
    assert!(matches!(EvoLink.submit(r), Err(Error::InvalidRequest(m)) if m.contains("unsupported file type")));
    // Video and audio bytes cannot be uploaded (the file service takes images): refused
    // before any request.
    let s = script().install();
    let r = GenerationRequest::new("video.generate", SEEDANCE_2, "x").input(image("https://e.com/a.png")).input(bytes("video", None, b"\0\0\0\x18ftypmp42"));
    assert!(matches!(EvoLink.submit(r), Err(Error::InvalidRequest(m)) if m.contains("video_urls") && m.contains("public URL")));
    assert_eq!(s.requests().len(), 0);
}

// ---- video.generate: Seedance 2.0 ----

fn video_task(id: &str) -> Reply {
    Reply::json(200, json!({"id": id, "object": "video.generation.task", "status": "pending", "progress": 0,
                            "task_info": {"can_cancel": true, "estimated_time": 165}, "type": "video"}))
}

fn framed(url: &str, role: &str) -> InputMedia {
    InputMedia { role: Some(role.into()), ..image(url) }
}

#[test]
fn text_to_video_sends_seed_001_settings_and_polls_to_the_video() {
    let s = script()
        .exchange(
            Expect::post(format!("{API_BASE}/videos/generations")).header("authorization", "Bearer ev-key").json(json!({
                "model": "seedance-2.0-text-to-video", "prompt": "品牌短视频", "duration": 5, "quality": "720p",
                "aspect_ratio": "9:16", "generate_audio": true
            })),
            video_task("task-unified-1774857405-v1"),
        )
        .exchange(Expect::get(format!("{API_BASE}/tasks/task-unified-1774857405-v1")).header("authorization", "Bearer ev-key"), Reply::json(200, json!({"status": "pending", "progress": 0, "type": "video"})))
        .exchange(Expect::get(format!("{API_BASE}/tasks/task-unified-1774857405-v1")), Reply::json(200, json!({"status": "processing", "progress": 65, "type": "video"})))
        .exchange(
            Expect::get(format!("{API_BASE}/tasks/task-unified-1774857405-v1")),
            Reply::json(200, json!({"status": "completed", "progress": 100, "type": "video", "results": ["https://files.evolink.ai/v/1.mp4"], "task_info": {"can_cancel": false}})),
        )
        .install();
    let r = GenerationRequest::new("video.generate", SEEDANCE_2, "品牌短视频").param("ratio", "9:16").param("duration", 5).param("resolution", "720p");
    let Submission::Pending(p) = EvoLink.submit(r).unwrap() else { panic!("expected pending") };
    assert_eq!((p.handle.as_str(), p.poll_after_ms), ("evolink:v1:video:task-unified-1774857405-v1", 10_000));
    assert_eq!(EvoLink.poll(&p.handle).unwrap(), PollOutcome::Running { progress: Some(0.0), poll_after_ms: 10_000 });
    assert_eq!(EvoLink.poll(&p.handle).unwrap(), PollOutcome::Running { progress: Some(0.65), poll_after_ms: 10_000 });
    let PollOutcome::Finished(done) = EvoLink.poll(&p.handle).unwrap() else { panic!("expected finished") };
    assert_eq!(done.outputs, [Output::Url { url: "https://files.evolink.ai/v/1.mp4".into(), content_type: Some("video/mp4".into()) }]);
    s.finish();
}

#[test]
fn first_and_last_frames_pick_image_to_video_on_the_fast_model() {
    let s = script()
        .exchange(
            Expect::post(format!("{API_BASE}/videos/generations")).json(json!({
                "model": "seedance-2.0-fast-image-to-video", "prompt": "morph", "duration": 15, "quality": "480p",
                "aspect_ratio": "adaptive", "generate_audio": false,
                "image_urls": ["https://e.com/first.png", "https://e.com/last.png"]
            })),
            video_task("v2"),
        )
        .exchange(
            Expect::post(UPLOAD).json(json!({"base64_data": "data:image/png;base64,iVBORw0KGgo="})),
            uploaded("https://files.evolink.ai/u/first.png"),
        )
        .exchange(
            Expect::post(format!("{API_BASE}/videos/generations")).json(json!({
                "model": "seedance-2.0-image-to-video", "prompt": "go", "duration": 5, "quality": "720p",
                "aspect_ratio": "16:9", "generate_audio": true, "image_urls": ["https://files.evolink.ai/u/first.png"]
            })),
            video_task("v3"),
        )
        .install();
    // Given last-first, as the API may list them: the roles decide the order.
    let r = GenerationRequest::new("video.generate", SEEDANCE_2_FAST, "morph")
        .param("ratio", "adaptive")
        .param("duration", 15)
        .param("resolution", "480p")
        .param("generate_audio", false)
        .input(framed("https://e.com/last.png", "last_frame"))
        .input(framed("https://e.com/first.png", "first_frame"));
    assert!(matches!(EvoLink.submit(r).unwrap(), Submission::Pending(p) if p.handle == "evolink:v1:video:v2"));
    let r = GenerationRequest::new("video.generate", SEEDANCE_2, "go").input(bytes("image", Some("first_frame"), PNG));
    assert!(matches!(EvoLink.submit(r).unwrap(), Submission::Pending(_)));
    s.finish();
}

#[test]
fn references_pick_reference_to_video_with_every_kind() {
    let s = script()
        .exchange(
            Expect::post(format!("{API_BASE}/videos/generations")).json(json!({
                "model": "seedance-2.0-reference-to-video", "prompt": "@图片1 的产品在桌上旋转", "duration": 8, "quality": "1080p",
                "aspect_ratio": "1:1", "generate_audio": true,
                "image_urls": ["https://e.com/product.png", "https://e.com/style.png"],
                "video_urls": ["https://e.com/motion.mp4"], "audio_urls": ["https://e.com/bgm.mp3"]
            })),
            video_task("v4"),
        )
        .install();
    let media = |kind: &str, url: &str| InputMedia { kind: kind.into(), url: Some(url.into()), ..Default::default() };
    let r = GenerationRequest::new("video.generate", SEEDANCE_2, "@图片1 的产品在桌上旋转")
        .param("ratio", "1:1")
        .param("duration", 8)
        .param("resolution", "1080p")
        .input(image("https://e.com/product.png"))
        .input(framed("https://e.com/style.png", "reference"))
        .input(media("video", "https://e.com/motion.mp4"))
        .input(media("audio", "https://e.com/bgm.mp3"));
    assert!(matches!(EvoLink.submit(r).unwrap(), Submission::Pending(_)));
    s.finish();
}

#[test]
fn video_requests_evolink_would_refuse_are_refused_before_sending() {
    let s = script().install();
    let audio = InputMedia { kind: "audio".into(), url: Some("https://e.com/a.mp3".into()), ..Default::default() };
    let cases = [
        (GenerationRequest::new("video.generate", SEEDANCE_2, "x").input(framed("https://e.com/l.png", "last_frame")), "needs a first_frame"),
        (GenerationRequest::new("video.generate", SEEDANCE_2, "x").input(framed("https://e.com/f.png", "first_frame")).input(image("https://e.com/r.png")), "cannot be mixed"),
        (GenerationRequest::new("video.generate", SEEDANCE_2, "x").input(audio.clone()), "needs at least one reference image or video"),
        (GenerationRequest::new("video.generate", SEEDANCE_2, "x").input(InputMedia { role: Some("first_frame".into()), ..audio }), "cannot take a audio input as first_frame"),
        (GenerationRequest::new("video.generate", SEEDANCE_2, "x").param("duration", 3), "4–15"),
        (GenerationRequest::new("video.generate", SEEDANCE_2, "x").param("duration", 16), "4–15"),
        (GenerationRequest::new("video.generate", SEEDANCE_2, "x").param("resolution", "4k"), "resolution"),
        (GenerationRequest::new("video.generate", SEEDANCE_2, " "), "prompt"),
        (GenerationRequest::new("image.upscale", GPT_IMAGE_2, "x"), "does not do image.upscale"),
        (GenerationRequest::new("image.generate", SEEDANCE_2, "x"), "does not do image.generate"),
    ];
    for (request, says) in cases {
        let e = EvoLink.submit(request).unwrap_err();
        assert!(matches!(&e, Error::InvalidRequest(m) if m.contains(says)), "{e:?} should say {says:?}");
    }
    let ten: Vec<InputMedia> = (0..10).map(|i| image(&format!("https://e.com/{i}.png"))).collect();
    let mut r = GenerationRequest::new("video.generate", SEEDANCE_2, "x");
    r.inputs = ten;
    assert!(matches!(EvoLink.submit(r), Err(Error::InvalidRequest(m)) if m.contains("at most 9")));
    assert_eq!(s.requests().len(), 0);
}

#[test]
fn video_submit_errors_map_to_typed_errors() {
    let video_error = |reply: Reply| {
        let _s = script().exchange(Expect::post(format!("{API_BASE}/videos/generations")), reply).install();
        EvoLink.submit(GenerationRequest::new("video.generate", SEEDANCE_2, "a fox")).unwrap_err()
    };
    let e = |status: u16, code: &str, message: &str| Reply::json(status, json!({"error": {"code": code, "message": message, "type": "invalid_request_error"}}));
    assert!(matches!(video_error(e(401, "unauthorized", "Invalid API key")), Error::Unauthorized(_)));
    assert!(matches!(video_error(e(403, "model_access_denied", "no access to seedance-2.0-text-to-video")), Error::Unauthorized(_)));
    let out_of_credit = video_error(e(402, "insufficient_quota", "Insufficient balance").header("Retry-After", "60"));
    assert!(matches!(out_of_credit, Error::Unauthorized(m) if m.contains("insufficient_quota")));
    assert_eq!(video_error(e(429, "rate_limit_exceeded", "slow down").header("Retry-After", "7")), Error::RateLimited(Some(7)));
    assert!(matches!(video_error(e(400, "content_policy_violation", "sensitive content in prompt")), Error::ContentRejected(_)));
    assert!(matches!(video_error(e(400, "invalid_request", "duration out of range")), Error::InvalidRequest(_)));
    assert!(matches!(video_error(e(500, "internal_error", "oops")), Error::UpstreamUnavailable(_)));
    assert!(matches!(video_error(Reply::fail(Error::upstream("connection reset"))), Error::UpstreamUnavailable(_)));
    let _s = script().exchange(Expect::post(format!("{API_BASE}/videos/generations")), Reply::json(200, json!({"status": "pending"}))).install();
    assert!(matches!(EvoLink.submit(GenerationRequest::new("video.generate", SEEDANCE_2, "a fox")), Err(Error::UpstreamUnavailable(m)) if m.contains("without a task id")));
}

#[test]
fn failed_video_tasks_bad_handles_and_no_upstream_cancel() {
    let s = script()
        .exchange(
            Expect::get(format!("{API_BASE}/tasks/v5")),
            Reply::json(200, json!({"status": "failed", "type": "video", "error": {"code": "content_policy_violation", "message": "output flagged"}})),
        )
        .exchange(Expect::get(format!("{API_BASE}/tasks/v6")), Reply::json(200, json!({"status": "failed", "error": {"code": "service_unavailable", "message": "generation failed"}})))
        .exchange(Expect::get(format!("{API_BASE}/tasks/v7")), Reply::json(200, json!({"status": "completed", "results": []})))
        .exchange(Expect::get(format!("{API_BASE}/tasks/v8")), e404())
        .install();
    assert!(matches!(EvoLink.poll("evolink:v1:video:v5").unwrap(), PollOutcome::Failed(Error::ContentRejected(_))));
    assert!(matches!(EvoLink.poll("evolink:v1:video:v6").unwrap(), PollOutcome::Failed(Error::UpstreamUnavailable(m)) if m.contains("service_unavailable")));
    assert!(matches!(EvoLink.poll("evolink:v1:video:v7").unwrap(), PollOutcome::Failed(Error::UpstreamUnavailable(m)) if m.contains("no output")));
    assert!(matches!(EvoLink.poll("evolink:v1:video:v8"), Err(Error::InvalidRequest(_))));
    for bad in ["evolink:v1:video:", "evolink:v1:../x", "kling:v1:abc"] {
        assert!(matches!(EvoLink.poll(bad), Err(Error::InvalidRequest(_))), "{bad}");
    }
    // EvoLink documents no cancel endpoint: cancel sends nothing and says so.
    assert!(matches!(EvoLink.cancel("evolink:v1:video:v5"), Err(Error::Internal(m)) if m.contains("cannot cancel")));
    s.finish();
}

fn e404() -> Reply {
    Reply::json(404, json!({"error": {"code": "task_not_found", "message": "task not found", "type": "invalid_request_error"}}))
}
