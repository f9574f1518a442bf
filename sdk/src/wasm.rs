//! The component-model glue: generated bindings and the adapter from [`Provider`] to
//! the exported world. Compiled only for wasm32; plugin code never names it directly.
#![allow(missing_docs)]

use crate::http::transport::{BodySource, RawResponse};
use crate::http::{Method, Request, split_url};
use crate::{ChatStream, Error, Fault, Provider, Result};
use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "provider",
        path: "../wit/v0.5.0",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "__export_provider_world",
        default_bindings_module: "easel_sdk::wasm::bindings",
        // The world exports a function named `poll`, which is also a libc symbol that
        // Rust's std links in. So every generated export gets this prefix, and
        // `easel_sdk::export!` adds forwarding exports under the real names: legacy
        // names for all but `poll`, which uses the standard `cm32p2` mangling.
        export_prefix: "__easel_sdk_",
    });
}

use bindings::easel::provider::host as wit_host;
use bindings::easel::provider::types as wit;
use bindings::exports::easel::provider::chat as wit_chat;
use bindings::wasi::http::outgoing_handler;
use bindings::wasi::http::types as wasi_http;
use bindings::wasi::io::error::Error as IoError;
use bindings::wasi::io::streams::{InputStream, OutputStream, StreamError};

// ---------------------------------------------------------------- the provider value

thread_local! {
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn with_provider<P: Provider + Default, R>(f: impl FnOnce(&P) -> R) -> R {
    report_panics();
    // Take the value out while calling, so a provider that (oddly) re-enters the export
    // surface cannot observe a borrowed cell.
    let boxed = INSTANCE.with(|cell| cell.borrow_mut().take()).unwrap_or_else(|| Box::new(P::default()));
    let provider = boxed.downcast_ref::<P>().expect("one provider type per component");
    let result = f(provider);
    INSTANCE.with(|cell| *cell.borrow_mut() = Some(boxed));
    result
}

/// Logs a panic's message and place at error level before the panic traps, so that the
/// host's error for the call says why the plugin trapped, not only that it did.
fn report_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            crate::log(crate::Level::Error, &info.to_string().replace('\n', " "));
        }));
    });
}

/// The exported component, generic over the plugin's provider type.
pub struct Component<P>(PhantomData<P>);

impl<P: Provider + Default> bindings::Guest for Component<P> {
    fn manifest() -> wit::Manifest {
        with_provider::<P, _>(|p| p.manifest()).into()
    }

    fn submit(request: wit::GenerationRequest) -> std::result::Result<wit::Submission, wit::ProviderError> {
        let request = crate::GenerationRequest::try_from(request).map_err(wit::ProviderError::from)?;
        with_provider::<P, _>(|p| p.submit(request)).map(Into::into).map_err(Into::into)
    }

    fn poll(handle: String) -> std::result::Result<wit::PollOutcome, wit::ProviderError> {
        with_provider::<P, _>(|p| p.poll(&handle)).map(Into::into).map_err(Into::into)
    }

    fn cancel(handle: String) -> std::result::Result<(), wit::ProviderError> {
        with_provider::<P, _>(|p| p.cancel(&handle)).map_err(Into::into)
    }
}

/// The exported `chat-stream` resource.
pub struct ChatStreamResource(RefCell<Box<dyn ChatStream>>);

impl wit_chat::GuestChatStream for ChatStreamResource {
    fn next(&self) -> std::result::Result<Vec<wit::ChatEvent>, wit::ProviderError> {
        let events = self.0.borrow_mut().next().map_err(wit::ProviderError::from)?;
        Ok(events.into_iter().map(Into::into).collect())
    }
}

impl<P: Provider + Default> wit_chat::Guest for Component<P> {
    type ChatStream = ChatStreamResource;

    fn start(request: wit::ChatRequest) -> std::result::Result<wit_chat::ChatStream, wit::ProviderError> {
        let request = crate::ChatRequest {
            model: request.model,
            messages: parse_json("messages", &request.messages)?,
            params: parse_json("params", &request.params)?,
        };
        let stream = with_provider::<P, _>(|p| p.chat(request)).map_err(wit::ProviderError::from)?;
        Ok(wit_chat::ChatStream::new(ChatStreamResource(RefCell::new(stream))))
    }
}

fn parse_json(what: &str, text: &str) -> std::result::Result<serde_json::Value, wit::ProviderError> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(text).map_err(|e| Error::invalid(format!("`{what}` is not JSON: {e}")).into())
}

// ---------------------------------------------------------------- conversions

impl From<Error> for wit::ProviderError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidRequest(f) => wit::ProviderError::InvalidRequest(f.into()),
            Error::Unauthorized(m) => wit::ProviderError::Unauthorized(m),
            Error::RateLimited(s) => wit::ProviderError::RateLimited(s),
            Error::ContentRejected(f) => wit::ProviderError::ContentRejected(f.into()),
            Error::UpstreamUnavailable(m) => wit::ProviderError::UpstreamUnavailable(m),
            Error::Internal(m) => wit::ProviderError::Internal(m),
        }
    }
}

impl From<Fault> for wit::Fault {
    fn from(f: Fault) -> Self {
        wit::Fault { message: f.message, code: f.code, param: f.param }
    }
}

impl From<crate::Manifest> for wit::Manifest {
    fn from(m: crate::Manifest) -> Self {
        wit::Manifest {
            id: m.id,
            version: m.version,
            models: m
                .models
                .into_iter()
                .map(|model| wit::Model {
                    key: model.key,
                    name: model.name,
                    kind: model.kind,
                    capabilities: model.capabilities,
                    params_schema: model.params_schema.to_string(),
                    price_hint: model.price_hint,
                    extra: model.extra.to_string(),
                })
                .collect(),
            allowed_hosts: m.allowed_hosts,
            secrets: m.secrets,
            idempotent_submit: m.idempotent_submit,
        }
    }
}

impl TryFrom<wit::GenerationRequest> for crate::GenerationRequest {
    type Error = Error;
    fn try_from(r: wit::GenerationRequest) -> Result<Self> {
        let params = if r.params.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(&r.params).map_err(|e| Error::invalid(format!("params are not JSON: {e}")))?
        };
        Ok(crate::GenerationRequest {
            capability: r.capability,
            model: r.model,
            prompt: r.prompt,
            params,
            inputs: r
                .inputs
                .into_iter()
                .map(|i| crate::InputMedia {
                    kind: i.kind,
                    role: i.role,
                    url: i.url,
                    content_type: i.content_type,
                    data: i.data,
                })
                .collect(),
        })
    }
}

impl From<crate::Finished> for wit::Finished {
    fn from(f: crate::Finished) -> Self {
        wit::Finished {
            outputs: f
                .outputs
                .into_iter()
                .map(|o| match o {
                    crate::Output::Bytes { content_type, data } => wit::Output::Bytes((content_type, data)),
                    crate::Output::Url { url, content_type } => wit::Output::Url((url, content_type)),
                    crate::Output::Text(t) => wit::Output::Text(t),
                })
                .collect(),
            usage: f.usage.map(|u| u.to_string()),
        }
    }
}

impl From<crate::Submission> for wit::Submission {
    fn from(s: crate::Submission) -> Self {
        match s {
            crate::Submission::Finished(f) => wit::Submission::Finished(f.into()),
            crate::Submission::Pending(p) => {
                wit::Submission::Pending(wit::Pending { handle: p.handle, poll_after_ms: p.poll_after_ms })
            }
        }
    }
}

impl From<crate::PollOutcome> for wit::PollOutcome {
    fn from(o: crate::PollOutcome) -> Self {
        match o {
            crate::PollOutcome::Running { progress, poll_after_ms } => {
                wit::PollOutcome::Running(wit::Running { progress, poll_after_ms })
            }
            crate::PollOutcome::Finished(f) => wit::PollOutcome::Finished(f.into()),
            crate::PollOutcome::Failed(e) => wit::PollOutcome::Failed(e.into()),
        }
    }
}

impl From<crate::ChatEvent> for wit::ChatEvent {
    fn from(e: crate::ChatEvent) -> Self {
        match e {
            crate::ChatEvent::Delta(t) => wit::ChatEvent::Delta(t),
            crate::ChatEvent::Refusal(t) => wit::ChatEvent::Refusal(t),
            crate::ChatEvent::Reasoning(t) => wit::ChatEvent::Reasoning(t),
            crate::ChatEvent::ToolCall { index, id, name, arguments } => {
                wit::ChatEvent::ToolCall(wit::ToolCall { index, id, name, arguments })
            }
            crate::ChatEvent::Usage { prompt, completion } => wit::ChatEvent::Usage((prompt, completion)),
            crate::ChatEvent::UsageDetails(details) => wit::ChatEvent::UsageDetails(details.to_string()),
            crate::ChatEvent::AnswerInfo { system_fingerprint, service_tier } => {
                wit::ChatEvent::AnswerInfo(wit::AnswerInfo { system_fingerprint, service_tier })
            }
            crate::ChatEvent::Finish(r) => wit::ChatEvent::Finish(r),
        }
    }
}

// ---------------------------------------------------------------- host imports

pub(crate) fn host_log(level: crate::Level, message: &str) {
    let level = match level {
        crate::Level::Debug => wit_host::Level::Debug,
        crate::Level::Info => wit_host::Level::Info,
        crate::Level::Warn => wit_host::Level::Warn,
        crate::Level::Error => wit_host::Level::Error,
    };
    wit_host::log(level, message);
}

pub(crate) fn host_secret(name: &str) -> Option<String> {
    wit_host::secret(name)
}

// ---------------------------------------------------------------- wasi:http

/// Resources are declared child-first: Rust drops fields in order, and wasi:http refuses
/// to drop a parent (response, body) while a child (its stream) lives.
struct WasiBody {
    stream: Option<InputStream>,
    body: Option<wasi_http::IncomingBody>,
    _response: wasi_http::IncomingResponse,
}

impl BodySource for WasiBody {
    fn read(&mut self) -> Result<Option<Vec<u8>>> {
        let Some(stream) = &self.stream else { return Ok(None) };
        match stream.blocking_read(64 * 1024) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(StreamError::Closed) => {
                self.stream = None;
                if let Some(body) = self.body.take() {
                    // Trailers are of no use to a provider; finishing frees the body.
                    drop(wasi_http::IncomingBody::finish(body));
                }
                Ok(None)
            }
            Err(StreamError::LastOperationFailed(e)) => {
                Err(Error::upstream(format!("reading the response body failed: {}", e.to_debug_string())))
            }
        }
    }
}

fn error_code(url: &str, code: wasi_http::ErrorCode) -> Error {
    use wasi_http::ErrorCode as C;
    let what = match &code {
        C::HttpRequestDenied => "the host refused this destination (not in the allowed hosts?)".to_string(),
        C::ConnectionTimeout => "connection timed out".to_string(),
        C::ConnectionReadTimeout => "timed out waiting for the response".to_string(),
        C::HttpResponseTimeout => "timed out waiting for the response".to_string(),
        C::HttpResponseBodySize(_) => "the response body is larger than the host allows".to_string(),
        C::DnsError(_) => "DNS lookup failed".to_string(),
        C::ConnectionRefused => "connection refused".to_string(),
        other => format!("{other:?}"),
    };
    Error::upstream(format!("{url}: {what}"))
}

/// Hands `bytes` to the host's request body stream, in pieces as large as it takes at once
/// (wasmtime: up to 1 MiB; each piece is a hand-off to the host's connection while the guest
/// waits, and often a TCP segment). Returns whether every byte was handed over before the
/// stream closed.
///
/// A closed stream is not itself an error: the host's HTTP client lets go of a body once it
/// has all of it (its `content-length`), which may happen, on another thread, before the
/// last flush returns; and one that lets go earlier does so because the exchange ended (the
/// far end answered or hung up). Either way the response, or its error, says what happened.
fn write_body(stream: &OutputStream, bytes: &[u8]) -> std::result::Result<bool, IoError> {
    let mut rest = bytes;
    let closed = loop {
        if rest.is_empty() {
            break stream.blocking_flush().err();
        }
        let room = match stream.check_write() {
            Ok(0) => {
                stream.subscribe().block();
                continue;
            }
            Ok(room) => room,
            Err(e) => break Some(e),
        };
        let (piece, after) = rest.split_at(rest.len().min(usize::try_from(room).unwrap_or(usize::MAX)));
        if let Err(e) = stream.write(piece) {
            break Some(e);
        }
        rest = after;
    };
    match closed {
        None => Ok(true),
        Some(StreamError::Closed) => Ok(rest.is_empty()),
        Some(StreamError::LastOperationFailed(e)) => Err(e),
    }
}

pub(crate) fn http_send(req: &Request) -> Result<RawResponse> {
    let url = split_url(req.url())?;
    let mut entries: Vec<(String, Vec<u8>)> =
        req.headers().iter().map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec())).collect();
    // The whole body is known: say how long it is, rather than letting the host fall back
    // to chunked encoding, which some vendors (and simple test servers) do not accept.
    if !req.body_bytes().is_empty() && req.header_value("content-length").is_none() {
        entries.push(("content-length".to_string(), req.body_bytes().len().to_string().into_bytes()));
    }
    let headers = wasi_http::Fields::from_list(&entries)
        .map_err(|e| Error::internal(format!("bad request header: {e:?}")))?;
    let outgoing = wasi_http::OutgoingRequest::new(headers);
    let method = match req.method() {
        Method::Get => wasi_http::Method::Get,
        Method::Post => wasi_http::Method::Post,
        Method::Put => wasi_http::Method::Put,
        Method::Patch => wasi_http::Method::Patch,
        Method::Delete => wasi_http::Method::Delete,
        Method::Head => wasi_http::Method::Head,
    };
    let scheme = if url.scheme == "https" { wasi_http::Scheme::Https } else { wasi_http::Scheme::Http };
    let bad = |what: &str| Error::internal(format!("{}: bad {what}", req.url()));
    outgoing.set_method(&method).map_err(|_| bad("method"))?;
    outgoing.set_scheme(Some(&scheme)).map_err(|_| bad("scheme"))?;
    outgoing.set_authority(Some(&url.authority)).map_err(|_| bad("host"))?;
    outgoing.set_path_with_query(Some(&url.path_with_query)).map_err(|_| bad("path"))?;

    let options = wasi_http::RequestOptions::new();
    let (connect, first_byte, between) = req.timeouts();
    let nanos = |d: std::time::Duration| d.as_nanos().min(u64::MAX as u128) as u64;
    // A host may refuse to let a guest set a timeout; its own limits apply then.
    if let Some(d) = connect {
        let _ = options.set_connect_timeout(Some(nanos(d)));
    }
    if let Some(d) = first_byte {
        let _ = options.set_first_byte_timeout(Some(nanos(d)));
    }
    if let Some(d) = between {
        let _ = options.set_between_bytes_timeout(Some(nanos(d)));
    }

    let body = if req.body_bytes().is_empty() {
        None
    } else {
        Some(outgoing.body().map_err(|_| Error::internal("request body taken twice"))?)
    };
    let future = outgoing_handler::handle(outgoing, Some(options)).map_err(|c| error_code(req.url(), c))?;

    if let Some(body) = body {
        let stream = body.write().map_err(|_| Error::internal("request body stream taken twice"))?;
        let whole = write_body(&stream, req.body_bytes())
            .map_err(|e| Error::upstream(format!("{}: sending failed: {}", req.url(), e.to_debug_string())))?;
        drop(stream);
        // Cut short, the body is dropped unfinished: the exchange already ended, and the
        // response's error says how.
        if whole {
            wasi_http::OutgoingBody::finish(body, None).map_err(|c| error_code(req.url(), c))?;
        }
    }

    let response = loop {
        match future.get() {
            Some(Ok(Ok(response))) => break response,
            Some(Ok(Err(code))) => return Err(error_code(req.url(), code)),
            Some(Err(())) => return Err(Error::internal("response taken twice")),
            None => future.subscribe().block(),
        }
    };
    let status = response.status();
    let headers = {
        let fields = response.headers();
        fields.entries().into_iter().map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned())).collect()
    };
    let body = response.consume().map_err(|_| Error::internal("response body taken twice"))?;
    let stream = body.stream().map_err(|_| Error::internal("response stream taken twice"))?;
    Ok(RawResponse {
        status,
        headers,
        body: Box::new(WasiBody { stream: Some(stream), body: Some(body), _response: response }),
    })
}
