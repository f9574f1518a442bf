//! Offline tests against the visual API's documented wire format. The signature depends on
//! the clock, so the signer is checked against a vector computed independently, and each
//! request's `Authorization` is recomputed from its own `X-Date` and body.

use super::*;
use easel_sdk::testing::{Expect, Reply, Script, ScriptGuard};

const SUBMIT: &str = "https://visual.volcengineapi.com/?Action=CVSync2AsyncSubmitTask&Version=2022-08-31";
const RESULT: &str = "https://visual.volcengineapi.com/?Action=CVSync2AsyncGetResult&Version=2022-08-31";

fn script() -> Script {
    Script::new().secret(ACCESS_KEY, "AKtest").secret(SECRET_KEY, "SKtest")
}

fn ok(data: Value) -> Reply {
    Reply::json(200, json!({"code": 10000, "message": "Success", "request_id": "r", "status": 10000, "data": data}))
}

fn url_image(url: &str) -> InputMedia {
    InputMedia { kind: "image".into(), url: Some(url.into()), ..Default::default() }
}

fn handle_of(s: Submission) -> String {
    match s {
        Submission::Pending(p) => p.handle,
        other => panic!("expected pending, got {other:?}"),
    }
}

/// Every request was signed for AKtest/SKtest over its own date and body.
fn assert_signed(guard: &ScriptGuard) {
    for request in guard.requests() {
        let x_date = request.header_value("x-date").expect("X-Date");
        let query = request.url().split_once('?').unwrap().1;
        let creds = sign::Credentials { access_key: "AKtest", secret_key: "SKtest" };
        let expected = sign_at(&creds, query, request.body_bytes(), x_date);
        assert_eq!(request.header_value("authorization"), Some(expected.as_str()));
        assert!(expected.starts_with("HMAC-SHA256 Credential=AKtest/"));
    }
}

fn sign_at(creds: &sign::Credentials, query: &str, body: &[u8], x_date: &str) -> String {
    // Find the Unix second whose X-Date is the request's (searching around now).
    let now = now();
    let unix = (now.saturating_sub(3600)..now + 3600).find(|t| sign::x_date(*t) == x_date).expect("X-Date near now");
    sign::headers(creds, API_HOST, query, body, unix).into_iter().find(|(n, _)| n == "Authorization").unwrap().1
}

#[test]
fn signature_matches_an_independent_computation() {
    let creds = sign::Credentials { access_key: "AKtest", secret_key: "SKtest" };
    let headers = sign::headers(&creds, API_HOST, "Action=CVSync2AsyncSubmitTask&Version=2022-08-31", br#"{"req_key":"jimeng_t2i_v40"}"#, 1_700_000_000);
    assert_eq!(headers[0], ("X-Date".to_string(), "20231114T221320Z".to_string()));
    assert_eq!(
        headers[2].1,
        "HMAC-SHA256 Credential=AKtest/20231114/cn-north-1/cv/request, SignedHeaders=content-type;host;x-content-sha256;x-date, \
         Signature=ad2250ed2d8917abea0ecb1b39ad606304c2d7cfea547529564beab50297d3a5"
    );
    assert_eq!(sign::x_date(951_782_400), "20000229T000000Z", "leap day");
}

#[test]
fn manifest_has_one_model_per_seed_001_capability() {
    let m = Jimeng.manifest();
    assert_eq!(m.id, "jimeng");
    assert_eq!(m.allowed_hosts, ["visual.volcengineapi.com", "*.byteimg.com"]);
    assert_eq!(m.secrets, ["JIMENG_ACCESS_KEY", "JIMENG_SECRET_KEY", "VOLC_ACCESSKEY", "VOLC_SECRETKEY"]);
    let caps: Vec<_> = m.models.iter().map(|m| (m.key.as_str(), m.capabilities[0].as_str())).collect();
    assert_eq!(
        caps,
        [
            ("jimeng_t2i_v40", "image.generate"),
            ("jimeng_image2image_dream_inpaint", "image.inpaint"),
            ("jimeng_i2i_seed3_tilesr_cvtob", "image.upscale"),
            ("jimeng_ti2v_v30_pro", "video.generate")
        ]
    );
    assert_eq!(m.models[0].params_schema["properties"]["scale"]["default"], 50);
    assert_eq!(m.models[1].params_schema["properties"]["seed"]["default"], 101);
    assert!(m.models[1].params_schema["properties"].get("scale").is_none(), "inpainting has no strength field");
    assert_eq!(m.models[2].params_schema["properties"]["resolution"]["enum"], json!(["4k", "8k"]));
    assert_eq!(m.models[2].params_schema["properties"]["scale"]["default"], 50);
    assert_eq!(m.models[3].params_schema["properties"]["duration"]["maximum"], 15);
}

#[test]
fn generate_submits_then_polls_to_image_urls() {
    let s = script()
        .exchange(
            Expect::post(SUBMIT).header("content-type", "application/json").json(json!({
                "req_key": "jimeng_t2i_v40", "prompt": "旅游海报", "width": 1440, "height": 2560, "scale": 0.5,
                "force_single": true, "image_urls": ["https://example.com/reference.png"]
            })),
            ok(json!({"task_id": "7392616336519610409"})),
        )
        .exchange(
            Expect::post(RESULT).json(json!({"req_key": "jimeng_t2i_v40", "task_id": "7392616336519610409", "req_json": "{\"return_url\":true}"})),
            ok(json!({"status": "generating"})),
        )
        .exchange(Expect::post(RESULT), ok(json!({"status": "done", "image_urls": ["https://p3-aiop-sign.byteimg.com/1.png"]})))
        .install();
    let r = GenerationRequest::new("image.generate", "jimeng_t2i_v40", "旅游海报")
        .param("width", 1440)
        .param("height", 2560)
        .param("scale", 50)
        .input(url_image("https://example.com/reference.png"));
    let h = handle_of(Jimeng.submit(r).unwrap());
    assert_eq!(h, "jimeng:v1:jimeng_t2i_v40:7392616336519610409");
    assert_eq!(Jimeng.poll(&h).unwrap(), PollOutcome::Running { progress: None, poll_after_ms: 3_000 });
    let PollOutcome::Finished(done) = Jimeng.poll(&h).unwrap() else { panic!("expected finished") };
    assert_eq!(done.outputs, [Output::Url { url: "https://p3-aiop-sign.byteimg.com/1.png".into(), content_type: Some("image/png".into()) }]);
    assert_signed(&s);
    s.finish();
}

#[test]
fn inpaint_upscale_and_video_bodies() {
    let s = script()
        .exchange(
            Expect::post(SUBMIT).json(json!({
                "req_key": "jimeng_image2image_dream_inpaint", "prompt": "新品上市", "seed": 101,
                "binary_data_base64": ["AQ==", "Ag=="]
            })),
            ok(json!({"task_id": "a"})),
        )
        .exchange(
            Expect::post(SUBMIT).json(json!({
                "req_key": "jimeng_image2image_dream_inpaint", "prompt": "删除", "seed": -1,
                "image_urls": ["https://example.com/original.png", "https://example.com/mask.png"]
            })),
            ok(json!({"task_id": "a2"})),
        )
        .exchange(
            Expect::post(SUBMIT).json(json!({
                "req_key": "jimeng_i2i_seed3_tilesr_cvtob", "resolution": "8k", "scale": 50, "image_urls": ["https://example.com/in.png"]
            })),
            ok(json!({"task_id": "b"})),
        )
        .exchange(
            Expect::post(SUBMIT).json(json!({
                "req_key": "jimeng_ti2v_v30_pro", "prompt": "品牌短视频", "frames": 241, "seed": -1, "aspect_ratio": "9:16"
            })),
            ok(json!({"task_id": "c"})),
        )
        .install();
    let bytes = |b: u8, kind: &str| InputMedia { kind: kind.into(), data: Some(vec![b]), ..Default::default() };
    // The inpainting page has no strength field: seed 001's `scale` is not passed on.
    let inpaint = GenerationRequest::new("image.inpaint", "jimeng_image2image_dream_inpaint", "新品上市").param("scale", 80).input(bytes(1, "image")).input(bytes(2, "mask"));
    handle_of(Jimeng.submit(inpaint).unwrap());
    // Seed 001's form: two plain images, original then mask.
    let erase = GenerationRequest::new("image.inpaint", "jimeng_image2image_dream_inpaint", "删除")
        .param("seed", -1)
        .input(url_image("https://example.com/original.png"))
        .input(url_image("https://example.com/mask.png"));
    handle_of(Jimeng.submit(erase).unwrap());
    let upscale = GenerationRequest::new("image.upscale", "jimeng_i2i_seed3_tilesr_cvtob", "").param("resolution", "8k").input(url_image("https://example.com/in.png"));
    handle_of(Jimeng.submit(upscale).unwrap());
    let video = GenerationRequest::new("video.generate", "jimeng_ti2v_v30_pro", "品牌短视频").param("duration", 10).param("ratio", "9:16");
    assert_eq!(handle_of(Jimeng.submit(video).unwrap()), "jimeng:v1:jimeng_ti2v_v30_pro:c");
    assert_signed(&s);
    s.finish();
    let _none = script().install();
    let no_mask = GenerationRequest::new("image.inpaint", "jimeng_image2image_dream_inpaint", "x").input(url_image("https://a/1.png"));
    assert!(matches!(Jimeng.submit(no_mask), Err(Error::InvalidRequest(_))));
}

/// A task Jimeng calls done without its image or video ends at once, failed, naming what
/// was missing, rather than being polled as if Jimeng were down until the pending timeout.
#[test]
fn a_success_without_outputs_fails_the_task() {
    let s = script()
        .exchange(Expect::post(RESULT), ok(json!({"status": "done", "image_urls": []})))
        .exchange(Expect::post(RESULT), ok(json!({"status": "done", "video_url": ""})))
        .install();
    for (handle, missing) in [("jimeng:v1:jimeng_t2i_v40:t-1", "image_urls"), ("jimeng:v1:jimeng_ti2v_v30_pro:t-2", "video_url")] {
        let outcome = Jimeng.poll(handle).unwrap();
        let task = handle.rsplit(':').next().unwrap();
        assert!(
            matches!(&outcome, PollOutcome::Failed(Error::UpstreamUnavailable(m))
                if m.contains(&format!("Jimeng reported that task {task} succeeded but returned no output")) && m.contains(missing)),
            "{outcome:?}"
        );
    }
    s.finish();
}

#[test]
fn video_results_are_urls() {
    let s = script().exchange(Expect::post(RESULT), ok(json!({"status": "done", "video_url": "https://v.byteimg.com/v.mp4"}))).install();
    let PollOutcome::Finished(done) = Jimeng.poll("jimeng:v1:jimeng_ti2v_v30_pro:c").unwrap() else { panic!() };
    assert_eq!(done.outputs, [Output::Url { url: "https://v.byteimg.com/v.mp4".into(), content_type: Some("video/mp4".into()) }]);
    s.finish();
}

#[test]
fn handles_that_name_no_known_task_are_refused() {
    let _none = script().install();
    for bad in ["jimeng:v1:other:c", "jimeng:v1:jimeng_t2i_v40:", "jimeng:v1:jimeng_t2i_v40", "jimeng:v2:jimeng_t2i_v40:c"] {
        assert!(matches!(Jimeng.poll(bad), Err(Error::InvalidRequest(_))), "{bad}");
    }
}

#[test]
fn task_ids_are_opaque_to_the_handle() {
    // The id travels in a JSON body, not a URL, so whatever Jimeng issued polls as issued.
    let body = json!({"req_key": "jimeng_t2i_v40", "task_id": "a:b", "req_json": r#"{"return_url":true}"#});
    let s = script().exchange(Expect::post(RESULT).json(body), ok(json!({"status": "in_queue"}))).install();
    assert!(matches!(Jimeng.poll("jimeng:v1:jimeng_t2i_v40:a:b").unwrap(), PollOutcome::Running { .. }));
    s.finish();
}

fn submit_error(reply: Reply) -> Error {
    let _s = script().exchange(Expect::post(SUBMIT), reply).install();
    Jimeng.submit(GenerationRequest::new("image.generate", "jimeng_t2i_v40", "a cat")).unwrap_err()
}

fn code(code: i64, message: &str) -> Reply {
    Reply::json(200, json!({"code": code, "message": message, "request_id": "r", "status": code}))
}

#[test]
fn errors_map_to_typed_errors() {
    let auth = Reply::json(401, json!({"ResponseMetadata": {"Error": {"Code": "SignatureDoesNotMatch", "Message": "bad signature"}}}));
    assert!(matches!(submit_error(auth), Error::Unauthorized(_)));
    assert_eq!(submit_error(code(50429, "Request Has Reached API Limit")), Error::RateLimited(None));
    assert_eq!(submit_error(code(50430, "Request Has Reached API Concurrent Limit")), Error::RateLimited(None));
    assert!(matches!(submit_error(code(50412, "Text Risk Not Pass")), Error::ContentRejected(_)));
    assert!(matches!(submit_error(code(50413, "Post Text Risk Not Pass")), Error::ContentRejected(_)));
    assert!(matches!(submit_error(code(50207, "width invalid")), Error::InvalidRequest(_)));
    assert!(matches!(submit_error(code(50500, "Internal Error")), Error::UpstreamUnavailable(_)));
    assert!(matches!(submit_error(Reply::text(502, "bad gateway")), Error::UpstreamUnavailable(_)));
    let _s = Script::new().install();
    assert!(matches!(Jimeng.submit(GenerationRequest::new("image.generate", "jimeng_t2i_v40", "x")), Err(Error::Unauthorized(_))));
}

#[test]
fn cancel_is_not_offered_and_sends_nothing() {
    let s = script().install();
    assert!(matches!(Jimeng.cancel("jimeng:v1:jimeng_t2i_v40:1"), Err(Error::Internal(_))));
    assert!(s.requests().is_empty());
    s.finish();
}
