//! The HTTP plumbing shared by introspection and discovery: a safe default client and bounded reads.

use std::time::Duration;

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

/// Reads a response body, refusing more than `limit` bytes (a misbehaving server must not make us
/// buffer without bound).
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(format!("response body larger than {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the response failed: {e}"))?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!("response body larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
