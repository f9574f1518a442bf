//! Seed 002 (llmage): every example request of the document, sent as written (host and key
//! substituted), gets the documented answer shape; parameters are validated against the
//! model's schema with llmage's messages; credits are reserved, kept and returned. The
//! example model names are aliases of the built-in offline models here.

use easel_tests::{ADMIN_KEY, Backend, Host, Options, charging, on_both_backends, send};
use reqwest::{Method, multipart};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[models]
aliases = { "qwen3-max" = "offline/chat", "wan2.2-t2i-plus" = "offline/image", "happyhorse-1.0-t2v" = "offline/video", "doubao-seedance-1-5-pro-251215" = "offline/video", "happyhorse-1.0-i2v" = "offline/video", "doubao-seedance-2-0-260128" = "offline/video", "happyhorse-1.0-r2v" = "offline/video" }
"#;

async fn llmage_host(extra: &str) -> Host {
    host_on(Backend::Sqlite, extra).await
}

async fn host_on(backend: Backend, extra: &str) -> Host {
    Host::start(
        Options::new(backend)
            .toml(&format!("{CONFIG}\n{extra}"))
            .env("EASEL_ADMIN_KEY", ADMIN_KEY),
    )
    .await
}

async fn task_of(host: &Host, id: &str) -> Value {
    host.wait_terminal(id).await;
    let (status, body) = host.get(&format!("/llmage/v1/tasks?taskid={id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_list_and_filter_by_catelogid() {
    let host = llmage_host("").await;
    let (status, all) = host.get("/llmage/v1/models").await;
    assert_eq!(status, 200, "{all}");
    assert!(all["data"].as_array().unwrap().len() >= 4);
    let (_, videos) = host.get("/llmage/v1/models?catelogid=t2v").await;
    let ids: Vec<&str> = videos["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["video"], "{videos}");
    let (_, chats) = host.get("/llmage/v1/models?catelogid=t2t").await;
    assert_eq!(chats["data"][0]["id"], "chat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_answers_streamed_and_whole() {
    let host = llmage_host("").await;
    let (status, whole) = host
        .post("/llmage/v1/chat/completions", &json!({"model": "qwen3-max", "catelogid": "t2t", "prompt": "你是谁", "sys_prompt": "", "stream": false}))
        .await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["model"], "qwen3-max");
    assert_eq!(whole["finish"], "1");
    assert_eq!(whole["choices"][0]["finish_reason"], "stop");
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    let content = whole["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains("你是谁"), "{whole}");
    assert_eq!(whole["content"], content);
    assert!(whole["usage"]["total_tokens"].is_number());

    // `messages` is the conversation before the prompt; `sys_prompt` comes first, none dropped.
    let (status, asked) = host
        .post("/llmage/v1/chat/completions", &json!({"model": "qwen3-max", "prompt": "and now?", "sys_prompt": "be brief",
                                                     "messages": [{"role": "user", "content": "earlier"}]}))
        .await;
    assert_eq!(status, 200, "{asked}");
    assert_eq!(asked["content"], "Offline echo: and now?");
    let (_, detail) = host
        .get(&format!(
            "/api/v1/jobs/{}/detail",
            asked["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        detail["job"]["request"]["params"]["messages"],
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "earlier"},
               {"role": "user", "content": "and now?"}]),
        "{detail}"
    );

    let response = host
        .as_key(Method::POST, "/llmage/v1/chat/completions", "key-a")
        .json(&json!({"model": "qwen3-max", "catelogid": "t2t", "prompt": "你是谁", "sys_prompt": "", "stream": true}))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = response.text().await.unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("data: ")).collect();
    assert_eq!(*lines.last().unwrap(), "data: [DONE]");
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(&l[6..]).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "qwen3-max")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["finish"], "0");
    assert!(
        chunks
            .iter()
            .all(|c| c.get("reasoning_content") == Some(&Value::Null) && c["content"].is_string()),
        "every chunk carries llmage's content and a null reasoning_content: {text}"
    );
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["content"].as_str())
        .collect();
    assert_eq!(streamed, content, "the stream carries the same answer");
    assert_eq!(chunks.last().unwrap()["finish"], "1");

    // Asked for usage, the stream ends with OpenAI's usage chunk, finished too: a client that
    // reads the last chunk's `finish` sees a whole answer.
    let text = host
        .post_text(
            "/llmage/v1/chat/completions",
            &json!({"model": "qwen3-max", "prompt": "你是谁", "stream": true,
                      "stream_options": {"include_usage": true}}),
        )
        .await;
    let last: Value = text
        .lines()
        .filter(|l| l.starts_with("data: {"))
        .last()
        .map(|l| serde_json::from_str(&l[6..]).unwrap())
        .unwrap();
    assert!(last["usage"]["total_tokens"].is_number(), "{text}");
    assert_eq!(last["finish"], "1", "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_and_video_examples_are_created_then_succeed() {
    let host = llmage_host("").await;
    let examples = [
        (
            "/llmage/v1/image/generations",
            json!({"model": "wan2.2-t2i-plus", "catelogid": "t2i", "prompt": "一只猫坐在月亮上", "negative_prompt": "模糊,低质量"}),
            "image",
        ),
        (
            "/llmage/v1/image/generations",
            json!({"model": "wan2.2-t2i-plus", "catelogid": "t2i", "prompt": "一只猫坐在月亮上,水彩画风格"}),
            "image",
        ),
        (
            "/llmage/v1/video/generations",
            json!({"model": "happyhorse-1.0-t2v", "catelogid": "t2v", "prompt": "天上飞过各式各样的万圣节南瓜", "ratio": "4:3", "resolution": "720P", "duration": 4}),
            "video",
        ),
        (
            "/llmage/v1/video/generations",
            json!({"model": "doubao-seedance-1-5-pro-251215", "catelogid": "t2v", "prompt": "小猫在抓老鼠", "duration": 5, "ratio": "16:9", "resolution": "480p"}),
            "video",
        ),
    ];
    for (path, body, slot) in examples {
        let (status, created) = host.post(path, &body).await;
        assert_eq!(status, 200, "{body}: {created}");
        assert_eq!(created["status"], "CREATED");
        let done = task_of(&host, created["taskid"].as_str().unwrap()).await;
        assert_eq!(done["status"], "SUCCEEDED", "{done}");
        assert_eq!(done["taskid"], created["taskid"]);
        let url = done[slot].as_str().expect("media url");
        assert_eq!(reqwest::get(url).await.unwrap().status(), 200);
        if slot == "video" {
            // The cover's place, kept (the offline model makes none).
            assert!(done.get("image").is_some_and(Value::is_null), "{done}");
        }
        assert_eq!(done["usage"]["action"], body["catelogid"]);
        assert_eq!(
            done["usage"]["model"], body["model"],
            "the model as the client named it"
        );
    }
    // Several images: the seed's `image` is the first, `images` lists every one charged.
    let body = json!({"model": "wan2.2-t2i-plus", "catelogid": "t2i", "prompt": "三只猫", "n": 3});
    let (_, created) = host.post("/llmage/v1/image/generations", &body).await;
    let done = task_of(&host, created["taskid"].as_str().unwrap()).await;
    let images = done["images"].as_array().expect("images");
    assert_eq!(images.len(), 3, "{done}");
    assert_eq!(done["image"], images[0]);
    for url in images {
        assert_eq!(
            reqwest::get(url.as_str().unwrap()).await.unwrap().status(),
            200
        );
    }
}

fn file(name: &str, bytes: &[u8], mime: &str) -> multipart::Part {
    multipart::Part::bytes(bytes.to_vec())
        .file_name(name.to_string())
        .mime_str(mime)
        .unwrap()
}

async fn post_form(host: &Host, form: multipart::Form) -> (u16, Value) {
    send(
        host.as_key(Method::POST, "/llmage/v1/video/generations", "key-a")
            .multipart(form),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_examples_carry_each_documented_file_field() {
    let host = llmage_host("").await;
    let jpg = b"\xFF\xD8\xFF\xE0fake-jpeg";
    // 快乐马图生视频
    let form = multipart::Form::new()
        .text("model", "happyhorse-1.0-i2v")
        .text("catelogid", "i2v")
        .text("prompt", "图片变换为万圣节各种南瓜飞上天")
        .text("duration", "15")
        .text("resolution", "720P")
        .part("image_file", file("02.jpg", jpg, "image/jpeg"));
    let (status, created) = post_form(&host, form).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        task_of(&host, created["taskid"].as_str().unwrap()).await["status"],
        "SUCCEEDED"
    );
    // A file under a field the document does not name is refused by name, not read as text;
    // a file field sent as text is a URL, checked as one.
    let form = multipart::Form::new()
        .text("model", "happyhorse-1.0-i2v")
        .text("catelogid", "i2v")
        .text("prompt", "p")
        .part("image", file("02.jpg", jpg, "image/jpeg"));
    let (status, refused) = post_form(&host, form).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .starts_with("image is not a file field"),
        "{refused}"
    );
    let form = multipart::Form::new()
        .text("model", "happyhorse-1.0-i2v")
        .text("catelogid", "i2v")
        .text("prompt", "p")
        .text("image_file", "notafile");
    let (status, refused) = post_form(&host, form).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("image_file"),
        "{refused}"
    );
    // seedance 2.0 图生视频: first and last frame.
    let form = multipart::Form::new()
        .text("model", "doubao-seedance-2-0-260128")
        .text("catelogid", "i2v")
        .text("prompt", "从图片1到图片2丝滑转换")
        .text("duration", "5")
        .text("ratio", "16:9")
        .text("resolution", "480p")
        .part("image1_file", file("myimg1.jpg", jpg, "image/jpeg"))
        .part("image2_file", file("myimg2.jpg", jpg, "image/jpeg"));
    let (status, created) = post_form(&host, form).await;
    assert_eq!(status, 200, "{created}");
    // Wan's spelling of the two frames.
    let form = multipart::Form::new()
        .text("model", "doubao-seedance-2-0-260128")
        .text("catelogid", "i2v")
        .text("prompt", "p")
        .part("image_file1", file("a.jpg", jpg, "image/jpeg"))
        .part("image_file2", file("b.jpg", jpg, "image/jpeg"));
    let (status, _) = post_form(&host, form).await;
    assert_eq!(status, 200);
    // seedance 2.0 参考生视频: repeated image_files, plus video and audio references.
    let form = multipart::Form::new()
        .text("model", "doubao-seedance-2-0-260128")
        .text("catelogid", "ref2v")
        .part("image_files", file("1.jpg", jpg, "image/jpeg"))
        .part("image_files", file("2.jpg", jpg, "image/jpeg"))
        .part(
            "video_files",
            file("v.mp4", b"\0\0\0\x18ftypmp42", "video/mp4"),
        )
        .part("audio_files", file("a.wav", b"RIFF....WAVE", "audio/wav"))
        .text("prompt", "平滑过渡从第一张图片到第二张图片")
        .text("ratio", "4:3")
        .text("resolution", "720p")
        .text("duration", "4");
    let (status, created) = post_form(&host, form).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        task_of(&host, created["taskid"].as_str().unwrap()).await["status"],
        "SUCCEEDED"
    );
    // 快乐马参考生视频
    let form = multipart::Form::new()
        .text("model", "happyhorse-1.0-r2v")
        .text("catelogid", "ref2v")
        .part("image_files", file("1.jpg", jpg, "image/jpeg"))
        .part("image_files", file("2.jpg", jpg, "image/jpeg"))
        .text("prompt", "平滑过渡从第一张图片到第二张图片")
        .text("ratio", "4:3")
        .text("resolution", "720P")
        .text("duration", "4");
    let (status, _) = post_form(&host, form).await;
    assert_eq!(status, 200);
    // Every uploaded file became an asset of the client: 1 + 2 + 2 + 4 + 2.
    let (_, assets) = host.get("/api/v1/assets?limit=200").await;
    let uploaded = assets["assets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["jobId"].is_null())
        .count();
    assert_eq!(uploaded, 11, "{assets}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_llmage_messages_and_stores_nothing() {
    let host = llmage_host("").await;
    let cases = [
        (
            json!({"model": "wan2.2-t2i-plus", "catelogid": "t2i"}),
            "Missing required parameter: prompt",
        ),
        (
            json!({"catelogid": "t2i", "prompt": "p"}),
            "Missing required parameter: model",
        ),
        (
            json!({"model": "wan2.2-t2i-plus", "prompt": "p"}),
            "Missing required parameter: catelogid",
        ),
        (
            json!({"model": "wan2.2-t2i-plus", "catelogid": "t2i", "prompt": "p", "n": 11}),
            "Invalid parameter n: must be between 1 and 10",
        ),
        (
            json!({"model": "wan2.2-t2i-plus", "catelogid": "t2i", "prompt": "p", "width": "wide"}),
            "Invalid parameter width: must be of type integer",
        ),
        // Seed 002's text fields are text, declared by the model's schema or not.
        (
            json!({"model": 123, "catelogid": "t2i", "prompt": "p"}),
            "Invalid parameter model: must be of type string",
        ),
        (
            json!({"model": "wan2.2-t2i-plus", "catelogid": "t2i", "prompt": "p", "negative_prompt": {"a": 1}}),
            "Invalid parameter negative_prompt: must be of type string",
        ),
    ];
    for (body, message) in cases {
        let (status, answer) = host.post("/llmage/v1/image/generations", &body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer, json!({"error": message}));
    }
    let (status, answer) = host
        .post(
            "/llmage/v1/video/generations",
            &json!({"model": "happyhorse-1.0-i2v", "catelogid": "i2v", "prompt": "p"}),
        )
        .await;
    assert_eq!(
        (status, answer),
        (
            400,
            json!({"error": "Missing required parameter: image_file"})
        )
    );
    let (status, answer) = host
        .post("/llmage/v1/video/generations", &json!({"model": "happyhorse-1.0-t2v", "catelogid": "t2v", "prompt": "p", "duration": 99}))
        .await;
    assert_eq!(
        (status, answer),
        (
            400,
            json!({"error": "Invalid parameter duration: must be between 1 and 15"})
        )
    );
    // A list of references in JSON holds URLs only: one of another shape is not left out.
    let (status, answer) = host
        .post(
            "/llmage/v1/video/generations",
            &json!({"model": "happyhorse-1.0-i2v", "catelogid": "i2v", "prompt": "p",
                    "image_files": ["https://example.com/1.png", {"url": "https://example.com/2.png"}]}),
        )
        .await;
    assert_eq!(
        (status, answer),
        (
            400,
            json!({"error": "image_files must be a URL or a list of URLs"})
        )
    );
    let (status, answer) = send(
        reqwest::Client::new()
            .get(host.url("/llmage/v1/models"))
            .bearer_auth("wrong"),
    )
    .await;
    assert_eq!((status, answer), (401, json!({"error": "Invalid API Key"})));
    let (_, jobs) = host.get("/api/v1/jobs").await;
    assert_eq!(
        jobs["jobs"].as_array().unwrap().len(),
        0,
        "refused requests stored nothing: {jobs}"
    );
}

on_both_backends!(credits_are_reserved_kept_on_success_and_returned_otherwise);

async fn credits_are_reserved_kept_on_success_and_returned_otherwise(backend: Backend) {
    let host = host_on(backend, &charging(&[("offline/image", 5.0)])).await;
    let image = json!({"model": "wan2.2-t2i-plus", "catelogid": "t2i", "prompt": "p"});
    let (status, answer) = host.post("/llmage/v1/image/generations", &image).await;
    assert_eq!(
        (status, answer),
        (429, json!({"error": "Insufficient balance"}))
    );

    let granted = host.grant("partner-a", 12.0).await;
    assert_eq!(granted["balance"], 12.0);

    let (_, first) = host.post("/llmage/v1/image/generations", &image).await;
    let done = task_of(&host, first["taskid"].as_str().unwrap()).await;
    // A whole number of credits as the seed writes it: `5`, not `5.0`.
    assert_eq!(done["usage"]["credits"], json!(5), "{done}");
    // A failure and a cancellation give their reservation back.
    let (_, failing) = host.post("/llmage/v1/image/generations", &json!({"model": "wan2.2-t2i-plus", "catelogid": "t2i", "prompt": "p", "fail": "refused on purpose"})).await;
    assert_eq!(
        task_of(&host, failing["taskid"].as_str().unwrap()).await["status"],
        "FAILED"
    );
    let (_, slow) = host.post("/llmage/v1/image/generations", &json!({"model": "wan2.2-t2i-plus", "catelogid": "t2i", "prompt": "p", "delay_ms": 60000})).await;
    let slow_id = slow["taskid"].as_str().unwrap();
    let (status, _) = host
        .post(&format!("/api/v1/jobs/{slow_id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    host.wait_terminal(slow_id).await;

    let account = host.usage("partner-a").await;
    assert_eq!(account["balance"], 7.0, "{account}");
    assert_eq!(account["reserved"], 0.0);
    assert_eq!(
        account["usage"],
        json!([{"model": "offline/image", "tasks": 1, "credits": 5.0}])
    );
    // 7 left: one more at 5 fits, the next does not.
    let (status, _) = host.post("/llmage/v1/image/generations", &image).await;
    assert_eq!(status, 200);
    let (status, answer) = host.post("/llmage/v1/image/generations", &image).await;
    assert_eq!(
        (status, answer),
        (429, json!({"error": "Insufficient balance"}))
    );
    // Admin routes need the admin key.
    let (status, _) =
        send(host.as_key(Method::GET, "/admin/clients/partner-a/usage", "key-a")).await;
    assert_eq!(status, 401);
}

on_both_backends!(chats_are_recorded_charged_and_refunded_like_every_task);

/// Starts a streamed chat as `key-a`: the response, with the rest of its events still to
/// read, and the task id its first event names.
async fn start_stream(host: &Host, path: &str, body: Value) -> (reqwest::Response, String) {
    let mut response = host
        .as_key(Method::POST, path, "key-a")
        .json(&body)
        .send()
        .await
        .unwrap();
    let chunk = response.chunk().await.unwrap().expect("a first event");
    let text = String::from_utf8(chunk.to_vec()).unwrap();
    let first = text.lines().next().unwrap().trim_start_matches("data: ");
    let first: Value = serde_json::from_str(first).unwrap();
    (response, first["id"].as_str().unwrap().to_string())
}

async fn chats_are_recorded_charged_and_refunded_like_every_task(backend: Backend) {
    let host = host_on(backend, &charging(&[("offline/chat", 2.0)])).await;
    let chat = |extra: Value| {
        let mut body = json!({"model": "qwen3-max", "catelogid": "t2t", "prompt": "你好"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let (status, answer) = host
        .post("/llmage/v1/chat/completions", &chat(json!({})))
        .await;
    assert_eq!(
        (status, answer),
        (429, json!({"error": "Insufficient balance"}))
    );
    let (status, answer) = host
        .post(
            "/v1/chat/completions",
            &json!({"model": "qwen3-max", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["error"]["message"], "Insufficient balance");

    host.grant("partner-a", 10.0).await;

    // A whole answer: its id is a task that kept its price and holds the answer's usage.
    let (status, whole) = host
        .post("/llmage/v1/chat/completions", &chat(json!({})))
        .await;
    assert_eq!(status, 200, "{whole}");
    let id = whole["id"].as_str().unwrap();
    let job = host.wait_terminal(id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["capability"], "chat");
    assert_eq!(job["prompt"], "你好");
    assert_eq!(job["usage"], whole["usage"]);
    let (_, task) = host.get(&format!("/llmage/v1/tasks?taskid={id}")).await;
    assert_eq!(task["status"], "SUCCEEDED", "{task}");
    assert_eq!(task["usage"]["credits"], json!(2), "{task}");
    assert_eq!(task["usage"]["type"], "text2text");
    assert_eq!(
        task["usage"]["model"], "qwen3-max",
        "the name the client asked for"
    );
    assert_eq!(task["content"], whole["content"]);

    // A streamed answer on the OpenAI path: same.
    let openai_chat = json!({"model": "qwen3-max", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let (response, id) = start_stream(&host, "/v1/chat/completions", openai_chat.clone()).await;
    assert!(response.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    assert_eq!(host.wait_terminal(&id).await["status"], "succeeded");

    // A stream that breaks: an error event, then [DONE]; the task failed and was refunded.
    let (response, id) = start_stream(
        &host,
        "/llmage/v1/chat/completions",
        chat(json!({"stream": true, "fail": "upstream broke"})),
    )
    .await;
    let rest = response.text().await.unwrap();
    assert!(rest.trim_end().ends_with("data: [DONE]"), "{rest}");
    let broken = host.wait_terminal(&id).await;
    assert_eq!(broken["status"], "failed", "{broken}");
    assert!(broken["error"].as_str().unwrap().contains("upstream broke"));
    // On the OpenAI path the event is OpenAI's whole error object, as its clients read it.
    let mut openai_broken = openai_chat.clone();
    openai_broken["fail"] = json!("upstream broke");
    let (response, _) = start_stream(&host, "/v1/chat/completions", openai_broken).await;
    let rest = response.text().await.unwrap();
    let event = rest
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .find(|data| data.contains("\"error\""))
        .unwrap_or_else(|| panic!("no error event: {rest}"));
    let event: Value = serde_json::from_str(event).unwrap();
    assert_eq!(event["error"]["type"], "server_error", "{event}");
    assert!(event["error"].get("code").is_some() && event["error"].get("param").is_some());
    assert!(
        event["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upstream broke")
    );

    // A slow stream cancelled through the jobs API ends, and is refunded.
    let (response, id) = start_stream(
        &host,
        "/llmage/v1/chat/completions",
        chat(json!({"stream": true, "work_ms": 60000})),
    )
    .await;
    let (_, running) = host.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(running["job"]["status"], "running", "{running}");
    let (status, _) = host
        .post(&format!("/api/v1/jobs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let rest = tokio::time::timeout(std::time::Duration::from_secs(10), response.text())
        .await
        .expect("a cancelled stream ends")
        .unwrap();
    assert!(rest.trim_end().ends_with("data: [DONE]"), "{rest}");
    assert_eq!(host.wait_terminal(&id).await["status"], "cancelled");

    // A client that goes away cancels its chat, which is refunded too.
    let mut slow = openai_chat;
    slow["work_ms"] = json!(60000);
    let (response, id) = start_stream(&host, "/v1/chat/completions", slow).await;
    drop(response);
    let left = host.wait_terminal(&id).await;
    assert_eq!(left["status"], "cancelled", "{left}");

    let account = host.usage("partner-a").await;
    assert_eq!(account["balance"], 6.0, "{account}");
    assert_eq!(account["reserved"], 0.0);
    assert_eq!(
        account["usage"],
        json!([{"model": "offline/chat", "tasks": 2, "credits": 4.0}])
    );
}
