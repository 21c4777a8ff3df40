//! The HTTP plumbing shared by every call to an authorization server (introspection, discovery,
//! key sets): a safe default client, the https rule and bounded reads.

use std::net::IpAddr;
use std::time::Duration;

use url::{Host, Url};

use crate::ConfigError;

/// Default time allowed to establish a connection to the authorization server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time allowed for a whole request to the authorization server, response body included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on the size of an authorization server's response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Builds the client used when the caller does not bring one: timeouts on, redirects off (an
/// introspection endpoint that redirects is misconfigured, and following it could send our
/// credentials elsewhere), rustls with the ring provider.
pub(crate) fn default_client(connect_timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    // reqwest's `rustls-no-provider` needs a process-wide provider; install ring unless the
    // application already chose one.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a provider is then in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(ConfigError::HttpClient)
}

/// Refuses a URL to the authorization server that is not `https`, unless it is `http` to a loopback
/// host (`127.0.0.0/8`, `::1`, `localhost`) or `allow_http` (RFC 7662 §4 requires TLS).
pub(crate) fn require_tls(url: &Url, allow_http: bool) -> Result<(), ConfigError> {
    let refuse = |reason: &str| {
        Err(ConfigError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_owned(),
        })
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http || is_loopback(url) => Ok(()),
        "http" => refuse(
            "the authorization server must be reached over https unless it is on loopback \
             (RFC 7662 §4); use allow_insecure_http(true) to opt out",
        ),
        _ => refuse("the authorization server must be reached over https"),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Why a request to the authorization server got no answer: a timeout, or a connection that could
/// not be made or broke. reqwest's errors name the URL, never a request body, so they are kept as
/// the source.
pub(crate) fn request_failed(what: &str, error: reqwest::Error) -> crate::Unavailable {
    let cause = if error.is_timeout() {
        crate::UnavailableCause::Timeout
    } else {
        crate::UnavailableCause::Unreachable
    };
    crate::Unavailable::new(cause, format!("{what} failed: {error}")).caused_by(error)
}

/// Why a response body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// More than the limit: a misbehaving server.
    #[error("response body larger than {0} bytes")]
    TooLarge(usize),
    /// The connection failed while the body was read.
    #[error("reading the response failed: {0}")]
    Read(#[source] reqwest::Error),
}

impl From<BodyError> for crate::Unavailable {
    fn from(error: BodyError) -> Self {
        crate::Unavailable::new(error.cause(), error.to_string()).caused_by(error)
    }
}

impl BodyError {
    /// What this failure says about the server's availability.
    pub(crate) fn cause(&self) -> crate::UnavailableCause {
        match self {
            Self::TooLarge(_) => crate::UnavailableCause::InvalidResponse,
            Self::Read(_) => crate::UnavailableCause::Unreachable,
        }
    }
}

/// Reads a response body, refusing more than `limit` bytes (a misbehaving server must not make us
/// buffer without bound).
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(BodyError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_required_except_on_loopback_or_opt_in() {
        let check = |url: &str, allow| require_tls(&Url::parse(url).unwrap(), allow).is_ok();
        for ok in [
            "https://as.example/introspect",
            "http://127.0.0.1:8080/introspect",
            "http://127.8.9.10/introspect",
            "http://[::1]:9/introspect",
            "http://localhost:9/introspect",
            "http://LOCALHOST/introspect",
        ] {
            assert!(check(ok, false), "{ok}");
        }
        for refused in [
            "http://as.example/introspect",
            "http://10.0.0.1/introspect",
            "http://[::ffff:127.0.0.1]/introspect",
            "http://localhost.evil.example/introspect",
            "http://127.0.0.1.nip.io/introspect",
            "ftp://127.0.0.1/introspect",
        ] {
            assert!(!check(refused, false), "{refused}");
        }
        assert!(check("http://as.internal/introspect", true));
        assert!(!check("ftp://as.internal/introspect", true));
    }
}
