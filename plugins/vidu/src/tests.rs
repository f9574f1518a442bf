//! Offline tests against Vidu's documented wire format: every request is checked
//! (method, URL, `Authorization: Token …`, JSON body) by `testing::Script`.

use super::*;
use easel_sdk::InputMedia;
use easel_sdk::serde_json::json;
use easel_sdk::testing::{Expect, Reply, Script};
use vendor_kit::region::Region;

const KEY: &str = "vd-test-key";
const AUTH: &str = "Token vd-test-key";

fn script() -> Script {
    Script::new().secret(API_KEY_SECRET, KEY)
}

fn t2v(prompt: &str) -> GenerationRequest {
    GenerationRequest::new("video.generate", "viduq3-pro", prompt)
}

fn pending(s: Submission) -> easel_sdk::Pending {
    match s {
        Submission::Pending(p) => p,
        other => panic!("expected pending, got {other:?}"),
    }
}

fn image(role: Option<&str>, url: &str) -> InputMedia {
    InputMedia { kind: "image".into(), role: role.map(str::to_string), url: Some(url.into()), ..Default::default() }
}

fn created(task_id: &str) -> Reply {
    Reply::json(200, json!({"task_id": task_id, "state": "created", "model": "viduq3-pro"}))
}

fn submit_error(reply: Reply) -> Error {
    let _s = script().exchange(Expect::post(format!("{API_BASE}/text2video")), reply).install();
    Vidu.submit(t2v("a fox")).unwrap_err()
}

#[test]
fn manifest_declares_the_model_with_seed_parameters() {
    let m = Vidu.manifest();
    assert_eq!(m.id, "vidu");
    assert_eq!(
        m.allowed_hosts,
        [
            "api.vidu.com",
            "api.vidu.cn",
            "video.cf.vidu.com",
            "prod-ss-vidu.s3.cn-northwest-1.amazonaws.com.cn",
            "prod-ss-vidu.s3.oss-cn-beijing.aliyuncs.com"
        ]
    );
    assert_eq!(m.secrets, ["VIDU_API_KEY", "VIDU_REGION"]);
    assert!(!m.idempotent_submit);
    assert_eq!(m.models.len(), 1);
    let model = &m.models[0];
    assert_eq!((model.key.as_str(), model.kind.as_str()), ("viduq3-pro", "video"));
    assert_eq!(model.capabilities, ["video.generate"]);
    let p = &model.params_schema["properties"];
    assert_eq!(p["off_peak"]["enum"], json!(["Y", "N"]));
    assert_eq!(p["off_peak"]["default"], "N");
    assert_eq!((p["duration"]["minimum"].clone(), p["duration"]["maximum"].clone()), (json!(1), json!(16)));
    assert_eq!(p["duration"]["default"], 10);
    assert_eq!(p["ratio"]["enum"], json!(["16:9", "9:16", "4:3", "3:4", "1:1"]));
    assert_eq!(p["ratio"]["default"], "16:9");
    assert_eq!(p["resolution"]["enum"], json!(["540p", "720p", "1080p"]));
    assert_eq!(p["resolution"]["default"], "1080p");
    assert!(p.get("prompt").is_none());
    assert!(model.extra["durations"].is_object());
    assert!(model.price_hint.unwrap() > 0.0);
}

#[test]
fn text_to_video_sends_the_documented_body_and_returns_a_pending_handle() {
    let s = script()
        .exchange(
            Expect::post(format!("{API_BASE}/text2video"))
                .header("authorization", AUTH)
                .header("content-type", "application/json")
                .json(json!({
                    "model": "viduq3-pro", "prompt": "a fox in snow", "duration": 10,
                    "resolution": "1080p", "off_peak": false, "aspect_ratio": "16:9"
                })),
            created("916198342210367488"),
        )
        .install();
    let p = pending(Vidu.submit(t2v("a fox in snow")).unwrap());
    assert_eq!(p.handle, "vidu:v1:n:916198342210367488");
    assert_eq!(p.poll_after_ms, 10_000);
    s.finish();
}

#[test]
fn off_peak_and_parameters_are_translated() {
    let s = script()
        .exchange(
            Expect::post(format!("{API_BASE}/text2video")).header("authorization", AUTH).json(json!({
                "model": "viduq3-pro", "prompt": "rain", "duration": 4, "resolution": "540p",
                "off_peak": true, "aspect_ratio": "9:16", "seed": 7
            })),
            Reply::json(200, json!({"task_id": 42, "state": "created"})),
        )
        .install();
    let req = t2v("rain").param("off_peak", "Y").param("duration", 4).param("resolution", "540p").param("ratio", "9:16").param("seed", 7);
    let p = pending(Vidu.submit(req).unwrap());
    assert_eq!(p.handle, "vidu:v1:p:42", "numeric task ids are kept as text");
    assert_eq!(p.poll_after_ms, 300_000, "off-peak tasks are polled rarely");
    s.finish();
}

#[test]
fn first_and_last_frames_go_to_start_end2video_with_urls_and_data_urls() {
    let last = InputMedia {
        kind: "image".into(),
        role: Some("last_frame".into()),
        content_type: Some("image/jpeg".into()),
        data: Some(vec![1, 2, 3]),
        ..Default::default()
    };
    let s = script()
        .exchange(
            Expect::post(format!("{API_BASE}/start-end2video")).header("authorization", AUTH).json(json!({
                "model": "viduq3-pro", "prompt": "morph", "duration": 10, "resolution": "1080p", "off_peak": false,
                "images": ["https://cdn.example.com/a.png", "data:image/jpeg;base64,AQID"]
            })),
            created("t-2"),
        )
        .install();
    // Given last frame first: the roles decide the order, not the list.
    let req = t2v("morph").input(last).input(image(Some("first_frame"), "https://cdn.example.com/a.png"));
    assert_eq!(pending(Vidu.submit(req).unwrap()).handle, "vidu:v1:n:t-2");
    s.finish();
}

#[test]
fn one_plain_image_goes_to_img2video() {
    let s = script()
        .exchange(
            Expect::post(format!("{API_BASE}/img2video")).json(json!({
                "model": "viduq3-pro", "duration": 10, "resolution": "1080p", "off_peak": false,
                "images": ["https://cdn.example.com/a.png"]
            })),
            created("t-3"),
        )
        .install();
    let req = t2v("").input(image(None, "https://cdn.example.com/a.png"));
    pending(Vidu.submit(req).unwrap());
    s.finish();
}

#[test]
fn wrong_inputs_are_refused_before_any_request() {
    let _s = script().install();
    let reference = t2v("x").input(image(Some("reference"), "https://cdn.example.com/r.png"));
    assert!(matches!(Vidu.submit(reference), Err(Error::InvalidRequest(_))));
    let last_only = t2v("x").input(image(Some("last_frame"), "https://cdn.example.com/r.png"));
    assert!(matches!(Vidu.submit(last_only), Err(Error::InvalidRequest(_))));
    assert!(matches!(Vidu.submit(t2v("")), Err(Error::InvalidRequest(m)) if m.contains("prompt")));
    let other = GenerationRequest::new("image.generate", "viduq3-pro", "x");
    assert!(matches!(Vidu.submit(other), Err(Error::InvalidRequest(_))));
}

#[test]
fn pending_then_success_returns_the_video_its_cover_and_credits() {
    let url = format!("{API_BASE}/tasks/t-9/creations");
    let s = script()
        .exchange(Expect::post(format!("{API_BASE}/text2video")), created("t-9"))
        .exchange(Expect::get(&url).header("authorization", AUTH), Reply::json(200, json!({"state": "queueing", "creations": []})))
        .exchange(Expect::get(&url), Reply::json(200, json!({"state": "processing", "progress": 40})))
        .exchange(
            Expect::get(&url),
            Reply::json(200, json!({
                "state": "success", "err_code": "", "credits": 40,
                "creations": [{"id": "c1", "url": "https://files.vidu.com/v.mp4", "cover_url": "https://files.vidu.com/c.jpg"}]
            })),
        )
        .install();
    let handle = pending(Vidu.submit(t2v("a fox")).unwrap()).handle;
    assert_eq!(Vidu.poll(&handle).unwrap(), PollOutcome::Running { progress: None, poll_after_ms: 10_000 });
    assert_eq!(Vidu.poll(&handle).unwrap(), PollOutcome::Running { progress: Some(0.4), poll_after_ms: 10_000 });
    let PollOutcome::Finished(done) = Vidu.poll(&handle).unwrap() else { panic!("expected finished") };
    assert_eq!(
        done.outputs,
        [
            Output::Url { url: "https://files.vidu.com/v.mp4".into(), content_type: Some("video/mp4".into()) },
            Output::Url { url: "https://files.vidu.com/c.jpg".into(), content_type: Some("image/jpeg".into()) },
        ]
    );
    assert_eq!(done.usage, Some(json!({"credits": 40})));
    s.finish();
}

#[test]
fn covers_are_typed_by_their_file_names() {
    assert_eq!(cover_type("https://files.vidu.com/c.PNG?sig=a.jpg"), "image/png");
    assert_eq!(cover_type("https://files.vidu.com/c.webp"), "image/webp");
    assert_eq!(cover_type("https://files.vidu.com/c.jpeg#x"), "image/jpeg");
    assert_eq!(cover_type("https://files.vidu.com/cover"), "image/jpeg");
    assert_eq!(cover_type("https://files.vidu.png/cover"), "image/jpeg");
}

#[test]
fn failed_tasks_map_their_err_code() {
    let url = format!("{API_BASE}/tasks/t-5/creations");
    let s = script()
        .exchange(Expect::get(&url), Reply::json(200, json!({"state": "failed", "err_code": "CreationPolicyViolation"})))
        .exchange(Expect::get(&url), Reply::json(200, json!({"state": "failed", "err_code": "InternalServiceFailure"})))
        .install();
    assert!(matches!(Vidu.poll("vidu:v1:n:t-5").unwrap(), PollOutcome::Failed(Error::ContentRejected(_))));
    assert!(matches!(Vidu.poll("vidu:v1:n:t-5").unwrap(), PollOutcome::Failed(Error::UpstreamUnavailable(_))));
    s.finish();
}

/// A task Vidu calls a success but that has no video will never have one: it fails now,
/// naming why, instead of being polled as an outage for a day. A cover alone is no video.
#[test]
fn a_success_without_a_video_fails_the_task() {
    let url = format!("{API_BASE}/tasks/t-6/creations");
    let s = script()
        .exchange(Expect::get(&url), Reply::json(200, json!({"state": "success", "err_code": "", "creations": []})))
        .exchange(
            Expect::get(&url),
            Reply::json(200, json!({"state": "success", "creations": [{"id": "c1", "cover_url": "https://files.vidu.com/c.jpg"}]})),
        )
        .install();
    for _ in 0..2 {
        let outcome = Vidu.poll("vidu:v1:n:t-6").unwrap();
        assert!(
            matches!(&outcome, PollOutcome::Failed(Error::UpstreamUnavailable(m))
                if m.contains("Vidu reported that task t-6 succeeded but returned no output") && m.contains("creations[].url")),
            "{outcome:?}"
        );
    }
    s.finish();
}

#[test]
fn auth_errors_map_to_unauthorized() {
    let e = submit_error(Reply::json(401, json!({"code": 401, "reason": "Unauthorized", "message": "unauthorized"})));
    assert!(matches!(e, Error::Unauthorized(m) if m.contains("Unauthorized")));
}

#[test]
fn a_missing_key_is_unauthorized_without_a_request() {
    let _s = Script::new().install();
    assert!(matches!(Vidu.submit(t2v("a fox")), Err(Error::Unauthorized(m)) if m.contains("VIDU_API_KEY")));
}

#[test]
fn rate_limits_map_to_rate_limited_and_credit_exhaustion_to_unauthorized() {
    let e = submit_error(
        Reply::json(429, json!({"code": 429, "reason": "TooManyRequests", "message": "too many requests"})).header("Retry-After", "12"),
    );
    assert_eq!(e, Error::RateLimited(Some(12)));
    let e = submit_error(Reply::json(400, json!({"code": 400, "reason": "CreditInsufficient", "message": "insufficient credits"})));
    assert!(matches!(e, Error::Unauthorized(m) if m.contains("CreditInsufficient")));
}

#[test]
fn moderation_maps_to_content_rejected() {
    let e = submit_error(Reply::json(400, json!({"code": 400, "reason": "AuditSubmitIllegal", "message": "submit is illegal"})));
    assert!(matches!(e, Error::ContentRejected(m) if m.contains("AuditSubmitIllegal")));
}

#[test]
fn bad_parameters_map_to_invalid_request() {
    let e = submit_error(Reply::json(400, json!({"code": 400, "reason": "FieldInvalid", "message": "invalid field: duration"})));
    assert!(matches!(e, Error::InvalidRequest(m) if m.contains("duration")));
}

#[test]
fn server_errors_and_timeouts_map_to_upstream_unavailable() {
    let e = submit_error(Reply::json(500, json!({"code": 500, "reason": "InternalServiceFailure", "message": "internal"})));
    assert!(matches!(e, Error::UpstreamUnavailable(_)));
    let e = submit_error(Reply::text(502, "bad gateway"));
    assert!(matches!(e, Error::UpstreamUnavailable(_)));
    let e = submit_error(Reply::fail(Error::upstream("timed out")));
    assert_eq!(e, Error::upstream("timed out"));
}

#[test]
fn cancel_posts_to_the_cancel_endpoint() {
    let s = script()
        .exchange(
            Expect::post(format!("{API_BASE}/tasks/t-7/cancel")).header("authorization", AUTH).json(json!({"id": "t-7"})),
            Reply::json(200, json!({})),
        )
        .exchange(
            Expect::post(format!("{API_BASE}/tasks/t-7/cancel")),
            Reply::json(400, json!({"code": 400, "reason": "BadRequest", "message": "task state is scheduled, can not cancel"})),
        )
        .install();
    Vidu.cancel("vidu:v1:n:t-7").unwrap();
    assert!(matches!(Vidu.cancel("vidu:v1:n:t-7"), Err(Error::InvalidRequest(m)) if m.contains("can not cancel")));
    s.finish();
}

#[test]
fn handles_round_trip_and_garbage_is_refused() {
    for (region, encoded) in [(Region::Global, "vidu:v1:p:abc-1"), (Region::Mainland, "vidu-cn:v1:p:abc-1")] {
        let h = handle::TaskHandle { task_id: "abc-1".into(), off_peak: true, region };
        assert_eq!(h.encode(), encoded);
        assert_eq!(handle::TaskHandle::decode(encoded).unwrap(), h);
    }
    for bad in ["", "vidu:v1:", "vidu:v1:x:abc", "vidu:v1:n:", "vidu:v1:n:a/b", "kling:v1:n:abc", "vidu-eu:v1:n:abc", "vidu:v2:n:abc"] {
        assert!(matches!(handle::TaskHandle::decode(bad), Err(Error::InvalidRequest(_))), "{bad}");
    }
}

#[test]
fn the_mainland_platform_serves_submit_poll_and_cancel_when_chosen() {
    let s = script()
        .secret(REGION_SECRET, "cn")
        .exchange(
            Expect::post(format!("{API_BASE_CN}/text2video")).header("authorization", AUTH).json(json!({
                "model": "viduq3-pro", "prompt": "a fox", "duration": 10,
                "resolution": "1080p", "off_peak": false, "aspect_ratio": "16:9"
            })),
            created("cn-1"),
        )
        .exchange(
            Expect::get(format!("{API_BASE_CN}/tasks/cn-1/creations")).header("authorization", AUTH),
            Reply::json(200, json!({"state": "success", "creations": [{"url": "https://files.vidu.cn/v.mp4"}]})),
        )
        .exchange(
            Expect::post(format!("{API_BASE_CN}/tasks/cn-1/cancel")).json(json!({"id": "cn-1"})),
            Reply::json(200, json!({})),
        )
        .install();
    let handle = pending(Vidu.submit(t2v("a fox")).unwrap()).handle;
    assert_eq!(handle, "vidu-cn:v1:n:cn-1");
    assert!(matches!(Vidu.poll(&handle).unwrap(), PollOutcome::Finished(_)));
    Vidu.cancel(&handle).unwrap();
    s.finish();
}

#[test]
fn a_handle_keeps_its_platform_when_the_setting_changes() {
    // A task submitted before the operator switched to `cn` is still on api.vidu.com, and a
    // mainland task is still on api.vidu.cn after switching back.
    let s = script()
        .secret(REGION_SECRET, "cn")
        .exchange(Expect::get(format!("{API_BASE}/tasks/g-1/creations")), Reply::json(200, json!({"state": "processing"})))
        .install();
    assert!(matches!(Vidu.poll("vidu:v1:n:g-1").unwrap(), PollOutcome::Running { .. }));
    s.finish();
    let s = script()
        .exchange(Expect::get(format!("{API_BASE_CN}/tasks/c-1/creations")), Reply::json(200, json!({"state": "queueing"})))
        .install();
    assert!(matches!(Vidu.poll("vidu-cn:v1:p:c-1").unwrap(), PollOutcome::Running { poll_after_ms: 300_000, .. }));
    s.finish();
}

#[test]
fn an_unknown_region_is_a_configuration_error_before_any_request() {
    let _s = script().secret(REGION_SECRET, "beijing").install();
    assert!(matches!(Vidu.submit(t2v("a fox")), Err(Error::Internal(m)) if m.contains("VIDU_REGION")));
}
