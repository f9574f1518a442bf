//! The built-in offline provider: real, deterministic files made from the prompt, so the
//! whole flow runs with no keys and no network. It is a test fixture: free, with knobs that
//! hold a worker for up to an hour, so the host registers it only when the operator sets
//! `EASEL_OFFLINE_PROVIDER` (the README's demo runs on the demo plugin instead).
//!
//! Invariants: output depends only on the request (same request, same bytes); `poll` needs
//! only the handle, which carries the whole request and its ready time, so pending tasks
//! survive restarts; submit is idempotent. Test knobs in `params` (all documented in the
//! schemas): `delay_ms` keeps a task pending upstream that long (exercises the poller),
//! `work_ms` keeps the submit call busy that long (a "running" task holding a worker, which
//! honours cancellation), `collect_ms` makes the poll that collects a pending task's files
//! take that long (a slow download of a vendor's outputs), and `fail` makes the provider fail
//! with that message. In chat, `work_ms` spreads the answer's words over that long and `fail`
//! breaks the stream after the first word. Files are synthesised on the blocking pool, never on the async threads (a
//! 4096x4096 image takes long enough to stall every request sharing the thread).

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    engine::{
        provider::{
            CallContext, ChatEvent, ChatRequest, ChatStream, GenerationRequest, ModelInfo,
            OFFLINE_PROVIDER, Output, PollOutcome, Provider, ProviderError, Submission, Usage,
        },
        task::now_ms,
    },
    providers::media,
};

/// The offline provider (id `offline`).
pub struct Offline;

#[derive(Serialize, Deserialize)]
struct Handle {
    request: GenerationRequest,
    ready_at: i64,
    started_at: i64,
}

/// The whole-number parameter `name` of `request`, or `default`.
fn number(request: &GenerationRequest, name: &str, default: u64) -> u64 {
    request
        .params
        .get(name)
        .and_then(|v| v.as_u64())
        .unwrap_or(default)
}

fn knobs() -> serde_json::Value {
    json!({
        "delay_ms": {"type": "integer", "minimum": 0, "maximum": 3_600_000, "default": 0,
                      "description": "Stay pending upstream this long (exercises polling)."},
        "work_ms": {"type": "integer", "minimum": 0, "maximum": 3_600_000, "default": 0,
                     "description": "Keep the submit call busy this long (a running task)."},
        "collect_ms": {"type": "integer", "minimum": 0, "maximum": 3_600_000, "default": 0,
                        "description": "The poll that collects pending files takes this long."},
        "fail": {"type": "string", "description": "Fail with this message."},
        "unavailable": {"type": "string",
                        "description": "Answer the submit as a vendor that is down, with this message."},
        "poll_unavailable": {"type": "string",
                             "description": "With delay_ms: answer every poll as a vendor that is down, with this message."}
    })
}

fn schema(mut properties: serde_json::Value) -> serde_json::Value {
    if let (Some(props), Some(extra)) = (properties.as_object_mut(), knobs().as_object()) {
        props.extend(extra.clone());
    }
    json!({"type": "object", "properties": properties})
}

impl Offline {
    /// [`Self::make`] on the blocking pool.
    async fn make_off_thread(request: GenerationRequest) -> Result<Vec<Output>, ProviderError> {
        tokio::task::spawn_blocking(move || Self::make(&request))
            .await
            .map_err(|e| ProviderError::Internal(format!("offline synthesis failed: {e}")))?
    }

    fn make(request: &GenerationRequest) -> Result<Vec<Output>, ProviderError> {
        if let Some(message) = request.params.get("fail").and_then(|v| v.as_str()) {
            return Err(ProviderError::ContentRejected(message.into()));
        }
        let seed = easel_media::fnv1a(request.prompt.as_bytes())
            ^ easel_media::fnv1a(request.model.as_bytes());
        let output = match request.capability.as_str() {
            "audio.speech" => Output::Bytes {
                content_type: "audio/wav".into(),
                data: media::wav(&request.prompt, seed).into(),
            },
            "video.generate" => {
                let seconds = number(request, "duration", 2).clamp(1, 15) as u32;
                Output::Bytes {
                    content_type: "video/mp4".into(),
                    data: media::mp4(96, 54, 8, seconds * 8, seed).into(),
                }
            }
            "chat" => Output::Text(echo(&request.prompt)),
            _ => {
                let (width, height) = (
                    number(request, "width", 512).clamp(8, 4096) as u32,
                    number(request, "height", 512).clamp(8, 4096) as u32,
                );
                let count = number(request, "n", 1).clamp(1, 10);
                return Ok((0..count)
                    .map(|i| Output::Bytes {
                        content_type: "image/png".into(),
                        data: media::png(width, height, seed + i).into(),
                    })
                    .collect());
            }
        };
        Ok(vec![output])
    }
}

fn echo(prompt: &str) -> String {
    format!("Offline echo: {prompt}")
}

fn usage_of(request: &GenerationRequest, outputs: usize) -> Usage {
    let mut usage = Usage::new();
    usage.insert("outputs".into(), json!(outputs));
    usage.insert("prompt_chars".into(), json!(request.prompt.chars().count()));
    usage
}

#[async_trait]
impl Provider for Offline {
    fn id(&self) -> &str {
        OFFLINE_PROVIDER
    }

    fn models(&self) -> Vec<ModelInfo> {
        let size = json!({
            "width": {"type": "integer", "minimum": 8, "maximum": 4096, "default": 512},
            "height": {"type": "integer", "minimum": 8, "maximum": 4096, "default": 512},
            "n": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
            "loras": {"type": "array", "description": "Adapters, accepted as sent (seed 000's \
                      example names them); the test pattern does not change with them."}
        });
        let model = |key: &str,
                     name: &str,
                     kind: &str,
                     capabilities: &[&str],
                     properties: serde_json::Value,
                     extra: serde_json::Value| ModelInfo {
            key: key.into(),
            name: name.into(),
            kind: kind.into(),
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            params_schema: schema(properties),
            price_hint: Some(0.0),
            extra: extra.as_object().cloned().unwrap_or_default(),
        };
        vec![
            model(
                "image",
                "Offline test pattern",
                "image",
                &[
                    "image.generate",
                    "image.edit",
                    "image.inpaint",
                    "image.upscale",
                ],
                size,
                // Any size is drawn: Pixel's levels, which its model list spells out per ratio.
                json!({"resolutions": ["1K", "2K"]}),
            ),
            model(
                "video",
                "Offline colour drift",
                "video",
                &["video.generate"],
                json!({"duration": {"type": "integer", "minimum": 1, "maximum": 15, "default": 2}}),
                json!({"durations": [2, 4, 5, 8, 10, 15], "resolutions": ["96x54"], "catelogid": ["t2v", "i2v", "ref2v"]}),
            ),
            model(
                "speech",
                "Offline tones",
                "audio",
                &["audio.speech"],
                json!({}),
                json!({"voices": ["tone"]}),
            ),
            model(
                "chat",
                "Offline echo",
                "chat",
                &["chat"],
                json!({"max_tokens": {"type": "integer", "minimum": 1,
                       "description": "The echo stops after this many words, finishing with `length`."}}),
                json!({}),
            ),
        ]
    }

    fn submit_is_idempotent(&self) -> bool {
        true
    }

    async fn submit(
        &self,
        request: &GenerationRequest,
        ctx: &CallContext,
    ) -> Result<Submission, ProviderError> {
        if let Some(message) = request.params.get("unavailable").and_then(|v| v.as_str()) {
            return Err(ProviderError::UpstreamUnavailable(message.to_string()));
        }
        let work = Duration::from_millis(number(request, "work_ms", 0));
        if !work.is_zero() {
            let steps = 20u32;
            for step in 1..=steps {
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return Err(ProviderError::Cancelled),
                    _ = tokio::time::sleep(work / steps) => ctx.progress.report(step as f32 / steps as f32),
                }
            }
        }
        let delay = number(request, "delay_ms", 0);
        if delay > 0 {
            let now = now_ms();
            let handle = Handle {
                request: request.clone(),
                ready_at: now + delay as i64,
                started_at: now,
            };
            let handle = serde_json::to_string(&handle)
                .map_err(|e| ProviderError::Internal(e.to_string()))?;
            return Ok(Submission::Pending {
                handle,
                poll_after: Duration::from_millis(delay.min(200)),
            });
        }
        let outputs = Self::make_off_thread(request.clone()).await?;
        Ok(Submission::Finished {
            usage: Some(usage_of(request, outputs.len())),
            outputs,
        })
    }

    async fn poll(&self, handle: &str, _ctx: &CallContext) -> Result<PollOutcome, ProviderError> {
        let handle: Handle = serde_json::from_str(handle)
            .map_err(|e| ProviderError::Internal(format!("bad handle: {e}")))?;
        if let Some(message) = handle.request.params.get("poll_unavailable") {
            let message = message.as_str().unwrap_or_default().to_string();
            return Err(ProviderError::UpstreamUnavailable(message));
        }
        let now = now_ms();
        if now < handle.ready_at {
            let span = (handle.ready_at - handle.started_at).max(1) as f32;
            let progress = (now - handle.started_at) as f32 / span;
            let wait = (handle.ready_at - now).clamp(10, 1000) as u64;
            return Ok(PollOutcome::Running {
                progress: Some(progress),
                poll_after: Duration::from_millis(wait),
            });
        }
        let collect = number(&handle.request, "collect_ms", 0);
        tokio::time::sleep(Duration::from_millis(collect)).await;
        match Self::make_off_thread(handle.request.clone()).await {
            Ok(outputs) => Ok(PollOutcome::Finished {
                usage: Some(usage_of(&handle.request, outputs.len())),
                outputs,
            }),
            Err(error) => Ok(PollOutcome::Failed(error)),
        }
    }

    async fn chat(
        &self,
        request: &ChatRequest,
        _ctx: &CallContext,
    ) -> Result<ChatStream, ProviderError> {
        let last = request
            .messages
            .iter()
            .rev()
            .find_map(|m| m.get("content").and_then(|c| c.as_str()))
            .unwrap_or_default()
            .to_string();
        let answer = echo(&last);
        let mut words: Vec<String> = answer.split_inclusive(' ').map(String::from).collect();
        let cap = request.params.get("max_tokens").and_then(Value::as_u64);
        let finish = match cap {
            Some(cap) if words.len() as u64 > cap => {
                words.truncate(cap as usize);
                "length"
            }
            _ => "stop",
        };
        let usage = ChatEvent::Usage {
            prompt_tokens: last.split_whitespace().count() as u64,
            completion_tokens: words.len() as u64,
        };
        let pause = Duration::from_millis(
            request
                .params
                .get("work_ms")
                .and_then(|v| v.as_u64())
                .unwrap_or(0)
                / words.len().max(1) as u64,
        );
        let failure = request
            .params
            .get("fail")
            .and_then(|v| v.as_str())
            .map(|message| ProviderError::UpstreamUnavailable(message.to_string()));
        // The first word always comes; `fail` breaks the stream right after it.
        let events: Vec<Result<ChatEvent, ProviderError>> = match failure {
            Some(error) => vec![Ok(ChatEvent::Delta(words[0].clone())), Err(error)],
            None => words
                .into_iter()
                .map(ChatEvent::Delta)
                .chain([usage, ChatEvent::Finish(finish.into())])
                .map(Ok)
                .collect(),
        };
        Ok(Box::pin(futures::stream::iter(events).then(
            move |event| async move {
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                event
            },
        )))
    }
}
