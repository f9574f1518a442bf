//! Kling's API token: a JWT signed with HS256, issued by the access key and signed with
//! the secret key, valid from 5 s ago (clock skew) for 30 minutes. A fresh token is made
//! for every request, so none ever expires in a handle.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use easel_sdk::serde_json::Value;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a token is valid, in seconds (Kling's maximum).
const LIFETIME_SECS: u64 = 1800;
/// How far back `nbf` reaches, for clocks that run a little ahead of Kling's.
const SKEW_SECS: u64 = 5;

/// The token for `access_key`/`secret_key` at Unix time `now`.
pub fn token(access_key: &str, secret_key: &str, now: u64) -> String {
    // Written out by hand so the members keep the documented order (iss, exp, nbf);
    // serde_json's maps would sort them.
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = format!(
        r#"{{"iss":{},"exp":{},"nbf":{}}}"#,
        Value::String(access_key.to_string()),
        now + LIFETIME_SECS,
        now.saturating_sub(SKEW_SECS)
    );
    let payload = URL_SAFE_NO_PAD.encode(claims);
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Seconds since the Unix epoch (wasi:clocks inside the component).
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
