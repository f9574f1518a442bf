//! Writes one output of each kind to a folder, to look at or feed to ffprobe:
//! `cargo run --release -p demo --example render -- /tmp/demo-out "a prompt"`.

use demo::Demo;
use easel_sdk::{ChatRequest, GenerationRequest, Output, PollOutcome, Provider, Submission, collect_chat};

fn bytes(outcome: Submission) -> Vec<u8> {
    let finished = match outcome {
        Submission::Finished(f) => f,
        Submission::Pending(p) => match Demo.poll(&p.handle).expect("poll") {
            PollOutcome::Finished(f) => f,
            other => panic!("{other:?}"),
        },
    };
    match finished.outputs.into_iter().next() {
        Some(Output::Bytes { data, .. }) => data,
        other => panic!("{other:?}"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "demo-out".into()));
    let prompt = args.next().unwrap_or_else(|| "a quiet harbour at dawn".into());
    std::fs::create_dir_all(&dir).unwrap();
    let image = GenerationRequest::new("image.generate", "image", &prompt).param("width", 320).param("height", 200);
    std::fs::write(dir.join("image.png"), bytes(Demo.submit(image).unwrap())).unwrap();
    let speech = GenerationRequest::new("audio.speech", "speech", &prompt);
    std::fs::write(dir.join("speech.wav"), bytes(Demo.submit(speech).unwrap())).unwrap();
    let video = GenerationRequest::new("video.generate", "video", &prompt).param("resolution", "320x180");
    std::fs::write(dir.join("video.mp4"), bytes(Demo.submit(video).unwrap())).unwrap();
    let chat = collect_chat(Demo.chat(ChatRequest::user("chat", &prompt)).unwrap().as_mut()).unwrap();
    println!("chat: {chat:?}");
    println!("wrote image.png, speech.wav, video.mp4 to {}", dir.display());
}
