use super::*;
use easel_sdk::testing::Script;
use easel_sdk::{Error, GenerationRequest};

const T2I: &str = "/services/aigc/text2image/image-synthesis";

fn submit_against(reply: Reply) -> Error {
    let script = Script::new().secret("DASHSCOPE_API_KEY", KEY).exchange(async_post(T2I), reply).install();
    let e = DashScope.submit(GenerationRequest::new("image.generate", "wan2.2-t2i-flash", "x")).unwrap_err();
    script.finish();
    e
}

fn vendor_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"request_id": "r", "code": code, "message": message}))
}

#[test]
fn invalid_api_key_is_unauthorized() {
    let e = submit_against(vendor_error(401, "InvalidApiKey", "Invalid API-key provided."));
    assert_eq!(e, Error::Unauthorized("DashScope InvalidApiKey: Invalid API-key provided.".into()));
    let e = submit_against(vendor_error(403, "AccessDenied.Unpurchased", "Access to model denied."));
    assert!(matches!(e, Error::Unauthorized(_)));
}

#[test]
fn missing_key_is_unauthorized_without_any_request() {
    let _script = Script::new().install();
    let e = DashScope.submit(GenerationRequest::new("image.generate", "wan2.2-t2i-flash", "x")).unwrap_err();
    assert!(matches!(e, Error::Unauthorized(m) if m.contains("DASHSCOPE_API_KEY")));
}

#[test]
fn throttling_is_rate_limited_with_retry_after_and_arrears_unauthorized() {
    let e = submit_against(vendor_error(429, "Throttling.RateQuota", "Requests rate limit exceeded.").header("Retry-After", "20"));
    assert_eq!(e, Error::RateLimited(Some(20)));
    let e = submit_against(vendor_error(429, "Throttling.AllocationQuota", "Free allocated quota exceeded."));
    assert_eq!(e, Error::RateLimited(None));
    let e = submit_against(vendor_error(400, "Arrearage", "Access denied, please make sure your account is in good standing."));
    assert!(matches!(e, Error::Unauthorized(m) if m.contains("Arrearage")));
}

#[test]
fn data_inspection_is_content_rejected_on_submit_and_in_a_failed_task() {
    let e = submit_against(vendor_error(400, "DataInspectionFailed", "Input data may contain inappropriate content."));
    assert!(matches!(e, Error::ContentRejected(m) if m.contains("inappropriate")));
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .exchange(
            get("/tasks/t-bad"),
            task_answer(
                json!({"task_id": "t-bad", "task_status": "FAILED", "code": "DataInspectionFailed",
                       "message": "Output data may contain inappropriate content."}),
                json!({}),
            ),
        )
        .exchange(
            get("/tasks/t-bad"),
            task_answer(
                json!({"task_id": "t-bad", "task_status": "FAILED", "code": "InvalidParameter",
                       "message": "The size is not match the allowed size"}),
                json!({}),
            ),
        )
        .exchange(
            get("/tasks/t-bad"),
            task_answer(json!({"task_id": "t-bad", "task_status": "FAILED", "code": "InternalError",
                               "message": "Internal error"}), json!({})),
        )
        .install();
    assert!(matches!(poll("dashscope-task:v1:cn:video:t-bad"), PollOutcome::Failed(Error::ContentRejected(_))));
    assert!(matches!(poll("dashscope-task:v1:cn:video:t-bad"), PollOutcome::Failed(Error::InvalidRequest(m)) if m.contains("size")));
    assert!(matches!(poll("dashscope-task:v1:cn:video:t-bad"), PollOutcome::Failed(Error::UpstreamUnavailable(_))));
    script.finish();
}

#[test]
fn bad_parameters_are_invalid_requests() {
    let e = submit_against(vendor_error(400, "InvalidParameter", "num_images_per_prompt must be 1 to 4"));
    assert_eq!(e, Error::InvalidRequest("DashScope InvalidParameter: num_images_per_prompt must be 1 to 4".into()));
}

#[test]
fn server_errors_and_transport_failures_are_upstream_unavailable() {
    let e = submit_against(vendor_error(500, "InternalError", "An internal error has occured."));
    assert!(matches!(e, Error::UpstreamUnavailable(m) if m.contains("InternalError")));
    let e = submit_against(Reply::text(503, "<html>busy</html>"));
    assert!(matches!(e, Error::UpstreamUnavailable(m) if m.contains("busy")));
    let e = submit_against(Reply::fail(Error::upstream("connect timed out")));
    assert_eq!(e, Error::upstream("connect timed out"));
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .exchange(get("/tasks/t-1"), vendor_error(500, "InternalError", "down"))
        .install();
    assert!(matches!(DashScope.poll("dashscope-task:v1:cn:image:t-1"), Err(Error::UpstreamUnavailable(_))));
    script.finish();
}
