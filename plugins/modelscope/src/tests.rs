//! Offline tests against API-Inference's documented wire format: method, URL, bearer
//! token, the async-mode and task-type headers, and JSON bodies are checked by
//! `testing::Script`.

use super::*;
use easel_sdk::testing::{Expect, Reply, Script};

const AUTH: &str = "Bearer ms-token";

fn script() -> Script {
    Script::new().secret(API_KEY_SECRET, "ms-token")
}

fn submit_url() -> String {
    format!("{API_BASE}/images/generations")
}

fn req(prompt: &str) -> GenerationRequest {
    GenerationRequest::new("image.generate", "qwen-image", prompt)
}

fn pending_handle(s: Submission) -> String {
    match s {
        Submission::Pending(p) => {
            assert_eq!(p.poll_after_ms, 5_000);
            p.handle
        }
        other => panic!("expected pending, got {other:?}"),
    }
}

fn submit_error(reply: Reply) -> Error {
    let _s = script().exchange(Expect::post(submit_url()), reply).install();
    ModelScope.submit(req("a cat")).unwrap_err()
}

#[test]
fn manifest_matches_seed_000() {
    let m = ModelScope.manifest();
    assert_eq!(m.id, "modelscope");
    assert_eq!(m.allowed_hosts, ["api-inference.modelscope.cn", "muse-ai.oss-cn-hangzhou.aliyuncs.com"]);
    assert_eq!(m.secrets, ["MODELSCOPE_API_KEY"]);
    assert!(!m.idempotent_submit);
    let model = &m.models[0];
    assert_eq!((model.key.as_str(), model.name.as_str(), model.kind.as_str()), ("qwen-image", "ModelScope Qwen Image", "image"));
    assert_eq!(model.capabilities, ["image.generate"]);
    assert_eq!(model.extra["capabilities"]["supportsLora"], true);
    assert_eq!(model.extra["resolutions"]["1K"]["16:9"], "1664*928");
    assert_eq!(model.params_schema["properties"]["resolution"]["default"], "1K");
}

#[test]
fn submit_sends_an_async_task_with_the_documented_headers_and_body() {
    let s = script()
        .exchange(
            Expect::post(submit_url())
                .header("authorization", AUTH)
                .header("x-modelscope-async-mode", "true")
                .header("content-type", "application/json")
                .json(json!({"model": "Qwen/Qwen-Image", "prompt": "a golden cat", "size": "1328x1328"})),
            Reply::json(200, json!({"task_id": "5b3c1f", "request_id": "r1"})),
        )
        .install();
    assert_eq!(pending_handle(ModelScope.submit(req("a golden cat")).unwrap()), "modelscope:v1:5b3c1f");
    s.finish();
}

#[test]
fn seed_parameters_are_translated() {
    let s = script()
        .exchange(
            Expect::post(submit_url()).json(json!({
                "model": "Qwen/Qwen-Image", "prompt": "a cat", "negative_prompt": "blurry", "size": "1664x928",
                "seed": 42, "steps": 20, "guidance": 4.0, "loras": {"owner/anime-lora": 0.8}
            })),
            Reply::json(200, json!({"task_id": "t1"})),
        )
        .exchange(
            Expect::post(submit_url()).json(json!({"model": "Qwen/Qwen-Image", "prompt": "a cat", "size": "800x600"})),
            Reply::json(200, json!({"task_id": "t2"})),
        )
        .install();
    let r = req("a cat")
        .param("aspectRatio", "16:9")
        .param("negativePrompt", "blurry")
        .param("seed", 42)
        .param("steps", 20)
        .param("guidance", 4.0)
        .param("loras", json!([{"model": "owner/anime-lora", "weight": 0.8}]));
    pending_handle(ModelScope.submit(r).unwrap());
    pending_handle(ModelScope.submit(req("a cat").param("size", "800x600")).unwrap());
    // The host holds `size` to the manifest's bounds before a task exists.
    let manifest = ModelScope.manifest();
    let size = &manifest.models[0].params_schema["properties"]["size"];
    assert_eq!(size["sizeBounds"], json!({"minSide": 64, "maxSide": 1664}));
    assert!(matches!(ModelScope.submit(req("")), Err(Error::InvalidRequest(m)) if m == "Missing required parameter: prompt"));
    s.finish();
}

#[test]
fn pending_then_success_returns_the_image_urls() {
    let task = format!("{API_BASE}/tasks/t9");
    let s = script()
        .exchange(Expect::post(submit_url()), Reply::json(200, json!({"task_id": "t9"})))
        .exchange(
            Expect::get(&task).header("authorization", AUTH).header("x-modelscope-task-type", "image_generation"),
            Reply::json(200, json!({"task_status": "PENDING"})),
        )
        .exchange(Expect::get(&task), Reply::json(200, json!({"task_status": "RUNNING"})))
        .exchange(
            Expect::get(&task),
            Reply::json(200, json!({"task_status": "SUCCEED", "output_images": ["https://muse-ai.oss-cn-hangzhou.aliyuncs.com/img/x.png"]})),
        )
        .install();
    let h = pending_handle(ModelScope.submit(req("a cat")).unwrap());
    for _ in 0..2 {
        assert_eq!(ModelScope.poll(&h).unwrap(), PollOutcome::Running { progress: None, poll_after_ms: 5_000 });
    }
    let PollOutcome::Finished(done) = ModelScope.poll(&h).unwrap() else { panic!("expected finished") };
    assert_eq!(
        done.outputs,
        [Output::Url { url: "https://muse-ai.oss-cn-hangzhou.aliyuncs.com/img/x.png".into(), content_type: Some("image/png".into()) }]
    );
    s.finish();
}

#[test]
fn failed_tasks_are_reported() {
    let task = format!("{API_BASE}/tasks/t3");
    let s = script()
        .exchange(Expect::get(&task), Reply::json(200, json!({"task_status": "FAILED", "errors": {"message": "The input content is inappropriate"}})))
        .exchange(Expect::get(&task), Reply::json(200, json!({"task_status": "FAILED", "errors": {"message": "GPU worker crashed"}})))
        .install();
    assert!(matches!(ModelScope.poll("modelscope:v1:t3").unwrap(), PollOutcome::Failed(Error::ContentRejected(_))));
    assert!(matches!(ModelScope.poll("modelscope:v1:t3").unwrap(), PollOutcome::Failed(Error::UpstreamUnavailable(m)) if m.contains("GPU")));
    for bad in ["modelscope:v1:../etc", "modelscope:v1:", "modelscope:v1", "modelscope:v2:t3", "kling:v1:img:t3"] {
        assert!(matches!(ModelScope.poll(bad), Err(Error::InvalidRequest(_))), "{bad}");
    }
    s.finish();
}

/// A task ModelScope calls a success but that has no image will never have one: it fails now,
/// naming why, instead of being polled as an outage for a day.
#[test]
fn a_success_without_images_fails_the_task() {
    let task = format!("{API_BASE}/tasks/t5");
    let s = script()
        .exchange(Expect::get(&task), Reply::json(200, json!({"task_status": "SUCCEED"})))
        .exchange(Expect::get(&task), Reply::json(200, json!({"task_status": "SUCCEED", "output_images": []})))
        .install();
    for _ in 0..2 {
        let outcome = ModelScope.poll("modelscope:v1:t5").unwrap();
        assert!(
            matches!(&outcome, PollOutcome::Failed(Error::UpstreamUnavailable(m))
                if m.contains("ModelScope reported that task t5 succeeded but returned no output") && m.contains("output_images")),
            "{outcome:?}"
        );
    }
    s.finish();
}

#[test]
fn auth_errors_map_to_unauthorized() {
    let e = submit_error(Reply::json(401, json!({"errors": {"message": "Invalid token"}, "request_id": "r"})));
    assert!(matches!(e, Error::Unauthorized(m) if m.contains("Invalid token")));
    let _s = Script::new().install();
    assert!(matches!(ModelScope.submit(req("a cat")), Err(Error::Unauthorized(m)) if m.contains("MODELSCOPE_API_KEY")));
}

#[test]
fn quota_and_rate_limits_map_to_rate_limited() {
    let e = submit_error(Reply::json(429, json!({"errors": {"message": "daily quota exceeded"}})).header("Retry-After", "60"));
    assert_eq!(e, Error::RateLimited(Some(60)));
}

#[test]
fn moderation_maps_to_content_rejected() {
    let e = submit_error(Reply::json(400, json!({"errors": {"message": "输入内容未通过审核"}})));
    assert!(matches!(e, Error::ContentRejected(_)));
}

#[test]
fn bad_parameters_map_to_invalid_request() {
    let e = submit_error(Reply::json(400, json!({"errors": {"message": "size out of range"}})));
    assert!(matches!(e, Error::InvalidRequest(m) if m.contains("size")));
}

#[test]
fn server_errors_map_to_upstream_unavailable() {
    assert!(matches!(submit_error(Reply::json(500, json!({"errors": {"message": "internal"}}))), Error::UpstreamUnavailable(_)));
    assert_eq!(submit_error(Reply::fail(Error::upstream("timed out"))), Error::upstream("timed out"));
}

#[test]
fn cancel_is_not_offered_by_the_vendor_and_sends_nothing() {
    let s = script().install();
    assert!(matches!(ModelScope.cancel("modelscope:v1:t9"), Err(Error::Internal(m)) if m.contains("cannot cancel")));
    assert!(s.requests().is_empty());
    s.finish();
}
