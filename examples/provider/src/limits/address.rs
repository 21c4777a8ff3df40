//! The client address that per-address limits are keyed by.

use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

/// The TCP peer's address, reduced to what one party usually controls: the IPv4 address, or the
/// IPv6 /64 prefix (a single host is commonly given a whole /64, so keying by the full IPv6
/// address would let it rotate through 2^64 identities).
///
/// It comes from axum's [`ConnectInfo`], i.e. the socket, never from a header such as
/// `X-Forwarded-For` that the client writes itself. Behind a reverse proxy every request
/// therefore carries the proxy's address and all clients share one budget. When the router is
/// served without connect info (e.g. in a unit test), every request falls into one shared
/// `unknown` bucket: the limits still apply, to everyone together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(Option<IpAddr>);

impl ClientAddr {
    /// The key of a peer address.
    pub fn from_ip(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
            v4 => v4,
        };
        Self(Some(ip))
    }

    /// The shared bucket of requests whose peer address is unknown.
    pub const fn unknown() -> Self {
        Self(None)
    }
}

impl fmt::Display for ClientAddr {
    /// The stored form of the key (`203.0.113.7`, `2001:db8:1:2::/64`, or `unknown`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(IpAddr::V4(v4)) => write!(f, "{v4}"),
            Some(IpAddr::V6(v6)) => write!(f, "{v6}/64"),
            None => f.write_str("unknown"),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(Self::unknown(), |ConnectInfo(peer)| {
                Self::from_ip(peer.ip())
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_are_keyed_by_their_64_prefix() {
        let a = ClientAddr::from_ip("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = ClientAddr::from_ip("2001:db8:1:2:bbbb::9".parse().unwrap());
        let other = ClientAddr::from_ip("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        let mapped = ClientAddr::from_ip("::ffff:192.0.2.1".parse().unwrap());
        assert_eq!(mapped.to_string(), "192.0.2.1");
        assert_eq!(ClientAddr::unknown().to_string(), "unknown");
    }
}
