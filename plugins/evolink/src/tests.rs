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
fn manifest_declares_quality_per_seed_001() {
    let m = EvoLink.manifest();
    assert_eq!((m.id.as_str(), m.allowed_hosts.as_slice(), m.secrets.as_slice()), ("evolink", ["api.evolink.ai".to_string()].as_slice(), ["EVOLINK_API_KEY".to_string()].as_slice()));
    assert_eq!(m.models[0].capabilities, ["image.generate", "image.inpaint"]);
    assert_eq!(m.models[0].params_schema["properties"]["quality"]["enum"], json!(["low", "medium", "high"]));
    assert_eq!(m.models[0].params_schema["properties"]["quality"]["default"], "medium");
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
    let _s = script().install();
    let bytes_only = GenerationRequest::new("image.generate", GPT_IMAGE_2, "x").input(InputMedia { kind: "image".into(), data: Some(vec![1]), ..Default::default() });
    assert!(matches!(EvoLink.submit(bytes_only), Err(Error::InvalidRequest(m)) if m.contains("public URL")));
}

#[test]
fn errors_map_to_typed_errors() {
    let e = |status: u16, code: &str, message: &str| Reply::json(status, json!({"error": {"code": code, "message": message, "type": "invalid_request_error"}}));
    assert!(matches!(submit_error(e(401, "unauthorized", "Invalid API key")), Error::Unauthorized(_)));
    assert_eq!(submit_error(e(402, "insufficient_quota", "Insufficient balance")), Error::RateLimited(None));
    assert_eq!(submit_error(e(429, "rate_limit_exceeded", "slow down").header("Retry-After", "9")), Error::RateLimited(Some(9)));
    assert!(matches!(submit_error(e(400, "content_policy_violation", "prompt rejected")), Error::ContentRejected(_)));
    assert!(matches!(submit_error(e(400, "invalid_parameter", "size is invalid")), Error::InvalidRequest(_)));
    assert!(matches!(submit_error(e(503, "service_unavailable", "busy")), Error::UpstreamUnavailable(_)));
}

#[test]
fn failed_tasks_and_cancel() {
    let s = script()
        .exchange(Expect::get(format!("{API_BASE}/tasks/t3")), Reply::json(200, json!({"status": "failed", "error": {"code": "content_policy_violation", "message": "unsafe"}})))
        .install();
    assert!(matches!(EvoLink.poll("evolink:v1:t3").unwrap(), PollOutcome::Failed(Error::ContentRejected(_))));
    assert!(matches!(EvoLink.cancel("evolink:v1:t3"), Err(Error::Internal(_))));
    s.finish();
}
