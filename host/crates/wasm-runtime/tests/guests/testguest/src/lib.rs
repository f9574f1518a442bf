//! A tiny provider used by easel-wasm's tests. Behaviour is picked by the prompt:
//! `echo:X`, `loop`, `alloc`, `panic`, `fetch:URL`, `secret:NAME`,
//! `sleep:MS`, `pending`; and for chats by the model: `echo`, `count` (answers how many
//! chats this instance has started), `count-panic` (counts, then traps) and `count-hoard`
//! (counts, then keeps 20 MiB).

wit_bindgen::generate!({
    path: "../../../../../../wit/v0.1.0",
    world: "provider",
    generate_all,
});

use easel::provider::host::{self, Level};
use easel::provider::types::{ChatEvent, ChatRequest, Finished, Model, Output, Pending};
use exports::easel::provider::chat::{ChatStream, Guest as ChatGuest, GuestChatStream};
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

const VERSION: &str = match option_env!("GUEST_VERSION") {
    Some(v) => v,
    None => "1.0.0",
};

struct Component;

fn text(t: String) -> Submission {
    Submission::Finished(Finished { outputs: vec![Output::Text(t)], usage: None })
}

/// GETs `url`; `within` asks the host for that first-byte and between-bytes timeout.
fn fetch(url: &str, within: Option<std::time::Duration>) -> Result<Vec<u8>, String> {
    use wasi::http::types::{Fields, OutgoingRequest, Scheme};
    use wasi::io::streams::StreamError;
    let (scheme, rest) = url.split_once("://").ok_or("bad url")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
    req.set_scheme(Some(&scheme)).map_err(|_| "scheme")?;
    req.set_authority(Some(authority)).map_err(|_| "authority")?;
    req.set_path_with_query(Some(path)).map_err(|_| "path")?;
    let options = within.map(|d| {
        let options = wasi::http::types::RequestOptions::new();
        let nanos = d.as_nanos() as u64;
        let _ = options.set_first_byte_timeout(Some(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos));
        options
    });
    let fut = wasi::http::outgoing_handler::handle(req, options).map_err(|e| format!("{e:?}"))?;
    let resp = loop {
        match fut.get() {
            Some(r) => break r,
            None => fut.subscribe().block(),
        }
    };
    let resp = resp.map_err(|_| "response taken")?.map_err(|e| format!("{e:?}"))?;
    let body = resp.consume().map_err(|_| "consume")?;
    let stream = body.stream().map_err(|_| "stream")?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => out.extend(chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                let code = wasi::http::types::http_error_code(&e);
                return Err(format!("body: {code:?} {}", e.to_debug_string()));
            }
        }
    }
    drop(stream);
    Ok(out)
}

impl Component {
    fn manifest_impl() -> Manifest {
        Manifest {
            id: "testguest".into(),
            version: VERSION.into(),
            models: vec![Model {
                key: "echo".into(),
                name: "Echo".into(),
                kind: "image".into(),
                capabilities: vec!["image.generate".into(), "chat".into()],
                params_schema: r#"{"type":"object"}"#.into(),
                price_hint: Some(1.0),
                extra: r#"{"sizes":["1x1"]}"#.into(),
            }],
            allowed_hosts: vec!["127.0.0.1".into(), "localhost".into(), "*.allowed.test".into()],
            secrets: vec!["TEST_SECRET".into()],
            idempotent_submit: true,
        }
    }
}

impl Guest for Component {
    fn manifest() -> Manifest {
        Component::manifest_impl()
    }

    fn submit(request: GenerationRequest) -> Result<Submission, ProviderError> {
        let p = request.prompt.as_str();
        host::log(Level::Debug, &format!("submit {p}"));
        if let Some(x) = p.strip_prefix("echo:") {
            return Ok(text(format!("{VERSION}:{x}")));
        }
        if p == "loop" {
            let mut i: u64 = 0;
            loop {
                i = std::hint::black_box(i.wrapping_add(1));
            }
        }
        if p == "alloc" {
            let mut keep = Vec::new();
            loop {
                keep.push(vec![7u8; 1 << 20]);
                std::hint::black_box(&keep);
            }
        }
        if p == "panic" {
            panic!("guest panicked on purpose");
        }
        // `fetch:<url>`, or `fetch-within:<ms>:<url>` asking for that timeout.
        fn within(rest: &str) -> Option<(&str, Option<std::time::Duration>)> {
            let (ms, url) = rest.split_once(':')?;
            Some((url, Some(std::time::Duration::from_millis(ms.parse().ok()?))))
        }
        let fetch_args = p
            .strip_prefix("fetch-within:")
            .and_then(within)
            .or_else(|| p.strip_prefix("fetch:").map(|url| (url, None)));
        if let Some((url, timeout)) = fetch_args {
            return match fetch(url, timeout) {
                Ok(body) => Ok(text(format!("{} bytes", body.len()))),
                Err(e) => Err(ProviderError::UpstreamUnavailable(e)),
            };
        }
        if let Some(name) = p.strip_prefix("secret:") {
            return Ok(text(format!("{:?}", host::secret(name))));
        }
        if let Some(ms) = p.strip_prefix("sleep:") {
            let ms: u64 = ms.parse().unwrap_or(0);
            wasi::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
            return Ok(text("slept".into()));
        }
        if let Some(mib) = p.strip_prefix("touch:") {
            // Dirties `mib` MiB of linear memory, then holds the instance a moment so that
            // calls made together occupy distinct pool slots.
            let mib: usize = mib.parse().unwrap_or(1);
            let block = std::hint::black_box(vec![1u8; mib << 20]);
            wasi::clocks::monotonic_clock::subscribe_duration(50_000_000).block();
            return Ok(text(format!("touched {} MiB", block.len() >> 20)));
        }
        if p == "pending" {
            return Ok(Submission::Pending(Pending { handle: "h-1".into(), poll_after_ms: 10 }));
        }
        Err(ProviderError::InvalidRequest(format!("unknown prompt {p}")))
    }

    fn poll(handle: String) -> Result<PollOutcome, ProviderError> {
        Ok(PollOutcome::Finished(Finished {
            outputs: vec![Output::Text(format!("polled {handle}"))],
            usage: Some(r#"{"images":1}"#.into()),
        }))
    }

    fn cancel(_handle: String) -> Result<(), ProviderError> {
        Ok(())
    }
}

struct Stream {
    step: Cell<u32>,
    words: Vec<String>,
}

impl GuestChatStream for Stream {
    fn next(&self) -> Result<Vec<ChatEvent>, ProviderError> {
        let i = self.step.get();
        self.step.set(i + 1);
        let i = i as usize;
        if i < self.words.len() {
            Ok(vec![ChatEvent::Delta(self.words[i].clone())])
        } else if i == self.words.len() {
            Ok(vec![ChatEvent::Usage((3, self.words.len() as u64)), ChatEvent::Finish("stop".into())])
        } else {
            Ok(vec![])
        }
    }
}

impl ChatGuest for Component {
    type ChatStream = Stream;

    fn start(request: ChatRequest) -> Result<ChatStream, ProviderError> {
        let words = match request.model.as_str() {
            "echo" => vec!["hello".to_string(), " ".to_string(), "world".to_string()],
            counted @ ("count" | "count-panic" | "count-hoard") => {
                // Memory of the instance's own: it outlives a chat only in a kept instance.
                static STARTED: AtomicU32 = AtomicU32::new(0);
                let n = STARTED.fetch_add(1, Ordering::Relaxed) + 1;
                if counted == "count-panic" {
                    panic!("guest panicked on purpose in chat {n}");
                }
                if counted == "count-hoard" {
                    std::hint::black_box(Box::leak(vec![1u8; 20 << 20].into_boxed_slice()));
                }
                vec![format!("chat {n}")]
            }
            _ => return Err(ProviderError::InvalidRequest("no such model".into())),
        };
        Ok(ChatStream::new(Stream { step: Cell::new(0), words }))
    }
}

export!(Component);
