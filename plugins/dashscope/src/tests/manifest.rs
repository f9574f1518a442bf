use super::*;

#[test]
fn manifest_lists_every_model_with_seed_schemas_hosts_and_secrets() {
    let m = DashScope.manifest();
    assert_eq!(m.id, "dashscope");
    assert_eq!(m.allowed_hosts[..2], ["dashscope.aliyuncs.com", "dashscope-intl.aliyuncs.com"]);
    assert_eq!(m.allowed_hosts[2..], *crate::client::RESULT_HOSTS);
    assert_eq!(m.allowed_hosts.len(), 14, "the API hosts and 12 OSS endpoints");
    // One wildcard per OSS endpoint, never all of aliyuncs.com.
    assert!(m.allowed_hosts[2..].iter().all(|h| h.starts_with("*.oss-") && h.ends_with(".aliyuncs.com")));
    assert!(m.allowed_hosts.iter().any(|h| h == "*.oss-cn-beijing.aliyuncs.com"));
    assert_eq!(m.secrets, ["DASHSCOPE_API_KEY", "DASHSCOPE_REGION"]);
    assert!(!m.idempotent_submit);
    let keys: Vec<&str> = m.models.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "qwen-image",
            "wan2.2-t2i-plus",
            "wan2.2-t2i-flash",
            "wan2.5-t2i-preview",
            "wan2.6-t2v",
            "wan2.6-video",
            "wan2.6-r2v",
            "happyhorse-1.0-t2v",
            "happyhorse-1.0-i2v",
            "happyhorse-1.0-r2v",
            "qwen-plus",
            "qwen3-max",
            "qwen3-tts-flash"
        ]
    );
    let model = |k: &str| m.models.iter().find(|m| m.key == k).unwrap();
    let prop = |k: &str, p: &str| model(k).params_schema["properties"][p].clone();
    // Seed 002's wan2.6-t2v table.
    assert_eq!(prop("wan2.6-t2v", "size")["default"], "1920*1080");
    assert_eq!(prop("wan2.6-t2v", "size")["enum"].as_array().unwrap().len(), 9);
    assert_eq!(prop("wan2.6-t2v", "duration"), json!({"type": "integer", "enum": [5, 10, 15], "default": 15}));
    assert_eq!(prop("wan2.6-t2v", "negative_prompt")["type"], "string");
    // wan2.6-r2v offers what Model Studio renders (seed 002's 15 would fail once it ran), says
    // why, and defaults to the longest instead of the seed's 15.
    assert_eq!(prop("wan2.6-r2v", "duration")["enum"], json!([5, 10]));
    assert_eq!(prop("wan2.6-r2v", "duration")["default"], 10);
    assert!(prop("wan2.6-r2v", "duration")["description"].as_str().unwrap().contains("2-10 s"));
    // HappyHorse tables: t2v/i2v 720P and 5 s, r2v 1080P and 15 s; i2v has no ratio.
    assert_eq!(prop("happyhorse-1.0-t2v", "resolution"), json!({"type": "string", "enum": ["720P", "1080P"], "default": "720P"}));
    assert_eq!(prop("happyhorse-1.0-t2v", "ratio")["enum"], json!(["16:9", "4:3", "1:1", "3:4", "9:16"]));
    assert_eq!(prop("happyhorse-1.0-r2v", "resolution")["default"], "1080P");
    assert_eq!(prop("happyhorse-1.0-r2v", "duration")["default"], 15);
    assert!(prop("happyhorse-1.0-i2v", "ratio").is_null());
    // Pixel's aliases keep Pixel's names and display extras.
    assert_eq!(prop("wan2.6-video", "duration")["enum"], json!(["5s", "10s"]));
    assert_eq!(model("wan2.6-video").extra["durations"], json!({"5s": "5秒", "10s": "10秒"}));
    assert_eq!(prop("qwen-image", "resolution")["enum"], json!(["1K", "2K"]));
    assert_eq!(model("qwen-image").extra["capabilities"]["supportsRefImage"], true);
    assert_eq!(model("qwen-image").extra["resolutions"]["1K"]["16:9"], "1664*928");
    assert_eq!(model("qwen-image").capabilities, ["image.generate", "image.edit"]);
    assert_eq!(model("qwen-plus").capabilities, ["chat"]);
    for key in ["qwen-plus", "qwen3-max"] {
        assert_eq!(prop(key, "tools")["items"]["properties"]["type"]["enum"], json!(["function"]), "{key}");
        assert_eq!(prop(key, "parallel_tool_calls")["type"], "boolean", "{key}");
        assert_eq!(prop(key, "tool_choice")["anyOf"][0]["enum"], json!(["none", "auto", "required"]), "{key}");
        assert_eq!(prop(key, "response_format")["properties"]["type"]["enum"], json!(["text", "json_object"]), "{key}");
    }
    let declares_tools = |m: &easel_sdk::Model| m.params_schema["properties"].get("tools").is_some();
    assert!(!m.models.iter().filter(|m| m.kind != "chat").any(declares_tools));
    assert_eq!(model("qwen3-tts-flash").extra["voices"][0], json!({"id": "Cherry", "name": "芊悦", "language": "zh"}));
    assert!(m.models.iter().all(|m| m.price_hint.is_some()));
    assert!(m.models.iter().all(|m| m.params_schema["properties"].get("prompt").is_none()), "prompt is a request field");
}
