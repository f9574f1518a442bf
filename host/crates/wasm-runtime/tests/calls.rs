//! A normal plugin: manifest, submit, poll, cancel, chat, secrets, check_component.

mod common;

use std::sync::Arc;

use easel_provider::{
    CallContext, ChatEvent, ChatRequest, Output, PollOutcome, Provider, Submission,
};
use easel_wasm::Runtime;
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_calls() {
    let rt = Runtime::new(common::config()).unwrap();
    let p = Arc::new(
        rt.load_bytes(common::guest::guest_component("1.0.0"))
            .await
            .unwrap(),
    );
    assert_eq!(p.id(), "testguest");
    assert_eq!(p.version(), "1.0.0");
    assert_eq!(p.contract_version(), "0.1.0");
    // 0.1.0 has no tool calls: the host never asks such a plugin for them.
    assert!(!p.makes_tool_calls());
    assert!(p.submit_is_idempotent());
    let models = p.models();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].key, "echo");
    assert_eq!(
        models[0].params_schema,
        serde_json::json!({"type": "object"})
    );
    assert_eq!(models[0].extra["sizes"], serde_json::json!(["1x1"]));

    assert_eq!(
        common::submit_text(&*p, "echo:hi").await.unwrap(),
        "1.0.0:hi"
    );
    let ctx = CallContext::detached("t1");
    match p.submit(&common::request("pending"), &ctx).await.unwrap() {
        Submission::Pending { handle, poll_after } => {
            assert_eq!(handle, "h-1");
            assert_eq!(poll_after.as_millis(), 10);
        }
        other => panic!("{other:?}"),
    }
    match p.poll("h-1", &ctx).await.unwrap() {
        PollOutcome::Finished { outputs, usage } => {
            assert!(matches!(&outputs[0], Output::Text(t) if t == "polled h-1"));
            assert_eq!(usage.unwrap()["images"], 1);
        }
        other => panic!("{other:?}"),
    }
    p.cancel("h-1", &ctx).await.unwrap();

    // Secrets: declared and set → value; undeclared → none even though the host has it.
    assert_eq!(
        common::submit_text(&*p, "secret:TEST_SECRET")
            .await
            .unwrap(),
        "Some(\"s3cret\")"
    );
    assert_eq!(
        common::submit_text(&*p, "secret:OTHER").await.unwrap(),
        "None"
    );

    // Typed plugin errors pass through.
    let err = common::submit_text(&*p, "what").await.unwrap_err();
    assert!(
        matches!(err, easel_provider::ProviderError::InvalidRequest(_)),
        "{err:?}"
    );

    // Chat streams.
    let req = ChatRequest {
        model: "echo".into(),
        messages: vec![],
        params: Default::default(),
    };
    let events: Vec<_> = p.chat(&req, &ctx).await.unwrap().collect().await;
    let events: Vec<ChatEvent> = events.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        events,
        vec![
            ChatEvent::Delta("hello".into()),
            ChatEvent::Delta(" ".into()),
            ChatEvent::Delta("world".into()),
            ChatEvent::Usage {
                prompt_tokens: 3,
                completion_tokens: 3
            },
            ChatEvent::Finish("stop".into()),
        ]
    );
    let bad = ChatRequest {
        model: "nope".into(),
        ..req
    };
    assert!(p.chat(&bad, &ctx).await.is_err());

    // Many concurrent calls.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..200 {
        let p = p.clone();
        set.spawn(async move {
            common::submit_text(&*p, &format!("echo:{i}"))
                .await
                .unwrap()
        });
    }
    while let Some(r) = set.join_next().await {
        assert!(r.unwrap().starts_with("1.0.0:"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_cache_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = common::guest::guest_component("1.0.0");
    let cfg = easel_wasm::WasmConfig {
        cache_dir: Some(dir.path().join("cache")),
        ..common::config()
    };
    let rt = Runtime::new(cfg.clone()).unwrap();
    rt.load_bytes(bytes.clone()).await.unwrap();
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 1, "one cached artifact");
    // A second engine with the same settings loads it from the cache.
    let rt2 = Runtime::new(cfg).unwrap();
    let p = rt2.load_bytes(bytes.clone()).await.unwrap();
    assert_eq!(common::submit_text(&p, "echo:c").await.unwrap(), "1.0.0:c");

    let file = dir.path().join("g.wasm");
    std::fs::write(&file, &bytes).unwrap();
    let report = easel_wasm::check_component(&file).await.unwrap();
    assert_eq!(report.contract, "0.1.0");
    assert_eq!(report.manifest.id, "testguest");
    assert!(
        report
            .exports
            .iter()
            .any(|e| e == "easel:provider/chat@0.1.0")
    );

    std::fs::write(&file, b"not wasm").unwrap();
    assert!(easel_wasm::check_component(&file).await.is_err());
}

/// `perf_map` names the plugin's compiled functions in this process's perf map, whether the
/// component was compiled afresh or loaded from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_map_names_the_plugins_functions() {
    let map = std::path::PathBuf::from(format!("/tmp/perf-{}.map", std::process::id()));
    let dir = tempfile::tempdir().unwrap();
    let bytes = common::guest::guest_component("1.0.0");
    let cfg = easel_wasm::WasmConfig {
        cache_dir: Some(dir.path().join("cache")),
        perf_map: true,
        ..common::config()
    };
    for load in ["compiled", "cached"] {
        let before = std::fs::read(&map).map_or(0, |text| text.len());
        let rt = Runtime::new(cfg.clone()).unwrap();
        let p = rt.load_bytes(bytes.clone()).await.unwrap();
        assert_eq!(common::submit_text(&p, "echo:m").await.unwrap(), "1.0.0:m");
        let text = String::from_utf8(std::fs::read(&map).unwrap()).unwrap();
        let named = text[before..]
            .lines()
            .filter(|line| line.contains("wasm["))
            .count();
        assert!(named > 10, "{load}: {named} plugin functions named");
    }
    std::fs::remove_file(&map).unwrap();
}

/// A keep-alive upstream on loopback that counts the connections it accepted and, when told,
/// closes each connection a moment after answering on it (as a server whose idle timeout
/// ran out does), without saying so in the response.
struct CountingUpstream {
    addr: std::net::SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    close_after_answer: Arc<std::sync::atomic::AtomicBool>,
}

async fn counting_upstream() -> CountingUpstream {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let close_after_answer = Arc::new(AtomicBool::new(false));
    let (count, close) = (accepted.clone(), close_after_answer.clone());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let close = close.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(read) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..read]);
                    // GET requests: a head without a body.
                    while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        buffer.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                        if close.load(Ordering::SeqCst) {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    CountingUpstream {
        addr,
        accepted,
        close_after_answer,
    }
}

/// A plugin's requests to one origin go over one kept-alive connection, one after another;
/// when the upstream closes it while it sits idle, the next request goes on a new one and
/// does not fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_kept_alive_and_replaced_once_closed() {
    use std::sync::atomic::Ordering;
    let upstream = counting_upstream().await;
    let rt = Runtime::new(common::config()).unwrap();
    let p = rt
        .load_bytes(common::guest::guest_component("1.0.0"))
        .await
        .unwrap();
    let fetch = format!("fetch:http://127.0.0.1:{}/ok", upstream.addr.port());
    for _ in 0..5 {
        assert_eq!(common::submit_text(&p, &fetch).await.unwrap(), "2 bytes");
    }
    assert_eq!(
        upstream.accepted.load(Ordering::SeqCst),
        1,
        "one connection, reused"
    );

    upstream.close_after_answer.store(true, Ordering::SeqCst);
    for round in 0..3 {
        assert_eq!(common::submit_text(&p, &fetch).await.unwrap(), "2 bytes");
        // The upstream closes the connection 50 ms after answering; the pool still holds it.
        // The wait leaves the connection's task time to see the close on a loaded machine
        // (150 ms was once too short beside 70 other tests on two cores).
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(
            upstream.accepted.load(Ordering::SeqCst),
            round + 1,
            "each request after a close on a new connection"
        );
    }
}

/// A plugin built for an earlier contract keeps loading and answering: `fixtures/` holds the
/// demo plugin as the SDK of contract 0.2.0 built it, before 0.3.0 was released. Its chats
/// have tool calls (0.2.0 added them) and none of 0.3.0's answer details.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_for_contract_0_2_0_keeps_working() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/demo-contract-0.2.0.wasm");
    let rt = Runtime::new(common::config()).unwrap();
    let p = Arc::new(
        rt.load_bytes(std::fs::read(&fixture).unwrap())
            .await
            .unwrap(),
    );
    assert_eq!(p.id(), "demo");
    assert_eq!(p.contract_version(), "0.2.0");
    assert!(p.makes_tool_calls());

    let ctx = CallContext::detached("t-0.2.0");
    let chat = |params: serde_json::Value| ChatRequest {
        model: "chat".into(),
        messages: vec![serde_json::json!({"role": "user", "content": "hello there"})],
        params: params.as_object().unwrap().clone(),
    };
    let events = |params| {
        let p = p.clone();
        let ctx = ctx.clone();
        async move {
            let stream = p.chat(&chat(params), &ctx).await.unwrap();
            let events: Vec<_> = stream.collect().await;
            events
                .into_iter()
                .map(Result::unwrap)
                .collect::<Vec<ChatEvent>>()
        }
    };
    let answer = events(serde_json::json!({})).await;
    assert!(matches!(answer[0], ChatEvent::Delta(_)), "{answer:?}");
    assert!(
        answer.contains(&ChatEvent::Usage {
            prompt_tokens: 2,
            completion_tokens: (answer.len() - 2) as u64
        }),
        "{answer:?}"
    );
    assert_eq!(answer.last(), Some(&ChatEvent::Finish("stop".into())));

    let tools =
        serde_json::json!({"tools": [{"type": "function", "function": {"name": "lookup"}}]});
    let called = events(tools).await;
    assert!(
        matches!(&called[0], ChatEvent::ToolCall(piece) if piece.name.as_deref() == Some("lookup")),
        "{called:?}"
    );
    assert_eq!(called.last(), Some(&ChatEvent::Finish("tool_calls".into())));
}

/// What the demo plugin built by the SDK of contract `version` (in `fixtures/`) answers to
/// "hello there", after checking it loads as a component of that version.
async fn fixture_chat(version: &str) -> Vec<ChatEvent> {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/demo-contract-{version}.wasm"));
    let rt = Runtime::new(common::config()).unwrap();
    let p = rt
        .load_bytes(std::fs::read(&fixture).unwrap())
        .await
        .unwrap();
    assert_eq!(p.contract_version(), version);
    let chat = ChatRequest {
        model: "chat".into(),
        messages: vec![serde_json::json!({"role": "user", "content": "hello there"})],
        params: serde_json::Map::new(),
    };
    let stream = p
        .chat(&chat, &CallContext::detached(&format!("t-{version}")))
        .await
        .unwrap();
    stream.map(Result::unwrap).collect().await
}

/// The demo plugin as the SDK of contract 0.3.0 built it, before 0.4.0 was released: its
/// chats say what the vendor says of the answer (0.3.0's events) and no refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_for_contract_0_3_0_keeps_working() {
    let answer = fixture_chat("0.3.0").await;
    assert!(
        matches!(&answer[0], ChatEvent::AnswerInfo(info) if info.system_fingerprint.is_some()),
        "{answer:?}"
    );
    assert!(
        answer
            .iter()
            .any(|event| matches!(event, ChatEvent::UsageDetails(_))),
        "{answer:?}"
    );
    assert_eq!(answer.last(), Some(&ChatEvent::Finish("stop".into())));
}

/// The demo plugin as the SDK of contract 0.4.0 built it, before 0.5.0 was released: it
/// loads and chats as it did, and tells no reasoning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_for_contract_0_4_0_keeps_working() {
    let answer = fixture_chat("0.4.0").await;
    let text: String = answer
        .iter()
        .filter_map(|event| match event {
            ChatEvent::Delta(text) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(text.contains("hello there"), "{answer:?}");
    assert!(
        !answer
            .iter()
            .any(|event| matches!(event, ChatEvent::Reasoning(_))),
        "{answer:?}"
    );
    assert_eq!(answer.last(), Some(&ChatEvent::Finish("stop".into())));
}

/// A DNS server on loopback that answers every A question with `ip` for `ttl` seconds and
/// every other with no records and no SOA to say for how long (as this machine's server
/// answers a name without IPv6 records); it counts the questions it is asked.
async fn dns_server(
    ip: std::net::Ipv4Addr,
    ttl: u32,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use hickory_resolver::proto::op::{Message, OpCode};
    use hickory_resolver::proto::rr::{RData, Record, RecordType, rdata::A};
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = asked.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let (len, from) = socket.recv_from(&mut buf).await.unwrap();
            let query = Message::from_vec(&buf[..len]).unwrap();
            let question = query.queries[0].clone();
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut answer = Message::response(query.metadata.id, OpCode::Query);
            answer.metadata.recursion_desired = true;
            answer.metadata.recursion_available = true;
            if question.query_type() == RecordType::A {
                let name = question.name().clone();
                answer.add_answer(Record::from_rdata(name, ttl, RData::A(A(ip))));
            }
            answer.add_query(question);
            socket
                .send_to(&answer.to_vec().unwrap(), from)
                .await
                .unwrap();
        }
    });
    (addr, asked)
}

/// A vendor reached by name is resolved once per its record's lifetime, not at every request,
/// and read again once that runs out; and the cache keeps answers, never verdicts: a host
/// that refuses private targets refuses the cached loopback answer as it would a fresh one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_resolved_once_per_lifetime_and_checked_every_time() {
    use std::sync::atomic::Ordering;
    let upstream = counting_upstream().await;
    let (dns, asked) = dns_server(std::net::Ipv4Addr::LOCALHOST, 1).await;
    let resolver = easel_provider::resolver::Resolver::with_name_server(dns).unwrap();
    let config = || easel_wasm::WasmConfig {
        resolver: resolver.clone(),
        ..common::config()
    };
    let open = Runtime::new(config()).unwrap();
    let guest = common::guest::guest_component("1.0.0");
    let p = open.load_bytes(guest.clone()).await.unwrap();
    let fetch = format!("fetch:http://api.allowed.test:{}/ok", upstream.addr.port());
    for _ in 0..5 {
        assert_eq!(common::submit_text(&p, &fetch).await.unwrap(), "2 bytes");
    }
    assert_eq!(
        asked.load(Ordering::SeqCst),
        2,
        "one question of each family (A, AAAA) for five requests"
    );

    let closed = Runtime::new(easel_wasm::WasmConfig {
        allow_private_targets: false,
        ..config()
    })
    .unwrap();
    let refusing = closed.load_bytes(guest).await.unwrap();
    let refused = common::submit_text(&refusing, &fetch).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("private, loopback or link-local address 127.0.0.1"),
        "{refused}"
    );
    assert_eq!(
        asked.load(Ordering::SeqCst),
        2,
        "the cached answer was checked"
    );

    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    assert_eq!(common::submit_text(&p, &fetch).await.unwrap(), "2 bytes");
    assert_eq!(
        asked.load(Ordering::SeqCst),
        3,
        "the expired A record asked again; the empty AAAA answer kept (30 s at least)"
    );
}
