//! Offline tests against ModelArk's documented wire format: each request's method, URL,
//! bearer key and JSON body are checked by `testing::Script`.

use super::*;
use easel_sdk::InputMedia;
use easel_sdk::testing::{Expect, Reply, Script};

const AUTH: &str = "Bearer ark-test";
const MODEL: &str = "dreamina-seedance-2-0-260128";

fn script() -> Script {
    Script::new().secret(ARK_API_KEY, "ark-test")
}

fn url() -> String {
    format!("{API_BASE}/contents/generations/tasks")
}

fn req(prompt: &str) -> GenerationRequest {
    GenerationRequest::new("video.generate", MODEL, prompt)
}

fn media(kind: &str, role: Option<&str>, url: &str) -> InputMedia {
    InputMedia { kind: kind.into(), role: role.map(str::to_string), url: Some(url.into()), ..Default::default() }
}

fn defaults(content: Value) -> Value {
    json!({"model": MODEL, "content": content, "ratio": "adaptive", "duration": 5, "resolution": "720p",
           "generate_audio": true, "watermark": false})
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

fn submit_error(reply: Reply) -> Error {
    let _s = script().exchange(Expect::post(url()), reply).install();
    SeedanceOverseas.submit(req("a fox")).unwrap_err()
}

fn ark_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"error": {"code": code, "message": message, "param": "", "type": "BadRequest"}}))
}

#[test]
fn manifest_declares_the_model_hosts_and_secrets() {
    let m = SeedanceOverseas.manifest();
    assert_eq!(m.id, "seedance-overseas");
    assert_eq!(
        m.allowed_hosts,
        ["ark.ap-southeast.bytepluses.com", "ark-content-generation-ap-southeast-1.tos-ap-southeast-1.volces.com"]
    );
    assert_eq!(m.secrets, ["ARK_API_KEY", "BYTEPLUS_API_KEY"]);
    assert!(!m.idempotent_submit);
    let model = &m.models[0];
    assert_eq!((model.key.as_str(), model.kind.as_str()), (MODEL, "video"));
    assert_eq!(model.capabilities, ["video.generate"]);
    let p = &model.params_schema["properties"];
    assert_eq!(p["resolution"]["enum"], json!(["480p", "720p", "1080p"]));
    // Mode-dependent defaults, picked at submit.
    assert!(p["resolution"].get("default").is_none() && p["duration"].get("default").is_none());
    assert_eq!(model.extra["catelogid"], json!(["t2v", "i2v", "ref2v"]));
    assert_eq!(p["ratio"]["default"], "adaptive");
    for r in ["16:9", "4:3", "1:1", "3:4", "9:16"] {
        assert!(p["ratio"]["enum"].as_array().unwrap().contains(&json!(r)));
    }
    assert_eq!((p["duration"]["minimum"].clone(), p["duration"]["maximum"].clone()), (json!(4), json!(15)));
}

#[test]
fn text_to_video_posts_the_documented_task() {
    let s = script()
        .exchange(
            Expect::post(url()).header("authorization", AUTH).header("content-type", "application/json").json(defaults(json!([
                {"type": "text", "text": "a kitten chasing a mouse"}
            ]))),
            Reply::json(200, json!({"id": "cgt-20260101-abc"})),
        )
        .install();
    assert_eq!(handle_of(SeedanceOverseas.submit(req("a kitten chasing a mouse")).unwrap()), "seedance-overseas:v1:cgt-20260101-abc");
    s.finish();
}

#[test]
fn parameters_and_first_last_frames_are_sent_with_roles() {
    let last = InputMedia { kind: "image".into(), role: Some("last_frame".into()), data: Some(b"hi".to_vec()), content_type: Some("image/jpeg".into()), ..Default::default() };
    let s = script()
        .exchange(
            Expect::post(url()).json(json!({
                "model": MODEL,
                "content": [
                    {"type": "text", "text": "from one to two"},
                    {"type": "image_url", "image_url": {"url": "https://cdn.example.com/1.png"}, "role": "first_frame"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,aGk="}, "role": "last_frame"}
                ],
                "ratio": "16:9", "duration": 10, "resolution": "480p", "generate_audio": false, "watermark": false, "seed": 11,
                "return_last_frame": true
            })),
            Reply::json(200, json!({"id": "cgt-2"})),
        )
        .install();
    let r = req("from one to two")
        .param("ratio", "16:9")
        .param("duration", 10)
        .param("resolution", "480p")
        .param("generate_audio", false)
        .param("seed", 11)
        .param("return_last_frame", true)
        .input(media("image", Some("first_frame"), "https://cdn.example.com/1.png"))
        .input(last);
    handle_of(SeedanceOverseas.submit(r).unwrap());
    s.finish();
}

#[test]
fn references_carry_images_videos_and_audio_with_the_reference_mode_defaults() {
    let reference_mode = |content: Value| {
        let mut body = defaults(content);
        body["resolution"] = json!("1080p");
        body["duration"] = json!(12);
        body
    };
    let s = script()
        .exchange(
            Expect::post(url()).json(reference_mode(json!([
                {"type": "text", "text": "use the music"},
                {"type": "image_url", "image_url": {"url": "https://cdn.example.com/r.png"}, "role": "reference_image"},
                {"type": "video_url", "video_url": {"url": "https://cdn.example.com/v.mp4"}, "role": "reference_video"},
                {"type": "audio_url", "audio_url": {"url": "https://cdn.example.com/a.mp3"}, "role": "reference_audio"}
            ]))),
            Reply::json(200, json!({"id": "cgt-3"})),
        )
        .install();
    let r = req("use the music")
        .input(media("image", Some("reference"), "https://cdn.example.com/r.png"))
        .input(media("video", None, "https://cdn.example.com/v.mp4"))
        .input(media("audio", Some("reference"), "https://cdn.example.com/a.mp3"));
    handle_of(SeedanceOverseas.submit(r).unwrap());
    s.finish();
}

#[test]
fn impossible_inputs_are_refused_before_any_request() {
    let _s = script().install();
    let video_bytes = InputMedia { kind: "video".into(), data: Some(vec![0]), ..Default::default() };
    assert!(matches!(SeedanceOverseas.submit(req("x").input(video_bytes)), Err(Error::InvalidRequest(m)) if m.contains("public URL")));
    let mixed = req("x").input(media("image", Some("first_frame"), "https://a/1.png")).input(media("image", Some("reference"), "https://a/2.png"));
    assert!(matches!(SeedanceOverseas.submit(mixed), Err(Error::InvalidRequest(_))));
    let last_only = req("x").input(media("image", Some("last_frame"), "https://a/1.png"));
    assert!(matches!(SeedanceOverseas.submit(last_only), Err(Error::InvalidRequest(_))));
    let video_frame = req("x").input(media("video", Some("first_frame"), "https://a/1.mp4"));
    assert!(matches!(SeedanceOverseas.submit(video_frame), Err(Error::InvalidRequest(_))));
    assert!(matches!(SeedanceOverseas.submit(req("")), Err(Error::InvalidRequest(_))));
}

#[test]
fn pending_then_success_returns_the_video_its_last_frame_and_usage() {
    let task = format!("{}/cgt-9", url());
    let s = script()
        .exchange(Expect::post(url()), Reply::json(200, json!({"id": "cgt-9"})))
        .exchange(Expect::get(&task).header("authorization", AUTH), Reply::json(200, json!({"id": "cgt-9", "status": "queued"})))
        .exchange(Expect::get(&task), Reply::json(200, json!({"id": "cgt-9", "status": "running"})))
        .exchange(
            Expect::get(&task),
            Reply::json(200, json!({
                "id": "cgt-9", "model": MODEL, "status": "succeeded",
                "content": {"video_url": "https://ark-content.bytepluses.com/v.mp4", "last_frame_url": "https://ark-content.bytepluses.com/last.png"},
                "usage": {"completion_tokens": 108900, "total_tokens": 108900}
            })),
        )
        .install();
    let h = handle_of(SeedanceOverseas.submit(req("a fox")).unwrap());
    for _ in 0..2 {
        assert_eq!(SeedanceOverseas.poll(&h).unwrap(), PollOutcome::Running { progress: None, poll_after_ms: 15_000 });
    }
    let PollOutcome::Finished(done) = SeedanceOverseas.poll(&h).unwrap() else { panic!("expected finished") };
    assert_eq!(done.outputs, [
        Output::Url { url: "https://ark-content.bytepluses.com/v.mp4".into(), content_type: Some("video/mp4".into()) },
        Output::Url { url: "https://ark-content.bytepluses.com/last.png".into(), content_type: Some("image/png".into()) },
    ]);
    assert_eq!(done.usage.unwrap()["completion_tokens"], 108900);
    s.finish();
}

#[test]
fn failed_cancelled_and_expired_tasks_end_the_poll() {
    let task = format!("{}/cgt-4", url());
    let s = script()
        .exchange(Expect::get(&task), Reply::json(200, json!({"status": "failed", "error": {"code": "OutputVideoSensitiveContentDetected", "message": "flagged"}})))
        .exchange(Expect::get(&task), Reply::json(200, json!({"status": "failed", "error": {"code": "InternalServiceError", "message": "oops"}})))
        .exchange(Expect::get(&task), Reply::json(200, json!({"status": "expired"})))
        .install();
    let h = "seedance-overseas:v1:cgt-4";
    assert!(matches!(SeedanceOverseas.poll(h).unwrap(), PollOutcome::Failed(Error::ContentRejected(m)) if m.contains("flagged")));
    assert!(matches!(SeedanceOverseas.poll(h).unwrap(), PollOutcome::Failed(Error::UpstreamUnavailable(_))));
    assert!(matches!(SeedanceOverseas.poll(h).unwrap(), PollOutcome::Failed(Error::UpstreamUnavailable(_))));
    s.finish();
}

/// A task ModelArk calls a success but that has no video will never have one: it fails now,
/// naming why, instead of being polled as an outage for a day. A last frame alone is no video.
#[test]
fn a_success_without_a_video_fails_the_task() {
    let task = format!("{}/cgt-5", url());
    let s = script()
        .exchange(Expect::get(&task), Reply::json(200, json!({"id": "cgt-5", "status": "succeeded", "content": {}})))
        .exchange(
            Expect::get(&task),
            Reply::json(200, json!({"id": "cgt-5", "status": "succeeded",
                                    "content": {"video_url": "", "last_frame_url": "https://ark-content.bytepluses.com/last.png"}})),
        )
        .install();
    for _ in 0..2 {
        let outcome = SeedanceOverseas.poll("seedance-overseas:v1:cgt-5").unwrap();
        assert!(
            matches!(&outcome, PollOutcome::Failed(Error::UpstreamUnavailable(m))
                if m.contains("ModelArk reported that task cgt-5 succeeded but returned no output") && m.contains("content.video_url")),
            "{outcome:?}"
        );
    }
    s.finish();
}

#[test]
fn byteplus_api_key_is_the_fallback_secret() {
    let s = Script::new()
        .secret(BYTEPLUS_API_KEY, "bp-key")
        .exchange(Expect::post(url()).header("authorization", "Bearer bp-key"), Reply::json(200, json!({"id": "cgt-5"})))
        .install();
    handle_of(SeedanceOverseas.submit(req("a fox")).unwrap());
    s.finish();
    let _none = Script::new().install();
    assert!(matches!(SeedanceOverseas.submit(req("a fox")), Err(Error::Unauthorized(m)) if m.contains("ARK_API_KEY")));
}

#[test]
fn auth_errors_map_to_unauthorized() {
    let e = submit_error(ark_error(401, "AuthenticationError", "the API key is invalid"));
    assert!(matches!(e, Error::Unauthorized(m) if m.contains("AuthenticationError")));
}

#[test]
fn rate_limits_map_to_rate_limited_and_overdue_accounts_to_unauthorized() {
    assert_eq!(submit_error(ark_error(429, "RateLimitExceeded", "slow down").header("Retry-After", "30")), Error::RateLimited(Some(30)));
    assert_eq!(submit_error(ark_error(429, "QuotaExceeded", "quota")), Error::RateLimited(None));
    let overdue = submit_error(ark_error(403, "AccountOverdueError", "overdue"));
    assert!(matches!(overdue, Error::Unauthorized(m) if m.contains("AccountOverdueError")));
}

#[test]
fn moderation_maps_to_content_rejected() {
    let e = submit_error(ark_error(400, "InputTextSensitiveContentDetected", "the prompt may contain sensitive content"));
    assert!(matches!(e, Error::ContentRejected(_)));
}

#[test]
fn bad_parameters_map_to_invalid_request() {
    let e = submit_error(ark_error(400, "InvalidParameter", "duration must be within [4, 15]"));
    assert!(matches!(e, Error::InvalidRequest(m) if m.contains("duration")));
}

#[test]
fn server_errors_map_to_upstream_unavailable() {
    assert!(matches!(submit_error(ark_error(500, "InternalServiceError", "x")), Error::UpstreamUnavailable(_)));
    assert!(matches!(submit_error(Reply::text(503, "unavailable")), Error::UpstreamUnavailable(_)));
    assert_eq!(submit_error(Reply::fail(Error::upstream("timed out"))), Error::upstream("timed out"));
}

#[test]
fn cancel_deletes_the_queued_task() {
    let task = format!("{}/cgt-7", url());
    let s = script()
        .exchange(Expect::delete(&task).header("authorization", AUTH), Reply::status(200))
        .exchange(Expect::delete(&task), ark_error(400, "InvalidParameter", "only queued tasks can be cancelled"))
        .install();
    SeedanceOverseas.cancel("seedance-overseas:v1:cgt-7").unwrap();
    assert!(matches!(SeedanceOverseas.cancel("seedance-overseas:v1:cgt-7"), Err(Error::InvalidRequest(_))));
    for bad in ["seedance-overseas:v1:../x", "seedance-overseas:v1:", "seedance-overseas:v2:cgt-7", "volcengine-task:v1:cgt-7"] {
        assert!(matches!(SeedanceOverseas.cancel(bad), Err(Error::InvalidRequest(_))), "{bad}");
    }
    s.finish();
}
