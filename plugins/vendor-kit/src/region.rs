//! Vendors that run two separate platforms, a global one and one for mainland China, under
//! different hosts with the same protocol (Vidu, Kling, MiniMax): which one a plugin calls.
//!
//! The operator picks with an optional secret, `<VENDOR>_REGION`, set to `global` (the
//! default, also when unset or empty) or `cn`. It is a secret rather than a parameter because
//! it belongs to the account, not to the request: an API key works only on the platform that
//! issued it. Both hosts stay in the plugin's manifest, so switching needs no new build.
//!
//! A task lives on the platform that created it, so pending handles carry the region: a
//! global handle keeps the `<vendor>:` prefix handles had before mainland support (tasks
//! pending across an upgrade still poll), a mainland one starts `<vendor>-cn:`. Polls and
//! cancels follow the handle, not the current setting, so changing the setting never strands
//! a task.

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

    /// The prefix of this region's handles: `vendor` or `vendor-cn`.
    pub fn handle_prefix(self, vendor: &str) -> String {
        match self {
            Region::Global => vendor.to_string(),
            Region::Mainland => format!("{vendor}-cn"),
        }
    }

    /// The region a handle made with [`Region::handle_prefix`] belongs to, and the rest of
    /// the handle after `<prefix>:`; `None` for a handle of another vendor.
    pub fn of_handle<'a>(vendor: &str, handle: &'a str) -> Option<(Region, &'a str)> {
        let rest = handle.strip_prefix(vendor)?;
        if let Some(rest) = rest.strip_prefix(':') {
            Some((Region::Global, rest))
        } else {
            rest.strip_prefix("-cn:").map(|rest| (Region::Mainland, rest))
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
    fn handles_carry_the_region_and_global_ones_keep_the_old_prefix() {
        assert_eq!(Region::Global.handle_prefix("acme"), "acme");
        assert_eq!(Region::Mainland.handle_prefix("acme"), "acme-cn");
        assert_eq!(Region::of_handle("acme", "acme:v1:42"), Some((Region::Global, "v1:42")));
        assert_eq!(Region::of_handle("acme", "acme-cn:v1:42"), Some((Region::Mainland, "v1:42")));
        assert_eq!(Region::of_handle("acme", "acme-eu:v1:42"), None);
        assert_eq!(Region::of_handle("acme", "other:v1:42"), None);
        assert_eq!(Region::Mainland.pick("a.example", "b.example"), "b.example");
    }
}
