use super::*;
use easel_sdk::testing::Script;
use easel_sdk::{Error, GenerationRequest, Output};

#[test]
fn wan_text_to_image_is_a_task_polled_until_it_succeeds() {
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .exchange(
            async_post("/services/aigc/text2image/image-synthesis").json(json!({
                "model": "wan2.2-t2i-plus",
                "input": {"prompt": "a cat on the moon", "negative_prompt": "blurry"},
                "parameters": {"size": "1024*1024", "n": 2, "seed": 7}
            })),
            created("t-img"),
        )
        .exchange(get("/tasks/t-img"), task_status("t-img", "PENDING"))
        .exchange(get("/tasks/t-img"), task_status("t-img", "RUNNING"))
        .exchange(
            get("/tasks/t-img"),
            task_answer(
                json!({"task_id": "t-img", "task_status": "SUCCEEDED", "results": [
                    {"url": "https://dashscope-result.oss.example/1.png", "orig_prompt": "a cat on the moon"},
                    {"code": "InternalError", "message": "one image failed"}
                ]}),
                json!({"image_count": 1}),
            ),
        )
        .install();
    let request = GenerationRequest::new("image.generate", "wan2.2-t2i-plus", "a cat on the moon")
        .param("negative_prompt", "blurry")
        .param("n", 2)
        .param("seed", 7);
    let (handle, after) = pending(DashScope.submit(request).unwrap());
    assert_eq!(handle, "dashscope-task:v1:cn:image:t-img");
    assert_eq!(after, 3_000);
    assert_eq!(poll(&handle), PollOutcome::Running { progress: None, poll_after_ms: 3_000 });
    assert!(matches!(poll(&handle), PollOutcome::Running { .. }));
    let done = finished(poll(&handle));
    assert_eq!(
        done.outputs,
        [Output::Url { url: "https://dashscope-result.oss.example/1.png".into(), content_type: Some("image/png".into()) }]
    );
    assert_eq!(done.usage, Some(json!({"image_count": 1})));
    script.finish();
}

#[test]
fn qwen_image_maps_pixel_fields_to_its_native_sizes() {
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .exchange(
            async_post("/services/aigc/text2image/image-synthesis").json(json!({
                "model": "qwen-image",
                "input": {"prompt": "sunset", "negative_prompt": "low quality"},
                "parameters": {"size": "1664*928", "n": 1}
            })),
            created("t-q"),
        )
        .install();
    let request = GenerationRequest::new("image.generate", "qwen-image", "sunset")
        .param("negativePrompt", "low quality")
        .param("resolution", "2K")
        .param("aspectRatio", "16:9");
    let (handle, _) = pending(DashScope.submit(request).unwrap());
    assert_eq!(handle, "dashscope-task:v1:cn:image:t-q");
    script.finish();
}

#[test]
fn qwen_image_with_an_input_image_edits_synchronously_with_a_data_url() {
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .exchange(
            post("/services/aigc/multimodal-generation/generation").json(json!({
                "model": "qwen-image-edit",
                "input": {"messages": [{"role": "user", "content": [
                    {"image": "data:image/png;base64,iVBORw0K"},
                    {"text": "make it night"}
                ]}]},
                "parameters": {}
            })),
            Reply::json(200, json!({
                "output": {"choices": [{"finish_reason": "stop", "message": {"role": "assistant",
                    "content": [{"image": "https://dashscope-result.oss.example/edit.png"}]}}]},
                "usage": {"width": 1328, "height": 1328, "image_count": 1},
                "request_id": "r"
            })),
        )
        .install();
    let request = GenerationRequest::new("image.edit", "qwen-image", "make it night").input(InputMedia {
        kind: "image".into(),
        data: Some(b"\x89PNG\r\n".to_vec()),
        ..Default::default()
    });
    match DashScope.submit(request).unwrap() {
        Submission::Finished(f) => {
            assert_eq!(f.outputs, [Output::Url {
                url: "https://dashscope-result.oss.example/edit.png".into(),
                content_type: Some("image/png".into())
            }]);
            assert_eq!(f.usage.unwrap()["image_count"], 1);
        }
        other => panic!("{other:?}"),
    }
    script.finish();
}

/// The host refuses a size outside a model's `sizeBounds` before a task exists, so the
/// manifest states them for each Wan model.
#[test]
fn each_wan_model_states_the_sizes_it_renders() {
    let manifest = DashScope.manifest();
    let bounds = |key: &str| {
        let model = manifest.models.iter().find(|m| m.key == key).unwrap();
        model.params_schema["properties"]["size"]["sizeBounds"].clone()
    };
    assert_eq!(bounds("wan2.2-t2i-flash"), json!({"minSide": 512, "maxSide": 1440}));
    assert_eq!(bounds("wan2.5-t2i-preview"), json!({"minPixels": 589824, "maxPixels": 2073600, "maxRatio": 4}));
    let _script = Script::new().secret("DASHSCOPE_API_KEY", KEY).install();
    let empty = GenerationRequest::new("image.generate", "wan2.5-t2i-preview", " ");
    assert_eq!(DashScope.submit(empty), Err(Error::invalid("Missing required parameter: prompt")));
}

#[test]
fn singapore_region_goes_to_the_international_host_and_the_handle_remembers_it() {
    let script = Script::new()
        .secret("DASHSCOPE_API_KEY", KEY)
        .secret("DASHSCOPE_REGION", "ap-southeast-1")
        .exchange(
            Expect::post("https://dashscope-intl.aliyuncs.com/api/v1/services/aigc/text2image/image-synthesis")
                .header("authorization", "Bearer sk-test")
                .header("x-dashscope-async", "enable")
                .json(json!({"model": "wan2.5-t2i-preview", "input": {"prompt": "x"},
                             "parameters": {"size": "1280*1280", "n": 1}})),
            created("t-sg"),
        )
        .exchange(
            Expect::get("https://dashscope-intl.aliyuncs.com/api/v1/tasks/t-sg").header("authorization", "Bearer sk-test"),
            task_status("t-sg", "RUNNING"),
        )
        .install();
    let (handle, _) = pending(DashScope.submit(GenerationRequest::new("image.generate", "wan2.5-t2i-preview", "x")).unwrap());
    assert_eq!(handle, "dashscope-task:v1:intl:image:t-sg");
    assert!(matches!(poll(&handle), PollOutcome::Running { .. }));
    script.finish();
}
