//! The only way out of the sandbox: `wasi:http` requests pass through [`Gate`], the
//! runtime's `WasiHttpHooks::send_request`.
//!
//! Invariants:
//! - A request leaves only when its host matches the manifest's `allowed-hosts` AND the
//!   operator allowlist (`*.example.com` matches subdomains, never the apex).
//! - The host name is resolved here, through the process's cached [`Resolver`], and every
//!   resolved address is checked at every request by the host's one no-SSRF rule,
//!   [`easel_provider::net::is_forbidden_target`] (loopback, private, link-local, shared,
//!   multicast, unspecified and the rest), unless `allow_private_targets` is set; the
//!   connection goes to a checked address, so a DNS answer cannot change between the check
//!   and the connect.
//! - Timeouts bound every request: to connect, until the response's head (connect included),
//!   and between two pieces of its body; a guest may ask for shorter ones through
//!   `wasi:http`'s request options, never for longer. A body that keeps coming is not cut at
//!   any total time, so a long streamed answer runs to its end (each call, and each step of a
//!   chat, still has the runtime's wall-clock limit); a size cap bounds every response.
//! - Connections are kept alive per plugin and origin ([`crate::pool`]) and reused only for
//!   a request that passed all of the above itself, to an address its own resolution
//!   checked. A guest that stops reading at its protocol's end marker (`data: [DONE]`)
//!   drops the body just before its end: the rest is read for it, at most [`DRAIN_BYTES`]
//!   within [`DRAIN_WAIT`], and only then is the connection kept; a body dropped far from
//!   its end closes the connection, which is how the upstream learns that nobody reads the
//!   answer any more. `TCP_NODELAY` is set on every connection: a request's head and body,
//!   written apart, must not wait for the upstream's delayed ACK.
//! - Every refusal is returned to the guest as a `wasi:http` error code and recorded in the
//!   call's [`Notes`], so the failed task's error says what the host refused, and in the
//!   plugin's [`Refusals`], so `GET /admin/plugins` shows it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use easel_allowlist::host_matches;
use easel_provider::net::is_forbidden_target;
use easel_provider::resolver::Resolver;
use http::uri::Scheme;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::pool::{Conn, Origin, Pool};

/// What the host refused or cut short during one call, newest last, and the plugin's own
/// latest error log line (a panic's message, which the SDK logs before the trap).
#[derive(Clone, Default)]
pub(crate) struct Notes(Arc<Mutex<Noted>>);

#[derive(Default)]
struct Noted {
    host: Vec<String>,
    plugin_error: Option<String>,
    /// A request was handed to a connection: the vendor may have it.
    sent: bool,
    /// A host could not be resolved or connected to.
    unreached: bool,
}

impl Notes {
    /// How much of a plugin's error line is kept for a trap's message.
    const PLUGIN_ERROR_CHARS: usize = 500;

    pub(crate) fn push(&self, note: String) {
        tracing::warn!(target: "easel::plugins", "{note}");
        self.0.lock().unwrap().host.push(note);
    }

    pub(crate) fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap().host)
    }

    /// Keeps `line`, logged by the plugin at error level, in place of the one before.
    pub(crate) fn plugin_error(&self, line: &str) {
        let kept = line.chars().take(Self::PLUGIN_ERROR_CHARS).collect();
        self.0.lock().unwrap().plugin_error = Some(kept);
    }

    /// A request is being handed to a connection.
    fn sending(&self) {
        self.0.lock().unwrap().sent = true;
    }

    /// A host could not be resolved or connected to.
    fn unreached(&self) {
        self.0.lock().unwrap().unreached = true;
    }

    /// Whether the call's requests all failed before one was handed to a connection (a host
    /// not resolved, a connection refused or timed out): the vendor was asked nothing.
    pub(crate) fn nothing_sent(&self) -> bool {
        let noted = self.0.lock().unwrap();
        noted.unreached && !noted.sent
    }

    /// The plugin's latest error log line, once.
    pub(crate) fn take_plugin_error(&self) -> Option<String> {
        self.0.lock().unwrap().plugin_error.take()
    }
}

/// The latest refusals of one loaded plugin (network, secrets, output links), oldest first.
#[derive(Clone, Default)]
pub(crate) struct Refusals(Arc<Mutex<std::collections::VecDeque<String>>>);

impl Refusals {
    /// How many are kept: enough to see a pattern, bounded whatever a plugin tries.
    const KEPT: usize = 20;

    pub(crate) fn record(&self, refusal: &str) {
        let mut kept = self.0.lock().unwrap();
        if kept.len() == Self::KEPT {
            kept.pop_front();
        }
        kept.push_back(refusal.to_string());
    }

    pub(crate) fn list(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().cloned().collect()
    }
}

/// The network policy of one loaded plugin.
pub(crate) struct NetPolicy {
    pub(crate) plugin_id: String,
    pub(crate) manifest_hosts: Vec<String>,
    pub(crate) operator_hosts: Option<Vec<String>>,
    pub(crate) allow_private: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_response_bytes: u64,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    /// Test-only rerouting: requests to these hosts go, in plain HTTP, to the given address.
    pub(crate) connect_to: Arc<HashMap<String, SocketAddr>>,
    /// This plugin's kept-alive connections.
    pub(crate) pool: Pool,
    /// The process's names, resolved and cached ([`easel_provider::resolver`]).
    pub(crate) resolver: Resolver,
}

impl NetPolicy {
    pub(crate) fn host_allowed(&self, host: &str) -> bool {
        self.manifest_hosts.iter().any(|p| host_matches(p, host))
            && self
                .operator_hosts
                .as_ref()
                .is_none_or(|ops| ops.iter().any(|p| host_matches(p, host)))
    }

    /// The patterns this plugin may reach: its manifest's, narrowed by the operator's
    /// allowlist when there is one.
    pub(crate) fn allowed_hosts(&self) -> Vec<String> {
        let Some(operator) = &self.operator_hosts else {
            return self.manifest_hosts.clone();
        };
        let mut allowed: Vec<String> = Vec::new();
        for own in &self.manifest_hosts {
            for theirs in operator {
                if let Some(common) = easel_allowlist::narrower(own, theirs)
                    && !allowed.iter().any(|a| a.eq_ignore_ascii_case(common))
                {
                    allowed.push(common.to_string());
                }
            }
        }
        allowed
    }

    /// Why the host must not download an output link on `host` for this plugin, if it must
    /// not: the same allowlist as the plugin's own requests.
    pub(crate) fn refuse_link(&self, host: &str) -> Option<String> {
        (!self.host_allowed(host)).then(|| {
            let operator = match &self.operator_hosts {
                Some(list) => format!(" and the operator allowlist ({})", list.join(", ")),
                None => String::new(),
            };
            format!(
                "plugin {}: output link to {host} refused: the host is not in the plugin's \
                 allowed hosts ({}){operator}",
                self.plugin_id,
                self.manifest_hosts.join(", ")
            )
        })
    }
}

/// The `WasiHttpHooks` of one call's store.
pub(crate) struct Gate {
    pub(crate) policy: Arc<NetPolicy>,
    pub(crate) notes: Notes,
    pub(crate) refusals: Refusals,
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

impl WasiHttpHooks for Gate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> SendFuture {
        drop(fut);
        let policy = self.policy.clone();
        let notes = self.notes.clone();
        let refusals = self.refusals.clone();
        Box::new(async move { send(policy, notes, refusals, request, options).await })
    }
}

fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

async fn send(
    policy: Arc<NetPolicy>,
    notes: Notes,
    refusals: Refusals,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
    let uri = request.uri().clone();
    let host = strip_brackets(uri.host().ok_or(Error::HttpRequestUriInvalid)?).to_string();
    let id = &policy.plugin_id;
    if !policy.host_allowed(&host) {
        let refusal = format!(
            "plugin {id}: outbound request to {host} refused: the host is not in the plugin's \
             allowed hosts (and the operator allowlist)"
        );
        refusals.record(&refusal);
        notes.push(refusal);
        return Err(Error::HttpRequestDenied);
    }
    let mut tls = match uri.scheme() {
        Some(s) if *s == Scheme::HTTPS => true,
        Some(s) if *s == Scheme::HTTP => false,
        _ => return Err(Error::HttpProtocolError),
    };
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    // What the guest asked for, within the operator's limits.
    let within = |asked: Option<Duration>, limit: Duration| asked.map_or(limit, |t| t.min(limit));
    let options = options.unwrap_or_default();
    let connect_timeout = within(options.connect_timeout, policy.connect_timeout);
    let first_byte = within(options.first_byte_timeout, policy.request_timeout);
    let between_bytes = within(options.between_bytes_timeout, policy.request_timeout);
    let deadline = Instant::now() + first_byte;

    // Resolve, check every address, connect to a checked one. A rerouted host (tests' fake
    // vendors) skips DNS and TLS but still passed the allowlist above.
    let rerouted = policy.connect_to.get(&host).copied();
    if rerouted.is_some() {
        tls = false;
    }
    let addrs: Vec<SocketAddr> = if let Some(addr) = rerouted {
        vec![addr]
    } else {
        match tokio::time::timeout(connect_timeout, policy.resolver.lookup(&host, port)).await {
            Err(_) => {
                notes.unreached();
                notes.push(format!("plugin {id}: resolving {host} timed out"));
                return Err(Error::DnsTimeout);
            }
            Ok(Err(e)) => {
                notes.unreached();
                notes.push(format!("plugin {id}: resolving {host} failed: {e}"));
                return Err(Error::DnsError {
                    rcode: Some(e.to_string()),
                    info_code: None,
                });
            }
            Ok(Ok(a)) => a,
        }
    };
    if addrs.is_empty() {
        return Err(Error::DestinationNotFound);
    }
    if !policy.allow_private
        && let Some(bad) = addrs.iter().find(|a| is_forbidden_target(a.ip()))
    {
        let refusal = format!(
            "plugin {id}: outbound request to {host} refused: it resolves to the private, \
             loopback or link-local address {}",
            bad.ip()
        );
        refusals.record(&refusal);
        notes.push(refusal);
        return Err(Error::DestinationIpProhibited);
    }
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let origin = Origin { tls, host, port };

    // A kept-alive connection to a checked address saves the connect and the handshake. One
    // the far end closed meanwhile gives the request back unsent; it then goes on a new one.
    if let Some(mut conn) = policy.pool.take(&origin, &addrs) {
        notes.sending();
        match tokio::time::timeout_at(deadline, conn.sender.try_send_request(request)).await {
            Err(_) => return Err(timed_out(&policy, &notes, &origin, first_byte)),
            Ok(Ok(response)) => {
                return answer(policy, notes, origin, conn, response, between_bytes);
            }
            Ok(Err(mut refused)) => match refused.take_message() {
                Some(unsent) => request = unsent,
                None => return Err(Error::from(refused.into_error())),
            },
        }
    }

    let stream = match tokio::time::timeout(connect_timeout, connect_any(&addrs)).await {
        Err(_) => {
            notes.unreached();
            notes.push(format!(
                "plugin {id}: connecting to {}:{port} timed out after {connect_timeout:?}",
                origin.host
            ));
            return Err(Error::ConnectionTimeout);
        }
        Ok(Err(e)) => {
            notes.unreached();
            notes.push(format!(
                "plugin {id}: connecting to {}:{port} failed: {e}",
                origin.host
            ));
            return Err(Error::ConnectionRefused);
        }
        Ok(Ok(s)) => s,
    };
    let head = async {
        let peer = stream
            .peer_addr()
            .map_err(|_| Error::ConnectionTerminated)?;
        let io: Box<dyn Io> = if tls {
            let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
                .map_err(Error::InvalidDnsNameError)?;
            let connector = tokio_rustls::TlsConnector::from(policy.tls.clone());
            Box::new(connector.connect(name, stream).await.map_err(Error::Tls)?)
        } else {
            Box::new(stream)
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        // The connection outlives this request when it goes back to the pool; it ends when
        // its last sender and response body are dropped, or the far end closes it.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(target: "easel::plugins", %error, "upstream connection ended");
            }
        });
        let mut conn = Conn { sender, peer };
        notes.sending();
        let response = conn.sender.send_request(request).await?;
        Ok::<_, Error>((response, conn))
    };
    let (response, conn) = match tokio::time::timeout_at(deadline, head).await {
        Err(_) => return Err(timed_out(&policy, &notes, &origin, first_byte)),
        Ok(r) => r?,
    };
    answer(policy, notes, origin, conn, response, between_bytes)
}

fn timed_out(policy: &NetPolicy, notes: &Notes, origin: &Origin, waited: Duration) -> Error {
    notes.push(format!(
        "plugin {}: request to {} timed out after {waited:?} without an answer",
        policy.plugin_id, origin.host
    ));
    Error::HttpResponseTimeout
}

/// The response for the guest, its body capped and allowed `between_bytes` of silence, the
/// connection pooled again once the body was read to the end.
fn answer(
    policy: Arc<NetPolicy>,
    notes: Notes,
    origin: Origin,
    conn: Conn,
    response: http::Response<hyper::body::Incoming>,
    between_bytes: Duration,
) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
    let id = &policy.plugin_id;
    let host = &origin.host;
    let cap = policy.max_response_bytes;
    if let Some(len) = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > cap
    {
        notes.push(format!(
            "plugin {id}: response from {host} refused: {len} bytes exceed the {cap}-byte cap"
        ));
        return Err(Error::HttpResponseBodySize(Some(len)));
    }
    let what = format!("plugin {id}: response from {host}");
    let response = response.map(move |incoming| {
        CappedBody {
            inner: Some(incoming),
            seen: 0,
            cap,
            silence: Box::pin(tokio::time::sleep(between_bytes)),
            between_bytes,
            notes,
            what,
            keep: Some((policy, origin, conn)),
        }
        .boxed_unsync()
    });
    // The connection runs on its own task (see above), so there is nothing left to drive.
    let io: IoFuture = Box::new(async { Ok(()) });
    Ok((response, io))
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

async fn connect_any(addrs: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = None;
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
}

/// The most of a dropped body read to keep its connection.
const DRAIN_BYTES: usize = 16 << 10;
/// The longest a dropped body's end is waited for to keep its connection.
const DRAIN_WAIT: Duration = Duration::from_millis(100);

/// A response body that enforces the size cap and the longest silence between two pieces.
struct CappedBody {
    /// `None` once handed to [`drain`] (only while dropping).
    inner: Option<hyper::body::Incoming>,
    seen: u64,
    cap: u64,
    /// Ends when the body has said nothing for `between_bytes`; restarted by every piece.
    silence: Pin<Box<Sleep>>,
    between_bytes: Duration,
    notes: Notes,
    what: String,
    /// Where the connection goes back once the body ended.
    keep: Option<(Arc<NetPolicy>, Origin, Conn)>,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(None) => {
                if let Some((policy, origin, conn)) = this.keep.take() {
                    policy.pool.put(origin, conn);
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.cap {
                        this.notes.push(format!(
                            "{} cut off: more than the {}-byte response cap",
                            this.what, this.cap
                        ));
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(this.cap)))));
                    }
                }
                this.silence
                    .as_mut()
                    .reset(Instant::now() + this.between_bytes);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(this.silence.as_mut().poll(cx));
                this.notes.push(format!(
                    "{} timed out: nothing more for {:?}",
                    this.what, this.between_bytes
                ));
                Poll::Ready(Some(Err(Error::HttpResponseTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }
}

impl Drop for CappedBody {
    fn drop(&mut self) {
        let (Some((policy, origin, conn)), Some(mut rest)) = (self.keep.take(), self.inner.take())
        else {
            return;
        };
        // What is left is often only the body's end, already read off the socket (a guest
        // stops at its protocol's end marker): the connection then goes back at once, without
        // a task to wait for it and a runtime thread woken to run that task.
        let mut read = 0;
        let mut now = Context::from_waker(std::task::Waker::noop());
        loop {
            match Pin::new(&mut rest).poll_frame(&mut now) {
                Poll::Ready(None) => return policy.pool.put(origin, conn),
                Poll::Ready(Some(Ok(frame))) => {
                    read += frame.data_ref().map_or(0, Bytes::len);
                    if read > DRAIN_BYTES {
                        return;
                    }
                }
                Poll::Ready(Some(Err(_))) => return,
                Poll::Pending => break,
            }
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if drain(rest, read).await {
                    policy.pool.put(origin, conn);
                }
            });
        }
    }
}

/// Reads what is left of a body the guest dropped, `read` bytes of it read already; whether
/// it ended within [`DRAIN_BYTES`] and [`DRAIN_WAIT`].
async fn drain(mut rest: hyper::body::Incoming, mut read: usize) -> bool {
    let to_end = async {
        while let Some(frame) = rest.frame().await {
            let Ok(frame) = frame else { return false };
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > DRAIN_BYTES {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_WAIT, to_end)
        .await
        .unwrap_or(false)
}
