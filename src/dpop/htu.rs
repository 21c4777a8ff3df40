//! The URL a proof is for (`htu`) and the URL of the request it came with, compared after the
//! normalization RFC 9449 §4.3 asks for: RFC 3986 §6.2.2 syntax-based (scheme and host case,
//! percent-encoding, dot segments) and §6.2.3 scheme-based (default port, empty path), with the
//! query and fragment ignored. The WHATWG URL parser does all of it but one step, which is done
//! here: percent-encoded unreserved characters are decoded (`%7E` is `~`) and hexadecimal digits
//! upper-cased (`%2f` is `%2F`).

use std::borrow::Cow;

use url::Url;

use crate::ConfigError;

/// The public origins a resource is reached under (`https://api.example.com`): what a request's
/// path is appended to before it is compared with a proof's `htu`.
///
/// A server cannot tell its public URL from a request: behind a proxy that terminates TLS it sees
/// `http`, an internal host name, another port. Trusting the `Host` header instead would let a
/// proof made for one server pass at another. So the origins are configured.
#[derive(Debug, Clone)]
pub(crate) struct Origins(Vec<Url>);

impl Origins {
    pub(crate) fn new(origins: &[String]) -> Result<Self, ConfigError> {
        let mut parsed = Vec::with_capacity(origins.len());
        for origin in origins {
            let invalid = |reason: &str| ConfigError::InvalidUrl {
                url: origin.clone(),
                reason: reason.into(),
            };
            let url = Url::parse(origin).map_err(|e| invalid(&e.to_string()))?;
            if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
                return Err(invalid("an origin is an http(s) scheme and a host"));
            }
            if url.path() != "/"
                || url.query().is_some()
                || url.fragment().is_some()
                || !url.username().is_empty()
                || url.password().is_some()
            {
                return Err(invalid(
                    "an origin has no path, query, fragment or credentials (e.g. https://api.example.com)",
                ));
            }
            parsed.push(url);
        }
        if parsed.is_empty() {
            return Err(ConfigError::Missing {
                setting: "origin",
                why: "a proof's htu is compared with the request's public URL, which a server \
                      behind a proxy cannot see",
            });
        }
        Ok(Self(parsed))
    }

    /// Whether the proof's `htu` names the request whose path (and query, ignored) is
    /// `path_and_query` under one of the origins.
    pub(crate) fn matches(&self, htu: &str, path_and_query: &str) -> bool {
        let Ok(claimed) = Url::parse(htu) else {
            return false;
        };
        let path = path_and_query.split('?').next().unwrap_or_default();
        self.0.iter().any(|origin| {
            let mut expected = origin.clone();
            // Origins have the path "/"; a request's path starts with "/", or is empty or "*".
            expected.set_path(path);
            same_resource(&claimed, &expected)
        })
    }
}

/// Whether two URLs name the same resource, queries and fragments aside.
pub(crate) fn same_resource(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
        && a.username() == b.username()
        && a.password() == b.password()
        && normalized_percent_encoding(a.path()) == normalized_percent_encoding(b.path())
}

/// `path` with percent-encoded unreserved characters decoded and the other escapes' hex digits
/// upper-cased (RFC 3986 §6.2.2.1, §6.2.2.2).
fn normalized_percent_encoding(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| {
                let hex = std::str::from_utf8(hex).ok()?;
                u8::from_str_radix(hex, 16)
                    .ok()
                    .filter(|_| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            });
        match escaped {
            Some(b) if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                out.push(char::from(b));
                i += 3;
            }
            Some(b) => {
                out.push_str(&format!("%{b:02X}"));
                i += 3;
            }
            None => {
                // Not an escape: copied as is (the parser already encoded what needs it).
                let c = path[i..].chars().next().expect("inside the string");
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> Origins {
        Origins::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn normalization_of_scheme_host_port_and_path() {
        let o = origins(&["https://api.example.com"]);
        for htu in [
            "https://api.example.com/mcp",
            "HTTPS://API.Example.COM/mcp",
            "https://api.example.com:443/mcp",
            "https://api.example.com/mcp?x=1",
            "https://api.example.com/mcp#f",
            "https://api.example.com/a/../mcp",
            "https://api.example.com/%6Dcp",
            "https://api.example.com/%6dcp",
        ] {
            assert!(o.matches(htu, "/mcp?q=2"), "{htu}");
        }
        for htu in [
            "http://api.example.com/mcp",
            "https://api.example.com:8443/mcp",
            "https://evil.example.com/mcp",
            "https://api.example.com/mcp/",
            "https://api.example.com/MCP",
            "https://user@api.example.com/mcp",
            "https://api.example.com",
            "/mcp",
            "not a url",
            "",
        ] {
            assert!(!o.matches(htu, "/mcp"), "{htu}");
        }
    }

    #[test]
    fn escapes_of_reserved_characters_stay_escapes() {
        let o = origins(&["https://api.example.com"]);
        assert!(o.matches("https://api.example.com/a%2fb", "/a%2Fb"));
        assert!(!o.matches("https://api.example.com/a/b", "/a%2Fb"));
        assert!(o.matches("https://api.example.com/caf%C3%A9", "/café"));
    }

    #[test]
    fn several_origins_and_the_root_path() {
        let o = origins(&["https://a.example", "http://127.0.0.1:8080"]);
        assert!(o.matches("https://a.example/", "/"));
        assert!(o.matches("https://a.example", "/"));
        assert!(o.matches("http://127.0.0.1:8080/x", "/x"));
        assert!(!o.matches("http://127.0.0.1:8081/x", "/x"));
        // A path that looks like an authority stays a path.
        assert!(!o.matches("https://evil.example/x", "//evil.example/x"));
        assert!(o.matches("https://a.example//evil.example/x", "//evil.example/x"));
    }

    #[test]
    fn configuration_mistakes_are_refused() {
        for bad in [
            "api.example.com",
            "ftp://api.example.com",
            "https://api.example.com/mcp",
            "https://api.example.com?x",
            "https://u:p@api.example.com",
        ] {
            assert!(Origins::new(&[bad.to_owned()]).is_err(), "{bad}");
        }
        assert!(matches!(
            Origins::new(&[]),
            Err(ConfigError::Missing {
                setting: "origin",
                ..
            })
        ));
    }
}
