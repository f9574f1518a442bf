//! Outbound HTTP for the host itself (webhooks, registered URLs, provider output links, remote
//! inputs for providers that read bytes), behind the no-SSRF rule.
//!
//! Invariant: unless the operator sets `EASEL_ALLOW_PRIVATE_TARGETS`, no request leaves for an
//! address the one no-SSRF rule refuses ([`easel_provider::net`]: loopback, private,
//! link-local, shared, unspecified, multicast, reserved and their IPv6 forms) or for
//! `localhost`: literal IPs (in any spelling the URL parser accepts, decimal and hex included)
//! are checked when a URL is accepted and again on every redirect hop, and host names are
//! checked at connect time by the resolver, so DNS rebinding cannot slip a private address in
//! later. No proxy from the environment is used, since one would resolve names past that
//! check. A download may carry one more [`HostCheck`] (a plugin's allowlist), applied to the
//! URL's host and to every redirect hop's.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use easel_provider::net::{is_forbidden_target, is_local_name};
use easel_provider::resolver::Resolver;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The outbound policy.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// Lets private targets through (tests only).
    pub allow_private: bool,
    /// Tests only, honoured with `allow_private`: requests for these hosts go to the given
    /// address instead, in plain HTTP as the plugins' own requests do (the plugins'
    /// `[plugins] connect_to`, so their links reach the fakes).
    pub connect_to: Arc<HashMap<String, SocketAddr>>,
    /// The process's names, resolved and cached ([`easel_provider::resolver`]), shared with
    /// the plugins' gate.
    pub resolver: Resolver,
}

/// One more rule for every host a download touches: `Some(reason)` refuses the host.
pub type HostCheck = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The host of `url` as allowlists spell it (no IPv6 brackets).
pub fn host_of(url: &url::Url) -> String {
    match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(host) => host.to_string(),
        None => String::new(),
    }
}

/// `raw` as logs may show it: its scheme, host, port and path, without the credentials or
/// query a client may have put in it (`https://user:pass@hooks.example/h?token=…`).
pub fn shown(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(url) => {
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            let host = url.host_str().unwrap_or_default();
            format!("{}://{host}{port}{}", url.scheme(), url.path())
        }
        Err(_) => "(not a URL)".into(),
    }
}

impl Guard {
    /// Checks a URL a client gave us: http(s) only, and no literal private address or
    /// `localhost` unless allowed. Host names are checked again at connect time.
    pub fn check_url(&self, raw: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(raw).map_err(|_| format!("Invalid URL: {raw}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("URL must use http or https: {raw}"));
        }
        let host = url
            .host()
            .ok_or_else(|| format!("URL has no host: {raw}"))?;
        if self.allow_private {
            return Ok(url);
        }
        // The URL parser has already turned every IPv4 spelling (decimal, hex, octal, short
        // forms such as `127.1`) into `Host::Ipv4`, as WHATWG's host parser does.
        let private = match host {
            url::Host::Ipv4(ip) => is_forbidden_target(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => is_forbidden_target(IpAddr::V6(ip)),
            url::Host::Domain(name) => is_local_name(name),
        };
        if private {
            return Err(format!("URL targets a private or loopback address: {raw}"));
        }
        Ok(url)
    }

    /// A client that enforces this guard on every connection and redirect.
    pub fn client(&self, timeout: Duration) -> reqwest::Client {
        self.checked_client(timeout, None)
    }

    /// [`Guard::client`] that also applies `check` to every redirect hop's host.
    fn checked_client(&self, timeout: Duration, check: Option<HostCheck>) -> reqwest::Client {
        let guard = self.clone();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            // reqwest's default too; stated because a webhook or download must not wait on
            // Nagle's algorithm.
            .tcp_nodelay(true)
            // A proxy from the environment (`HTTP_PROXY`, `ALL_PROXY`) would resolve the host
            // name itself, past the resolver below that holds the no-SSRF rule.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    return attempt.error("too many redirects");
                }
                let refused = guard.check_url(attempt.url().as_str()).err().or_else(|| {
                    check
                        .as_ref()
                        .and_then(|check| check(&host_of(attempt.url())))
                });
                match refused {
                    None => attempt.follow(),
                    Some(reason) => attempt.error(reason),
                }
            }));
        if self.allow_private {
            for (host, addr) in self.connect_to.iter() {
                builder = builder.resolve(host, *addr);
            }
        }
        builder = builder.dns_resolver(Arc::new(Names {
            resolver: self.resolver.clone(),
            public_only: !self.allow_private,
        }));
        builder
            .build()
            .expect("reqwest client with static settings")
    }
}

/// How long one fetch of a vendor output or a remote input may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

impl Guard {
    /// Starts a download of `raw` through this guard (checked URL, checked addresses, checked
    /// redirects) and `check`, when given, on the URL's host and every redirect's; answers
    /// once the response head is in, with a success status.
    pub async fn open(
        &self,
        raw: &str,
        check: Option<HostCheck>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut url = self.check_url(raw).map_err(anyhow::Error::msg)?;
        let host = host_of(&url);
        if let Some(reason) = check.as_ref().and_then(|check| check(&host)) {
            anyhow::bail!(reason);
        }
        if self.allow_private && self.connect_to.contains_key(&host) {
            // A fake on loopback speaks no TLS (it is reached at the mapped address).
            let _ = url.set_scheme("http");
        }
        Ok(self
            .checked_client(FETCH_TIMEOUT, check)
            .get(url)
            .send()
            .await?
            .error_for_status()?)
    }

    /// Downloads `raw` through this guard (see [`Guard::open`]), refusing bodies over
    /// `max_bytes`; returns the body's MIME type and its bytes.
    pub async fn fetch(&self, raw: &str, max_bytes: usize) -> anyhow::Result<(String, Vec<u8>)> {
        use futures::StreamExt;
        let response = self.open(raw, None).await?;
        let content_type = content_type_of(&response);
        if response
            .content_length()
            .is_some_and(|length| length > max_bytes as u64)
        {
            anyhow::bail!("{raw} is larger than {max_bytes} bytes");
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            body.extend_from_slice(&chunk?);
            anyhow::ensure!(
                body.len() <= max_bytes,
                "{raw} is larger than {max_bytes} bytes"
            );
        }
        Ok((content_type, body))
    }
}

/// The response's MIME type: the server's, else `application/octet-stream`.
pub fn content_type_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| "application/octet-stream".to_string(), String::from)
}

/// Resolves names through the process's resolver, dropping every private answer unless the
/// operator allowed private targets.
struct Names {
    resolver: Resolver,
    public_only: bool,
}

impl Resolve for Names {
    fn resolve(&self, name: Name) -> Resolving {
        let (resolver, public_only) = (self.resolver.clone(), self.public_only);
        Box::pin(async move {
            let host = name.as_str();
            let mut found = resolver.lookup(host, 0).await?;
            if public_only {
                found.retain(|a| !is_forbidden_target(a.ip()));
                if found.is_empty() {
                    return Err(
                        format!("{host} resolves only to private or loopback addresses").into(),
                    );
                }
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        assert_eq!(
            shown("https://hookuser:hookP4ss@hooks.example:8443/h/1?token=t0k#x"),
            "https://hooks.example:8443/h/1"
        );
        assert_eq!(shown("http://[::1]/a"), "http://[::1]/a");
        assert_eq!(shown("nonsense"), "(not a URL)");
    }

    #[test]
    fn private_ranges_are_refused() {
        let guard = Guard::default();
        for url in [
            "http://127.0.0.1/x",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://172.16.5.4/",
            "http://169.254.169.254/latest",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:8080/",
            "http://0.0.0.0/",
            "ftp://example.com/",
        ] {
            assert!(guard.check_url(url).is_err(), "{url} should be refused");
        }
        assert!(guard.check_url("https://example.com/hook").is_ok());
        assert!(guard.check_url("http://93.184.216.34/").is_ok());
        assert!(
            Guard {
                allow_private: true,
                ..Guard::default()
            }
            .check_url("http://127.0.0.1:9/")
            .is_ok()
        );
    }

    /// Every range of the shared rule, spelled as clients write URLs; the `url` crate turns
    /// decimal, hex and short IPv4 hosts into addresses before the rule sees them.
    #[test]
    fn every_spelling_of_a_forbidden_address_is_refused() {
        let guard = Guard::default();
        for url in [
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://127.0.0.1./",
            "http://10.0.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://0/",
            "http://192.0.2.1/",
            "http://198.18.0.1/",
            "http://224.0.0.1/",
            "http://240.0.0.1/",
            "http://255.255.255.255/",
            "http://[::]/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[64:ff9b::10.0.0.1]/",
            "http://[2002:7f00:1::]/",
            "http://[2002:a00:1::1]/",
            "http://[fc00::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
            "https://LOCALHOST./",
            "https://api.localhost/",
        ] {
            let refused = guard.check_url(url).unwrap_err();
            assert!(
                refused.starts_with("URL targets a private or loopback address"),
                "{url}: {refused}"
            );
        }
        for url in [
            "http://134744072/",
            "http://0x08080808/",
            "http://100.128.0.1/",
            "http://198.20.0.1/",
            "http://[2606:4700::1111]/",
            "http://[::ffff:8.8.8.8]/",
            "http://[64:ff9b::808:808]/",
            "http://[2002:808:808::1]/",
        ] {
            assert!(guard.check_url(url).is_ok(), "{url} should pass");
        }
    }
}
