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

/// The pattern that admits exactly the hosts both `a` and `b` admit, when they share any:
/// two patterns' sets are nested or disjoint (a name is in a wildcard's set or not, and two
/// wildcards' domains are one below the other or apart), so their common part is always one
/// of the two. How an operator's allowlist narrows a plugin's own is read this way.
pub fn narrower<'a>(a: &'a str, b: &'a str) -> Option<&'a str> {
    let domain = |pattern: &'a str| {
        let pattern = pattern.trim();
        pattern
            .strip_suffix('.')
            .unwrap_or(pattern)
            .strip_prefix("*.")
    };
    if a.trim() == "*" {
        return Some(b);
    }
    if b.trim() == "*" {
        return Some(a);
    }
    match (domain(a), domain(b)) {
        (None, _) => host_matches(b, a).then_some(a),
        (_, None) => host_matches(a, b).then_some(b),
        (Some(da), Some(db)) if da.eq_ignore_ascii_case(db) || host_matches(b, da) => Some(a),
        (Some(_), Some(db)) => host_matches(a, db).then_some(b),
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
    fn two_patterns_share_the_narrower_one_or_nothing() {
        for (a, b, common) in [
            ("*", "api.x.com", Some("api.x.com")),
            ("*.x.com", "*", Some("*.x.com")),
            ("api.x.com", "API.x.com.", Some("api.x.com")),
            ("api.x.com", "*.x.com", Some("api.x.com")),
            ("*.x.com", "a.b.x.com", Some("a.b.x.com")),
            ("*.x.com", "x.com", None),
            ("*.b.x.com", "*.x.com", Some("*.b.x.com")),
            ("*.x.com", "*.b.x.com", Some("*.b.x.com")),
            ("*.x.com", "*.X.com.", Some("*.x.com")),
            ("*.x.com", "*.y.com", None),
            ("*.ax.com", "*.x.com", None),
            ("api.x.com", "api.y.com", None),
        ] {
            assert_eq!(narrower(a, b), common, "{a} and {b}");
        }
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
