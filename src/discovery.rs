//! RFC 8414 authorization server metadata discovery, to find the introspection endpoint or the
//! key set (`jwks_uri`) of an issuer.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::ConfigError;
use crate::remote::{read_capped, require_tls};

/// The members of the metadata document discovery needs.
#[derive(Debug, Deserialize)]
struct Metadata {
    issuer: String,
    introspection_endpoint: Option<String>,
    jwks_uri: Option<String>,
}

/// An endpoint that discovery can look up in the metadata document.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Endpoint {
    /// `introspection_endpoint` (RFC 8414 §2).
    Introspection,
    /// `jwks_uri` (RFC 8414 §2), where the issuer's signing keys are published.
    Jwks,
    /// `jwks_uri` of a Shared Signals transmitter (SSF 1.0 §7.1), whose keys sign its events.
    #[cfg_attr(not(feature = "ssf"), allow(dead_code))]
    TransmitterJwks,
}

impl Endpoint {
    fn member(self) -> &'static str {
        match self {
            Self::Introspection => "introspection_endpoint",
            Self::Jwks | Self::TransmitterJwks => "jwks_uri",
        }
    }

    fn pick(self, metadata: Metadata) -> Option<String> {
        match self {
            Self::Introspection => metadata.introspection_endpoint,
            Self::Jwks | Self::TransmitterJwks => metadata.jwks_uri,
        }
    }

    /// Where the document naming this endpoint is published for `issuer`.
    fn metadata_urls(self, issuer: &Url) -> Vec<Url> {
        match self {
            Self::Introspection | Self::Jwks => metadata_urls(issuer),
            Self::TransmitterJwks => {
                // SSF 1.0 §7.2: the well-known segment goes before the issuer's path, as in
                // RFC 8414.
                let mut url = issuer.clone();
                let path = issuer.path().trim_end_matches('/');
                url.set_path(&format!("/.well-known/ssf-configuration{path}"));
                vec![url]
            }
        }
    }
}

/// Where RFC 8414 §3.1 puts the metadata of `issuer`, and the OpenID Connect Discovery location that
/// servers such as Keycloak serve, in the order they are tried.
fn metadata_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let mut urls = Vec::with_capacity(2);
    let mut rfc8414 = issuer.clone();
    rfc8414.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    urls.push(rfc8414);
    let mut oidc = issuer.clone();
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    urls.push(oidc);
    urls
}

/// Fetches the metadata of `issuer` and returns the `endpoint` it names.
///
/// The document's `issuer` must equal the configured one exactly (RFC 8414 §3.3): otherwise an
/// attacker able to serve a document could point us at their own introspection endpoint or keys.
pub(crate) async fn find_endpoint(
    endpoint: Endpoint,
    client: &reqwest::Client,
    issuer: &str,
    timeout: Duration,
    limit: usize,
    allow_http: bool,
) -> Result<Url, ConfigError> {
    let parsed = Url::parse(issuer).map_err(|e| ConfigError::InvalidUrl {
        url: issuer.to_owned(),
        reason: e.to_string(),
    })?;
    // Whoever answers discovery picks the endpoint we send tokens and credentials to.
    require_tls(&parsed, allow_http)?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(ConfigError::InvalidUrl {
            url: issuer.to_owned(),
            reason: "an issuer has no query or fragment".into(),
        });
    }
    let mut failures = Vec::new();
    for url in endpoint.metadata_urls(&parsed) {
        match fetch(client, url.clone(), timeout, limit).await {
            Ok(metadata) => {
                if metadata.issuer != issuer {
                    return Err(ConfigError::Discovery(format!(
                        "{url} names issuer {:?}, expected {issuer:?}",
                        metadata.issuer
                    )));
                }
                let found = endpoint.pick(metadata).ok_or_else(|| {
                    ConfigError::Discovery(format!("{url} has no {}", endpoint.member()))
                })?;
                let found = Url::parse(&found).map_err(|e| ConfigError::InvalidUrl {
                    url: found,
                    reason: e.to_string(),
                })?;
                require_tls(&found, allow_http)?;
                return Ok(found);
            }
            Err(reason) => failures.push(format!("{url}: {reason}")),
        }
    }
    Err(ConfigError::Discovery(failures.join("; ")))
}

async fn fetch(
    client: &reqwest::Client,
    url: Url,
    timeout: Duration,
    limit: usize,
) -> Result<Metadata, String> {
    let response = client
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let body = read_capped(response, limit)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| format!("not a metadata document: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmitter_metadata_location() {
        let urls = Endpoint::TransmitterJwks
            .metadata_urls(&Url::parse("https://tr.example/tenant/1").unwrap());
        assert_eq!(
            urls[0].as_str(),
            "https://tr.example/.well-known/ssf-configuration/tenant/1"
        );
    }

    #[test]
    fn well_known_locations() {
        let urls = metadata_urls(&Url::parse("https://as.example/realms/demo").unwrap());
        assert_eq!(
            urls[0].as_str(),
            "https://as.example/.well-known/oauth-authorization-server/realms/demo"
        );
        assert_eq!(
            urls[1].as_str(),
            "https://as.example/realms/demo/.well-known/openid-configuration"
        );
        let urls = metadata_urls(&Url::parse("https://as.example").unwrap());
        assert_eq!(
            urls[0].as_str(),
            "https://as.example/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            urls[1].as_str(),
            "https://as.example/.well-known/openid-configuration"
        );
    }
}
