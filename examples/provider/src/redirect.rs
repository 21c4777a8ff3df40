//! Redirect URI rules: what may be registered (RFC 7591 / RFC 8252) and how an authorization
//! request's `redirect_uri` is matched against the registered ones.
//!
//! Registration accepts absolute URIs without fragment and without user info that are either
//! - `https://…`,
//! - `http://` on a loopback host (`127.0.0.0/8`, `[::1]`, `localhost`) for native apps
//!   (RFC 8252 §7.3), or
//! - a private-use scheme containing a dot, i.e. a reverse domain name such as
//!   `com.example.app:/callback` (RFC 8252 §7.1). Requiring the dot rules out `javascript:`,
//!   `data:`, `file:` and other dangerous schemes by construction.
//!
//! Matching is exact string comparison, with one exception: for loopback `http` URIs the port is
//! ignored (RFC 8252 §7.3, native apps bind an ephemeral port), while scheme, host literal, path
//! and query must still be identical.

use url::{Host, Url};

/// Longest accepted redirect URI.
pub const MAX_LEN: usize = 2000;

/// Why a redirect URI cannot be registered.
pub fn validate_for_registration(uri: &str) -> Result<(), &'static str> {
    if uri.len() > MAX_LEN {
        return Err("redirect URI is too long");
    }
    let url = Url::parse(uri).map_err(|_| "redirect URI is not an absolute URI")?;
    if url.fragment().is_some() || uri.contains('#') {
        return Err("redirect URI must not contain a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("redirect URI must not contain user information");
    }
    match url.scheme() {
        "https" => {
            if url.host().is_none() {
                return Err("https redirect URI needs a host");
            }
            Ok(())
        }
        "http" => {
            if is_loopback(&url) {
                Ok(())
            } else {
                Err("http redirect URIs are only allowed for loopback hosts")
            }
        }
        scheme if scheme.contains('.') => Ok(()),
        _ => Err(
            "redirect URI scheme must be https, loopback http or a reverse-domain private-use scheme",
        ),
    }
}

/// True when `requested` matches one of `registered` (see the module docs).
pub fn matches(registered: &[String], requested: &str) -> bool {
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    let Some(req) = parse_loopback(requested) else {
        return false;
    };
    registered
        .iter()
        .filter_map(|r| parse_loopback(r))
        .any(|reg| {
            reg.host_str() == req.host_str()
                && reg.path() == req.path()
                && reg.query() == req.query()
        })
}

/// Parses a URI that is a plain loopback `http` URI without fragment or user info.
fn parse_loopback(uri: &str) -> Option<Url> {
    if uri.contains('#') {
        return None;
    }
    let url = Url::parse(uri).ok()?;
    (url.scheme() == "http"
        && is_loopback(&url)
        && url.username().is_empty()
        && url.password().is_none())
    .then_some(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_rules() {
        assert!(validate_for_registration("https://app.example/cb").is_ok());
        assert!(validate_for_registration("http://127.0.0.1/cb").is_ok());
        assert!(validate_for_registration("http://[::1]:8080/cb").is_ok());
        assert!(validate_for_registration("http://localhost/cb").is_ok());
        assert!(validate_for_registration("com.example.app:/cb").is_ok());
        assert!(validate_for_registration("http://app.example/cb").is_err());
        assert!(validate_for_registration("https://app.example/cb#x").is_err());
        assert!(validate_for_registration("javascript:alert(1)").is_err());
        assert!(validate_for_registration("/relative").is_err());
        assert!(validate_for_registration("https://user:pw@app.example/cb").is_err());
    }

    #[test]
    fn loopback_port_may_vary_but_nothing_else() {
        let reg = vec![
            "http://127.0.0.1/callback".to_owned(),
            "https://app.example/cb".to_owned(),
        ];
        assert!(matches(&reg, "http://127.0.0.1:53123/callback"));
        assert!(matches(&reg, "http://127.0.0.1/callback"));
        assert!(!matches(&reg, "http://127.0.0.1:53123/other"));
        assert!(!matches(&reg, "http://localhost:53123/callback"));
        assert!(!matches(&reg, "http://127.0.0.1:5/callback?x=1"));
        assert!(!matches(&reg, "https://app.example/cb/"));
        assert!(!matches(&reg, "https://app.example:443/cb?x"));
        assert!(matches(&reg, "https://app.example/cb"));
    }
}
