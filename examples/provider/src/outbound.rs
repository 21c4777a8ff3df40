//! Where this server may connect when a client chooses the URL: the fetch of a Client ID
//! Metadata Document, the push of a security event to a stream's endpoint. Those URLs are
//! attacker-chosen, so connecting to them is a server-side request forgery risk.
//!
//! The host is resolved here and every address is checked before any connection; the connection
//! then goes to a checked address only (the resolver handed to `reqwest` is this check), so a DNS
//! answer that changes between check and connect (rebinding) cannot reach an internal address.
//! Refused: loopback, private (RFC 1918, unique local), link-local (including
//! `169.254.169.254`), unspecified, multicast, broadcast, shared address space, documentation,
//! benchmarking and reserved ranges, and IPv6 forms that embed an IPv4 address (IPv4-mapped,
//! IPv4-translated, well-known NAT64 `64:ff9b::/96`, 6to4) unless that address itself is allowed
//! (loopback only when mapped: a translated or NAT64 address is never this host's loopback); the
//! local-use NAT64 prefix `64:ff9b:1::/48`, where the IPv4 address's place depends on the
//! operator's prefix length, is refused whole. Only loopback can be allowed, by a development
//! flag. An IP literal in a URL is not resolved: callers check it with [`literal_allowed`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// True when this server may connect to `ip` (see the module docs); loopback only when
/// `allow_loopback`.
pub fn is_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => is_allowed_v4(v4, allow_loopback),
        IpAddr::V6(v6) => is_allowed_v6(v6, allow_loopback),
    }
}

fn is_allowed_v4(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return allow_loopback;
    }
    let [a, b, c, _] = ip.octets();
    let forbidden = ip.is_unspecified()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240; // reserved
    !forbidden
}

fn is_allowed_v6(ip: Ipv6Addr, allow_loopback: bool) -> bool {
    if ip.is_loopback() {
        return allow_loopback;
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_allowed_v4(v4, allow_loopback);
    }
    let segments = ip.segments();
    // The local-use NAT64 prefix (64:ff9b:1::/48, RFC 8215) reaches IPv4 addresses, but where
    // the IPv4 address sits depends on the operator's prefix length (RFC 6052 §2.2): refused.
    if segments[..3] == [0x64, 0xff9b, 1] {
        return false;
    }
    // The well-known NAT64 prefix (64:ff9b::/96), IPv4-translated addresses (::ffff:0:0:0/96,
    // RFC 2765) and 6to4 (2002::/16) reach IPv4 addresses through a translator or relay: judge
    // the embedded address, never as loopback (it is not this host's loopback).
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || segments[..6] == [0, 0, 0, 0, 0xffff, 0] {
        let [a, b] = segments[6].to_be_bytes();
        let [c, d] = segments[7].to_be_bytes();
        return is_allowed_v4(Ipv4Addr::new(a, b, c, d), false);
    }
    if segments[0] == 0x2002 {
        let [a, b] = segments[1].to_be_bytes();
        let [c, d] = segments[2].to_be_bytes();
        return is_allowed_v4(Ipv4Addr::new(a, b, c, d), false);
    }
    let forbidden = ip.is_unspecified()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || segments[..6] == [0, 0, 0, 0, 0, 0]; // IPv4-compatible (deprecated)
    !forbidden
}

/// A resolver for `reqwest`: resolves, then refuses the whole name if any address is not
/// allowed, so the connection can only go to checked addresses.
pub struct CheckedResolver {
    allow_loopback: bool,
}

impl CheckedResolver {
    /// A resolver allowing public addresses, and loopback when `allow_loopback`.
    pub fn new(allow_loopback: bool) -> Self {
        Self { allow_loopback }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the host resolves to an address this server does not connect to")]
struct ForbiddenAddress;

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() || addrs.iter().any(|a| !is_allowed(a.ip(), allow_loopback)) {
                return Err(Box::new(ForbiddenAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether the host of `url`, when it is an IP literal, is allowed (a name is checked by
/// [`CheckedResolver`] when connecting).
pub fn literal_allowed(url: &url::Url, allow_loopback: bool) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => is_allowed(IpAddr::V4(ip), allow_loopback),
        Some(url::Host::Ipv6(ip)) => is_allowed(IpAddr::V6(ip), allow_loopback),
        _ => true,
    }
}

/// Whether a request failed because [`CheckedResolver`] refused its host's addresses.
pub fn refused_by_address_policy(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<ForbiddenAddress>().is_some() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssrf_targets_are_refused() {
        for ip in [
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "127.0.0.1",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!is_allowed(ip, false), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_allowed(ip, false), "{ip} must be allowed");
        }
    }

    #[test]
    fn the_development_flag_allows_loopback_only() {
        for ip in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            assert!(is_allowed(ip.parse().unwrap(), true), "{ip}");
        }
        for ip in ["10.0.0.1", "169.254.169.254", "::ffff:10.0.0.1", "fe80::1"] {
            assert!(!is_allowed(ip.parse().unwrap(), true), "{ip}");
        }
    }

    /// NAT64 (well-known and local-use) and IPv4-translated addresses carrying loopback or the
    /// metadata address are refused, with and without the development flag; IPv4-mapped ones
    /// are judged as the IPv4 address they map.
    #[test]
    fn translated_ipv6_prefixes_are_judged_by_their_ipv4_address() {
        for allow_loopback in [false, true] {
            for ip in [
                // Well-known NAT64 prefix, 64:ff9b::/96.
                "64:ff9b::7f00:1",
                "64:ff9b::a9fe:a9fe",
                // Local-use NAT64 prefix, 64:ff9b:1::/48, as /96 and as /48 (RFC 6052 §2.2).
                "64:ff9b:1::7f00:1",
                "64:ff9b:1::a9fe:a9fe",
                "64:ff9b:1:7f00:1::",
                "64:ff9b:1:a9fe:a9:fe00::",
                "64:ff9b:1::5db8:d822",
                // IPv4-translated, ::ffff:0:0:0/96.
                "::ffff:0:7f00:1",
                "::ffff:0:a9fe:a9fe",
                // IPv4-mapped, ::ffff:0:0/96.
                "::ffff:a9fe:a9fe",
                "::ffff:10.0.0.1",
            ] {
                let ip: IpAddr = ip.parse().unwrap();
                assert!(
                    !is_allowed(ip, allow_loopback),
                    "{ip} must be refused (allow_loopback: {allow_loopback})"
                );
            }
            // A public IPv4 address behind the well-known prefix or translated stays reachable.
            for ip in [
                "64:ff9b::5db8:d822",
                "::ffff:0:5db8:d822",
                "::ffff:5db8:d822",
            ] {
                let ip: IpAddr = ip.parse().unwrap();
                assert!(is_allowed(ip, allow_loopback), "{ip} must be allowed");
            }
        }
        // IPv4-mapped loopback is this host's loopback: only the development flag opens it.
        assert!(!is_allowed("::ffff:127.0.0.1".parse().unwrap(), false));
        assert!(is_allowed("::ffff:127.0.0.1".parse().unwrap(), true));
    }

    #[test]
    fn literals_are_judged_and_names_left_to_the_resolver() {
        let url = |u: &str| url::Url::parse(u).unwrap();
        assert!(!literal_allowed(&url("https://10.0.0.1/x"), false));
        assert!(!literal_allowed(&url("https://[fd00::1]/x"), true));
        assert!(!literal_allowed(&url("https://127.0.0.1/x"), false));
        assert!(literal_allowed(&url("https://127.0.0.1/x"), true));
        assert!(literal_allowed(&url("https://93.184.216.34/x"), false));
        assert!(literal_allowed(&url("https://internal.example/x"), false));
    }
}
