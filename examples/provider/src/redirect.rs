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
//! Matching is exact string comparison (RFC 9700 §4.1.3), with one exception: for loopback `http`
//! URIs the port is ignored (RFC 8252 §7.3, native apps bind an ephemeral port), while everything
//! else must still be identical character for character. Nothing is normalised before comparing:
//! no case folding, no numeric-IP or path normalisation, no whitespace trimming, so a URI that a
//! URL parser would consider equivalent (`http://127.1/cb`, `http://LOCALHOST/cb`,
//! `http://127.0.0.1/a/../cb`) does not match.

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
            // `Url` reads `https:///cb` as host `cb`; the string itself must name an authority.
            if url.host().is_none() || !has_authority(uri) {
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

/// The OpenID Connect Dynamic Registration §2 `application_type`, which narrows the redirect URIs
/// a client may register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplicationType {
    /// A client running on a web server: `https` redirect URIs on a host other than a loopback
    /// one (OIDC: web clients must not use `localhost`), nothing else.
    Web,
    /// An app on the user's device (RFC 8252): loopback `http` (any port), a reverse-domain
    /// private-use scheme, or `https` (a claimed URL).
    Native,
}

impl ApplicationType {
    /// Parses the registration value; unknown values are `None` (the caller refuses them).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "web" => Some(Self::Web),
            "native" => Some(Self::Native),
            _ => None,
        }
    }

    /// The registration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Native => "native",
        }
    }

    /// The type a registration without `application_type` gets: `web` (the OIDC default) when
    /// every URI satisfies the web rules, otherwise `native`, because RFC 7591 clients (most
    /// MCP clients among them) send no `application_type` yet register loopback URIs.
    pub fn inferred(uris: &[String]) -> Self {
        if uris.iter().all(|u| validate_for(u, Self::Web).is_ok()) {
            Self::Web
        } else {
            Self::Native
        }
    }
}

/// Why `uri` cannot be registered by a client of type `app`: the general rules
/// ([`validate_for_registration`]) and the type's own (see [`ApplicationType`]).
pub fn validate_for(uri: &str, app: ApplicationType) -> Result<(), &'static str> {
    validate_for_registration(uri)?;
    if app == ApplicationType::Native {
        return Ok(());
    }
    let url = Url::parse(uri).map_err(|_| "redirect URI is not an absolute URI")?;
    if url.scheme() != "https" {
        return Err("a web client's redirect URIs must be https");
    }
    if is_loopback(&url) {
        return Err("a web client's redirect URIs must not use a loopback host");
    }
    Ok(())
}

/// True when the text after `scheme:` starts with `//` and a non-empty authority.
fn has_authority(uri: &str) -> bool {
    uri.split_once(':')
        .and_then(|(_, rest)| rest.strip_prefix("//"))
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with(['/', '?', '#']))
}

/// True when `requested` matches one of `registered` (see the module docs).
pub fn matches(registered: &[String], requested: &str) -> bool {
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    let Some(requested) = without_port(requested) else {
        return false;
    };
    registered
        .iter()
        .filter(|r| parse_loopback(r).is_some())
        .filter_map(|r| without_port(r))
        .any(|r| r == requested)
}

/// `http://host[:port]rest` as the string `http://host` + `rest`, or `None` when `uri` is not
/// of that shape (the port, when present, must be 1 to 5 digits). Purely textual.
fn without_port(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("http://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // The port is what follows the last `:` after any `]` of an IPv6 literal.
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    let host = match authority[host_end..].rfind(':') {
        Some(i) => {
            let port = &authority[host_end + i + 1..];
            if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            &authority[..host_end + i]
        }
        None => authority,
    };
    Some(format!("http://{host}{tail}"))
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
        assert!(validate_for_registration("https:///cb").is_err());
        assert!(validate_for_registration("https:/cb").is_err());
    }

    #[test]
    fn nothing_is_normalised_before_comparing() {
        let reg = vec![
            "http://127.0.0.1/callback".to_owned(),
            "http://[::1]/cb".to_owned(),
        ];
        assert!(matches(&reg, "http://[::1]:4000/cb"));
        for uri in [
            "http://127.1/callback",
            "http://127.0.0.1:0053123/callback",
            "http://127.0.0.1:/callback",
            "http://127.0.0.1/a/../callback",
            "http://127.0.0.1/Callback",
            "HTTP://127.0.0.1/callback",
            " http://127.0.0.1/callback",
            "http://127.0.0.1/callback ",
            "http://127.0.0.1/%63allback",
            "http://[0:0:0:0:0:0:0:1]:4000/cb",
        ] {
            assert!(!matches(&reg, uri), "{uri}");
        }
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
