use super::*;
use easel_sdk::testing::Script;
use easel_sdk::{Error, GenerationRequest};

fn submit_against(reply: Reply) -> Error {
    let script = Script::new()
        .secret("ARK_API_KEY", KEY)
        .exchange(ark(Expect::post, "/contents/generations/tasks"), reply)
        .install();
    let e = Volcengine.submit(GenerationRequest::new("video.generate", "doubao-seedance-2-0-260128", "x")).unwrap_err();
    script.finish();
    e
}

#[test]
fn authentication_errors_are_unauthorized() {
    let e = submit_against(ark_error(401, "AuthenticationError", "the API key or AK/SK in the request is missing or invalid"));
    assert!(matches!(e, Error::Unauthorized(m) if m.contains("AuthenticationError")));
    let e = submit_against(ark_error(403, "OperationDenied.ServiceNotOpen", "the model service is not activated"));
    assert!(matches!(e, Error::Unauthorized(_)));
    let _s = Script::new().install();
    let e = Volcengine.submit(GenerationRequest::new("video.generate", "doubao-seedance-2-0-260128", "x")).unwrap_err();
    assert!(matches!(e, Error::Unauthorized(m) if m.contains("ARK_API_KEY")));
}

#[test]
fn rate_and_quota_limits_are_rate_limited_and_overdue_accounts_unauthorized() {
    assert_eq!(
        submit_against(ark_error(429, "RateLimitExceeded.EndpointRPMExceeded", "too many requests").header("retry-after", "30")),
        Error::RateLimited(Some(30))
    );
    assert_eq!(submit_against(ark_error(429, "QuotaExceeded", "quota exceeded")), Error::RateLimited(None));
    let overdue = submit_against(ark_error(403, "AccountOverdueError", "account overdue"));
    assert!(matches!(overdue, Error::Unauthorized(m) if m.contains("AccountOverdueError")));
}

#[test]
fn sensitive_content_is_content_rejected() {
    let e = submit_against(ark_error(400, "InputTextSensitiveContentDetected", "The request failed because the input text may contain sensitive information."));
    assert!(matches!(e, Error::ContentRejected(m) if m.contains("sensitive")));
    let e = submit_against(ark_error(400, "InputImageSensitiveContentDetected", "image"));
    assert!(matches!(e, Error::ContentRejected(_)));
}

#[test]
fn bad_parameters_are_invalid_requests() {
    let e = submit_against(ark_error(400, "InvalidParameter", "the parameter `duration` specified in the request is not valid"));
    assert_eq!(e, Error::InvalidRequest("Volcengine Ark InvalidParameter: the parameter `duration` specified in the request is not valid".into()));
    let e = submit_against(ark_error(404, "InvalidEndpointOrModel.NotFound", "model not found"));
    assert!(matches!(e, Error::InvalidRequest(_)));
}

#[test]
fn server_errors_and_transport_failures_are_upstream_unavailable() {
    assert!(matches!(submit_against(ark_error(500, "InternalServiceError", "internal")), Error::UpstreamUnavailable(_)));
    assert!(matches!(submit_against(Reply::text(502, "bad gateway")), Error::UpstreamUnavailable(m) if m.contains("bad gateway")));
    assert_eq!(submit_against(Reply::fail(Error::upstream("reset"))), Error::upstream("reset"));
}
