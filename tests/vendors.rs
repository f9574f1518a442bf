//! Every vendor plugin against a fake of its vendor's documented wire format (issue 6).
//!
//! Each test starts one fake upstream (`tests/fakes/<vendor>.rs`) and one easel host with the
//! built plugin, its secrets, and `[plugins] connect_to` routing the vendor's host name to the
//! fake. It submits one job per scenario at once, since the prompt's `scenario:<name>` token
//! tells the fake what to play: success, pending-then-success, each mapped error (auth,
//! rate limit with `Retry-After`, content moderation on submit and in a failed task, bad
//! parameter, 5xx) and cancel while the vendor still has the task. Then it checks the jobs'
//! outcomes and error texts, the outputs downloaded from easel, and what the fake received:
//! credentials on every call, only documented paths, the body fields, the polls, the cancel.
//!
//! The test hosts cap the plugins' poll hints (3–15 s) at `[engine] max_poll_interval_secs =
//! 0.5`, and the scenarios of a vendor run concurrently in one host.

#[path = "fakes/mod.rs"]
mod fakes;

use fakes::easel::{Easel, bodies, plays_every_sync_scenario, plays_every_task_scenario};
use fakes::{Fake, Scenario};
use serde_json::{Value, json};

/// Seed 002: HappyHorse's reference-to-video takes at most nine images; a tenth is refused at
/// the front door, naming the field, before any task is made (it used to fail at submit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happyhorse_references_past_nine_are_refused_before_a_task() {
    use base64::Engine as _;
    use fakes::dashscope::{HOST, KEY, routes};
    let fake = Fake::start(routes).await;
    let easel = Easel::start("dashscope", &[(HOST, &fake)], &[("DASHSCOPE_API_KEY", KEY)]).await;
    let png = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(fakes::PNG_1X1)
    );
    let ref2v = |images: usize| {
        json!({"model": "happyhorse-1.0-r2v", "catelogid": "ref2v", "prompt": "the cast",
               "image_files": vec![png.clone(); images]})
    };
    let path = "/llmage/v1/video/generations";
    let (status, refused) = easel.host.post(path, &ref2v(10)).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"],
        "image_files: dashscope/happyhorse-1.0-r2v takes at most 9 image inputs; 10 were given"
    );
    let (_, jobs) = easel.host.get("/api/v1/jobs").await;
    assert_eq!(jobs["jobs"], json!([]), "nothing stored");
    let (status, created) = easel.host.post(path, &ref2v(9)).await;
    assert_eq!(
        (status, &created["status"]),
        (200, &json!("CREATED")),
        "{created}"
    );
}

/// With a public address, an upload of a kind the vendor takes only as links (wan2.6-r2v's
/// references) reaches it as easel's signed link to the file, which the vendor fetches; a
/// `data:` URL is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_vendor_takes_only_as_a_link_reaches_it_as_easels_signed_link() {
    use fakes::dashscope::{HOST, KEY, routes};
    let png_part = |name: &str| {
        reqwest::multipart::Part::bytes(fakes::PNG_1X1.to_vec())
            .file_name(name.to_string())
            .mime_str("image/png")
            .unwrap()
    };
    let fake = Fake::start(routes).await;
    let secrets = [
        ("DASHSCOPE_API_KEY", KEY),
        ("EASEL_PUBLIC_URL", "https://easel.example.com"),
    ];
    let easel = Easel::start("dashscope", &[(HOST, &fake)], &secrets).await;
    let form = reqwest::multipart::Form::new()
        .text("model", "wan2.6-r2v")
        .text("catelogid", "i2v")
        .text("prompt", "a fox")
        .part("image_file1", png_part("first.png"))
        .part("image_file2", png_part("last.png"));
    let (status, created) = easel_tests::send(
        easel
            .host
            .as_key(
                reqwest::Method::POST,
                "/llmage/v1/video/generations",
                "key-a",
            )
            .multipart(form),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let path = "POST /api/v1/services/aigc/video-generation/video-synthesis";
    while bodies(&fake, path).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the submit never reached the vendor"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let body = &bodies(&fake, path)[0];
    let reference = body["input"]["reference_urls"][0].as_str().unwrap();
    let path = reference
        .strip_prefix("https://easel.example.com/files/asset_")
        .map(|rest| format!("/files/asset_{rest}"));
    // The link is one easel serves the upload under.
    let served = easel
        .host
        .url(&path.expect("a link under EASEL_PUBLIC_URL"));
    let bytes = reqwest::get(&served).await.unwrap().bytes().await.unwrap();
    assert_eq!(&bytes[..], fakes::PNG_1X1);
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD.encode(fakes::PNG_1X1);
    let inline = json!({"capability": "video.generate", "model": "dashscope/wan2.6-r2v", "prompt": "a fox",
                        "materials": [{"type": "image", "url": format!("data:image/png;base64,{png}")}]});
    let (status, refused) = easel.host.post("/api/v1/jobs", &inline).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"],
        "materials: dashscope/wan2.6-r2v takes image inputs only as links its vendor fetches: \
         give an http(s) URL or upload the file, not a data: URL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashscope_images_video_and_speech() {
    use fakes::dashscope::{HOST, KEY, error_detail, routes};
    let fake = Fake::start(routes).await;
    let easel = Easel::start("dashscope", &[(HOST, &fake)], &[("DASHSCOPE_API_KEY", KEY)]).await;

    let image = json!({"capability": "image.generate", "model": "dashscope/wan2.2-t2i-flash", "prompt": "a lighthouse", "n": 1, "seed": 7});
    // Seed 001's own size fields: a portrait 720p video reaches a model sized by `size`.
    let video = json!({"capability": "video.generate", "model": "dashscope/wan2.6-t2v", "prompt": "waves",
                       "settings": {"duration": 5, "ratio": "9:16", "resolution": "720p"}});
    let speech = json!({"capability": "audio.speech", "model": "dashscope/qwen3-tts-flash", "prompt": "你好", "voice": "Ethan"});
    tokio::join!(
        plays_every_task_scenario(&easel, &fake, &image, "img", fakes::PNG_1X1, error_detail),
        async {
            // Video plays success (it polls every 15 s); errors and cancel share the image path's
            // task endpoints.
            let video_jobs = easel.submit_each(&video, &[Scenario::Success]).await;
            easel
                .expect_outputs(&video_jobs[0], fakes::MP4_HEADER)
                .await
        },
        plays_every_sync_scenario(
            &easel,
            &speech,
            fakes::WAV_HEADER,
            &Scenario::SUBMIT_ERRORS,
            error_detail
        ),
    );

    let cancelled = fake.tasks().id_for(Scenario::StaysPending).unwrap();
    assert!(
        fake.tasks().was_cancelled(&cancelled),
        "easel called POST /api/v1/tasks/{cancelled}/cancel"
    );
    let image_bodies = bodies(
        &fake,
        "POST /api/v1/services/aigc/text2image/image-synthesis",
    );
    assert_eq!(image_bodies.len(), Scenario::ALL.len());
    for body in &image_bodies {
        assert_eq!(body["model"], "wan2.2-t2i-flash", "{body}");
        assert_eq!(body["parameters"]["n"], 1, "{body}");
        assert_eq!(body["parameters"]["seed"], 7, "{body}");
        assert_eq!(
            body["parameters"]["size"], "1024*1024",
            "the seed's default size: {body}"
        );
    }
    let video_body = &bodies(
        &fake,
        "POST /api/v1/services/aigc/video-generation/video-synthesis",
    )[0];
    assert_eq!(video_body["model"], "wan2.6-t2v");
    assert_eq!(video_body["parameters"]["duration"], 5);
    assert_eq!(
        video_body["parameters"]["size"], "720*1280",
        "settings.ratio and settings.resolution: {video_body}"
    );
    // A reference a text-to-video model would never read is refused, not dropped.
    let mut with_material = video.clone();
    with_material["materials"] = json!([{"type": "image", "url": "https://example.com/a.png"}]);
    let (status, refused) = easel.host.post("/api/v1/jobs", &with_material).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"], "materials: dashscope/wan2.6-t2v takes no image inputs",
        "{refused}"
    );
    // wan2.6-r2v takes its references only as links Model Studio fetches (its manifest's
    // `url_inputs`): a file given whole is refused at the door, a link goes through.
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD.encode(fakes::PNG_1X1);
    let mut r2v = json!({"capability": "video.generate", "model": "dashscope/wan2.6-r2v", "prompt": "a fox",
                         "materials": [{"type": "image", "url": "https://example.com/fox.png"},
                                       {"type": "image", "url": format!("data:image/png;base64,{png}")}]});
    let (status, refused) = easel.host.post("/api/v1/jobs", &r2v).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"],
        "materials: dashscope/wan2.6-r2v takes image inputs only as http(s) URLs its vendor \
         fetches, not as an uploaded file, a data: URL or a stored asset (with EASEL_PUBLIC_URL \
         set, easel hands the vendor a link to an upload)"
    );
    r2v["materials"].as_array_mut().unwrap().pop();
    let (status, created) = easel.host.post("/api/v1/jobs", &r2v).await;
    assert_eq!(status, 202, "{created}");
    // Wan renders 512 to 1440 pixels a side (its manifest's `sizeBounds`): seed 001's own
    // 1440x2560 is refused at the door, and Pixel's 2K is fitted into them.
    let mut tall = image.clone();
    (tall["width"], tall["height"]) = (json!(1440), json!(2560));
    let (status, refused) = easel.host.post("/api/v1/jobs", &tall).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"],
        "Invalid parameter width and height: 1440x2560 is outside the sizes wan2.2-t2i-flash \
         renders (512 to 1440 pixels a side)"
    );
    let pixel = json!({"prompt": "a harbour", "model": "dashscope/wan2.2-t2i-flash", "resolution": "2K",
                       "aspectRatio": "9:16"});
    let (status, created) = easel.host.post("/api/v1/generations/image", &pixel).await;
    assert_eq!(status, 200, "{created}");
    let id = created["data"]["task_id"].as_str().unwrap();
    let done = easel.host.wait_terminal(id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let sized = bodies(
        &fake,
        "POST /api/v1/services/aigc/text2image/image-synthesis",
    );
    assert_eq!(
        sized.len(),
        Scenario::ALL.len() + 1,
        "only the fitted one reached the vendor"
    );
    assert_eq!(sized.last().unwrap()["parameters"]["size"], "808*1440");
    let speech_body = &bodies(
        &fake,
        "POST /api/v1/services/aigc/multimodal-generation/generation",
    )[0];
    assert_eq!(speech_body["model"], "qwen3-tts-flash");
    assert_eq!(speech_body["input"]["voice"], "Ethan");
    fake.assert_only_documented_and_authorized(fakes::bearer(KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volcengine_seedance_seedream_and_doubao_speech() {
    use fakes::volcengine::{
        ARK_HOST, ARK_KEY, SPEECH_HOST, TTS_APP_ID, TTS_TOKEN, error_detail, routes,
        speech_error_detail,
    };
    let fake = Fake::start(routes).await;
    let secrets = [
        ("ARK_API_KEY", ARK_KEY),
        ("VOLC_TTS_APP_ID", TTS_APP_ID),
        ("VOLC_TTS_ACCESS_TOKEN", TTS_TOKEN),
    ];
    let easel = Easel::start(
        "volcengine",
        &[(ARK_HOST, &fake), (SPEECH_HOST, &fake)],
        &secrets,
    )
    .await;

    // Every task asks for the last frame too: a PNG that succeeds beside each video.
    let video = json!({"capability": "video.generate", "model": "volcengine/doubao-seedance-2-0-260128", "prompt": "小猫在抓老鼠", "duration": 5, "return_last_frame": true});
    let image = json!({"capability": "image.generate", "model": "volcengine/doubao-seedream-4-0-250828", "prompt": "一只猫", "seed": 42});
    let speech = json!({"capability": "audio.speech", "model": "volcengine/doubao-tts", "prompt": "你好", "voice": "zh_female_qingxin", "speed": 1.2});
    let speech_errors = [
        Scenario::AuthRejected,
        Scenario::RateLimited,
        Scenario::BadParameter,
        Scenario::UpstreamDown,
    ];
    tokio::join!(
        plays_every_task_scenario(
            &easel,
            &fake,
            &video,
            "cgt",
            fakes::MP4_HEADER,
            error_detail
        ),
        plays_every_sync_scenario(
            &easel,
            &image,
            fakes::PNG_1X1,
            &[Scenario::ContentRejected],
            error_detail
        ),
        plays_every_sync_scenario(
            &easel,
            &speech,
            fakes::MP3_HEADER,
            &speech_errors,
            speech_error_detail
        ),
    );

    let cancelled = fake.tasks().id_for(Scenario::StaysPending).unwrap();
    assert!(
        fake.tasks().was_cancelled(&cancelled),
        "easel sent DELETE /api/v3/contents/generations/tasks/{cancelled}"
    );
    for body in bodies(&fake, "POST /api/v3/contents/generations/tasks") {
        assert_eq!(body["model"], "doubao-seedance-2-0-260128", "{body}");
        assert_eq!(body["duration"], 5, "{body}");
        assert_eq!(body["resolution"], "720p", "the seed's default: {body}");
        assert_eq!(body["content"][0]["type"], "text", "{body}");
        assert_eq!(body["return_last_frame"], true, "{body}");
    }
    let job = easel.submit(&video, Scenario::Success).await;
    let job = easel.expect_outputs(&job, fakes::MP4_HEADER).await;
    assert_eq!(
        job["outputAssetIds"].as_array().map(Vec::len),
        Some(2),
        "the video and its last frame: {job}"
    );
    let seedream = &bodies(&fake, "POST /api/v3/images/generations")[0];
    assert_eq!(
        (
            seedream["model"].as_str(),
            seedream["response_format"].as_str()
        ),
        (Some("doubao-seedream-4-0-250828"), Some("url"))
    );
    assert_eq!(seedream["seed"], 42);
    let tts = &bodies(&fake, "POST /api/v1/tts")[0];
    assert_eq!(
        tts["audio"]["voice_type"],
        "zh_female_qingxinnvsheng_mars_bigtts"
    );
    assert_eq!(tts["audio"]["speed_ratio"], 1.2);
    assert_eq!(tts["request"]["operation"], "query");

    // OpenAI's speech route: Doubao's plugin calls the format `encoding`, and a format it
    // does not offer is refused under the client's own word for it.
    let speech_route = || {
        let host = &easel.host;
        host.http
            .post(host.url("/v1/audio/speech"))
            .header("authorization", "Bearer key-a")
    };
    let wav = json!({"model": "volcengine/doubao-tts", "input": "你好", "voice": "zh_female_qingxin", "response_format": "wav"});
    let spoken = speech_route().json(&wav).send().await.unwrap();
    assert_eq!(spoken.status(), 200);
    assert_eq!(spoken.headers()["content-type"], "audio/wav");
    let asked = bodies(&fake, "POST /api/v1/tts");
    assert_eq!(
        asked.last().unwrap()["audio"]["encoding"],
        "wav",
        "{asked:?}"
    );
    let opus =
        json!({"model": "volcengine/doubao-tts", "input": "你好", "response_format": "opus"});
    let (status, refused) = easel_tests::send(speech_route().json(&opus)).await;
    assert_eq!(
        (status, refused["error"]["param"].as_str()),
        (400, Some("response_format")),
        "{refused}"
    );
    fake.assert_only_documented_and_authorized(|c| {
        let expected = if c.path == "/api/v1/tts" {
            format!("Bearer;{TTS_TOKEN}")
        } else {
            format!("Bearer {ARK_KEY}")
        };
        c.header("authorization") == Some(expected.as_str())
    });
}

/// A vendor that answers "rate limited" does not fail a job at once: the job goes back to the
/// queue, says when it is tried again, and is submitted again after the vendor's
/// `Retry-After` (here an HTTP date, read inside the plugin); it fails, with the vendor's reason, only once it had `[engine]
/// max_attempts` claims (3 by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_submit_is_tried_again_after_the_vendors_wait() {
    use fakes::openai::{HOST, KEY, routes};
    let fake = Fake::start(routes).await;
    let (options, _plugins) = fakes::easel::plugin_options(
        easel_tests::Backend::Sqlite,
        &["openai"],
        &[(HOST, &fake)],
        &[
            ("OPENAI_API_KEY", KEY),
            ("EASEL_ADMIN_KEY", easel_tests::ADMIN_KEY),
        ],
        "",
    );
    let host = easel_tests::Host::start(options).await;
    let submit = |prompt: &str| {
        let body = json!({"capability": "image.generate", "model": "openai/gpt-image-1", "prompt": prompt});
        let host = &host;
        async move {
            let (status, created) = host.post("/api/v1/jobs", &body).await;
            assert_eq!(status, 202, "{created}");
            created["job"]["id"].as_str().unwrap().to_string()
        }
    };
    let asked = |prompt: &str| {
        bodies(&fake, "POST /v1/images/generations")
            .iter()
            .filter(|body| body["prompt"] == prompt)
            .count()
    };

    // Refused twice, served the third time.
    let started = std::time::Instant::now();
    let served = submit("a lighthouse busy:2").await;
    let waiting = host
        .wait_job(&served, std::time::Duration::from_secs(10), |job| {
            job["status"] == "queued"
                && job["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("tried again at"))
        })
        .await;
    assert!(waiting["error"].is_null(), "{waiting}");
    let done = host.wait_terminal(&served).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "each retry waited the vendor's second: {:?}",
        started.elapsed()
    );
    assert_eq!(asked("a lighthouse busy:2"), 3);
    assert!(done["message"].is_null(), "{done}");

    // Refused every time: failed after its three claims, with the vendor's reason.
    let refused = submit("a harbour busy:9").await;
    let failed = host.wait_terminal(&refused).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.starts_with("rate limited (retry after 1s)")
            || error.starts_with("rate limited (retry after 2s)"),
        "the date in Retry-After was read: {error}"
    );
    assert!(
        error.ends_with("; its vendor refused all 3 of its submits for now, so it failed"),
        "{error}"
    );
    assert_eq!(asked("a harbour busy:9"), 3);

    let metrics = host.metrics().await;
    assert!(
        metrics
            .contains("easel_tasks_requeued_total{provider=\"openai\",reason=\"rate_limited\"} 4"),
        "{metrics}"
    );
}

/// Sends `form` to OpenAI's edits route as client `a`.
async fn edit(easel: &Easel, form: reqwest::multipart::Form) -> (u16, Value) {
    let edits = easel
        .host
        .http
        .post(easel.host.url("/v1/images/edits"))
        .header("authorization", "Bearer key-a");
    easel_tests::send(edits.multipart(form)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_images_and_speech() {
    use fakes::openai::{HOST, KEY, error_detail, routes};
    let fake = Fake::start(routes).await;
    let easel = Easel::start("openai", &[(HOST, &fake)], &[("OPENAI_API_KEY", KEY)]).await;

    let gpt_image = json!({"capability": "image.generate", "model": "openai/gpt-image-1", "prompt": "a lighthouse", "size": "1024x1536", "quality": "high"});
    let dalle = json!({"capability": "image.generate", "model": "openai/dall-e-3", "prompt": "a lighthouse", "style": "natural"});
    let speech = json!({"capability": "audio.speech", "model": "openai/gpt-4o-mini-tts", "prompt": "Hello", "voice": "coral"});
    tokio::join!(
        plays_every_sync_scenario(
            &easel,
            &gpt_image,
            fakes::PNG_1X1,
            &Scenario::SUBMIT_ERRORS,
            error_detail
        ),
        plays_every_sync_scenario(&easel, &dalle, fakes::PNG_1X1, &[], error_detail),
        plays_every_sync_scenario(
            &easel,
            &speech,
            fakes::MP3_HEADER,
            &Scenario::SUBMIT_ERRORS,
            error_detail
        ),
    );

    let images = bodies(&fake, "POST /v1/images/generations");
    let gpt = images.iter().find(|b| b["model"] == "gpt-image-1").unwrap();
    assert_eq!(
        (
            gpt["size"].as_str(),
            gpt["quality"].as_str(),
            gpt["n"].as_u64()
        ),
        (Some("1024x1536"), Some("high"), Some(1))
    );
    let dalle = images.iter().find(|b| b["model"] == "dall-e-3").unwrap();
    assert_eq!(
        (dalle["response_format"].as_str(), dalle["style"].as_str()),
        (Some("url"), Some("natural"))
    );
    let speech = &bodies(&fake, "POST /v1/audio/speech")[0];
    assert_eq!(
        (speech["model"].as_str(), speech["voice"].as_str()),
        (Some("gpt-4o-mini-tts"), Some("coral"))
    );
    assert!(speech["input"].as_str().unwrap().starts_with("Hello"));

    // OpenAI's own speech route: the model's audio is the answer, in the format asked for
    // (passed on under the plugin's name for it), and a vendor's refusal is the client's 400.
    let asked = json!({"model": "openai/gpt-4o-mini-tts", "input": "Hello again", "voice": "ash",
                       "response_format": "flac", "speed": 1.5, "instructions": "Speak slowly."});
    let spoken = easel
        .host
        .http
        .post(easel.host.url("/v1/audio/speech"))
        .json(&asked);
    let spoken = spoken
        .header("authorization", "Bearer key-a")
        .send()
        .await
        .unwrap();
    assert_eq!(spoken.status(), 200);
    assert_eq!(spoken.headers()["content-type"], "audio/flac");
    assert_eq!(spoken.bytes().await.unwrap().as_ref(), fakes::MP3_HEADER);
    let sent = bodies(&fake, "POST /v1/audio/speech");
    let sent = sent.iter().find(|b| b["input"] == "Hello again").unwrap();
    assert_eq!(
        (
            sent["voice"].as_str(),
            sent["response_format"].as_str(),
            sent["speed"].as_f64()
        ),
        (Some("ash"), Some("flac"), Some(1.5)),
        "{sent}"
    );
    assert_eq!(sent["instructions"], "Speak slowly.", "{sent}");
    let refused = json!({"model": "openai/gpt-4o-mini-tts", "voice": "ash",
                         "input": format!("Hello {}", Scenario::BadParameter.token())});
    let (status, error) = easel_tests::send(
        easel
            .host
            .http
            .post(easel.host.url("/v1/audio/speech"))
            .json(&refused)
            .header("authorization", "Bearer key-a"),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");

    // OpenAI's edits: the files the client sent reach OpenAI as files in a form, and a mask
    // makes the task an inpainting.
    let png = || {
        reqwest::multipart::Part::bytes(fakes::PNG_1X1)
            .file_name("p.png")
            .mime_str("image/png")
            .unwrap()
    };
    for masked in [false, true] {
        let mut form = reqwest::multipart::Form::new()
            .text("model", "openai/gpt-image-1")
            .text("prompt", "a brighter lighthouse")
            .part("image[]", png())
            .part("image[]", png());
        if masked {
            form = form.part("mask", png());
        }
        let (status, edited) = edit(&easel, form).await;
        assert_eq!(status, 200, "{edited}");
        // gpt-image-1 is answered in base64 unless links are asked for, as OpenAI answers it.
        assert!(edited["data"][0]["b64_json"].is_string(), "{edited}");
    }
    for (asked, field) in [(None, "b64_json"), (Some("url"), "url")] {
        let mut body = json!({"model": "openai/gpt-image-1", "prompt": "a lighthouse"});
        if let Some(format) = asked {
            body["response_format"] = format.into();
        }
        let generations = easel
            .host
            .http
            .post(easel.host.url("/v1/images/generations"))
            .header("authorization", "Bearer key-a")
            .json(&body);
        let (status, answer) = easel_tests::send(generations).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer["data"][0][field].is_string(), "{asked:?}: {answer}");
        // gpt-image's token counts, as OpenAI's answer carries them.
        assert_eq!(answer["usage"]["input_tokens"], 50, "{answer}");
        assert_eq!(answer["usage"]["total_tokens"], 100, "{answer}");
    }
    // A refused image keeps OpenAI's code through its task's record, as a chat's does.
    let refused = json!({"model": "openai/gpt-image-1",
                         "prompt": format!("a lighthouse {}", Scenario::ContentRejected.token())});
    let generations = easel
        .host
        .http
        .post(easel.host.url("/v1/images/generations"))
        .header("authorization", "Bearer key-a")
        .json(&refused);
    let (status, answer) = easel_tests::send(generations).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"]["code"], "content_policy_violation",
        "{answer}"
    );
    assert_eq!(
        answer["error"]["message"], "Your request was rejected as a result of our safety system.",
        "OpenAI's words as they are: {answer}"
    );
    // A text file named PNG is refused at the front door, naming its field; the vendor is
    // not asked (it would answer an error of its own after the task was charged).
    let text = reqwest::multipart::Part::bytes(b"hello".to_vec())
        .file_name("a.png")
        .mime_str("image/png")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("model", "openai/gpt-image-1")
        .text("prompt", "x")
        .part("image", text);
    let (status, refused) = edit(&easel, form).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not an image"),
        "{refused}"
    );
    let sent = fake.calls_to("POST /v1/images/edits");
    assert_eq!(sent.len(), 2);
    for (call, masks) in sent.iter().zip([0, 1]) {
        let form = String::from_utf8_lossy(&call.body);
        assert_eq!(form.matches("name=\"image[]\"").count(), 2, "{form}");
        assert_eq!(form.matches("name=\"mask\"").count(), masks, "{form}");
    }
    // Masks only as an inpainting takes them: one, beside an image; refused at the door, so
    // no task is stored to fail later.
    let before = easel.host.get("/api/v1/jobs?limit=200").await.1["jobs"]
        .as_array()
        .unwrap()
        .len();
    for (form, says, param) in [
        (
            reqwest::multipart::Form::new()
                .part("image", png())
                .part("mask", png())
                .part("mask", png()),
            "mask: image.inpaint takes one mask; 2 were given",
            "mask",
        ),
        (
            reqwest::multipart::Form::new().part("mask", png()),
            "image is required: the file to change",
            "image",
        ),
    ] {
        let form = form.text("model", "openai/gpt-image-1").text("prompt", "x");
        let (status, refused) = edit(&easel, form).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(refused["error"]["message"], says, "{refused}");
        assert_eq!(refused["error"]["param"], param, "{refused}");
    }
    let after = easel.host.get("/api/v1/jobs?limit=200").await.1["jobs"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before, "a refused edit stores no task");
    // Seed 001's inpainting, [original, mask] as links: the second is the mask, and OpenAI,
    // which takes files only, gets both fetched by easel.
    let inpaint = json!({"capability": "image.inpaint", "model": "openai/gpt-image-1",
                         "prompt": "把选中区域文字替换成新品上市",
                         "imageUrls": [fake.state.file_url("original.png"), fake.state.file_url("mask.png")]});
    let job = easel.submit(&inpaint, Scenario::Success).await;
    easel.expect_outputs(&job, fakes::PNG_1X1).await;
    let sent = fake.calls_to("POST /v1/images/edits");
    assert_eq!(sent.len(), 3, "the refused edits never reached OpenAI");
    let form = String::from_utf8_lossy(&sent[2].body);
    assert_eq!(form.matches("name=\"image[]\"").count(), 1, "{form}");
    assert_eq!(form.matches("name=\"mask\"").count(), 1, "{form}");
    // One link alone is no inpainting: refused at the door, naming the field.
    let mut alone = inpaint.clone();
    alone["imageUrls"] = json!([fake.state.file_url("original.png")]);
    let (status, refused) = easel.host.post("/api/v1/jobs", &alone).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"],
        "imageUrls: image.inpaint needs a mask beside the image it changes"
    );
    // A link easel fetches is seen first when the task runs: one that is no image fails the
    // task there, before the vendor is asked.
    let mut sound = inpaint.clone();
    sound["imageUrls"][1] = fake.state.file_url("mask.mp3").into();
    let job = easel.submit(&sound, Scenario::Success).await;
    let failed = easel.finished(&job).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("is not an image"),
        "{failed}"
    );
    assert_eq!(fake.calls_to("POST /v1/images/edits").len(), 3);
    fake.assert_only_documented_and_authorized(fakes::bearer(KEY));
}

/// Seed 003 served by Qwen-Image, which renders a few aspect ratios and takes no width and
/// height: a 1024×576 request gets the 16:9 size, not the default square, and a shape of no
/// listed ratio is refused naming `width` before anything reaches the vendor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_on_a_model_sized_by_ratio_keeps_the_asked_shape() {
    use fakes::dashscope::{HOST, KEY, routes};
    let fake = Fake::start(routes).await;
    let easel = Easel::start_with(
        "dashscope",
        &[(HOST, &fake)],
        &[("DASHSCOPE_API_KEY", KEY)],
        "[models]\naliases = { sd = \"dashscope/qwen-image\" }\n",
    )
    .await;
    let host = &easel.host;
    let sd = |body: &Value| {
        easel_tests::send(
            host.http
                .post(host.url("/api/v1/generate"))
                .header("X-API-Key", "key-a")
                .json(body),
        )
    };
    let prompt = format!("a wide harbour {}", Scenario::Success.token());
    let (status, created) = sd(&json!({"prompt": prompt, "width": 1024, "height": 576})).await;
    assert_eq!(status, 200, "{created}");
    host.wait_terminal(created["task_id"].as_str().unwrap())
        .await;
    let asked = &bodies(
        &fake,
        "POST /api/v1/services/aigc/text2image/image-synthesis",
    )[0];
    assert_eq!(asked["parameters"]["size"], "1664*928", "{asked}");
    let (status, refused) = sd(&json!({"prompt": "tall", "width": 512, "height": 1024})).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["detail"][0]["loc"],
        json!(["body", "width"]),
        "{refused}"
    );
    assert!(
        refused["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("16:9"),
        "{refused}"
    );
}

/// Seed 003 served by a vendor model that cannot choose its format (DALL·E 3, named `sd`,
/// answers with a link): the host copies the link and converts the image. The fake's PNG has a
/// bad checksum, so no image library reads it: it is delivered as it came, as promised for an
/// image the host cannot read (the conversion itself is covered by `seed_003_sd.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_on_a_vendor_link_is_converted_or_kept_as_it_came() {
    use fakes::openai::{HOST, KEY, routes};
    let fake = Fake::start(routes).await;
    let easel = Easel::start_with(
        "openai",
        &[(HOST, &fake)],
        &[("OPENAI_API_KEY", KEY)],
        "[models]\naliases = { sd = \"openai/dall-e-3\" }\n",
    )
    .await;
    let host = &easel.host;
    let sd = |request: reqwest::RequestBuilder| request.header("X-API-Key", "key-a");
    let body = json!({"prompt": "a lighthouse", "output_format": "jpg"});
    let (status, created) =
        easel_tests::send(sd(host.http.post(host.url("/api/v1/generate"))).json(&body)).await;
    assert_eq!(status, 200, "{created}");
    let id = created["task_id"].as_str().unwrap();
    host.wait_terminal(id).await;
    let (_, task) =
        easel_tests::send(sd(host.http.get(host.url(&format!("/api/v1/tasks/{id}"))))).await;
    assert_eq!(task["status"], "completed", "{task}");
    let image = host
        .http
        .get(task["result_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(image.headers()["content-type"], "image/png");
    assert_eq!(image.bytes().await.unwrap().as_ref(), fakes::PNG_1X1);
    let asked = &bodies(&fake, "POST /v1/images/generations")[0];
    assert_eq!(asked["response_format"], "url", "{asked}");
}

/// Creates a task through llmage's `path` and waits for it: its seed 002 view, succeeded.
async fn llmage_succeeds(host: &easel_tests::Host, path: &str, body: Value) -> Value {
    let (status, created) = host.post(path, &body).await;
    assert_eq!(status, 200, "{created}");
    let id = created["taskid"].as_str().unwrap().to_string();
    host.wait_terminal(&id).await;
    let (_, task) = host.get(&format!("/llmage/v1/tasks?taskid={id}")).await;
    assert_eq!(task["status"], "SUCCEEDED", "{task}");
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vidu_text_to_video() {
    use fakes::vidu::{HOST, KEY, error_detail, routes};
    let fake = Fake::start(routes).await;
    let easel = Easel::start("vidu", &[(HOST, &fake)], &[("VIDU_API_KEY", KEY)]).await;

    let video = json!({"capability": "video.generate", "model": "vidu/viduq3-pro", "prompt": "a fox in snow", "duration": 4, "resolution": "540p"});
    plays_every_task_scenario(
        &easel,
        &fake,
        &video,
        "vidu",
        fakes::MP4_HEADER,
        error_detail,
    )
    .await;

    let cancelled = fake.tasks().id_for(Scenario::StaysPending).unwrap();
    assert!(
        fake.tasks().was_cancelled(&cancelled),
        "easel called POST /ent/v2/tasks/{cancelled}/cancel"
    );
    for body in bodies(&fake, "POST /ent/v2/text2video") {
        assert_eq!(body["model"], "viduq3-pro", "{body}");
        assert_eq!(
            (body["duration"].as_u64(), body["resolution"].as_str()),
            (Some(4), Some("540p")),
            "{body}"
        );
        assert_eq!(body["off_peak"], false, "{body}");
    }

    // Seed 002 asks for off-peak as `Y` and shows it in the usage as a boolean.
    let host = &easel.host;
    let prompt = format!("a fox at night {}", Scenario::Success.token());
    let task = llmage_succeeds(
        host,
        "/llmage/v1/video/generations",
        json!({"model": "viduq3-pro", "catelogid": "t2v", "prompt": prompt, "duration": 4, "off_peak": "Y"}),
    )
    .await;
    assert_eq!(task["usage"]["off_peak"], true, "{task}");
    // Seed 002 shows a video's cover as `image`: Vidu's `cover_url`, copied like the video.
    for (slot, bytes) in [("video", fakes::MP4_HEADER), ("image", fakes::PNG_1X1)] {
        let link = task[slot]
            .as_str()
            .unwrap_or_else(|| panic!("no {slot}: {task}"));
        let file = host.http.get(link).send().await.unwrap();
        assert_eq!(
            file.bytes().await.unwrap().as_ref(),
            bytes,
            "{slot}: {task}"
        );
    }
    // A cover that cannot be copied (here on a host the plugin may not reach) is left out (its
    // field null); the video it came with still succeeds.
    let prompt = format!("a fox at dawn {}", fakes::vidu::COVER_ELSEWHERE);
    let task = llmage_succeeds(
        host,
        "/llmage/v1/video/generations",
        json!({"model": "viduq3-pro", "catelogid": "t2v", "prompt": prompt, "duration": 4}),
    )
    .await;
    assert!(task["video"].is_string(), "{task}");
    assert_eq!(task.get("image"), Some(&Value::Null), "{task}");
    let asked = bodies(&fake, "POST /ent/v2/text2video");
    assert!(
        asked.iter().any(|body| body["off_peak"] == true),
        "the vendor was asked off-peak: {asked:?}"
    );
    fake.assert_only_documented_and_authorized(|c| {
        c.header("authorization") == Some(&*format!("Token {KEY}"))
    });
}

/// Seed 002's image-to-video tables ask each model for its own frames: Vidu and Seedance 2.0
/// take both, Seedance 1.5 either or none; a refusal names the model's own field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llmage_image_to_video_asks_each_model_for_its_own_frames() {
    use base64::Engine as _;
    let png = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(fakes::PNG_1X1)
    );
    let vidu_fake = Fake::start(fakes::vidu::routes).await;
    let ark_fake = Fake::start(fakes::volcengine::routes).await;
    let vidu_routes = [(fakes::vidu::HOST, &vidu_fake)];
    let ark_routes = [(fakes::volcengine::ARK_HOST, &ark_fake)];
    let (vidu, ark) = tokio::join!(
        Easel::start("vidu", &vidu_routes, &[("VIDU_API_KEY", fakes::vidu::KEY)]),
        Easel::start(
            "volcengine",
            &ark_routes,
            &[("ARK_API_KEY", fakes::volcengine::ARK_KEY)],
        ),
    );
    let i2v = |model: &str, frames: &[&str]| {
        let mut body = json!({"model": model, "catelogid": "i2v", "prompt": "a fox in snow"});
        for field in frames {
            body[*field] = png.clone().into();
        }
        body
    };
    let path = "/llmage/v1/video/generations";
    for (host, model, first, last) in [
        (&vidu.host, "viduq3-pro", "image_file1", "image_file2"),
        (
            &ark.host,
            "doubao-seedance-2-0-260128",
            "image1_file",
            "image2_file",
        ),
    ] {
        for (frames, needed) in [(vec![first], last), (vec![last], first)] {
            let (status, refused) = host.post(path, &i2v(model, &frames)).await;
            assert_eq!(status, 400, "{model} {frames:?}: {refused}");
            let expected = format!("Missing required parameter: {needed}");
            assert_eq!(refused["error"], expected.as_str(), "{model}");
        }
        let (status, created) = host.post(path, &i2v(model, &[first, last])).await;
        assert_eq!(
            (status, &created["status"]),
            (200, &json!("CREATED")),
            "{model}: {created}"
        );
    }
    for frames in [vec![], vec!["image_file2"]] {
        let (status, created) = ark
            .host
            .post(path, &i2v("doubao-seedance-1-5-pro-251215", &frames))
            .await;
        assert_eq!(status, 200, "seedance 1.5 with {frames:?}: {created}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seedance_overseas_on_modelark() {
    use fakes::seedance_overseas::{HOST, KEY, error_detail, routes};
    let fake = Fake::start(routes).await;
    let easel = Easel::start(
        "seedance-overseas",
        &[(HOST, &fake)],
        &[("BYTEPLUS_API_KEY", KEY)],
    )
    .await;

    let video = json!({"capability": "video.generate", "model": "seedance-overseas/dreamina-seedance-2-0-260128", "prompt": "a kite", "ratio": "16:9"});
    plays_every_task_scenario(
        &easel,
        &fake,
        &video,
        "cgt",
        fakes::MP4_HEADER,
        error_detail,
    )
    .await;

    let cancelled = fake.tasks().id_for(Scenario::StaysPending).unwrap();
    assert!(
        fake.tasks().was_cancelled(&cancelled),
        "easel sent DELETE /api/v3/contents/generations/tasks/{cancelled}"
    );
    for body in bodies(&fake, "POST /api/v3/contents/generations/tasks") {
        assert_eq!(body["model"], "dreamina-seedance-2-0-260128", "{body}");
        assert_eq!(
            (body["ratio"].as_str(), body["resolution"].as_str()),
            (Some("16:9"), Some("720p")),
            "{body}"
        );
        assert_eq!(
            (
                body["generate_audio"].as_bool(),
                body["watermark"].as_bool()
            ),
            (Some(true), Some(false)),
            "{body}"
        );
    }

    // Seed 002 lists the model for reference-to-video too, with that mode's defaults.
    use base64::Engine as _;
    let png = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(fakes::PNG_1X1)
    );
    let (_, listed) = easel.host.get("/llmage/v1/models?catelogid=ref2v").await;
    let listed = listed["data"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|m| m["id"] == "dreamina-seedance-2-0-260128"),
        "{listed:?}"
    );
    let before = bodies(&fake, "POST /api/v3/contents/generations/tasks").len();
    let ref2v = json!({"model": "dreamina-seedance-2-0-260128", "catelogid": "ref2v",
                       "prompt": "the kite from the picture", "image_files": [png]});
    let (status, created) = easel
        .host
        .post("/llmage/v1/video/generations", &ref2v)
        .await;
    assert_eq!(
        (status, &created["status"]),
        (200, &json!("CREATED")),
        "{created}"
    );
    let submitted = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while bodies(&fake, "POST /api/v3/contents/generations/tasks").len() == before {
        assert!(tokio::time::Instant::now() < submitted, "never submitted");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let body = bodies(&fake, "POST /api/v3/contents/generations/tasks")[before].clone();
    assert_eq!(
        (body["resolution"].as_str(), body["duration"].as_u64()),
        (Some("1080p"), Some(12)),
        "{body}"
    );
    assert_eq!(body["content"][1]["role"], "reference_image", "{body}");
    fake.assert_only_documented_and_authorized(fakes::bearer(KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zhipu_cogview_images() {
    use fakes::zhipu::{HOST, KEY, error_detail, routes};
    let fake = Fake::start(routes).await;
    let easel = Easel::start("zhipu", &[(HOST, &fake)], &[("ZHIPU_API_KEY", KEY)]).await;

    let image = json!({"capability": "image.generate", "model": "zhipu/cogview-3-flash", "prompt": "a red panda", "negative_prompt": "blur"});
    plays_every_sync_scenario(
        &easel,
        &image,
        fakes::PNG_1X1,
        &Scenario::SUBMIT_ERRORS,
        error_detail,
    )
    .await;

    for body in bodies(&fake, "POST /api/paas/v4/images/generations") {
        assert_eq!(body["model"], "cogview-3-flash", "{body}");
        assert!(
            body["prompt"].as_str().unwrap().contains("Avoid: blur"),
            "the negative prompt rides in the prompt: {body}"
        );
        assert!(body["size"].is_string(), "{body}");
    }
    fake.assert_only_documented_and_authorized(fakes::bearer(KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modelscope_qwen_image() {
    use fakes::modelscope::{HOST, KEY, error_detail, routes};
    let fake = Fake::start(routes).await;
    let easel = Easel::start(
        "modelscope",
        &[(HOST, &fake)],
        &[("MODELSCOPE_API_KEY", KEY)],
    )
    .await;

    let image = json!({"capability": "image.generate", "model": "modelscope/qwen-image", "prompt": "a teapot", "seed": 3});
    plays_every_task_scenario(&easel, &fake, &image, "ms", fakes::PNG_1X1, error_detail).await;

    // ModelScope has no cancel endpoint: easel cancelled the job locally, and the stray-path
    // check below shows the plugin sent nothing else.
    for body in bodies(&fake, "POST /v1/images/generations") {
        assert_eq!(body["model"], "Qwen/Qwen-Image", "{body}");
        assert_eq!(body["seed"], 3, "{body}");
    }
    fake.assert_only_documented_and_authorized(fakes::bearer(KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kling_images_and_video_with_jwt() {
    use fakes::kling::{ACCESS_KEY, HOST, SECRET_KEY, error_detail, routes, valid_jwt};
    let fake = Fake::start(routes).await;
    let easel = Easel::start(
        "kling",
        &[(HOST, &fake)],
        &[
            ("KLING_ACCESS_KEY", ACCESS_KEY),
            ("KLING_SECRET_KEY", SECRET_KEY),
        ],
    )
    .await;

    let image = json!({"capability": "image.generate", "model": "kling/kling-v2-1", "prompt": "a lantern", "aspectRatio": "16:9"});
    let video = json!({"capability": "video.generate", "model": "kling/kling-v2-5-turbo", "prompt": "a lantern drifts"});
    tokio::join!(
        plays_every_task_scenario(&easel, &fake, &image, "img", fakes::PNG_1X1, error_detail),
        async {
            let video_jobs = easel.submit_each(&video, &[Scenario::Success]).await;
            easel
                .expect_outputs(&video_jobs[0], fakes::MP4_HEADER)
                .await
        },
    );
    // Kling has no cancel endpoint: easel cancelled the job locally, and the stray-path
    // check below shows the plugin sent nothing else.
    for body in bodies(&fake, "POST /v1/images/generations") {
        assert_eq!(body["model_name"], "kling-v2-1", "{body}");
        assert_eq!(
            (
                body["aspect_ratio"].as_str(),
                body["resolution"].as_str(),
                body["n"].as_u64()
            ),
            (Some("16:9"), Some("1k"), Some(1)),
            "{body}"
        );
    }
    assert_eq!(
        bodies(&fake, "POST /v1/videos/text2video")[0]["model_name"],
        "kling-v2-5-turbo"
    );
    fake.assert_only_documented_and_authorized(|c| valid_jwt(c.header("authorization")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimax_hailuo_video_and_speech() {
    use fakes::minimax::{HOST, KEY, error_detail, routes};
    let fake = Fake::start(routes).await;
    let easel = Easel::start("minimax", &[(HOST, &fake)], &[("MINIMAX_API_KEY", KEY)]).await;

    let video = json!({"capability": "video.generate", "model": "minimax/MiniMax-Hailuo-02", "prompt": "a paper boat", "duration": 6});
    let speech = json!({"capability": "audio.speech", "model": "minimax/speech-02-hd", "prompt": "你好", "voice": "female-shaonv"});
    tokio::join!(
        plays_every_task_scenario(&easel, &fake, &video, "mm", fakes::MP4_HEADER, error_detail),
        plays_every_sync_scenario(
            &easel,
            &speech,
            fakes::MP3_HEADER,
            &Scenario::SUBMIT_ERRORS,
            error_detail
        ),
    );
    // MiniMax has no cancel endpoint: easel cancelled the job locally, and the stray-path
    // check below shows the plugin sent nothing else.
    for body in bodies(&fake, "POST /v1/video_generation") {
        assert_eq!(body["model"], "MiniMax-Hailuo-02", "{body}");
        assert_eq!(
            (body["duration"].as_u64(), body["resolution"].as_str()),
            (Some(6), Some("768P")),
            "{body}"
        );
    }
    let succeeded = fake.tasks().id_for_kind(Scenario::Success, "mm").unwrap();
    assert_eq!(
        fake.calls_to("GET /v1/files/retrieve")
            .iter()
            .filter(|c| c.query.as_deref() == Some(&*format!("file_id=file-{succeeded}")))
            .count(),
        1
    );
    let tts = &bodies(&fake, "POST /v1/t2a_v2")[0];
    assert_eq!(
        (
            tts["model"].as_str(),
            tts["voice_setting"]["voice_id"].as_str()
        ),
        (Some("speech-02-hd"), Some("female-shaonv"))
    );
    fake.assert_only_documented_and_authorized(fakes::bearer(KEY));
}

/// Vidu, Kling and MiniMax each run a mainland China platform under another host; with
/// `<VENDOR>_REGION=cn` the plugins call it. Only the mainland hosts are routed to the fakes
/// here, so a call to a global host would fail the job: each job succeeding through a poll
/// shows submit, poll (and MiniMax's file lookup, Vidu's cancel) all went to the mainland.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mainland_platforms_are_chosen_by_region() {
    let (vidu, kling, minimax) = tokio::join!(
        Fake::start(fakes::vidu::routes),
        Fake::start(fakes::kling::routes),
        Fake::start(fakes::minimax::routes)
    );
    let vidu_secrets = [("VIDU_API_KEY", fakes::vidu::KEY), ("VIDU_REGION", "cn")];
    let kling_secrets = [
        ("KLING_ACCESS_KEY", fakes::kling::ACCESS_KEY),
        ("KLING_SECRET_KEY", fakes::kling::SECRET_KEY),
        ("KLING_REGION", "cn"),
    ];
    let minimax_secrets = [
        ("MINIMAX_API_KEY", fakes::minimax::KEY),
        ("MINIMAX_REGION", "cn"),
    ];
    let vidu_routes = [(fakes::vidu::HOST_CN, &vidu)];
    let kling_routes = [(fakes::kling::HOST_CN, &kling)];
    let minimax_routes = [(fakes::minimax::HOST_CN, &minimax)];
    let (vidu_host, kling_host, minimax_host) = tokio::join!(
        Easel::start("vidu", &vidu_routes, &vidu_secrets),
        Easel::start("kling", &kling_routes, &kling_secrets),
        Easel::start("minimax", &minimax_routes, &minimax_secrets),
    );

    let vidu_video = json!({"capability": "video.generate", "model": "vidu/viduq3-pro", "prompt": "雪中狐狸", "duration": 4});
    let kling_image =
        json!({"capability": "image.generate", "model": "kling/kling-v2-1", "prompt": "灯笼"});
    let minimax_video = json!({"capability": "video.generate", "model": "minimax/MiniMax-Hailuo-02", "prompt": "纸船"});
    let played = [Scenario::PendingThenSuccess, Scenario::StaysPending];
    tokio::join!(
        async {
            let jobs = vidu_host.submit_each(&vidu_video, &played).await;
            vidu_host.expect_outputs(&jobs[0], fakes::MP4_HEADER).await;
            vidu_host.cancel_once_pending(&jobs[1], &vidu).await;
        },
        async {
            let jobs = kling_host
                .submit_each(&kling_image, &[Scenario::PendingThenSuccess])
                .await;
            kling_host.expect_outputs(&jobs[0], fakes::PNG_1X1).await;
        },
        async {
            let jobs = minimax_host
                .submit_each(&minimax_video, &[Scenario::PendingThenSuccess])
                .await;
            minimax_host
                .expect_outputs(&jobs[0], fakes::MP4_HEADER)
                .await;
        },
    );

    let cancelled = vidu.tasks().id_for(Scenario::StaysPending).unwrap();
    assert!(
        vidu.tasks().was_cancelled(&cancelled),
        "easel called POST /ent/v2/tasks/{cancelled}/cancel on api.vidu.cn"
    );
    vidu.assert_only_documented_and_authorized(|c| {
        c.header("authorization") == Some(&*format!("Token {}", fakes::vidu::KEY))
    });
    kling.assert_only_documented_and_authorized(|c| {
        fakes::kling::valid_jwt(c.header("authorization"))
    });
    minimax.assert_only_documented_and_authorized(fakes::bearer(fakes::minimax::KEY));
    for (fake, host) in [
        (&vidu, fakes::vidu::HOST_CN),
        (&kling, fakes::kling::HOST_CN),
        (&minimax, fakes::minimax::HOST_CN),
    ] {
        for call in fake.calls() {
            assert_eq!(call.header("host"), Some(host), "{}", call.line());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jimeng_images_with_signed_requests() {
    use fakes::jimeng::{ACCESS_KEY, HOST, SECRET_KEY, error_detail, routes, validly_signed};
    let fake = Fake::start(routes).await;
    let easel = Easel::start(
        "jimeng",
        &[(HOST, &fake)],
        &[
            ("JIMENG_ACCESS_KEY", ACCESS_KEY),
            ("JIMENG_SECRET_KEY", SECRET_KEY),
        ],
    )
    .await;

    let image = json!({"capability": "image.generate", "model": "jimeng/jimeng_t2i_v40", "prompt": "山水画", "scale": 80});
    // Seed 001's editing forms: the original and the mask as two image URLs; one image to
    // upscale (the prompt only carries the scenario token, which the upscaler does not send).
    let inpaint = json!({"capability": "image.inpaint", "model": "jimeng/jimeng_image2image_dream_inpaint", "prompt": "把选中区域文字替换成新品上市",
                         "imageUrls": ["https://example.com/original.png", "https://example.com/mask.png"]});
    let upscale = json!({"capability": "image.upscale", "model": "jimeng/jimeng_i2i_seed3_tilesr_cvtob", "prompt": "",
                         "imageUrls": ["https://example.com/input.png"], "resolution": "4k"});
    tokio::join!(
        plays_every_task_scenario(&easel, &fake, &image, "img", fakes::PNG_1X1, error_detail),
        async {
            let jobs = easel.submit_each(&inpaint, &[Scenario::Success]).await;
            easel.expect_outputs(&jobs[0], fakes::PNG_1X1).await;
        },
        async {
            let jobs = easel.submit_each(&upscale, &[Scenario::Success]).await;
            easel.expect_outputs(&jobs[0], fakes::PNG_1X1).await;
        },
    );
    // Jimeng has no cancel action: easel cancelled the job locally, and the stray-path
    // check below shows the plugin sent nothing else.

    let submits: Vec<Value> = fake
        .calls()
        .iter()
        .filter(|c| c.query.as_deref().is_some_and(|q| q.contains("SubmitTask")))
        .map(|c| c.json())
        .collect();
    let of_key =
        |key: &str| -> Vec<&Value> { submits.iter().filter(|b| b["req_key"] == key).collect() };
    let edits = of_key("jimeng_image2image_dream_inpaint");
    assert_eq!(edits.len(), 1);
    assert_eq!(
        edits[0]["image_urls"],
        json!([
            "https://example.com/original.png",
            "https://example.com/mask.png"
        ]),
        "original, then mask"
    );
    assert_eq!(edits[0]["seed"], 101, "the page's default seed");
    assert!(
        edits[0].get("scale").is_none(),
        "the inpainting page has no scale: {}",
        edits[0]
    );
    let upscales = of_key("jimeng_i2i_seed3_tilesr_cvtob");
    assert_eq!(upscales.len(), 1);
    assert_eq!(
        (
            upscales[0]["resolution"].as_str(),
            upscales[0]["scale"].as_u64(),
            upscales[0].get("prompt")
        ),
        (Some("4k"), Some(50), None),
        "{}",
        upscales[0]
    );
    let submits = of_key("jimeng_t2i_v40");
    assert_eq!(submits.len(), Scenario::ALL.len());
    for body in &submits {
        assert_eq!(body["req_key"], "jimeng_t2i_v40", "{body}");
        assert_eq!(body["scale"], 0.8, "scale 0–100 is sent as 0–1: {body}");
        assert_eq!(
            (body["width"].as_u64(), body["force_single"].as_bool()),
            (Some(2048), Some(true)),
            "{body}"
        );
    }
    let succeeded = fake.tasks().id_for_kind(Scenario::Success, "img").unwrap();
    let result_query = fake
        .calls()
        .into_iter()
        .find(|c| c.json()["task_id"] == succeeded.as_str())
        .unwrap()
        .json();
    assert_eq!(result_query["req_json"], r#"{"return_url":true}"#);
    fake.assert_only_documented_and_authorized(validly_signed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evolink_gpt_image_2_and_seedance_video() {
    use fakes::evolink::{FILES_HOST, HOST, IMAGE_TASK, KEY, VIDEO_TASK, error_detail, routes};
    let fake = Fake::start(routes).await;
    let easel = Easel::start(
        "evolink",
        &[(HOST, &fake), (FILES_HOST, &fake)],
        &[("EVOLINK_API_KEY", KEY)],
    )
    .await;

    let image = json!({"capability": "image.generate", "model": "evolink/gpt-image-2", "prompt": "a glass city", "quality": "high", "size": "16:9"});
    plays_every_task_scenario(
        &easel,
        &fake,
        &image,
        IMAGE_TASK,
        fakes::PNG_1X1,
        error_detail,
    )
    .await;

    // Seed 001's video settings on Seedance 2.0: success, pending-then-success and cancel.
    let video = json!({"capability": "video.generate", "model": "evolink/seedance-2.0", "prompt": "品牌短视频",
                       "ratio": "9:16", "duration": 6, "resolution": "480p"});
    let video_jobs = easel
        .submit_each(
            &video,
            &[
                Scenario::Success,
                Scenario::PendingThenSuccess,
                Scenario::StaysPending,
            ],
        )
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while fake
        .tasks()
        .id_for_kind(Scenario::StaysPending, VIDEO_TASK)
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the fake never received the video task to cancel"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let cancel = format!("/api/v1/jobs/{}/cancel", video_jobs[2].job);
    let (status, body) =
        easel_tests::send(easel.host.as_key(reqwest::Method::POST, &cancel, "key-a")).await;
    assert_eq!(status, 200, "cancel: {body}");
    assert_eq!(easel.finished(&video_jobs[2]).await["status"], "cancelled");
    easel
        .expect_outputs(&video_jobs[0], fakes::MP4_HEADER)
        .await;
    easel
        .expect_outputs(&video_jobs[1], fakes::MP4_HEADER)
        .await;
    let tasks = fake.tasks();
    let video_polls = |s| tasks.polls(&tasks.id_for_kind(s, VIDEO_TASK).unwrap());
    assert_eq!(
        (
            video_polls(Scenario::Success),
            video_polls(Scenario::PendingThenSuccess),
            video_polls(Scenario::StaysPending)
        ),
        (1, 2, 0),
        "polled once, running then done, and never after the cancel"
    );

    // EvoLink has no cancel endpoint: easel cancelled both jobs locally, and the stray-path
    // check below shows the plugin sent nothing else.
    for body in bodies(&fake, "POST /v1/images/generations") {
        assert_eq!(body["model"], "gpt-image-2", "{body}");
        assert_eq!(
            (
                body["quality"].as_str(),
                body["size"].as_str(),
                body["n"].as_u64()
            ),
            (Some("high"), Some("16:9"), Some(1)),
            "{body}"
        );
    }
    let video_bodies = bodies(&fake, "POST /v1/videos/generations");
    assert_eq!(video_bodies.len(), 3);
    for body in &video_bodies {
        assert_eq!(
            (
                body["model"].as_str(),
                body["aspect_ratio"].as_str(),
                body["duration"].as_u64(),
                body["quality"].as_str(),
                body["generate_audio"].as_bool()
            ),
            (
                Some("seedance-2.0-text-to-video"),
                Some("9:16"),
                Some(6),
                Some("480p"),
                Some(true)
            ),
            "{body}"
        );
    }
    fake.assert_only_documented_and_authorized(fakes::bearer(KEY));
}

/// One image request through each of the four APIs (and OpenAI's paths) reaches the DashScope
/// plugin, completes at the fake, and its output downloads from easel; chat streams through
/// llmage and `/v1` from the fake's compatible-mode endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_reaches_the_plugin_and_serves_its_output() {
    use fakes::dashscope::{HOST, KEY, routes};
    let fake = Fake::start(routes).await;
    let easel = Easel::start_with(
        "dashscope",
        &[(HOST, &fake)],
        &[("DASHSCOPE_API_KEY", KEY)],
        "[models]\naliases = { sd = \"dashscope/wan2.2-t2i-flash\" }",
    )
    .await;
    let host = &easel.host;
    let prompt = format!("a lighthouse {}", Scenario::Success.token());

    let (pixel, llmage, sd, openai) = tokio::join!(
        async {
            let (status, created) = host
                .post(
                    "/api/v1/generations/image",
                    &json!({"model": "dashscope/wan2.2-t2i-flash", "prompt": prompt}),
                )
                .await;
            assert_eq!(status, 200, "{created}");
            let id = created["data"]["task_id"].as_str().unwrap().to_string();
            host.wait_terminal(&id).await;
            let (_, task) = host.get(&format!("/api/v1/tasks/{id}")).await;
            assert_eq!(task["data"]["status"], "completed", "{task}");
            assert_eq!(task["data"]["model"], "dashscope/wan2.2-t2i-flash");
            task["data"]["result"]["images"][0]["url"]
                .as_str()
                .unwrap()
                .to_string()
        },
        async {
            let task = llmage_succeeds(
                host,
                "/llmage/v1/image/generations",
                json!({"model": "wan2.2-t2i-flash", "catelogid": "t2i", "prompt": prompt}),
            )
            .await;
            task["image"].as_str().unwrap().to_string()
        },
        async {
            let (status, created) = easel_tests::send(
                reqwest::Client::new()
                    .post(host.url("/api/v1/generate"))
                    .header("X-API-Key", "key-a")
                    .json(&json!({"prompt": prompt})),
            )
            .await;
            assert_eq!(status, 200, "{created}");
            let id = created["task_id"].as_str().unwrap().to_string();
            host.wait_terminal(&id).await;
            let (_, task) = host.get(&format!("/api/v1/tasks/{id}")).await;
            assert_eq!(task["status"], "completed", "{task}");
            task["result_url"].as_str().unwrap().to_string()
        },
        async {
            let (status, answer) = host
                .post(
                    "/v1/images/generations",
                    &json!({"model": "dashscope/wan2.2-t2i-flash", "prompt": prompt}),
                )
                .await;
            assert_eq!(status, 200, "{answer}");
            answer["data"][0]["url"].as_str().unwrap().to_string()
        },
    );
    for url in [pixel, llmage, sd, openai] {
        assert_eq!(
            easel_tests::download(&url).await.1,
            fakes::PNG_1X1,
            "the vendor's image, stored by easel"
        );
    }
    assert_eq!(
        bodies(
            &fake,
            "POST /api/v1/services/aigc/text2image/image-synthesis"
        )
        .len(),
        4,
        "one vendor task per API"
    );

    for path in ["/llmage/v1/chat/completions", "/v1/chat/completions"] {
        let response = host
            .as_key(reqwest::Method::POST, path, "key-a")
            .json(&json!({"model": "qwen-plus", "messages": [{"role": "user", "content": "hello from easel"}], "stream": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let text = response.text().await.unwrap();
        let said: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|l| *l != "[DONE]")
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(said, "hello from easel", "{path}: {text}");
        assert!(text.trim_end().ends_with("data: [DONE]"));
    }
    let chat = &bodies(&fake, "POST /compatible-mode/v1/chat/completions")[0];
    assert_eq!(chat["model"], "qwen-plus");

    // Qwen's thinking: its reasoning reaches the client apart from the text, streamed in the
    // chunks' delta (llmage's also beside `content`), and is recorded with the chat.
    let thinking = json!({"model": "qwen-plus", "enable_thinking": true, "stream": true,
                          "messages": [{"role": "user", "content": "hello from easel"}]});
    for path in ["/llmage/v1/chat/completions", "/v1/chat/completions"] {
        let text = host.post_text(path, &thinking).await;
        let chunks: Vec<Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: {"))
            .map(|l| serde_json::from_str(&format!("{{{l}")).unwrap())
            .collect();
        let joined = |field: &str| -> String {
            chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"][field].as_str())
                .collect()
        };
        assert_eq!(
            joined("reasoning_content"),
            "The user said: hello from easel",
            "{path}: {text}"
        );
        assert_eq!(joined("content"), "hello from easel", "{path}: {text}");
        if path.starts_with("/llmage") {
            let beside: String = chunks
                .iter()
                .filter_map(|c| c["reasoning_content"].as_str())
                .collect();
            assert_eq!(beside, "The user said: hello from easel", "{text}");
        }
        let id = chunks[0]["id"].as_str().unwrap();
        let (_, detail) = host.get(&format!("/api/v1/jobs/{id}/detail")).await;
        assert_eq!(
            detail["job"]["reasoning"], "The user said: hello from easel",
            "{detail}"
        );
    }
    let mut whole = thinking.clone();
    whole["stream"] = false.into();
    let (status, answer) = host.post("/v1/chat/completions", &whole).await;
    assert_eq!(status, 200, "{answer}");
    let message = &answer["choices"][0]["message"];
    assert_eq!(
        message["reasoning_content"], "The user said: hello from easel",
        "{answer}"
    );
    assert_eq!(message["content"], "hello from easel", "{answer}");
    fake.assert_only_documented_and_authorized(fakes::bearer(KEY));
}

/// With every vendor plugin loaded, Pixel's model list names each of their models with the
/// documented fields, and llmage lists the seed's bare names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_plugin_model_is_listed_with_the_documented_fields() {
    let plugins = tempfile::tempdir().unwrap();
    let vendors = [
        "dashscope",
        "volcengine",
        "openai",
        "vidu",
        "seedance-overseas",
        "zhipu",
        "modelscope",
        "kling",
        "minimax",
        "jimeng",
        "evolink",
    ];
    for vendor in vendors {
        std::fs::copy(
            easel_tests::built_plugin(vendor),
            plugins.path().join(format!("{vendor}.wasm")),
        )
        .unwrap();
    }
    let host = easel_tests::Host::start(
        easel_tests::Options::new(easel_tests::Backend::Sqlite)
            .env("EASEL_PLUGINS_DIR", plugins.path().to_str().unwrap()),
    )
    .await;
    let (status, listed) = host.get("/api/v1/models").await;
    assert_eq!(status, 200);
    let mut providers = std::collections::BTreeSet::new();
    for (kind, group) in listed["data"].as_object().unwrap() {
        for (id, model) in group.as_object().unwrap() {
            for field in [
                "id",
                "name",
                "type",
                "provider",
                "model_key",
                "is_default",
                "enabled",
            ] {
                assert!(!model[field].is_null(), "{id} lacks {field}: {model}");
            }
            assert_eq!(model["type"], kind.as_str());
            assert_eq!(
                *id,
                format!(
                    "{}/{}",
                    model["provider"].as_str().unwrap(),
                    model["model_key"].as_str().unwrap()
                )
            );
            providers.insert(model["provider"].as_str().unwrap().to_string());
        }
    }
    for vendor in vendors {
        assert!(
            providers.contains(vendor),
            "{vendor} is not listed: {providers:?}"
        );
    }
    for id in [
        "dashscope/qwen-image",
        "dashscope/wan2.6-video",
        "volcengine/doubao-tts",
        "dashscope/qwen-plus",
    ] {
        let groups = listed["data"].as_object().unwrap();
        assert!(
            groups.values().any(|g| g.get(id).is_some()),
            "seed 000's example model {id} is listed"
        );
    }
    // llmage checks parameters against each plugin's schema (the seed's tables) before
    // anything reaches a vendor.
    for (body, message) in [
        (
            json!({"model": "wan2.6-t2v", "catelogid": "t2v", "prompt": "p", "duration": 7}),
            "Invalid parameter duration: must be one of 5, 10, 15",
        ),
        (
            json!({"model": "wan2.6-t2v", "catelogid": "t2v", "prompt": "p", "size": "1*1"}),
            "Invalid parameter size: must be one of",
        ),
        (
            json!({"model": "viduq3-pro", "catelogid": "t2v", "prompt": "p", "off_peak": "maybe"}),
            "Invalid parameter off_peak: must be one of Y, N",
        ),
        (
            json!({"model": "viduq3-pro", "catelogid": "t2v", "prompt": "p", "duration": 17}),
            "Invalid parameter duration: must be between 1 and 16",
        ),
    ] {
        let (status, answer) = host.post("/llmage/v1/video/generations", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().starts_with(message),
            "{body}: {answer}"
        );
    }
    let (_, jobs) = host.get("/api/v1/jobs").await;
    assert_eq!(
        jobs["jobs"].as_array().unwrap().len(),
        0,
        "refused requests stored nothing"
    );

    let (_, llmage) = host.get("/llmage/v1/models?catelogid=t2v").await;
    let names: Vec<&str> = llmage["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for name in [
        "wan2.6-t2v",
        "happyhorse-1.0-t2v",
        "doubao-seedance-2-0-260128",
        "dreamina-seedance-2-0-260128",
        "doubao-seedance-1-5-pro-251215",
        "viduq3-pro",
    ] {
        assert!(names.contains(&name), "llmage t2v lists {name}: {names:?}");
    }
}

/// With DashScope and ModelScope both serving `qwen-image`, llmage lists every model under a
/// name its routes accept (those two by full id), each listed name is accepted by the route
/// of its category, and the bare name is refused naming both candidates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_llmage_lists_is_accepted_when_two_providers_share_a_key() {
    use base64::Engine as _;
    let (easel, _fakes) = Easel::with_dashscope_and_modelscope().await;
    let host = &easel.host;
    let (status, listed) = host.get("/llmage/v1/models").await;
    assert_eq!(status, 200, "{listed}");
    let models = listed["data"].as_array().unwrap();
    let ids: Vec<&str> = models.iter().map(|m| m["id"].as_str().unwrap()).collect();
    let distinct: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        ids.len(),
        "each id names one model: {ids:?}"
    );
    for id in [
        "dashscope/qwen-image",
        "modelscope/qwen-image",
        "wan2.6-t2v",
        "qwen-plus",
    ] {
        assert!(ids.contains(&id), "llmage lists {id}: {ids:?}");
    }
    assert!(!ids.contains(&"qwen-image"), "{ids:?}");

    let inline = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(fakes::PNG_1X1)
    );
    let mut tried = 0;
    for model in models {
        let id = model["id"].as_str().unwrap();
        let categories: Vec<&str> = model["catelogid"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        // Speech (`t2a`) has no llmage route; every other category has one.
        let Some(category) = categories.iter().copied().find(|c| *c != "t2a") else {
            continue;
        };
        let path = match category {
            "t2t" => "/llmage/v1/chat/completions",
            "t2i" | "i2i" => "/llmage/v1/image/generations",
            _ => "/llmage/v1/video/generations",
        };
        let mut body = json!({"model": id, "catelogid": category, "prompt": "a lighthouse"});
        // A model whose vendor takes images only as links it fetches gets one.
        let picture = match model["url_inputs"].as_array() {
            Some(kinds) if kinds.contains(&json!("image")) => "https://example.com/a.png".into(),
            _ => inline.clone(),
        };
        match category {
            "i2i" => body["image_file"] = picture.clone().into(),
            // Both frames: some models take both (seed 002's tables).
            "i2v" => {
                body["image_file1"] = picture.clone().into();
                body["image_file2"] = picture.clone().into();
            }
            "ref2v" => body["image_files"] = json!([picture]),
            _ => {}
        }
        let (status, answer) = host.post(path, &body).await;
        assert_eq!(status, 200, "{id} ({category}) is accepted: {answer}");
        tried += 1;
    }
    assert!(tried >= 10, "only {tried} models were tried");

    let (status, answer) = host
        .post(
            "/llmage/v1/image/generations",
            &json!({"model": "qwen-image", "catelogid": "t2i", "prompt": "a lighthouse"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"],
        "Model qwen-image is ambiguous: dashscope/qwen-image, modelscope/qwen-image"
    );
    // OpenAI's list names the two by full id, once each.
    let (_, openai) = host.get("/v1/models").await;
    let ids: Vec<&str> = openai["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for id in ["dashscope/qwen-image", "modelscope/qwen-image"] {
        assert_eq!(ids.iter().filter(|i| **i == id).count(), 1, "{ids:?}");
    }
}
