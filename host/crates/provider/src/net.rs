//! The one no-SSRF rule: which addresses and host names an outbound request from easel may
//! never reach, whoever makes it (webhooks, registered input URLs, provider output downloads,
//! a plugin's `wasi:http` calls).
//!
//! Invariants:
//! - [`is_forbidden_target`] is easel's only address predicate: the host's outbound guard
//!   and the plugin gate both judge every address they would connect to with it, so an
//!   address refused by one is refused by the other, however it is spelled.
//! - Addresses that carry an IPv4 address inside an IPv6 one are judged by the IPv4 address
//!   they carry: IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, IPv4-translated
//!   `::ffff:0:a.b.c.d` (RFC 2765), NAT64 `64:ff9b::/96` (RFC 6052) and 6to4 `2002::/16`
//!   (RFC 3056). A gateway that translates them delivers the packet to that IPv4 address, so
//!   a public one passes and a private one is refused. The local-use NAT64 prefix
//!   `64:ff9b:1::/48` (RFC 8215) is refused outright: it only exists inside an operator's
//!   own network.
//! - [`is_local_name`] is the only host-name rule, for names that never leave the machine
//!   (`localhost`, `*.localhost`, RFC 6761); every other name is judged by what it resolves to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is somewhere a request from easel must never lead: loopback, private,
/// link-local, shared (CGNAT), unspecified, broadcast, documentation, benchmarking,
/// multicast, reserved, unique- or site-local, or an IPv6 form of one of these (see the
/// module docs for the IPv6 forms that carry an IPv4 address).
pub fn is_forbidden_target(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Embedded::V4(v4) => forbidden_v4(v4),
            Embedded::LocalNat64 => true,
            Embedded::None => forbidden_v6(v6),
        },
    }
}

/// Whether a host name (as a URL spells it, any case, trailing dot or not) names this
/// machine without asking DNS: `localhost` and every name under `.localhost`.
pub fn is_local_name(host: &str) -> bool {
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

fn forbidden_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    a == 0 // "this network", 0.0.0.0 included
        || v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || (a == 100 && (b & 0xc0) == 64) // shared address space (CGNAT), 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, 192.0.0.0/24
        || v4.is_documentation()
        || (a == 198 && (b & 0xfe) == 18) // benchmarking, 198.18.0.0/15
        || v4.is_multicast()
        || a >= 240 // reserved, 255.255.255.255 (broadcast) included
}

fn forbidden_v6(v6: Ipv6Addr) -> bool {
    let first = v6.segments()[0];
    v6.is_loopback()
        || v6.is_unspecified()
        || v6.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || (first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation, 2001:db8::/32
}

/// What an IPv6 address says about IPv4.
enum Embedded {
    /// It carries this IPv4 address, which decides.
    V4(Ipv4Addr),
    /// The local-use NAT64 prefix: refused whatever it carries.
    LocalNat64,
    /// A plain IPv6 address.
    None,
}

fn embedded_v4(v6: Ipv6Addr) -> Embedded {
    let s = v6.segments();
    let last32 = || Ipv4Addr::from(u128::from(v6) as u32);
    match s {
        // `::` and `::1` are IPv4-compatible in form; they are judged as IPv6 below.
        _ if v6.is_unspecified() || v6.is_loopback() => Embedded::None,
        [0, 0, 0, 0, 0, 0xffff, _, _]
        | [0, 0, 0, 0, 0, 0, _, _]
        | [0, 0, 0, 0, 0xffff, 0, _, _] => Embedded::V4(last32()),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Embedded::V4(last32()),
        [0x64, 0xff9b, 1, ..] => Embedded::LocalNat64,
        [0x2002, hi, lo, ..] => Embedded::V4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))),
        _ => Embedded::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refused range, each in more than one spelling where IPv6 allows it.
    const FORBIDDEN: &[(&str, &str)] = &[
        ("this network", "0.0.0.0"),
        ("this network", "0.1.2.3"),
        ("loopback", "127.0.0.1"),
        ("loopback", "127.255.255.254"),
        ("private 10/8", "10.0.0.1"),
        ("private 172.16/12", "172.16.0.1"),
        ("private 172.16/12", "172.31.255.255"),
        ("private 192.168/16", "192.168.1.1"),
        ("link-local", "169.254.169.254"),
        ("CGNAT", "100.64.0.1"),
        ("CGNAT", "100.127.255.255"),
        ("IETF assignments", "192.0.0.8"),
        ("documentation", "192.0.2.1"),
        ("documentation", "198.51.100.7"),
        ("documentation", "203.0.113.9"),
        ("benchmarking", "198.18.0.1"),
        ("benchmarking", "198.19.255.255"),
        ("multicast", "224.0.0.1"),
        ("multicast", "239.255.255.250"),
        ("reserved", "240.0.0.1"),
        ("broadcast", "255.255.255.255"),
        ("v6 unspecified", "::"),
        ("v6 unspecified", "0:0:0:0:0:0:0:0"),
        ("v6 loopback", "::1"),
        ("v6 loopback", "0:0:0:0:0:0:0:1"),
        ("unique local", "fc00::1"),
        ("unique local", "fd12:3456::1"),
        ("link-local", "fe80::1"),
        ("link-local", "febf::1"),
        ("site-local", "fec0::1"),
        ("site-local", "feff::1"),
        ("v6 multicast", "ff02::1"),
        ("v6 multicast", "ff0e::1"),
        ("v6 documentation", "2001:db8::1"),
        ("IPv4-mapped", "::ffff:127.0.0.1"),
        ("IPv4-mapped", "::ffff:7f00:1"),
        ("IPv4-mapped", "::ffff:10.0.0.1"),
        ("IPv4-mapped", "::ffff:169.254.169.254"),
        ("IPv4-compatible", "::127.0.0.1"),
        ("IPv4-compatible", "::7f00:1"),
        ("IPv4-compatible", "::192.168.0.1"),
        ("IPv4-compatible", "::0.0.0.2"),
        ("IPv4-translated", "::ffff:0:127.0.0.1"),
        ("IPv4-translated", "::ffff:0:a00:1"),
        ("NAT64", "64:ff9b::7f00:1"),
        ("NAT64", "64:ff9b::127.0.0.1"),
        ("NAT64", "64:ff9b::a9fe:a9fe"),
        ("local-use NAT64", "64:ff9b:1::808:808"),
        ("6to4", "2002:7f00:1::"),
        ("6to4", "2002:7f00:0001:0:0:0:0:1"),
        ("6to4", "2002:c0a8:101::1"),
        ("6to4", "2002:6440:1::"),
    ];

    const PUBLIC: &[&str] = &[
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "100.128.0.1",
        "172.32.0.1",
        "198.20.0.1",
        "223.255.255.255",
        "2606:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:8.8.8.8",
        "::8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ];

    #[test]
    fn every_forbidden_range_is_refused_in_every_spelling() {
        for (range, spelling) in FORBIDDEN {
            let ip: IpAddr = spelling.parse().unwrap();
            assert!(
                is_forbidden_target(ip),
                "{spelling} ({range}) must be refused"
            );
        }
    }

    #[test]
    fn public_addresses_pass_in_every_spelling() {
        for spelling in PUBLIC {
            let ip: IpAddr = spelling.parse().unwrap();
            assert!(!is_forbidden_target(ip), "{spelling} must pass");
        }
    }

    #[test]
    fn local_names() {
        for name in ["localhost", "LOCALHOST.", "api.localhost", "a.b.Localhost"] {
            assert!(is_local_name(name), "{name}");
        }
        for name in ["example.com", "localhost.example.com", "notlocalhost"] {
            assert!(!is_local_name(name), "{name}");
        }
    }
}
