//! The vendor plugins shipped in `plugins/`, loaded from their wasip2 builds: each still gets
//! its vendor's default secrets with its result-file hosts listed, and the output-link check
//! takes a link on a listed result host while refusing one on a look-alike host.

mod common;

use std::collections::HashMap;

use easel_provider::Provider;
use easel_wasm::secrets::VENDOR_DEFAULTS;
use easel_wasm::{Runtime, WasmConfig};

/// Per vendor plugin: a result host its vendor documents, and a host next to it (another
/// customer's bucket in the same storage, or a name that only starts like the vendor's) that
/// must stay refused.
const RESULT_LINKS: &[(&str, &str, &str)] = &[
    (
        "dashscope",
        "dashscope-result-bj.oss-cn-beijing.aliyuncs.com",
        "someone-else.oss-us-east-1.aliyuncs.com",
    ),
    (
        "volcengine",
        "ark-content-generation-cn-beijing.tos-cn-beijing.volces.com",
        "someone-else.tos-cn-beijing.volces.com",
    ),
    (
        "seedance-overseas",
        "ark-content-generation-ap-southeast-1.tos-ap-southeast-1.volces.com",
        "someone-else.tos-ap-southeast-1.volces.com",
    ),
    (
        "openai",
        "oaidalleapiprodscus.blob.core.windows.net",
        "someone-else.blob.core.windows.net",
    ),
    ("kling", "cdn.klingai.com", "cdn.klingai.com.example.net"),
    (
        "minimax",
        "public-cdn-video-data-algeng.oss-cn-wulanchabu.aliyuncs.com",
        "someone-else.oss-cn-wulanchabu.aliyuncs.com",
    ),
    (
        "modelscope",
        "muse-ai.oss-cn-hangzhou.aliyuncs.com",
        "someone-else.oss-cn-hangzhou.aliyuncs.com",
    ),
    (
        "zhipu",
        "aigc-files.bigmodel.cn",
        "aigc-files.bigmodel.cn.example.net",
    ),
    (
        "vidu",
        "prod-ss-vidu.s3.cn-northwest-1.amazonaws.com.cn",
        "someone.prod-ss-vidu.s3.cn-northwest-1.amazonaws.com.cn",
    ),
    (
        "jimeng",
        "p3-aiop-sign.byteimg.com",
        "byteimg.com.example.net",
    ),
    (
        "evolink",
        "files.evolink.ai",
        "files.evolink.ai.example.net",
    ),
];

/// Every vendor name set, nothing assigned by the operator: only the shipped defaults apply.
fn config(operator_allowed_hosts: Option<Vec<String>>) -> WasmConfig {
    let secrets: HashMap<String, String> = VENDOR_DEFAULTS
        .iter()
        .flat_map(|(_, names, _)| names.iter())
        .map(|name| (name.to_string(), format!("{name}-value")))
        .collect();
    WasmConfig {
        cache_dir: Some(common::shipped_plugins_cache()),
        pooling: false,
        max_instances: 4,
        secrets_from_env: false,
        secrets,
        operator_allowed_hosts,
        ..WasmConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_plugins_keep_their_secrets_and_take_links_only_on_their_result_hosts() {
    let runtime = Runtime::new(config(None)).unwrap();
    assert_eq!(RESULT_LINKS.len(), VENDOR_DEFAULTS.len());
    for (id, names, vendor_hosts) in VENDOR_DEFAULTS {
        let plugin = runtime
            .load_file(&common::shipped_plugin(id))
            .await
            .unwrap();
        assert_eq!(plugin.manifest().id, *id);
        for grant in plugin.secret_grants() {
            assert!(
                grant.granted || !names.contains(&grant.name.as_str()),
                "{id} lost its default {}: manifest hosts {:?}, vendor hosts {vendor_hosts:?}: {grant:?}",
                grant.name,
                plugin.manifest().allowed_hosts
            );
        }
        let (_, listed, other) = RESULT_LINKS
            .iter()
            .find(|(vendor, _, _)| vendor == id)
            .unwrap_or_else(|| panic!("no result link for {id}"));
        assert_eq!(plugin.output_link_refused(listed), None, "{id}: {listed}");
        let refusal = plugin
            .output_link_refused(other)
            .unwrap_or_else(|| panic!("{id} took a link to {other}"));
        assert!(refusal.contains(other), "{refusal}");
    }
}

/// The operator's allowlist narrows the links too: it has to name the result hosts, and it
/// may name exact buckets where the plugin allows a whole OSS endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_allowlist_must_name_the_result_hosts_and_may_narrow_them() {
    let result = "dashscope-result-bj.oss-cn-beijing.aliyuncs.com";
    let dashscope = |operator: &[&str]| {
        let runtime = Runtime::new(config(Some(
            operator.iter().map(|h| h.to_string()).collect(),
        )))
        .unwrap();
        async move {
            runtime
                .load_file(&common::shipped_plugin("dashscope"))
                .await
                .unwrap()
        }
    };

    let api_only = dashscope(&["dashscope.aliyuncs.com"]).await;
    let refusal = api_only.output_link_refused(result).unwrap();
    assert!(refusal.contains("operator allowlist"), "{refusal}");
    assert_eq!(api_only.allowed_hosts(), ["dashscope.aliyuncs.com"]);

    let exact = dashscope(&["dashscope.aliyuncs.com", result]).await;
    assert_eq!(exact.output_link_refused(result), None);
    assert_eq!(exact.allowed_hosts(), ["dashscope.aliyuncs.com", result]);
    assert!(
        exact
            .output_link_refused("someone-else.oss-cn-beijing.aliyuncs.com")
            .is_some(),
        "the operator's exact bucket narrows the plugin's endpoint wildcard"
    );

    let wide = dashscope(&["*.aliyuncs.com"]).await;
    assert_eq!(wide.output_link_refused(result), None);
    assert_eq!(
        wide.allowed_hosts(),
        wide.manifest().allowed_hosts,
        "every host the plugin names lies under the operator's wildcard"
    );
    assert!(
        wide.output_link_refused("someone-else.oss-us-east-1.aliyuncs.com")
            .is_some(),
        "the plugin's own list still applies under a wider operator list"
    );
}
