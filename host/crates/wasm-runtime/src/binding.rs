//! What every contract version's binding shares: the host's imports, the calls into a
//! component and the translation of the types every version has alike.
//!
//! Invariants: [`binding!`] is expanded once in each version's module (`v0_1_0`, …), with the
//! version's WIT folder; it generates the module's bindings (`generated`, with `t` for their
//! `types` interface), and the module adds its own translations of the types versions have
//! differed in: `chat_event` (an event the host cannot take fails the chat) and `fault` (what
//! a refused request carries). A change here
//! reaches every version, so it may only keep each version's behaviour: a version whose types
//! drift from these must translate them in its own module instead.

/// A refused request as versions before 0.4.0 carry it: its message alone. Their modules take
/// it as their `fault`.
pub(crate) fn fault_of_message(message: String) -> easel_provider::Fault {
    message.into()
}

/// Expands a version's binding, generated from its WIT folder, in the version's module.
macro_rules! binding {
    ($folder:tt) => {
        #[allow(missing_docs)]
        mod generated {
            wasmtime::component::bindgen!({
                path: $folder,
                world: "provider",
                exports: { default: async },
                with: {
                    "wasi:http": wasmtime_wasi_http::p2::bindings::http,
                    "wasi:io": wasmtime_wasi::p2::bindings::io,
                    "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
                },
                require_store_data_send: true,
            });
        }

        use generated::easel::provider::types as t;

        use bytes::Bytes;
        use easel_provider::{
            ChatEvent, ChatRequest, GenerationRequest, ModelInfo, Output, PollOutcome,
            ProviderError, Submission, Usage,
        };
        use std::time::Duration;
        use wasmtime::Store;
        use wasmtime::component::{HasSelf, InstancePre, Linker, ResourceAny};

        use crate::contract::Called;
        use crate::manifest::{PluginManifest, json_object};
        use crate::state::CallState;

        impl generated::easel::provider::types::Host for CallState {}

        impl generated::easel::provider::host::Host for CallState {
            fn log(&mut self, level: generated::easel::provider::host::Level, message: String) {
                use generated::easel::provider::host::Level as L;
                let level = match level {
                    L::Debug => tracing::Level::DEBUG,
                    L::Info => tracing::Level::INFO,
                    L::Warn => tracing::Level::WARN,
                    L::Error => tracing::Level::ERROR,
                };
                CallState::log(self, level, &message);
            }

            fn secret(&mut self, name: String) -> Option<String> {
                CallState::secret(self, &name)
            }
        }

        /// Adds this version's `easel:provider/*` imports to the shared linker.
        pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
            generated::easel::provider::types::add_to_linker::<_, HasSelf<CallState>>(linker, |s| s)?;
            generated::easel::provider::host::add_to_linker::<_, HasSelf<CallState>>(linker, |s| s)?;
            Ok(())
        }

        /// A component of this version, linked and ready to instantiate.
        pub(crate) struct Pre(generated::ProviderPre<CallState>);

        /// An instance of a component of this version, in one store.
        pub(crate) struct Instance(generated::Provider);

        /// A chat stream in progress inside one store.
        pub(crate) struct Session {
            stream: ResourceAny,
        }

        fn error(e: t::ProviderError) -> ProviderError {
            match e {
                t::ProviderError::InvalidRequest(f) => ProviderError::InvalidRequest(fault(f)),
                t::ProviderError::Unauthorized(m) => ProviderError::Unauthorized(m),
                t::ProviderError::RateLimited(s) => ProviderError::RateLimited {
                    retry_after_secs: s,
                },
                t::ProviderError::ContentRejected(f) => ProviderError::ContentRejected(fault(f)),
                t::ProviderError::UpstreamUnavailable(m) => ProviderError::UpstreamUnavailable(m),
                t::ProviderError::Internal(m) => ProviderError::Internal(m),
            }
        }

        fn outputs(f: t::Finished) -> (Vec<Output>, Option<Usage>) {
            let outputs = f
                .outputs
                .into_iter()
                .map(|o| match o {
                    t::Output::Bytes((content_type, data)) => Output::Bytes {
                        content_type,
                        data: Bytes::from(data),
                    },
                    t::Output::Url((url, content_type)) => Output::Url { url, content_type },
                    t::Output::Text(s) => Output::Text(s),
                })
                .collect();
            let usage = f.usage.map(|u| {
                json_object(&u, "usage").unwrap_or_else(|_| {
                    let mut m = Usage::new();
                    m.insert("raw".into(), serde_json::Value::String(u));
                    m
                })
            });
            (outputs, usage)
        }

        /// JSON values as the contract's text, written straight from the borrowed values.
        fn json_text(value: &impl serde::Serialize) -> String {
            serde_json::to_string(value).expect("JSON values always serialize")
        }

        fn request(r: &GenerationRequest) -> t::GenerationRequest {
            t::GenerationRequest {
                capability: r.capability.clone(),
                model: r.model.clone(),
                prompt: r.prompt.clone(),
                params: json_text(&r.params),
                inputs: r
                    .inputs
                    .iter()
                    .map(|i| t::InputMedia {
                        kind: i.kind.clone(),
                        role: i.role.clone(),
                        url: i.url.clone(),
                        content_type: i.content_type.clone(),
                        data: i.data.as_ref().map(|d| d.to_vec()),
                    })
                    .collect(),
            }
        }


        fn manifest(m: t::Manifest) -> anyhow::Result<PluginManifest> {
            let mut models = Vec::new();
            for model in m.models {
                let schema = if model.params_schema.trim().is_empty() {
                    serde_json::json!({"type": "object"})
                } else {
                    serde_json::from_str(&model.params_schema).map_err(|e| {
                        anyhow::anyhow!("model {}: params-schema is not valid JSON: {e}", model.key)
                    })?
                };
                let extra = json_object(&model.extra, &format!("model {}: extra", model.key))?;
                models.push(ModelInfo {
                    key: model.key,
                    name: model.name,
                    kind: model.kind,
                    capabilities: model.capabilities,
                    params_schema: schema,
                    price_hint: model.price_hint,
                    extra,
                });
            }
            Ok(PluginManifest {
                id: m.id,
                version: m.version,
                models,
                allowed_hosts: m.allowed_hosts,
                secrets: m.secrets,
                idempotent_submit: m.idempotent_submit,
            })
        }

        impl Pre {
            pub(crate) fn new(pre: InstancePre<CallState>) -> wasmtime::Result<Self> {
                Ok(Self(generated::ProviderPre::new(pre)?))
            }

            async fn instance(
                &self,
                store: &mut Store<CallState>,
            ) -> wasmtime::Result<generated::Provider> {
                self.0.instantiate_async(store).await
            }

            pub(crate) async fn manifest(&self, store: &mut Store<CallState>) -> Called<PluginManifest> {
                let i = self.instance(store).await?;
                let m = i.call_manifest(&mut *store).await?;
                Ok(manifest(m).map_err(|e| ProviderError::Internal(format!("{e:#}"))))
            }

            pub(crate) async fn submit(
                &self,
                store: &mut Store<CallState>,
                r: &GenerationRequest,
            ) -> Called<Submission> {
                let i = self.instance(store).await?;
                let out = i.call_submit(&mut *store, &request(r)).await?;
                Ok(out.map_err(error).map(|s| match s {
                    t::Submission::Finished(f) => {
                        let (outputs, usage) = outputs(f);
                        Submission::Finished { outputs, usage }
                    }
                    t::Submission::Pending(p) => Submission::Pending {
                        handle: p.handle,
                        poll_after: Duration::from_millis(p.poll_after_ms),
                    },
                }))
            }

            pub(crate) async fn poll(
                &self,
                store: &mut Store<CallState>,
                handle: &str,
            ) -> Called<PollOutcome> {
                let i = self.instance(store).await?;
                let out = i.call_poll(&mut *store, handle).await?;
                Ok(out.map_err(error).map(|p| match p {
                    t::PollOutcome::Running(r) => PollOutcome::Running {
                        progress: r.progress,
                        poll_after: Duration::from_millis(r.poll_after_ms),
                    },
                    t::PollOutcome::Finished(f) => {
                        let (outputs, usage) = outputs(f);
                        PollOutcome::Finished { outputs, usage }
                    }
                    t::PollOutcome::Failed(e) => PollOutcome::Failed(error(e)),
                }))
            }

            pub(crate) async fn cancel(&self, store: &mut Store<CallState>, handle: &str) -> Called<()> {
                let i = self.instance(store).await?;
                Ok(i.call_cancel(&mut *store, handle).await?.map_err(error))
            }

            /// An instance for chats, which may serve several one after another.
            pub(crate) async fn instantiate(
                &self,
                store: &mut Store<CallState>,
            ) -> wasmtime::Result<Instance> {
                Ok(Instance(self.instance(store).await?))
            }
        }

        impl Instance {
            pub(crate) async fn chat_start(
                &self,
                store: &mut Store<CallState>,
                r: &ChatRequest,
            ) -> Called<Session> {
                let req = t::ChatRequest {
                    model: r.model.clone(),
                    messages: json_text(&r.messages),
                    params: json_text(&r.params),
                };
                let out = self
                    .0
                    .easel_provider_chat()
                    .call_start(&mut *store, &req)
                    .await?;
                Ok(out.map_err(error).map(|stream| Session { stream }))
            }
        }

        impl Session {
            pub(crate) async fn next(
                &self,
                instance: &Instance,
                store: &mut Store<CallState>,
            ) -> Called<Vec<ChatEvent>> {
                let out = instance
                    .0
                    .easel_provider_chat()
                    .chat_stream()
                    .call_next(&mut *store, self.stream)
                    .await?;
                Ok(out
                    .map_err(error)
                    .and_then(|evs| evs.into_iter().map(chat_event).collect()))
            }

            /// Drops the stream in the guest; whether it went cleanly (no trap).
            pub(crate) async fn close(self, store: &mut Store<CallState>) -> bool {
                self.stream.resource_drop_async(&mut *store).await.is_ok()
            }
        }
    };
}

pub(crate) use binding;
