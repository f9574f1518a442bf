//! Which secrets a plugin receives: only those the operator assigned to that plugin.
//!
//! Invariants:
//! - A declared name reaches a plugin only when it is assigned to that plugin, by one of:
//!   1. the plugin's own variable `EASEL_PLUGIN_<ID>__<NAME>` ([`own_variable`]);
//!   2. the operator's `[plugins.<id>] secrets` list ([`WasmConfig::secret_grants`]): the
//!      variable of that exact name;
//!   3. for a plugin id the operator did not list, the default of the vendor plugin shipped
//!      under that id ([`VENDOR_DEFAULTS`]), and only while every host its manifest allows
//!      lies within that vendor's hosts (its own domains, and by exact name the storage
//!      buckets its result files come from), so an impostor taking the id reaches no host the
//!      shipped plugin could not. Two vendors name no fixed buckets (Alibaba's DashScope,
//!      Volcengine's Ark): their domains hold their object storage too, other customers'
//!      buckets included, which the shipped plugins must reach for their results; an
//!      operator who wants less grants those keys by name and lists exact buckets.
//! - easel's own settings ([`is_easel_setting`]: `EASEL_*`, `ZHINIAN_*`, `DATABASE_URL` and
//!   libpq's `PG…` connection variables) never reach a plugin under their own names, whatever
//!   the operator lists; nor do the asset bucket's `AWS_*` credentials ([`BUCKET_CREDENTIALS`]),
//!   which a plugin may have only as its own `EASEL_PLUGIN_<ID>__…`.
//! - Every declared name gets a [`SecretGrant`] saying where its value came from or why it
//!   was withheld (`GET /admin/plugins`); values never leave the runtime.

use std::collections::HashMap;

use serde::Serialize;

use crate::config::WasmConfig;
use crate::manifest::PluginManifest;
use easel_allowlist::host_matches;

/// The vendor plugins shipped in `plugins/`: id, the names they read, and the hosts their
/// manifests may allow, in the allowlist's syntax: `*.domain` for a vendor's own domain, exact
/// names for the buckets in shared clouds (OSS, TOS, S3, Azure blobs) its result files come
/// from, where a wildcard would take in every other customer's storage.
pub const VENDOR_DEFAULTS: &[(&str, &[&str], &[&str])] = &[
    (
        "dashscope",
        &["DASHSCOPE_API_KEY", "DASHSCOPE_REGION"],
        &["*.aliyuncs.com"],
    ),
    (
        "volcengine",
        &[
            "ARK_API_KEY",
            "VOLC_TTS_APP_ID",
            "VOLC_TTS_ACCESS_TOKEN",
            "VOLC_TTS_CLUSTER",
        ],
        &["*.volces.com", "*.bytedance.com"],
    ),
    (
        "seedance-overseas",
        &["ARK_API_KEY", "BYTEPLUS_API_KEY"],
        &[
            "*.bytepluses.com",
            "ark-content-generation-ap-southeast-1.tos-ap-southeast-1.volces.com",
        ],
    ),
    (
        "openai",
        &["OPENAI_API_KEY"],
        &["*.openai.com", "oaidalleapiprodscus.blob.core.windows.net"],
    ),
    (
        "kling",
        &["KLING_ACCESS_KEY", "KLING_SECRET_KEY", "KLING_REGION"],
        &["*.klingai.com"],
    ),
    (
        "minimax",
        &["MINIMAX_API_KEY", "MINIMAX_REGION"],
        &[
            "*.minimax.io",
            "*.minimaxi.com",
            "public-cdn-video-data-algeng.oss-cn-wulanchabu.aliyuncs.com",
            "public-cdn-video-data-algeng-us.oss-us-east-1.aliyuncs.com",
        ],
    ),
    (
        "modelscope",
        &["MODELSCOPE_API_KEY"],
        &["*.modelscope.cn", "muse-ai.oss-cn-hangzhou.aliyuncs.com"],
    ),
    ("zhipu", &["ZHIPU_API_KEY"], &["*.bigmodel.cn"]),
    (
        "vidu",
        &["VIDU_API_KEY", "VIDU_REGION"],
        &[
            "*.vidu.com",
            "*.vidu.cn",
            "prod-ss-vidu.s3.cn-northwest-1.amazonaws.com.cn",
            "prod-ss-vidu.s3.oss-cn-beijing.aliyuncs.com",
        ],
    ),
    (
        "jimeng",
        &[
            "JIMENG_ACCESS_KEY",
            "JIMENG_SECRET_KEY",
            "VOLC_ACCESSKEY",
            "VOLC_SECRETKEY",
        ],
        &["*.volcengineapi.com", "*.byteimg.com"],
    ),
    ("evolink", &["EVOLINK_API_KEY"], &["*.evolink.ai"]),
];

/// What became of one secret a manifest declared.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SecretGrant {
    /// The name the plugin asked for.
    pub name: String,
    /// Whether the plugin receives a value for it.
    pub granted: bool,
    /// The variable assigned to it (its value's source when granted); none when it is
    /// withheld from this plugin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Why it has no value: withheld, or assigned but not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The variables easel's asset bucket takes its credentials from (`[assets] bucket`): a plugin
/// that needs AWS credentials gets its own, as `EASEL_PLUGIN_<ID>__<NAME>`, never these.
const BUCKET_CREDENTIALS: [&str; 3] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Whether `name` is one of the asset bucket's credentials ([`BUCKET_CREDENTIALS`]).
pub fn is_bucket_credential(name: &str) -> bool {
    BUCKET_CREDENTIALS.contains(&name.to_ascii_uppercase().as_str())
}

/// Whether `name` is one of easel's own settings, which no plugin may read.
pub fn is_easel_setting(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["EASEL_", "ZHINIAN_"]
        .iter()
        .any(|prefix| upper.starts_with(prefix))
        || [
            "DATABASE_URL",
            "PGPASSWORD",
            "PGPASSFILE",
            "PGUSER",
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGDATABASE",
            "PGSERVICE",
            "PGSERVICEFILE",
            "PGSSLKEY",
        ]
        .contains(&upper.as_str())
}

/// Upper case, every character other than an ASCII letter or digit as `_`.
fn env_word(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The id as it appears in variable names: [`env_word`] with runs of `_` collapsed and none at
/// either end, so it never contains the `__` that ends it in [`own_variable`]. Two ids that
/// differ only in punctuation share it; the plugins folder serves only one of them.
pub fn variable_id(plugin_id: &str) -> String {
    env_word(plugin_id)
        .split('_')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// The plugin's own variable for `name`: `EASEL_PLUGIN_<ID>__<NAME>`. The double underscore
/// keeps the split unambiguous (`a` + `B_C` and `a-b` + `C` name different variables).
pub fn own_variable(plugin_id: &str, name: &str) -> String {
    format!(
        "EASEL_PLUGIN_{}__{}",
        variable_id(plugin_id),
        env_word(name)
    )
}

/// Whether every host `pattern` admits is one `vendor` admits (both in the allowlist's
/// syntax): an exact name within a vendor wildcard or equal to a vendor name, a wildcard only
/// within a vendor wildcard. So `*.bucket.s3.example.com` is not within the exact bucket
/// `bucket.s3.example.com`: in shared storage a longer name can be someone else's bucket.
fn within(pattern: &str, vendor: &str) -> bool {
    match (pattern.strip_prefix("*."), vendor.strip_prefix("*.")) {
        (Some(name), Some(domain)) => {
            name.eq_ignore_ascii_case(domain) || host_matches(vendor, name)
        }
        (Some(_), None) => false,
        (None, _) => host_matches(vendor, pattern),
    }
}

/// Why the shipped vendor default for `manifest` does not apply, if it does not.
fn vendor_default_blocked(manifest: &PluginManifest, vendor_hosts: &[&str]) -> Option<String> {
    let outside: Vec<&str> = manifest
        .allowed_hosts
        .iter()
        .map(String::as_str)
        .filter(|pattern| !vendor_hosts.iter().any(|vendor| within(pattern, vendor)))
        .collect();
    (!outside.is_empty()).then(|| {
        format!(
            "the shipped {} plugin's default grant applies only while its hosts lie within {}, \
             and this plugin also allows {}",
            manifest.id,
            vendor_hosts.join(", "),
            outside.join(", ")
        )
    })
}

/// Decides every declared secret of `manifest`; returns the values granted and the report.
pub(crate) fn grant(
    manifest: &PluginManifest,
    config: &WasmConfig,
) -> (HashMap<String, String>, Vec<SecretGrant>) {
    let lookup = |variable: &str| {
        config.secrets.get(variable).cloned().or_else(|| {
            config
                .secrets_from_env
                .then(|| std::env::var(variable).ok())
                .flatten()
        })
    };
    let id = manifest.id.as_str();
    let vendor = VENDOR_DEFAULTS.iter().find(|(vendor, _, _)| *vendor == id);
    let mut values = HashMap::new();
    let mut report = Vec::new();
    for name in &manifest.secrets {
        let own = own_variable(id, name);
        let assigned: Result<String, String> = if is_easel_setting(name) {
            Err(format!(
                "{name} is one of easel's own settings, which no plugin may read"
            ))
        } else if lookup(&own).is_some() {
            Ok(own.clone())
        } else if is_bucket_credential(name) {
            Err(format!(
                "{name} holds the credentials of easel's asset bucket, which no plugin is given; \
                 give plugin {id} its own as {own}"
            ))
        } else if let Some(listed) = config.secret_grants.get(id) {
            if listed.contains(name) {
                Ok(name.clone())
            } else {
                Err(format!(
                    "not assigned to plugin {id}: [plugins.{id}] secrets does not list it, \
                     and {own} is not set"
                ))
            }
        } else {
            match vendor {
                Some((_, names, vendor_hosts)) if names.contains(&name.as_str()) => {
                    match vendor_default_blocked(manifest, vendor_hosts) {
                        None => Ok(name.clone()),
                        Some(why) => Err(format!(
                            "{why}; assign it with {own} or [plugins.{id}] secrets"
                        )),
                    }
                }
                _ => Err(format!(
                    "not assigned to plugin {id}: set {own}, or list it in \
                     [plugins.{id}] secrets"
                )),
            }
        };
        let entry = match assigned {
            Ok(variable) => match lookup(&variable) {
                Some(value) => {
                    values.insert(name.clone(), value);
                    SecretGrant {
                        name: name.clone(),
                        granted: true,
                        from: Some(variable),
                        reason: None,
                    }
                }
                None => SecretGrant {
                    name: name.clone(),
                    granted: false,
                    from: Some(variable.clone()),
                    reason: Some(format!("assigned to plugin {id} but {variable} is not set")),
                },
            },
            Err(reason) => SecretGrant {
                name: name.clone(),
                granted: false,
                from: None,
                reason: Some(reason),
            },
        };
        report.push(entry);
    }
    (values, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, hosts: &[&str], secrets: &[&str]) -> PluginManifest {
        PluginManifest {
            id: id.into(),
            version: "1".into(),
            models: Vec::new(),
            allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            idempotent_submit: false,
        }
    }

    fn config(values: &[(&str, &str)], grants: &[(&str, &[&str])]) -> WasmConfig {
        WasmConfig {
            secrets_from_env: false,
            secrets: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secret_grants: grants
                .iter()
                .map(|(id, names)| {
                    (
                        id.to_string(),
                        names.iter().map(|n| n.to_string()).collect(),
                    )
                })
                .collect(),
            ..WasmConfig::default()
        }
    }

    #[test]
    fn own_variables_never_collide_across_ids() {
        assert_eq!(
            own_variable("openai", "API_KEY"),
            "EASEL_PLUGIN_OPENAI__API_KEY"
        );
        assert_eq!(
            own_variable("seedance-overseas", "ark-api.key"),
            "EASEL_PLUGIN_SEEDANCE_OVERSEAS__ARK_API_KEY"
        );
        assert_ne!(own_variable("a", "B_C"), own_variable("a-b", "C"));
        assert_ne!(
            own_variable("openai", "OPENAI_API_KEY"),
            own_variable("openai-openai", "API_KEY")
        );
        assert_eq!(variable_id("-a..b_"), "A_B");
    }

    #[test]
    fn easel_settings_are_never_granted_even_when_listed() {
        let everything = [
            ("EASEL_ADMIN_KEY", "admin"),
            ("DATABASE_URL", "postgres://"),
            ("EASEL_API_KEYS", "a:b"),
            ("EASEL_WEBHOOK_SECRET", "w"),
            ("PGPASSWORD", "p"),
            ("EASEL_PLUGIN_EVIL__X", "x"),
        ];
        let names: Vec<&str> = everything.iter().map(|(n, _)| *n).collect();
        let m = manifest("evil", &[], &names);
        let (values, report) = grant(&m, &config(&everything, &[("evil", &names)]));
        assert!(values.is_empty(), "{values:?}");
        for entry in report {
            assert!(!entry.granted);
            assert!(entry.reason.unwrap().contains("easel's own settings"));
        }
    }

    /// The asset bucket's credentials are easel's even though they are not named like it: a
    /// listing does not hand them out; a plugin's own variable does.
    #[test]
    fn the_buckets_aws_credentials_go_to_no_plugin_that_lists_them() {
        let names = ["AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"];
        let values = [
            ("AWS_SECRET_ACCESS_KEY", "bucket-secret"),
            ("AWS_ACCESS_KEY_ID", "bucket-id"),
            ("EASEL_PLUGIN_BEDROCK__AWS_ACCESS_KEY_ID", "its-own-id"),
        ];
        let m = manifest("bedrock", &[], &names);
        let (granted, report) = grant(&m, &config(&values, &[("bedrock", &names)]));
        assert_eq!(
            granted,
            HashMap::from([("AWS_ACCESS_KEY_ID".to_string(), "its-own-id".to_string())])
        );
        let refused = report.iter().find(|entry| !entry.granted).unwrap();
        assert_eq!(refused.name, "AWS_SECRET_ACCESS_KEY");
        assert!(
            refused.reason.as_deref().unwrap().contains(
                "easel's asset bucket, which no plugin is given; give plugin bedrock its own as \
                 EASEL_PLUGIN_BEDROCK__AWS_SECRET_ACCESS_KEY"
            ),
            "{refused:?}"
        );
    }

    #[test]
    fn a_vendor_name_goes_only_to_its_vendor_plugin() {
        let env = [("DASHSCOPE_API_KEY", "sk-d")];
        let real = manifest(
            "dashscope",
            &["dashscope.aliyuncs.com"],
            &["DASHSCOPE_API_KEY"],
        );
        let (values, _) = grant(&real, &config(&env, &[]));
        assert_eq!(values["DASHSCOPE_API_KEY"], "sk-d");

        let other = manifest("acme", &["api.acme.test"], &["DASHSCOPE_API_KEY"]);
        let (values, report) = grant(&other, &config(&env, &[]));
        assert!(values.is_empty());
        assert!(
            report[0]
                .reason
                .as_ref()
                .unwrap()
                .contains("EASEL_PLUGIN_ACME__DASHSCOPE_API_KEY")
        );

        let impostor = manifest(
            "dashscope",
            &["dashscope.aliyuncs.com", "evil.test"],
            &["DASHSCOPE_API_KEY"],
        );
        let (values, report) = grant(&impostor, &config(&env, &[]));
        assert!(values.is_empty());
        assert!(report[0].reason.as_ref().unwrap().contains("evil.test"));

        // The operator's list replaces the default.
        let (values, _) = grant(&real, &config(&env, &[("dashscope", &[])]));
        assert!(values.is_empty());
        let (values, report) = grant(&other, &config(&env, &[("acme", &["DASHSCOPE_API_KEY"])]));
        assert_eq!(values["DASHSCOPE_API_KEY"], "sk-d");
        assert_eq!(report[0].from.as_deref(), Some("DASHSCOPE_API_KEY"));
    }

    #[test]
    fn result_buckets_in_shared_storage_count_by_exact_name_only() {
        let env = [("OPENAI_API_KEY", "sk-o")];
        let granted = |hosts: &[&str]| {
            let m = manifest("openai", hosts, &["OPENAI_API_KEY"]);
            grant(&m, &config(&env, &[]))
                .0
                .contains_key("OPENAI_API_KEY")
        };
        let bucket = "oaidalleapiprodscus.blob.core.windows.net";
        assert!(granted(&["api.openai.com", bucket]));
        assert!(granted(&["*.openai.com", "cdn.api.openai.com"]));
        // Another account in the same storage, or any name under the bucket's, is not the
        // vendor's.
        for impostor in [
            "*.blob.core.windows.net",
            "someone-else.blob.core.windows.net",
            "*.oaidalleapiprodscus.blob.core.windows.net",
            "x.oaidalleapiprodscus.blob.core.windows.net",
            "openai.com.example.net",
            "*",
        ] {
            assert!(!granted(&["api.openai.com", impostor]), "{impostor}");
        }

        // A dotted S3 bucket under an exact bucket name is another bucket.
        let m = manifest(
            "vidu",
            &[
                "api.vidu.com",
                "*.prod-ss-vidu.s3.cn-northwest-1.amazonaws.com.cn",
            ],
            &["VIDU_API_KEY"],
        );
        let (values, report) = grant(&m, &config(&[("VIDU_API_KEY", "v")], &[]));
        assert!(values.is_empty());
        let reason = report[0].reason.as_deref().unwrap_or_default();
        assert!(reason.contains("*.prod-ss-vidu"), "{reason}");
    }

    #[test]
    fn vendor_wildcards_never_span_shared_storage() {
        for (id, _, hosts) in VENDOR_DEFAULTS {
            for host in *hosts {
                assert!(easel_allowlist::valid_pattern(host), "{id}: {host}");
                let Some(domain) = host.strip_prefix("*.") else {
                    continue;
                };
                let storage_label = |label: &str| {
                    ["oss-", "tos-", "s3-"].iter().any(|p| label.starts_with(p)) || label == "s3"
                };
                assert!(
                    !domain.split('.').any(storage_label)
                        && !["*.windows.net", "*.amazonaws.com", "*.amazonaws.com.cn"]
                            .iter()
                            .any(|cloud| within(host, cloud)),
                    "{id}: {host} takes in other customers' buckets; name the vendor's bucket"
                );
            }
        }
    }

    #[test]
    fn the_own_variable_wins_and_a_missing_value_says_so() {
        let m = manifest("acme", &[], &["TOKEN", "REGION"]);
        let (values, report) = grant(
            &m,
            &config(
                &[("EASEL_PLUGIN_ACME__TOKEN", "t"), ("TOKEN", "shared")],
                &[("acme", &["TOKEN", "REGION"])],
            ),
        );
        assert_eq!(values["TOKEN"], "t");
        assert_eq!(report[0].from.as_deref(), Some("EASEL_PLUGIN_ACME__TOKEN"));
        assert!(!report[1].granted);
        assert_eq!(report[1].from.as_deref(), Some("REGION"));
        assert!(
            report[1]
                .reason
                .as_ref()
                .unwrap()
                .contains("REGION is not set")
        );
    }
}
