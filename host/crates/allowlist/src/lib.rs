//! Which hosts a plugin may reach: the rule easel's network gate applies to every outbound
//! request and output link, and the one the SDK's offline checks apply, so a plugin's tests
//! and the host can never disagree.
//!
//! A pattern is a host name or IP address (no port, no brackets), a `*.domain` wildcard, or
//! `*`. Matching ignores ASCII case and one trailing dot on either side; `*.x.com` matches
//! `a.x.com` and `a.b.x.com` but never `x.com` itself. The crate has no dependencies and
//! allocates nothing.

#![deny(missing_docs)]

/// Whether `pattern` is a well-formed allowlist entry: a host name or IPv4 address (ASCII
/// letters, digits, `-` and `.`), a bare IPv6 address, a `*.domain` wildcard, or `*`.
pub fn valid_pattern(pattern: &str) -> bool {
    if pattern == "*" || pattern.parse::<std::net::Ipv6Addr>().is_ok() {
        return true;
    }
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
}

/// Whether `host` (a bare host: no port, no brackets) is allowed by `pattern`.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim();
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
    let host = host.strip_suffix('.').unwrap_or(host).as_bytes();
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            let domain = domain.as_bytes();
            host.len() > domain.len() + 1
                && host[host.len() - domain.len() - 1] == b'.'
                && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
        }
        None => host.eq_ignore_ascii_case(pattern.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_exactly_and_wildcards_only_below_their_domain() {
        assert!(host_matches("api.example.com", "API.example.com"));
        assert!(host_matches("api.example.com.", "api.example.com"));
        assert!(host_matches("api.example.com", "api.example.com."));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(host_matches("*.Example.com", "a.b.EXAMPLE.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", ".example.com"));
        assert!(!host_matches("*.example.com", "badexample.com"));
        assert!(!host_matches("api.example.com", "api.example.com.evil.org"));
        assert!(!host_matches("*.example.com", "ä.example.co"));
        assert!(host_matches("*", "anything.org"));
        assert!(host_matches("::1", "::1"));
    }

    #[test]
    fn patterns_are_names_addresses_or_wildcards() {
        for good in ["api.example.com", "*.example.com", "*", "10.0.0.1", "::1"] {
            assert!(valid_pattern(good), "{good}");
        }
        for bad in [
            "",
            "*.",
            "api.example.com:443",
            "[::1]",
            "https://x.com",
            "a b",
            "*x.com",
        ] {
            assert!(!valid_pattern(bad), "{bad}");
        }
    }
}
