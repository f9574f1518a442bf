//! Chat instances kept between chats: only for the same client on the same plugin version,
//! only after a chat that ran to its end, never one that holds much memory.

mod common;

use std::sync::Arc;

use easel_provider::{CallContext, ChatEvent, ChatRequest, Provider};
use easel_wasm::{Runtime, WasmConfig, WasmProvider};
use futures::StreamExt;

fn as_client(client: &str) -> CallContext {
    CallContext {
        client: client.into(),
        ..CallContext::detached("t")
    }
}

fn chat_with(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![],
        params: Default::default(),
    }
}

/// The text of a whole chat with `model` for `client`: for the `count` models, how many chats
/// the instance that served it has started.
async fn answer(p: &WasmProvider, model: &str, client: &str) -> String {
    let events: Vec<_> = p
        .chat(&chat_with(model), &as_client(client))
        .await
        .unwrap()
        .collect()
        .await;
    events
        .into_iter()
        .find_map(|event| match event.unwrap() {
            ChatEvent::Delta(text) => Some(text),
            _ => None,
        })
        .unwrap()
}

async fn count(p: &WasmProvider, client: &str) -> String {
    answer(p, "count", client).await
}

async fn load(rt: &Arc<Runtime>, version: &str) -> WasmProvider {
    rt.load_bytes(common::guest::guest_component(version))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_instance_serves_only_its_own_clients_next_chats() {
    let rt = Runtime::new(common::config()).unwrap();
    let p = load(&rt, "1.0.0").await;
    assert_eq!(count(&p, "a").await, "chat 1");
    assert_eq!(count(&p, "a").await, "chat 2", "kept for a's next chat");
    assert_eq!(count(&p, "b").await, "chat 1", "never a's instance for b");
    assert_eq!(count(&p, "a").await, "chat 3");
    assert_eq!(count(&p, "b").await, "chat 2");

    // A chat dropped mid-stream leaves nothing kept: a's next chat starts afresh.
    let mut open = p.chat(&chat_with("count"), &as_client("a")).await.unwrap();
    match open.next().await {
        Some(Ok(ChatEvent::Delta(text))) => assert_eq!(text, "chat 4"),
        other => panic!("{other:?}"),
    }
    drop(open);
    assert_eq!(count(&p, "a").await, "chat 1");

    // Nor does a chat that trapped.
    let trapped = p.chat(&chat_with("count-panic"), &as_client("a")).await;
    let error = trapped.err().expect("the guest panics");
    assert!(error.to_string().contains("trapped"), "{error}");
    assert_eq!(count(&p, "a").await, "chat 1");

    // Nor one that ended holding more than half its memory cap (32 MiB in these tests).
    assert_eq!(answer(&p, "count-hoard", "a").await, "chat 2");
    assert_eq!(count(&p, "a").await, "chat 1");

    // A new version of the plugin never gets the old one's instances.
    let newer = load(&rt, "1.0.1").await;
    assert_eq!(count(&newer, "a").await, "chat 1");
    assert_eq!(
        count(&p, "a").await,
        "chat 2",
        "the old version's, still kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_instances_kept_every_chat_starts_afresh() {
    let config = WasmConfig {
        kept_instances: 0,
        ..common::config()
    };
    let rt = Runtime::new(config).unwrap();
    let p = load(&rt, "1.0.0").await;
    for _ in 0..3 {
        assert_eq!(count(&p, "a").await, "chat 1");
    }
}
