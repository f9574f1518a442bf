//! Volcengine's request signature (HMAC-SHA256, "V4"): a canonical request over the
//! method, path, sorted query, the signed headers and the body's SHA-256, signed with a key
//! derived from the secret key, the date, the region and the service.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Where and as whom to sign.
pub struct Credentials<'a> {
    /// Access key id.
    pub access_key: &'a str,
    /// Secret access key.
    pub secret_key: &'a str,
}

/// The visual API's region and service.
pub const REGION: &str = "cn-north-1";
/// The visual API's service name.
pub const SERVICE: &str = "cv";

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time (UTC).
pub fn x_date(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// The headers to add to a POST of `body` to `host` with the (already sorted) `query`:
/// `X-Date`, `X-Content-Sha256` and `Authorization`.
pub fn headers(creds: &Credentials, host: &str, query: &str, body: &[u8], unix: u64) -> Vec<(String, String)> {
    let date_time = x_date(unix);
    let date = &date_time[..8];
    let body_hash = hex(&Sha256::digest(body));
    let signed_headers = "content-type;host;x-content-sha256;x-date";
    let canonical = format!(
        "POST\n/\n{query}\ncontent-type:application/json\nhost:{host}\nx-content-sha256:{body_hash}\nx-date:{date_time}\n\n{signed_headers}\n{body_hash}"
    );
    let scope = format!("{date}/{REGION}/{SERVICE}/request");
    let string_to_sign = format!("HMAC-SHA256\n{date_time}\n{scope}\n{}", hex(&Sha256::digest(canonical.as_bytes())));
    let k_date = hmac(creds.secret_key.as_bytes(), date);
    let k_region = hmac(&k_date, REGION);
    let k_service = hmac(&k_region, SERVICE);
    let k_signing = hmac(&k_service, "request");
    let signature = hex(&hmac(&k_signing, &string_to_sign));
    vec![
        ("X-Date".into(), date_time.clone()),
        ("X-Content-Sha256".into(), body_hash),
        (
            "Authorization".into(),
            format!("HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}", creds.access_key),
        ),
    ]
}
