//! Offline tests against Kling's documented wire format. The bearer token changes with the
//! clock, so request tests check it by verifying the JWT (signature and claims) rather
//! than comparing strings; the signer itself is checked against a fixed vector.

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use easel_sdk::InputMedia;
use easel_sdk::testing::{Expect, Reply, Script, ScriptGuard};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const BASE: &str = "https://api-singapore.klingai.com";
const BASE_CN: &str = "https://api-beijing.klingai.com";

fn script() -> Script {
    Script::new().secret(ACCESS_KEY_SECRET, "ak-test").secret(SECRET_KEY_SECRET, "sk-test")
}

fn ok(data: Value) -> Reply {
    Reply::json(200, json!({"code": 0, "message": "SUCCEED", "request_id": "req-1", "data": data}))
}

fn kling_error(status: u16, code: i64, message: &str) -> Reply {
    Reply::json(status, json!({"code": code, "message": message, "request_id": "req-2"}))
}

fn video(prompt: &str) -> GenerationRequest {
    GenerationRequest::new("video.generate", "kling-v2-5-turbo", prompt)
}

fn frame(role: Option<&str>, url: &str) -> InputMedia {
    InputMedia { kind: "image".into(), role: role.map(str::to_string), url: Some(url.into()), ..Default::default() }
}

fn handle_of(s: Submission) -> (String, u64) {
    match s {
        Submission::Pending(p) => (p.handle, p.poll_after_ms),
        other => panic!("expected pending, got {other:?}"),
    }
}

/// Checks every request carried a valid JWT for ak-test/sk-test, valid now.
fn assert_signed(guard: &ScriptGuard) {
    let now = jwt::now();
    for request in guard.requests() {
        let token = request.header_value("authorization").and_then(|v| v.strip_prefix("Bearer ")).expect("bearer token");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"sk-test").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).expect("signature verifies");
        let claims: Value = easel_sdk::serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "ak-test");
        let (exp, nbf) = (claims["exp"].as_u64().unwrap(), claims["nbf"].as_u64().unwrap());
        assert!(nbf <= now && now < exp && exp <= now + 1800, "claims {claims} at {now}");
    }
}

fn submit_error(reply: Reply) -> Error {
    let _s = script().exchange(Expect::post(format!("{BASE}/v1/videos/text2video")), reply).install();
    Kling.submit(video("a fox")).unwrap_err()
}

#[test]
fn jwt_matches_a_reference_vector() {
    assert_eq!(
        jwt::token("ak-test", "sk-test", 1_700_000_000),
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJhay10ZXN0IiwiZXhwIjoxNzAwMDAxODAwLCJuYmYiOjE2OTk5OTk5OTV9.tMljlG8Xy1G8AKj5WkEZRcRIADvbH0FP6wgzpwHAfs4"
    );
}

#[test]
fn manifest_lists_video_and_image_models() {
    let m = Kling.manifest();
    assert_eq!(m.id, "kling");
    assert_eq!(m.allowed_hosts, ["api-singapore.klingai.com", "api-beijing.klingai.com", "*.klingai.com"]);
    assert_eq!(m.secrets, ["KLING_ACCESS_KEY", "KLING_SECRET_KEY", "KLING_REGION"]);
    assert!(!m.idempotent_submit);
    let keys: Vec<_> = m.models.iter().map(|m| (m.key.as_str(), m.kind.as_str())).collect();
    assert_eq!(keys, [("kling-v2-5-turbo", "video"), ("kling-v2-1-master", "video"), ("kling-v2-1", "image")]);
    let v = &m.models[0].params_schema["properties"];
    assert_eq!(v["duration"]["enum"], json!([5, 10]));
    assert_eq!(v["ratio"]["default"], "16:9");
    assert_eq!(m.models[0].extra["durations"]["10s"], "10秒");
    assert_eq!(m.models[2].params_schema["properties"]["n"]["maximum"], 9);
    assert_eq!(m.models[2].extra["resolutions"]["2K"]["1:1"], "2048*2048");
}

#[test]
fn text_to_video_posts_the_documented_body_with_a_signed_token() {
    let s = script()
        .exchange(
            Expect::post(format!("{BASE}/v1/videos/text2video")).header("content-type", "application/json").json(json!({
                "model_name": "kling-v2-5-turbo", "prompt": "a fox", "negative_prompt": "blur",
                "duration": "10", "mode": "pro", "aspect_ratio": "9:16", "cfg_scale": 0.3
            })),
            ok(json!({"task_id": "860813716405301304", "task_status": "submitted"})),
        )
        .install();
    let r = video("a fox").param("duration", 10).param("resolution", "1080p").param("ratio", "9:16").param("negative_prompt", "blur").param("cfg_scale", 0.3);
    assert_eq!(handle_of(Kling.submit(r).unwrap()), ("kling:v1:t2v:860813716405301304".into(), 15_000));
    assert_signed(&s);
    s.finish();
}

#[test]
fn frames_go_to_image2video_as_url_and_bare_base64() {
    let last = InputMedia { kind: "image".into(), role: Some("last_frame".into()), data: Some(b"png".to_vec()), ..Default::default() };
    let s = script()
        .exchange(
            Expect::post(format!("{BASE}/v1/videos/image2video")).json(json!({
                "model_name": "kling-v2-1-master", "prompt": "turn around", "duration": "5", "mode": "std",
                "image": "https://cdn.example.com/first.png", "image_tail": "cG5n"
            })),
            ok(json!({"task_id": "t-2"})),
        )
        .install();
    let r = GenerationRequest::new("video.generate", "kling-v2-1-master", "turn around")
        .input(last)
        .input(frame(Some("first_frame"), "https://cdn.example.com/first.png"));
    assert_eq!(handle_of(Kling.submit(r).unwrap()).0, "kling:v1:i2v:t-2");
    assert_signed(&s);
    s.finish();
}

#[test]
fn image_generation_posts_n_ratio_and_resolution() {
    let s = script()
        .exchange(
            Expect::post(format!("{BASE}/v1/images/generations")).json(json!({
                "model_name": "kling-v2-1", "prompt": "a lantern", "n": 2, "aspect_ratio": "16:9", "resolution": "2k"
            })),
            ok(json!({"task_id": "img-1"})),
        )
        .install();
    let r = GenerationRequest::new("image.generate", "kling-v2-1", "a lantern").param("n", 2).param("aspectRatio", "16:9").param("resolution", "2K");
    assert_eq!(handle_of(Kling.submit(r).unwrap()), ("kling:v1:img:img-1".into(), 5_000));
    s.finish();
}

#[test]
fn bad_requests_are_refused_before_any_call() {
    let _s = script().install();
    assert!(matches!(Kling.submit(video("")), Err(Error::InvalidRequest(m)) if m.contains("prompt")));
    assert!(Kling.submit(video("x").input(frame(Some("last_frame"), "https://a/1.png"))).is_err());
    assert!(Kling.submit(video("x").input(frame(Some("reference"), "https://a/1.png"))).is_err());
    assert!(Kling.submit(GenerationRequest::new("image.generate", "kling-v2-5-turbo", "x")).is_err());
    assert!(Kling.submit(GenerationRequest::new("video.generate", "kling-v2-1", "x")).is_err());
}

#[test]
fn pending_then_success_returns_video_urls() {
    let task = format!("{BASE}/v1/videos/text2video/t-9");
    let s = script()
        .exchange(Expect::post(format!("{BASE}/v1/videos/text2video")), ok(json!({"task_id": "t-9"})))
        .exchange(Expect::get(&task), ok(json!({"task_id": "t-9", "task_status": "submitted"})))
        .exchange(Expect::get(&task), ok(json!({"task_id": "t-9", "task_status": "processing"})))
        .exchange(
            Expect::get(&task),
            ok(json!({"task_id": "t-9", "task_status": "succeed", "task_result": {"videos": [
                {"id": "v1", "url": "https://cdn.klingai.com/v.mp4", "duration": "5.1"}
            ]}})),
        )
        .install();
    let (h, _) = handle_of(Kling.submit(video("a fox")).unwrap());
    for _ in 0..2 {
        assert_eq!(Kling.poll(&h).unwrap(), PollOutcome::Running { progress: None, poll_after_ms: 15_000 });
    }
    let PollOutcome::Finished(done) = Kling.poll(&h).unwrap() else { panic!("expected finished") };
    assert_eq!(done.outputs, [Output::Url { url: "https://cdn.klingai.com/v.mp4".into(), content_type: Some("video/mp4".into()) }]);
    assert_eq!(done.usage, Some(json!({"duration": "5.1"})));
    assert_signed(&s);
    s.finish();
}

#[test]
fn image_tasks_poll_under_their_own_path() {
    let s = script()
        .exchange(
            Expect::get(format!("{BASE}/v1/images/generations/img-1")),
            ok(json!({"task_status": "succeed", "task_result": {"images": [
                {"index": 0, "url": "https://cdn.klingai.com/0.png"}, {"index": 1, "url": "https://cdn.klingai.com/1.png"}
            ]}})),
        )
        .install();
    let PollOutcome::Finished(done) = Kling.poll("kling:v1:img:img-1").unwrap() else { panic!("expected finished") };
    assert_eq!(done.outputs.len(), 2);
    for bad in ["kling:v1:xyz:img-1", "kling:v1:img:../../x", "kling:v1:img:", "kling:v1:img", "kling-sg:v1:img:img-1", "kling-cn:v2:img:img-1"] {
        assert!(matches!(Kling.poll(bad), Err(Error::InvalidRequest(_))), "{bad}");
    }
    s.finish();
}

#[test]
fn failed_tasks_are_mapped() {
    let task = format!("{BASE}/v1/videos/image2video/t-4");
    let s = script()
        .exchange(Expect::get(&task), ok(json!({"task_status": "failed", "task_status_msg": "Failure to pass the risk control system"})))
        .exchange(Expect::get(&task), ok(json!({"task_status": "failed", "task_status_msg": "internal render error"})))
        .install();
    assert!(matches!(Kling.poll("kling:v1:i2v:t-4").unwrap(), PollOutcome::Failed(Error::ContentRejected(_))));
    assert!(matches!(Kling.poll("kling:v1:i2v:t-4").unwrap(), PollOutcome::Failed(Error::UpstreamUnavailable(_))));
    s.finish();
}

/// A task Kling calls a success but that has no video or image will never have one: it fails
/// now, naming why, instead of being polled as an outage for a day.
#[test]
fn a_success_without_videos_or_images_fails_the_task() {
    let s = script()
        .exchange(Expect::get(format!("{BASE}/v1/videos/text2video/t-6")), ok(json!({"task_id": "t-6", "task_status": "succeed", "task_result": {}})))
        .exchange(
            Expect::get(format!("{BASE}/v1/images/generations/img-6")),
            ok(json!({"task_id": "img-6", "task_status": "succeed", "task_result": {"images": [{"index": 0, "url": ""}]}})),
        )
        .install();
    for (handle, task, list) in [("kling:v1:t2v:t-6", "t-6", "task_result.videos"), ("kling:v1:img:img-6", "img-6", "task_result.images")] {
        let outcome = Kling.poll(handle).unwrap();
        assert!(
            matches!(&outcome, PollOutcome::Failed(Error::UpstreamUnavailable(m))
                if m.contains(&format!("Kling reported that task {task} succeeded but returned no output")) && m.contains(list)),
            "{outcome:?}"
        );
    }
    s.finish();
}

#[test]
fn auth_errors_map_to_unauthorized() {
    assert!(matches!(submit_error(kling_error(401, 1004, "Auth failed: token expired")), Error::Unauthorized(m) if m.contains("1004")));
    let _s = Script::new().secret(ACCESS_KEY_SECRET, "ak").install();
    assert!(matches!(Kling.submit(video("x")), Err(Error::Unauthorized(m)) if m.contains("KLING_SECRET_KEY")));
}

#[test]
fn rate_limits_map_to_rate_limited_and_an_exhausted_account_to_unauthorized() {
    assert_eq!(submit_error(kling_error(429, 1302, "rate limit").header("Retry-After", "7")), Error::RateLimited(Some(7)));
    assert!(matches!(submit_error(kling_error(429, 1102, "resource pack exhausted")), Error::Unauthorized(m) if m.contains("1102")));
    assert_eq!(submit_error(kling_error(429, 1303, "parallel task over resource pack limit")), Error::RateLimited(None));
}

#[test]
fn moderation_maps_to_content_rejected() {
    assert!(matches!(submit_error(kling_error(400, 1301, "trigger content security policy")), Error::ContentRejected(_)));
}

#[test]
fn bad_parameters_map_to_invalid_request() {
    assert!(matches!(submit_error(kling_error(400, 1201, "invalid duration")), Error::InvalidRequest(m) if m.contains("duration")));
}

#[test]
fn server_errors_map_to_upstream_unavailable() {
    assert!(matches!(submit_error(kling_error(500, 5000, "server error")), Error::UpstreamUnavailable(_)));
    assert!(matches!(submit_error(kling_error(503, 5001, "maintenance")), Error::UpstreamUnavailable(_)));
    assert!(matches!(submit_error(Reply::text(502, "bad gateway")), Error::UpstreamUnavailable(_)));
    // A 200 whose envelope says otherwise is still an error.
    assert!(matches!(submit_error(kling_error(200, 1200, "bad request")), Error::InvalidRequest(_)));
}

#[test]
fn every_documented_service_code_has_its_class() {
    for code in [1000, 1001, 1002, 1003, 1004, 1100, 1101, 1102, 1103, 1304] {
        assert!(matches!(errors::by_code(code, "m", None), Some(Error::Unauthorized(_))), "{code}");
    }
    for code in [1302, 1303] {
        assert_eq!(errors::by_code(code, "m", Some(4)), Some(Error::RateLimited(Some(4))), "{code}");
    }
    for code in [1300, 1301] {
        assert!(matches!(errors::by_code(code, "m", None), Some(Error::ContentRejected(_))), "{code}");
    }
    for code in [1200, 1201, 1202, 1203] {
        assert!(matches!(errors::by_code(code, "m", None), Some(Error::InvalidRequest(_))), "{code}");
    }
    for code in [5000, 5001, 5002] {
        assert!(matches!(errors::by_code(code, "m", None), Some(Error::UpstreamUnavailable(_))), "{code}");
    }
    assert_eq!(errors::by_code(4242, "m", None), None, "unknown codes fall back to the HTTP status");
}

#[test]
fn a_task_stopped_by_risk_control_in_the_documented_words_is_content_rejected() {
    let task = format!("{BASE}/v1/images/generations/t-9");
    let s = script()
        .exchange(Expect::get(&task), ok(json!({"task_status": "failed", "task_status_msg": "triggering the content risk control of the platform"})))
        .install();
    assert!(matches!(Kling.poll("kling:v1:img:t-9").unwrap(), PollOutcome::Failed(Error::ContentRejected(_))));
    s.finish();
}

#[test]
fn cancel_is_not_offered_by_kling_and_sends_nothing() {
    let s = script().install();
    assert!(matches!(Kling.cancel("kling:v1:t2v:t-1"), Err(Error::Internal(_))));
    assert!(s.requests().is_empty());
    s.finish();
}

#[test]
fn the_mainland_platform_serves_submit_and_poll_when_chosen() {
    let task = format!("{BASE_CN}/v1/images/generations/cn-1");
    let s = script()
        .secret(REGION_SECRET, "cn")
        .exchange(
            Expect::post(format!("{BASE_CN}/v1/images/generations"))
                .json(json!({"model_name": "kling-v2-1", "prompt": "a lantern", "n": 1, "aspect_ratio": "1:1", "resolution": "1k"})),
            ok(json!({"task_id": "cn-1", "task_status": "submitted"})),
        )
        .exchange(Expect::get(&task), ok(json!({"task_status": "processing"})))
        .exchange(Expect::get(&task), ok(json!({"task_status": "succeed", "task_result": {"images": [{"url": "https://cdn.klingai.com/cn.png"}]}})))
        .install();
    let r = GenerationRequest::new("image.generate", "kling-v2-1", "a lantern");
    let (h, _) = handle_of(Kling.submit(r).unwrap());
    assert_eq!(h, "kling-cn:v1:img:cn-1");
    assert!(matches!(Kling.poll(&h).unwrap(), PollOutcome::Running { .. }));
    assert!(matches!(Kling.poll(&h).unwrap(), PollOutcome::Finished(_)));
    // The same key pair signs for either platform; only the host differs.
    assert_signed(&s);
    s.finish();
}

#[test]
fn a_handle_keeps_its_platform_when_the_setting_changes() {
    let s = script()
        .secret(REGION_SECRET, "cn")
        .exchange(Expect::get(format!("{BASE}/v1/videos/text2video/g-1")), ok(json!({"task_status": "processing"})))
        .install();
    assert!(matches!(Kling.poll("kling:v1:t2v:g-1").unwrap(), PollOutcome::Running { .. }));
    s.finish();
    let s = script()
        .exchange(Expect::get(format!("{BASE_CN}/v1/videos/image2video/c-1")), ok(json!({"task_status": "submitted"})))
        .install();
    assert!(matches!(Kling.poll("kling-cn:v1:i2v:c-1").unwrap(), PollOutcome::Running { .. }));
    s.finish();
}

#[test]
fn an_unknown_region_is_a_configuration_error_before_any_request() {
    let _s = script().secret(REGION_SECRET, "singapore").install();
    assert!(matches!(Kling.submit(video("a fox")), Err(Error::Internal(m)) if m.contains("KLING_REGION")));
}
