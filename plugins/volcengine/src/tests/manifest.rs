use super::*;

#[test]
fn manifest_lists_seedance_seedream_chat_and_tts_with_seed_schemas() {
    let m = Volcengine.manifest();
    assert_eq!(m.id, "volcengine");
    assert_eq!(
        m.allowed_hosts,
        [
            "ark.cn-beijing.volces.com",
            "openspeech.bytedance.com",
            "ark-content-generation-cn-beijing.tos-cn-beijing.volces.com",
            "ark-content-generation-v2-cn-beijing.tos-cn-beijing.volces.com"
        ]
    );
    assert_eq!(m.secrets, ["ARK_API_KEY", "VOLC_TTS_APP_ID", "VOLC_TTS_ACCESS_TOKEN", "VOLC_TTS_CLUSTER"]);
    assert!(!m.idempotent_submit);
    let keys: Vec<&str> = m.models.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "doubao-seedance-2-0-260128",
            "doubao-seedance-2-0-fast-260128",
            "doubao-seedance-1-5-pro-251215",
            "doubao-seedream-4-0-250828",
            "doubao-seed-1-6-250615",
            "doubao-1-5-pro-32k-250115",
            "doubao-tts"
        ]
    );
    let prop = |k: &str, p: &str| m.models.iter().find(|m| m.key == k).unwrap().params_schema["properties"][p].clone();
    // Mode-dependent defaults (720p and 5 s, 1080p and 12 s with references) are the
    // plugin's to pick: a schema default would reach it as if the client had asked.
    assert!(prop("doubao-seedance-2-0-260128", "resolution").get("default").is_none());
    assert_eq!(prop("doubao-seedance-2-0-260128", "ratio")["default"], "adaptive");
    assert!(prop("doubao-seedance-2-0-260128", "duration").get("default").is_none());
    assert_eq!(prop("doubao-seedance-2-0-fast-260128", "duration")["maximum"], 15);
    assert_eq!(prop("doubao-seedance-1-5-pro-251215", "resolution")["default"], "1080p");
    assert_eq!(prop("doubao-seedance-1-5-pro-251215", "duration")["default"], 12);
    assert!(prop("doubao-seedance-1-5-pro-251215", "ratio").get("default").is_none());
    for key in ["doubao-seed-1-6-250615", "doubao-1-5-pro-32k-250115"] {
        assert_eq!(prop(key, "tools")["maxItems"], 128, "{key}");
        assert_eq!(prop(key, "tool_choice")["anyOf"][1]["required"], json!(["type", "function"]), "{key}");
        assert_eq!(prop(key, "parallel_tool_calls")["type"], "boolean", "{key}");
    }
    // Only the model with Ark's structured output lets the client choose an answer format.
    assert_eq!(prop("doubao-seed-1-6-250615", "response_format")["properties"]["type"]["enum"][2], "json_schema");
    let chat = |key: &str| m.models.iter().find(|m| m.key == key).unwrap().params_schema.clone();
    assert!(chat("doubao-1-5-pro-32k-250115")["properties"].get("response_format").is_none());
    let declares_tools = |m: &easel_sdk::Model| m.params_schema["properties"].get("tools").is_some();
    assert!(!m.models.iter().filter(|m| m.kind != "chat").any(declares_tools));
    let tts = m.models.iter().find(|m| m.key == "doubao-tts").unwrap();
    assert_eq!(tts.extra["voices"][0], json!({"id": "zh_female_qingxin", "name": "清新女声", "language": "zh"}));
    assert_eq!(tts.params_schema["properties"]["speed"]["default"], 1.0);
    assert!(m.models.iter().all(|m| m.price_hint.is_some() && m.params_schema["properties"].get("prompt").is_none()));
}
