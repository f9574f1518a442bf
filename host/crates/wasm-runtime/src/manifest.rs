//! The plugin manifest as the host sees it, and its validation.
//!
//! Invariants: a manifest that fails [`PluginManifest::validate`] is never published (the
//! plugin is refused at load and by `easel plugin check`); JSON carried as text in the
//! contract (`params-schema`, `extra`) is parsed once here, so a malformed schema, or one
//! using a keyword easel cannot check, is a load error rather than a per-request surprise.

use easel_provider::{Capability, ModelInfo};
use serde::Serialize;

/// What a plugin is and what it may touch, version-independent.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PluginManifest {
    /// Stable provider id.
    pub id: String,
    /// The plugin's own version.
    pub version: String,
    /// Models served.
    pub models: Vec<ModelInfo>,
    /// Hosts it may call (`api.example.com` or `*.example.com`).
    pub allowed_hosts: Vec<String>,
    /// Secret names it reads.
    pub secrets: Vec<String>,
    /// Whether submitting twice cannot charge twice.
    pub idempotent_submit: bool,
}

/// Parses a JSON object carried as text; `what` names it in the error.
pub(crate) fn json_object(
    text: &str,
    what: &str,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    if text.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => anyhow::bail!("{what} is not a JSON object"),
        Err(e) => anyhow::bail!("{what} is not valid JSON: {e}"),
    }
}

impl PluginManifest {
    /// Checks ids, kinds, capabilities, parameter schemas (every keyword must be one easel
    /// enforces) and host patterns.
    pub fn validate(&self) -> anyhow::Result<()> {
        let id_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        };
        anyhow::ensure!(
            id_ok(&self.id),
            "provider id {:?} must be non-empty lowercase ascii, digits, '-', '_' or '.'",
            self.id
        );
        anyhow::ensure!(
            !easel_provider::BUILT_IN_PROVIDERS.contains(&self.id.as_str()),
            "provider id {:?} is one of easel's own providers ({}): pick another",
            self.id,
            easel_provider::BUILT_IN_PROVIDERS.join(", ")
        );
        anyhow::ensure!(!self.version.trim().is_empty(), "version is empty");
        let mut keys = std::collections::HashSet::new();
        for m in &self.models {
            anyhow::ensure!(
                !m.key.is_empty() && !m.key.contains('/'),
                "model key {:?} is empty or contains '/'",
                m.key
            );
            anyhow::ensure!(
                keys.insert(m.key.as_str()),
                "model key {:?} appears twice",
                m.key
            );
            anyhow::ensure!(
                ["image", "video", "audio", "chat"].contains(&m.kind.as_str()),
                "model {}: kind {:?} is not image, video, audio or chat",
                m.key,
                m.kind
            );
            if let Err(error) = easel_provider::schema::ParamsSchema::compile(&m.params_schema) {
                anyhow::bail!("model {}: {error}", m.key);
            }
            for c in &m.capabilities {
                if let Err(unknown) = c.parse::<Capability>() {
                    anyhow::bail!("model {}: {unknown}", m.key);
                }
            }
        }
        for h in &self.allowed_hosts {
            anyhow::ensure!(
                easel_allowlist::valid_pattern(h),
                "allowed host {h:?} is not a host name, an IP address or a `*.domain` wildcard \
                 (without a port or brackets)"
            );
        }
        for s in &self.secrets {
            anyhow::ensure!(!s.is_empty(), "empty secret name");
        }
        Ok(())
    }

    /// What a valid manifest declares that can never work, for `easel plugin check` to say:
    /// no models, a model no route can use (no capability), an allowed host that is a
    /// loopback or private address (easel never lets a plugin reach one), a secret that is one
    /// of easel's own settings (never given to a plugin).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.models.is_empty() {
            warnings.push("the manifest declares no models: the plugin serves nothing".into());
        }
        for model in self.models.iter().filter(|m| m.capabilities.is_empty()) {
            warnings.push(format!(
                "model {} has no capability: no route can use it",
                model.key
            ));
        }
        for host in &self.allowed_hosts {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let private = bare.eq_ignore_ascii_case("localhost")
                || bare
                    .parse()
                    .is_ok_and(easel_provider::net::is_forbidden_target);
            if private {
                warnings.push(format!(
                    "allowed host {host} is a loopback or private address, which easel never \
                     lets a plugin reach (outside tests with EASEL_ALLOW_PRIVATE_TARGETS)"
                ));
            }
        }
        for secret in self
            .secrets
            .iter()
            .filter(|s| crate::secrets::is_easel_setting(s))
        {
            warnings.push(format!(
                "secret {secret} is one of easel's own settings, which no plugin is given"
            ));
        }
        for secret in self
            .secrets
            .iter()
            .filter(|s| crate::secrets::is_bucket_credential(s))
        {
            warnings.push(format!(
                "secret {secret} is also the name of easel's asset bucket credentials: the \
                 plugin gets it only from its own {}",
                crate::secrets::own_variable(&self.id, secret)
            ));
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::PluginManifest;

    #[test]
    fn a_plugin_may_not_take_a_built_in_provider_s_id() {
        let manifest = |id: &str| PluginManifest {
            id: id.into(),
            version: "1.0.0".into(),
            models: Vec::new(),
            allowed_hosts: Vec::new(),
            secrets: Vec::new(),
            idempotent_submit: false,
        };
        assert!(manifest("acme").validate().is_ok());
        for id in ["local", "offline"] {
            let refused = manifest(id).validate().unwrap_err().to_string();
            assert!(
                refused.contains("one of easel's own providers"),
                "{refused}"
            );
        }
    }

    #[test]
    fn secrets_easel_keeps_for_itself_are_warned_of() {
        let manifest = PluginManifest {
            id: "bed-rock".into(),
            version: "1.0.0".into(),
            models: Vec::new(),
            allowed_hosts: Vec::new(),
            secrets: vec![
                "DATABASE_URL".into(),
                "AWS_SECRET_ACCESS_KEY".into(),
                "KEY".into(),
            ],
            idempotent_submit: false,
        };
        assert_eq!(
            manifest.warnings(),
            [
                "the manifest declares no models: the plugin serves nothing",
                "secret DATABASE_URL is one of easel's own settings, which no plugin is given",
                "secret AWS_SECRET_ACCESS_KEY is also the name of easel's asset bucket \
                 credentials: the plugin gets it only from its own \
                 EASEL_PLUGIN_BED_ROCK__AWS_SECRET_ACCESS_KEY"
            ]
        );
    }
}
