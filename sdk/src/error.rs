//! Typed failures, mirroring the contract's `provider-error`.

use std::fmt;

/// Why a call failed. The host maps each variant onto every API's own HTTP outcome, so
/// pick the one that tells the client the truth: a bad prompt is [`Error::InvalidRequest`]
/// (400), a vendor outage is [`Error::UpstreamUnavailable`] (retryable), and so on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request is wrong for this model (the client sees 400).
    InvalidRequest(String),
    /// The vendor refused the operator's credentials or account: a key it rejects, an
    /// account suspended or out of credit (refused until the operator acts, so never
    /// [`Error::RateLimited`]). The host logs the message for the operator and tells the
    /// client only that the credentials were refused.
    Unauthorized(String),
    /// Slow down; seconds to wait when the vendor says.
    RateLimited(Option<u64>),
    /// Moderation refused the prompt or an input.
    ContentRejected(String),
    /// The vendor is down, timed out or answered nonsense.
    UpstreamUnavailable(String),
    /// Anything else.
    Internal(String),
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidRequest`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidRequest(message.into())
    }

    /// Shorthand for [`Error::UpstreamUnavailable`].
    pub fn upstream(message: impl Into<String>) -> Self {
        Error::UpstreamUnavailable(message.into())
    }

    /// Shorthand for [`Error::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            Error::Unauthorized(m) => write!(f, "unauthorized: {m}"),
            Error::RateLimited(Some(s)) => write!(f, "rate limited: retry after {s} s"),
            Error::RateLimited(None) => write!(f, "rate limited"),
            Error::ContentRejected(m) => write!(f, "content rejected: {m}"),
            Error::UpstreamUnavailable(m) => write!(f, "upstream unavailable: {m}"),
            Error::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    /// JSON that does not parse is the vendor's fault more often than not; requests are
    /// validated by the host before they reach a plugin.
    fn from(e: serde_json::Error) -> Self {
        Error::UpstreamUnavailable(format!("bad JSON: {e}"))
    }
}
