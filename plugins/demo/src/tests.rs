//! Native tests, offline: an empty `testing::Script` makes any HTTP request panic.

use super::*;
use easel_sdk::testing::Script;
use easel_sdk::{InputMedia, collect_chat};

fn only_bytes(f: &Finished) -> (&str, &[u8]) {
    assert_eq!(f.outputs.len(), 1);
    match &f.outputs[0] {
        Output::Bytes { content_type, data } => (content_type, data),
        other => panic!("expected bytes, got {other:?}"),
    }
}

fn finished(s: Submission) -> Finished {
    match s {
        Submission::Finished(f) => f,
        Submission::Pending(p) => panic!("unexpected pending {p:?}"),
    }
}

fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn manifest_lists_the_four_models_with_schemas() {
    let m = Demo.manifest();
    assert_eq!(m.id, "demo");
    assert!(m.idempotent_submit);
    assert!(m.allowed_hosts.is_empty() && m.secrets.is_empty());
    let keys: Vec<_> = m.models.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["image", "video", "speech", "chat"]);
    let image = &m.models[0];
    assert_eq!(image.capabilities, ["image.generate", "image.edit"]);
    assert_eq!(image.params_schema["properties"]["width"]["default"], 512);
    assert_eq!(m.models[2].params_schema["properties"]["voice"]["enum"][0], "alto");
}

#[test]
fn png_decodes_with_the_asked_size_and_is_deterministic() {
    let _net = Script::new().install();
    let req = GenerationRequest::new("image.generate", "image", "a red fox").param("width", 96).param("height", 40);
    let f = finished(Demo.submit(req.clone()).unwrap());
    let (ct, png_bytes) = only_bytes(&f);
    assert_eq!(ct, "image/png");
    let decoder = png::Decoder::new(png_bytes);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (96, 40));
    assert_eq!(info.color_type, png::ColorType::Rgb);
    // Same request, same bytes; another prompt, other bytes.
    assert_eq!(finished(Demo.submit(req).unwrap()), f);
    let other = GenerationRequest::new("image.generate", "image", "a blue fox").param("width", 96).param("height", 40);
    assert_ne!(only_bytes(&finished(Demo.submit(other).unwrap())).1, png_bytes);
}

#[test]
fn image_defaults_to_512_and_checks_ranges() {
    let f = finished(Demo.submit(GenerationRequest::new("image.generate", "image", "x").param("n", 2)).unwrap());
    assert_eq!(f.outputs.len(), 2);
    if let Output::Bytes { data, .. } = &f.outputs[0] {
        assert_eq!(&data[16..24], &[0, 0, 2, 0, 0, 0, 2, 0]);
    }
    let e = Demo.submit(GenerationRequest::new("image.generate", "image", "x").param("width", 5000)).unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)));
    let e = Demo.submit(GenerationRequest::new("image.generate", "image", "x").param("style", "nope")).unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)));
    let e = Demo.submit(GenerationRequest::new("video.generate", "image", "x")).unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)));
}

#[test]
fn image_edit_needs_an_input_and_depends_on_it() {
    let base = GenerationRequest::new("image.edit", "image", "x").param("width", 32).param("height", 32);
    assert!(matches!(Demo.submit(base.clone()), Err(Error::InvalidRequest(_))));
    let with = |bytes: &[u8]| {
        base.clone().input(InputMedia { kind: "image".into(), data: Some(bytes.to_vec()), ..Default::default() })
    };
    let a = finished(Demo.submit(with(b"one")).unwrap());
    let b = finished(Demo.submit(with(b"two")).unwrap());
    assert_ne!(a, b);
}

#[test]
fn wav_header_is_valid() {
    let req = GenerationRequest::new("audio.speech", "speech", "Hello easel, 42!").param("sample_rate", 16000);
    let f = finished(Demo.submit(req).unwrap());
    let (ct, wav) = only_bytes(&f);
    assert_eq!(ct, "audio/wav");
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(u32le(wav, 4) as usize, wav.len() - 8);
    assert_eq!(&wav[8..16], b"WAVEfmt ");
    assert_eq!(u32le(wav, 16), 16);
    assert_eq!(u16::from_le_bytes([wav[20], wav[21]]), 1); // PCM
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 1); // mono
    assert_eq!(u32le(wav, 24), 16000);
    assert_eq!(u32le(wav, 28), 32000);
    assert_eq!(&wav[36..40], b"data");
    let data_len = u32le(wav, 40) as usize;
    assert_eq!(data_len, wav.len() - 44);
    // 12 letters/digits at 0.09 s plus 4 rests at 0.05 s.
    let seconds = data_len as f64 / 2.0 / 16000.0;
    assert!((seconds - (12.0 * 0.09 + 4.0 * 0.05)).abs() < 0.01, "{seconds}");
    assert!(wav[44..].iter().any(|&b| b != 0));
    assert!(matches!(
        Demo.submit(GenerationRequest::new("audio.speech", "speech", " ")),
        Err(Error::InvalidRequest(_))
    ));
}

/// `(type, payload)` of each box in `bytes`, which must hold whole boxes only.
fn boxes(bytes: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let size = u32be(bytes, at) as usize;
        assert!(size >= 8 && at + size <= bytes.len(), "the box at {at} fits");
        found.push((&bytes[at + 4..at + 8], &bytes[at + 8..at + size]));
        at += size;
    }
    found
}

/// The payload of the one box of `kind` in `bytes`.
fn child<'a>(bytes: &'a [u8], kind: &[u8]) -> &'a [u8] {
    let found: Vec<&[u8]> = boxes(bytes).into_iter().filter(|(k, _)| *k == kind).map(|(_, p)| p).collect();
    assert_eq!(found.len(), 1, "one {} box", String::from_utf8_lossy(kind));
    found[0]
}

fn u32be(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Walks the MP4 the way a demuxer would: the index before the samples, its picture size,
/// rate and length, and each sample one H.264 picture where the index says (an IDR first).
fn check_mp4(mp4: &[u8], w: u32, h: u32, fps: u32, frames: u32) {
    let top = boxes(mp4);
    assert_eq!(top.iter().map(|(kind, _)| *kind).collect::<Vec<_>>(), [&b"ftyp"[..], b"moov", b"mdat"]);
    let trak = child(top[1].1, b"trak");
    let tkhd = child(trak, b"tkhd");
    assert_eq!((u32be(tkhd, tkhd.len() - 8) >> 16, u32be(tkhd, tkhd.len() - 4) >> 16), (w, h));
    let mdia = child(trak, b"mdia");
    let mdhd = child(mdia, b"mdhd");
    assert_eq!((u32be(mdhd, 12), u32be(mdhd, 16)), (fps, frames), "time in frames");
    let stbl = child(child(mdia, b"minf"), b"stbl");
    let avc1 = &child(stbl, b"stsd")[8..];
    assert_eq!(&avc1[4..8], b"avc1");
    assert_eq!(
        (u16::from_be_bytes([avc1[32], avc1[33]]), u16::from_be_bytes([avc1[34], avc1[35]])),
        (w as u16, h as u16)
    );
    let stsz = child(stbl, b"stsz");
    assert_eq!(u32be(stsz, 8), frames);
    let sizes: Vec<usize> = (0..frames as usize).map(|i| u32be(stsz, 12 + 4 * i) as usize).collect();
    let mdat = top[2].1;
    assert_eq!(u32be(child(stbl, b"stco"), 8) as usize, mp4.len() - mdat.len(), "the chunk starts the samples");
    assert_eq!(sizes.iter().sum::<usize>(), mdat.len());
    let macroblocks = (w as usize).div_ceil(16) * (h as usize).div_ceil(16);
    let mut at = 0;
    for (i, size) in sizes.iter().enumerate() {
        assert_eq!(u32be(mdat, at) as usize + 4, *size, "sample {i} is one NAL unit");
        assert_eq!(mdat[at + 4] & 0x1F, if i == 0 { 5 } else { 1 });
        assert!(*size > macroblocks * 384, "sample {i} holds every macroblock's raw samples");
        at += size;
    }
}

#[test]
fn video_is_pending_first_then_a_valid_mp4_on_poll() {
    let _net = Script::new().install();
    let req = GenerationRequest::new("video.generate", "video", "waves").param("duration", 1).param("fps", 6);
    let handle = match Demo.submit(req).unwrap() {
        Submission::Pending(p) => {
            assert_eq!(p.poll_after_ms, 200);
            p.handle
        }
        other => panic!("expected pending, got {other:?}"),
    };
    // A fresh value polls it: the handle carries everything.
    let f = match Demo.poll(&handle).unwrap() {
        PollOutcome::Finished(f) => f,
        other => panic!("expected finished, got {other:?}"),
    };
    let (ct, mp4) = only_bytes(&f);
    assert_eq!(ct, "video/mp4");
    check_mp4(mp4, 160, 90, 6, 6);
    assert!(mp4.len() < 200_000);
    assert_eq!(Demo.cancel(&handle), Ok(()));
    assert!(matches!(Demo.poll("nonsense"), Err(Error::InvalidRequest(_))));
    assert!(matches!(Demo.poll(&handle[..handle.len() - 3]), Err(Error::InvalidRequest(_))));
}

#[test]
fn video_resolutions_and_limits() {
    let req =
        GenerationRequest::new("video.generate", "video", "w").param("resolution", "320x180").param("duration", 3);
    let Submission::Pending(p) = Demo.submit(req).unwrap() else { panic!() };
    let spec = VideoSpec::decode(&p.handle).unwrap();
    assert_eq!((spec.width, spec.height, spec.duration, spec.fps), (320, 180, 3, 8));
    let PollOutcome::Finished(f) = Demo.poll(&p.handle).unwrap() else { panic!() };
    check_mp4(only_bytes(&f).1, 320, 180, 8, 24);
    let bad = GenerationRequest::new("video.generate", "video", "w").param("resolution", "4k");
    assert!(matches!(Demo.submit(bad), Err(Error::InvalidRequest(_))));
}

#[test]
fn chat_streams_word_by_word_and_reports_usage() {
    let _net = Script::new().install();
    let mut stream = Demo.chat(ChatRequest::user("chat", "tell me a story")).unwrap();
    let first = stream.next().unwrap();
    assert_eq!(first.len(), 1);
    let rest = collect_chat(stream.as_mut()).unwrap();
    let events: Vec<_> = first.into_iter().chain(rest).collect();
    let text: String =
        events.iter().filter_map(|e| if let ChatEvent::Delta(t) = e { Some(t.as_str()) } else { None }).collect();
    assert_eq!(text, chat_answer("tell me a story"));
    let deltas = events.iter().filter(|e| matches!(e, ChatEvent::Delta(_))).count() as u64;
    assert_eq!(events[events.len() - 2], ChatEvent::Usage { prompt: 4, completion: deltas });
    assert_eq!(events.last(), Some(&ChatEvent::Finish("stop".into())));
    assert!(matches!(&events[0], ChatEvent::AnswerInfo { system_fingerprint: Some(fp), .. } if fp.starts_with("fp_demo_")));
    assert!(
        matches!(&events[events.len() - 3], ChatEvent::UsageDetails(d) if d["prompt_tokens_details"]["cached_tokens"] == 0)
    );

    let mut req = ChatRequest::user("chat", "hi");
    req.params = json!({"max_tokens": 3});
    let events = collect_chat(Demo.chat(req).unwrap().as_mut()).unwrap();
    assert_eq!(events.len(), 7, "the info, three words, the details, the usage, the finish");
    assert_eq!(events.last(), Some(&ChatEvent::Finish("length".into())));
    assert!(Demo.chat(ChatRequest::user("image", "hi")).is_err());
}

#[test]
fn chat_calls_the_chosen_tool_and_quotes_its_answer() {
    let _net = Script::new().install();
    let tools = json!([{"type": "function", "function": {"name": "weather"}},
                       {"type": "function", "function": {"name": "time"}}]);
    let mut req = ChatRequest::user("chat", "Oslo today");
    req.params = json!({"tools": tools});
    let events = collect_chat(Demo.chat(req.clone()).unwrap().as_mut()).unwrap();
    let ChatEvent::ToolCall { id: Some(id), name: Some(name), .. } = &events[0] else { panic!("{events:?}") };
    assert!(id.starts_with("call_demo_") && name == "weather", "{events:?}");
    let arguments: String = events
        .iter()
        .filter_map(|e| if let ChatEvent::ToolCall { index: 0, arguments, .. } = e { Some(arguments.as_str()) } else { None })
        .collect();
    assert_eq!(arguments, r#"{"text":"Oslo today"}"#);
    assert_eq!(events.last(), Some(&ChatEvent::Finish("tool_calls".into())));

    // `tool_choice` names another; "none" asks for text.
    req.params["tool_choice"] = json!({"type": "function", "function": {"name": "time"}});
    let events = collect_chat(Demo.chat(req.clone()).unwrap().as_mut()).unwrap();
    assert!(matches!(&events[0], ChatEvent::ToolCall { name: Some(n), .. } if n == "time"), "{events:?}");
    req.params["tool_choice"] = json!("none");
    let events = collect_chat(Demo.chat(req.clone()).unwrap().as_mut()).unwrap();
    assert_eq!(events.last(), Some(&ChatEvent::Finish("stop".into())));

    // A tool_choice naming no given tool is refused; any text splits cleanly into pieces.
    req.params["tool_choice"] = json!({"type": "function", "function": {"name": "stocks"}});
    assert!(matches!(Demo.chat(req.clone()), Err(Error::InvalidRequest(m)) if m.contains("stocks")));
    let mut req_cjk = ChatRequest::user("chat", "北京天气");
    req_cjk.params = json!({"tools": tools});
    let events = collect_chat(Demo.chat(req_cjk).unwrap().as_mut()).unwrap();
    let arguments_cjk: String = events
        .iter()
        .filter_map(|e| if let ChatEvent::ToolCall { arguments, .. } = e { Some(arguments.as_str()) } else { None })
        .collect();
    assert_eq!(arguments_cjk, r#"{"text":"北京天气"}"#);

    // The tool's answer comes back quoted.
    req.params = json!({"tools": tools});
    req.messages = json!([
        {"role": "user", "content": "Oslo today"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
            "function": {"name": "weather", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": id, "content": "sunny, 21 C"}
    ]);
    let events = collect_chat(Demo.chat(req).unwrap().as_mut()).unwrap();
    let text: String =
        events.iter().filter_map(|e| if let ChatEvent::Delta(t) = e { Some(t.as_str()) } else { None }).collect();
    assert_eq!(text, "The tool answered: sunny, 21 C");
    assert_eq!(events.last(), Some(&ChatEvent::Finish("stop".into())));
}

/// Whether `value` meets a property's `rule`: its type or types, `enum`, bounds and `pattern`.
fn accepts(rule: &Value, value: &Value) -> bool {
    let types: Vec<&str> = match &rule["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let typed = types.iter().any(|t| match *t {
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        _ => false,
    });
    let listed = rule["enum"].as_array().is_none_or(|allowed| allowed.contains(value));
    let bounded = value.as_f64().is_none_or(|n| {
        rule["minimum"].as_f64().is_none_or(|min| n >= min) && rule["maximum"].as_f64().is_none_or(|max| n <= max)
    });
    let matched = match (value.as_str(), rule["pattern"].as_str()) {
        (Some(text), Some(pattern)) => regex_lite::Regex::new(pattern).unwrap().is_match(text),
        _ => true,
    };
    typed && listed && bounded && matched
}

#[test]
fn every_example_value_of_the_seeds_meets_the_schemas() {
    let m = Demo.manifest();
    let rule = |model: usize, name: &str| m.models[model].params_schema["properties"][name].clone();
    let (image, video, speech) = (0, 1, 2);
    for (model, name, value) in [
        (image, "width", json!(1440)),
        (image, "height", json!(2560)),
        (image, "strength", json!(0.7)),
        (video, "duration", json!("5s")),
        (video, "duration", json!("10s")),
        (video, "duration", json!(4)),
        (video, "duration", json!(15)),
        (video, "duration", json!("15")),
        (video, "duration", json!(16)),
        (video, "resolution", json!("720p")),
        (video, "resolution", json!("720P")),
        (video, "resolution", json!("480p")),
        (video, "resolution", json!("1080P")),
        (video, "ratio", json!("16:9")),
        (video, "ratio", json!("9:16")),
        (video, "ratio", json!("4:3")),
        (video, "ratio", json!("adaptive")),
        (speech, "voice", json!("zh_female_qingxin")),
        (speech, "speed", json!(1.0)),
    ] {
        assert!(accepts(&rule(model, name), &value), "{} refuses {name} = {value}", m.models[model].key);
    }
    for value in [json!(17), json!("17s"), json!("5ss"), json!(0)] {
        assert!(!accepts(&rule(video, "duration"), &value), "video takes duration = {value}");
    }
    assert!(m.models[video].extra["catelogid"].as_array().unwrap().contains(&json!("ref2v")));
}

fn video_spec(req: GenerationRequest) -> VideoSpec {
    let Submission::Pending(p) = Demo.submit(req).unwrap() else { panic!("a video is pending first") };
    VideoSpec::decode(&p.handle).unwrap()
}

#[test]
fn the_seeds_video_settings_render_as_asked() {
    let _net = Script::new().install();
    let video = || GenerationRequest::new("video.generate", "video", "a cat playing with a ball");
    // Seed 000: `duration: "5s"`, `resolution: "720p"`.
    let spec = video_spec(video().param("duration", "5s").param("resolution", "720p"));
    assert_eq!((spec.width, spec.height, spec.duration), (160, 90, 5));
    // Seed 001's `ratio: "9:16"`; seed 002's multipart text and upper case.
    let spec = video_spec(video().param("duration", 5).param("resolution", "720p").param("ratio", "9:16"));
    assert_eq!((spec.width, spec.height, spec.duration), (90, 160, 5));
    let spec = video_spec(video().param("duration", "15").param("resolution", "720P").param("ratio", "4:3"));
    assert_eq!((spec.width, spec.height, spec.duration), (120, 90, 15));
    let spec = video_spec(video().param("duration", 4).param("resolution", "1080p").param("ratio", "adaptive"));
    // 1080 / 8 is 135, rounded up to an even 136 (4:2:0 video); 16:9 of that is 242.
    assert_eq!((spec.width, spec.height), (242, 136));
    let PollOutcome::Finished(f) = Demo.poll(&spec.encode()).unwrap() else { panic!() };
    check_mp4(only_bytes(&f).1, 242, 136, 8, 32);

    for bad in [
        video().param("duration", "17s"),
        video().param("duration", "5ss"),
        video().param("resolution", "720p").param("ratio", "2:1"),
        // More frames than a demo video holds at this size and rate.
        video().param("duration", 16).param("resolution", "320x180").param("fps", 15),
    ] {
        assert!(matches!(Demo.submit(bad), Err(Error::InvalidRequest(_))));
    }
}

#[test]
fn the_seeds_picture_and_voice_examples_run() {
    let _net = Script::new().install();
    // Seed 001's 1440×2560 poster.
    let req = GenerationRequest::new("image.generate", "image", "poster").param("width", 1440).param("height", 2560);
    let f = finished(Demo.submit(req).unwrap());
    let decoder = png::Decoder::new(only_bytes(&f).1);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1440, 2560));
    let too_many = GenerationRequest::new("image.generate", "image", "x").param("width", 2560).param("height", 2560);
    assert!(matches!(Demo.submit(too_many.param("n", 4)), Err(Error::InvalidRequest(_))));
    // Seed 000's voice.
    let req = GenerationRequest::new("audio.speech", "speech", "Hello, welcome to Pixel AI!")
        .param("voice", "zh_female_qingxin")
        .param("speed", 1.0);
    let f = finished(Demo.submit(req).unwrap());
    assert_eq!(&only_bytes(&f).1[..4], b"RIFF");
}
