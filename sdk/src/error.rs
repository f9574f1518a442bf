//! Typed failures, mirroring the contract's `provider-error`.

use std::fmt;

/// Why a call failed. The host maps each variant onto every API's own HTTP outcome, so
/// pick the one that tells the client the truth: a bad prompt is [`Error::InvalidRequest`]
/// (400), a vendor outage is [`Error::UpstreamUnavailable`] (retryable), and so on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request is wrong for this model (the client sees 400).
    InvalidRequest(Fault),
    /// The vendor refused the operator's credentials or account: a key it rejects, an
    /// account suspended or out of credit (refused until the operator acts, so never
    /// [`Error::RateLimited`]). The host logs the message for the operator and tells the
    /// client only that the credentials were refused.
    Unauthorized(String),
    /// Slow down; seconds to wait when the vendor says.
    RateLimited(Option<u64>),
    /// Moderation refused the prompt or an input.
    ContentRejected(Fault),
    /// The vendor is down, timed out or answered nonsense.
    UpstreamUnavailable(String),
    /// Anything else.
    Internal(String),
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a refused request carries: its message (which a `Fault` reads as, through `Deref`)
/// and, where the vendor says them, its error code and the parameter at fault, which OpenAI's
/// clients read as the error's `code` and `param` (set them with [`Error::with_code`] and
/// [`Error::with_param`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fault {
    /// What is wrong, for the client.
    pub message: String,
    /// The vendor's error code (`context_length_exceeded`).
    pub code: Option<String>,
    /// The request parameter at fault (`messages`).
    pub param: Option<String>,
}

impl From<String> for Fault {
    fn from(message: String) -> Self {
        Fault { message, ..Fault::default() }
    }
}

impl From<&str> for Fault {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

impl std::ops::Deref for Fault {
    type Target = str;

    fn deref(&self) -> &str {
        &self.message
    }
}

impl PartialEq<&str> for Fault {
    fn eq(&self, other: &&str) -> bool {
        self.message == *other
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error {
    /// Shorthand for [`Error::InvalidRequest`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidRequest(message.into().into())
    }

    /// Shorthand for [`Error::ContentRejected`].
    pub fn rejected(message: impl Into<String>) -> Self {
        Error::ContentRejected(message.into().into())
    }

    /// The vendor's error code on a refused request ([`Error::InvalidRequest`],
    /// [`Error::ContentRejected`]); other errors carry none and are returned as they are.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        if let Error::InvalidRequest(fault) | Error::ContentRejected(fault) = &mut self {
            fault.code = Some(code.into());
        }
        self
    }

    /// The request parameter at fault on a refused request, as [`Error::with_code`].
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        if let Error::InvalidRequest(fault) | Error::ContentRejected(fault) = &mut self {
            fault.param = Some(param.into());
        }
        self
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
