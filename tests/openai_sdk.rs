//! The official `openai` Python package against `/v1` and `/llmage/v1`: chat streamed and
//! not (with the usage chunk), conversations refused by parameter, models listed and
//! retrieved, images by URL and base64, edits and inpainting (multipart), speech whole and
//! streamed, and errors; and, with the DashScope and ModelScope plugins both loaded (routed
//! to their fakes), a chat with a model the client picked from llmage's model list, and tool
//! calls (whole, streamed, and answered) and a photo in a chat through Qwen.
//! `scripts/test` installs the package into its virtual environment; `EASEL_TEST_PYTHON`
//! names that interpreter.

#[path = "fakes/mod.rs"]
mod fakes;

use fakes::easel::Easel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_works_unchanged() {
    let (easel, vendors) = Easel::with_dashscope_and_modelscope().await;
    let host = &easel.host;
    let python = std::env::var("EASEL_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = easel_tests::checkout().join("tests/openai_sdk.py");
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(host.url(""))
        .arg("key-a")
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{python} {}:\n{stdout}\n{stderr}",
        script.display()
    );
    // Both edits reached DashScope with the whole photo, typed, inline.
    let edits: Vec<_> = fakes::easel::bodies(
        &vendors[0],
        "POST /api/v1/services/aigc/multimodal-generation/generation",
    )
    .into_iter()
    .filter(|body| body["model"] == "qwen-image-edit")
    .collect();
    assert_eq!(edits.len(), 2, "{edits:?}");
    for edit in edits {
        let image = edit["input"]["messages"][0]["content"][0]["image"]
            .as_str()
            .unwrap_or_default();
        assert!(
            image.starts_with("data:image/png;base64,"),
            "{}",
            &image[..image.len().min(60)]
        );
        assert!(
            image.len() > 4 * 1024 * 1024,
            "the whole photo, base64: {} bytes",
            image.len()
        );
    }
    // The tools, the choice and the answered call reached Qwen as the client wrote them.
    let with_tools: Vec<_> =
        fakes::easel::bodies(&vendors[0], "POST /compatible-mode/v1/chat/completions")
            .into_iter()
            .filter(|body| body.get("tools").is_some())
            .collect();
    assert_eq!(
        with_tools.len(),
        6,
        "three chats in each dialect: {with_tools:?}"
    );
    for body in &with_tools {
        assert_eq!(body["tools"][0]["function"]["name"], "weather", "{body}");
        assert_eq!(
            body["tools"][0]["function"]["parameters"]["properties"]["city"]["type"],
            "string"
        );
    }
    assert_eq!(with_tools[0]["tool_choice"], "auto");
    let answered = &with_tools[2]["messages"];
    assert_eq!(answered[1]["role"], "assistant", "{answered}");
    assert_eq!(
        answered[1]["tool_calls"][0]["id"], "call_e2e_0",
        "{answered}"
    );
    assert_eq!(
        answered[2],
        serde_json::json!({"role": "tool", "tool_call_id": "call_e2e_0", "content": "sunny, 21 C"})
    );
    // JSON mode reached Qwen as asked.
    let json_mode = fakes::easel::bodies(&vendors[0], "POST /compatible-mode/v1/chat/completions")
        .into_iter()
        .filter(|body| body.get("response_format").is_some())
        .collect::<Vec<_>>();
    assert_eq!(json_mode.len(), 1, "{json_mode:?}");
    assert_eq!(json_mode[0]["response_format"]["type"], "json_object");
    // The token cap sent as max_completion_tokens reached Qwen as the max_tokens it takes.
    let capped = fakes::easel::bodies(&vendors[0], "POST /compatible-mode/v1/chat/completions")
        .into_iter()
        .find(|body| body["messages"][0]["content"] == "be brief")
        .expect("the capped chat");
    assert_eq!(capped["max_tokens"], 7, "{capped}");
    assert!(capped.get("max_completion_tokens").is_none(), "{capped}");
    // The chat's photo reached Qwen whole.
    let photo = fakes::easel::bodies(&vendors[0], "POST /compatible-mode/v1/chat/completions")
        .into_iter()
        .find_map(|body| {
            body["messages"][0]["content"][1]["image_url"]["url"]
                .as_str()
                .map(String::from)
        })
        .expect("a chat with a photo");
    assert!(
        photo.starts_with("data:image/png;base64,"),
        "{}",
        &photo[..40]
    );
    assert!(photo.len() > 9 * 1024 * 1024, "{} bytes", photo.len());
    for check in [
        "/v1 chat ok",
        "/v1 stream ok",
        "/llmage/v1 chat ok",
        "/llmage/v1 stream ok",
        "/v1 stream usage ok",
        "/llmage/v1 stream usage ok",
        "/v1 conversation checks ok",
        "/llmage/v1 conversation checks ok",
        "models ok",
        "image url ok",
        "image b64 ok",
        "image refusal ok",
        "image edit ok",
        "speech ok",
        "errors ok",
        "llmage picked model ok",
        "/v1 tool calls ok",
        "/llmage/v1 tool calls ok",
        "photo in a chat ok",
        "json mode ok",
        "token cap ok",
    ] {
        assert!(stdout.contains(check), "missing {check:?} in:\n{stdout}");
    }
}
