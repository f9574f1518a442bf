//! Vendors that run two separate platforms, a global one and one for mainland China, under
//! different hosts with the same protocol (Vidu, Kling, MiniMax): which one a plugin calls.
//!
//! The operator picks with an optional secret, `<VENDOR>_REGION`, set to `global` (the
//! default, also when unset or empty) or `cn`. It is a secret rather than a parameter because
//! it belongs to the account, not to the request: an API key works only on the platform that
//! issued it. Both hosts stay in the plugin's manifest, so switching needs no new build.
//!
//! A task lives on the platform that created it, so pending handles carry the region
//! ([`crate::handle::encode_regional`]). Polls and cancels follow the handle, not the current
//! setting, so changing the setting never strands a task.

use easel_sdk::{Error, Result};

/// Which platform of the vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// The international platform (the default).
    Global,
    /// The mainland China platform.
    Mainland,
}

impl Region {
    /// The region the operator set in the secret `name`; `Global` when it is unset or empty.
    /// A value other than `global` or `cn` is a configuration mistake, reported as such
    /// rather than guessed at, since a wrong guess sends the key to the wrong platform.
    pub fn configured(name: &str) -> Result<Region> {
        let value = easel_sdk::secret(name).unwrap_or_default();
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "global" => Ok(Region::Global),
            "cn" => Ok(Region::Mainland),
            other => Err(Error::internal(format!("{name} is `{other}`; use `global` or `cn`"))),
        }
    }

    /// `global` or `mainland`, whichever belongs to this region.
    pub fn pick<'a>(self, global: &'a str, mainland: &'a str) -> &'a str {
        match self {
            Region::Global => global,
            Region::Mainland => mainland,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use easel_sdk::testing;

    #[test]
    fn the_setting_defaults_to_global_and_refuses_unknown_values() {
        testing::clear_secrets();
        assert_eq!(Region::configured("ACME_REGION").unwrap(), Region::Global);
        for (value, region) in [(" ", Region::Global), ("global", Region::Global), ("CN", Region::Mainland)] {
            testing::set_secret("ACME_REGION", value);
            assert_eq!(Region::configured("ACME_REGION").unwrap(), region, "{value:?}");
        }
        testing::set_secret("ACME_REGION", "beijing");
        assert!(matches!(Region::configured("ACME_REGION"), Err(Error::Internal(m)) if m.contains("ACME_REGION")));
        testing::clear_secrets();
    }

    #[test]
    fn pick_answers_the_value_of_the_region() {
        assert_eq!(Region::Global.pick("a.example", "b.example"), "a.example");
        assert_eq!(Region::Mainland.pick("a.example", "b.example"), "b.example");
    }
}
