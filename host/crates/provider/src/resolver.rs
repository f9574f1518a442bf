//! Host names to addresses for every request easel sends out (a plugin's `wasi:http` calls
//! through the gate, and the host's own: webhooks, input URLs, output downloads).
//!
//! Invariants:
//! - A name is resolved without parking a thread (hickory's asynchronous stub resolver, from
//!   `/etc/resolv.conf` and `/etc/hosts`), and its answer is kept for the lifetime its records
//!   give it (an answer of no records, for its zone's negative lifetime, at least 30 s and at
//!   most 5 min): a chat relayed to a vendor by name asks the DNS server once per TTL, not
//!   once per request (each query cost 0.3 ms at the median here, and 5 s when the server
//!   dropped it; `docs/BENCHMARKS.md`, forty-third session).
//! - The cache keeps answers, never verdicts: every caller judges each address it is given
//!   with the one no-SSRF rule ([`crate::net`]) at every request, so an address from the
//!   cache is checked as a fresh one is, and a name whose records change to a private address
//!   is refused as soon as the new answer is read.
//! - An IP address is answered as it is, without a query.
//! - Where the system's resolver configuration cannot be read, names go to the platform's
//!   own resolver (`getaddrinfo`, uncached), as they did before the cache.
//! - One [`Resolver`] is made per process and shared by its clones; it is built at its first
//!   lookup, on the runtime that makes it, and lives as long as that runtime.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{ResolverBuilder, TokioResolver};

/// Resolves host names, caching answers for their DNS lifetime; cheap to clone (the clones
/// share one cache).
#[derive(Clone, Default)]
pub struct Resolver(Arc<OnceLock<Option<TokioResolver>>>);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.0.get() {
            None => "not yet used",
            Some(Some(_)) => "cached (system configuration)",
            Some(None) => "the platform's resolver, uncached",
        };
        f.debug_tuple("Resolver").field(&state).finish()
    }
}

impl Resolver {
    /// Asks only the DNS server at `server` (over UDP), not the system's: for a fixed setup,
    /// or a test's own server.
    pub fn with_name_server(server: SocketAddr) -> io::Result<Self> {
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let name_server = NameServerConfig::new(server.ip(), true, vec![udp]);
        let config = ResolverConfig::from_name_servers(vec![name_server]);
        let builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        let resolver = with_options(builder)?;
        Ok(Self(Arc::new(OnceLock::from(Some(resolver)))))
    }

    /// The addresses of `host` (a name, or an IP address as written in a URL, without
    /// brackets), each with `port`, in the order to try them: IPv4 before IPv6.
    pub async fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let Some(resolver) = self.0.get_or_init(build) else {
            return Ok(tokio::net::lookup_host((host, port)).await?.collect());
        };
        let found = resolver.lookup_ip(host).await.map_err(io::Error::other)?;
        Ok(found.iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }
}

/// Both families asked at once; IPv4 tried first, as `getaddrinfo` orders them on most hosts
/// without a global IPv6 route.
const STRATEGY: LookupIpStrategy = LookupIpStrategy::Ipv4AndIpv6;

/// How long a "no such records" answer that names no lifetime of its own is kept, and the
/// longest any is. Without a floor, a server that answers a vendor's missing IPv6 records
/// without the zone's SOA (as this machine's does) is asked again at every lookup, and the
/// lookup waits for it; the ceiling keeps a name created after a miss from staying unknown
/// for the zone's whole negative lifetime.
const NEGATIVE_TTL: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(300));

fn with_options(mut builder: ResolverBuilder<TokioRuntimeProvider>) -> io::Result<TokioResolver> {
    let options = builder.options_mut();
    options.ip_strategy = STRATEGY;
    (options.negative_min_ttl, options.negative_max_ttl) =
        (Some(NEGATIVE_TTL.0), Some(NEGATIVE_TTL.1));
    builder.build().map_err(io::Error::other)
}

fn build() -> Option<TokioResolver> {
    let built = TokioResolver::builder_tokio()
        .map_err(io::Error::other)
        .and_then(with_options);
    match built {
        Ok(resolver) => Some(resolver),
        Err(error) => {
            tracing::warn!(
                %error,
                "the system's resolver configuration could not be read: host names go to the \
                 platform's resolver, uncached"
            );
            None
        }
    }
}

// What the cache keeps and for how long, through the gate that relies on it:
// `wasm-runtime/tests/calls.rs`, `names_are_resolved_once_per_lifetime_and_checked_every_time`.
#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_are_answered_without_a_query() {
        let resolver = Resolver::default();
        let v4 = resolver.lookup("203.0.113.7", 443).await.unwrap();
        assert_eq!(v4, vec!["203.0.113.7:443".parse().unwrap()]);
        let v6 = resolver.lookup("2001:db8::1", 80).await.unwrap();
        assert_eq!(v6, vec!["[2001:db8::1]:80".parse().unwrap()]);
        assert!(
            resolver.0.get().is_none(),
            "no resolver was built for addresses"
        );
    }

    #[tokio::test]
    async fn names_in_the_hosts_file_resolve() {
        let resolver = Resolver::default();
        let found = resolver.lookup("localhost", 8080).await.unwrap();
        assert!(!found.is_empty());
        let loopback = found
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 8080);
        assert!(loopback, "{found:?}");
    }
}
