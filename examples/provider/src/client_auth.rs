//! Client authentication at the token, introspection and revocation endpoints
//! (RFC 6749 §2.3.1, RFC 7591 §2 `token_endpoint_auth_method`).
//!
//! Confidential clients may use either `client_secret_basic` or `client_secret_post` whatever they
//! registered (both are equally strong; being lenient here helps resource servers whose HTTP
//! library picks one). Public clients (`none`) present only `client_id`. Using two methods at once
//! is refused. Secrets are compared as hashes in constant time.
//!
//! The three endpoints start the same way, with [`authenticated_form`]: parse the form, find the
//! credentials, authenticate the client.

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::OAuthError;
use crate::model::Client;
use crate::params::{self, Params};
use crate::storage::Storage;
use crate::tokens::verify_secret;

/// Credentials found in a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials {
    /// `Authorization: Basic`.
    Basic {
        /// Client id.
        client_id: String,
        /// Client secret.
        secret: String,
    },
    /// `client_id` + `client_secret` in the body.
    Post {
        /// Client id.
        client_id: String,
        /// Client secret.
        secret: String,
    },
    /// `client_id` only (public client).
    PublicId(String),
    /// Nothing.
    Missing,
}

impl Credentials {
    /// True when a secret was presented.
    pub fn has_secret(&self) -> bool {
        matches!(self, Credentials::Basic { .. } | Credentials::Post { .. })
    }
}

/// Extracts credentials. Malformed `Authorization` headers are `invalid_client`; several methods at
/// once are `invalid_request`.
pub fn extract(headers: &HeaderMap, params: &Params) -> Result<Credentials, OAuthError> {
    if params.is_repeated("client_id") || params.is_repeated("client_secret") {
        return Err(OAuthError::invalid_request("repeated client credentials"));
    }
    let mut auth_headers = headers.get_all(header::AUTHORIZATION).iter();
    if let Some(value) = auth_headers.next() {
        if auth_headers.next().is_some() {
            return Err(OAuthError::invalid_request("repeated Authorization header"));
        }
        if params.get("client_secret").is_some() {
            return Err(OAuthError::invalid_request(
                "more than one client authentication method",
            ));
        }
        let (client_id, secret) =
            parse_basic(value.to_str().ok()).ok_or_else(OAuthError::invalid_client)?;
        if params.get("client_id").is_some_and(|id| id != client_id) {
            return Err(OAuthError::invalid_client());
        }
        return Ok(Credentials::Basic { client_id, secret });
    }
    match (params.get("client_id"), params.get("client_secret")) {
        (Some(id), Some(secret)) => Ok(Credentials::Post {
            client_id: id.to_owned(),
            secret: secret.to_owned(),
        }),
        (Some(id), None) => Ok(Credentials::PublicId(id.to_owned())),
        (None, Some(_)) => Err(OAuthError::invalid_client()),
        (None, None) => Ok(Credentials::Missing),
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` → (id, secret).
fn parse_basic(value: Option<&str>) -> Option<(String, String)> {
    let value = value?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let id = form_decode(id)?;
    let secret = form_decode(secret)?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

/// Reverses `application/x-www-form-urlencoded` encoding of one value (RFC 6749 §2.3.1).
fn form_decode(s: &str) -> Option<String> {
    let plus_decoded = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Which clients an endpoint accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// Confidential clients (with a valid secret) and public clients (id only).
    Any,
    /// Only confidential clients with a valid secret (introspection).
    ConfidentialOnly,
}

/// Authenticates the presented credentials. Every failure is the same `invalid_client`.
pub async fn authenticate(
    storage: &dyn Storage,
    credentials: Credentials,
    accept: Accept,
) -> Result<Client, OAuthError> {
    let (client_id, secret) = match credentials {
        Credentials::Basic { client_id, secret } | Credentials::Post { client_id, secret } => {
            (client_id, Some(secret))
        }
        Credentials::PublicId(client_id) if accept == Accept::Any => (client_id, None),
        Credentials::PublicId(_) | Credentials::Missing => return Err(OAuthError::invalid_client()),
    };
    let client = storage
        .get_client(&client_id)
        .await?
        .ok_or_else(OAuthError::invalid_client)?;
    let ok = match (&client.secret_hash, secret) {
        (Some(hash), Some(secret)) => verify_secret(&secret, hash),
        // A public client must not present a secret, and a confidential one must.
        (None, None) => true,
        _ => false,
    };
    if ok {
        Ok(client)
    } else {
        Err(OAuthError::invalid_client())
    }
}

/// A form request from an authenticated client.
#[derive(Debug)]
pub struct ClientForm {
    /// The form's parameters.
    pub params: Params,
    /// The client its credentials authenticate.
    pub client: Client,
}

impl ClientForm {
    /// The `token` parameter of revocation (RFC 7009 §2.1) and introspection (RFC 7662 §2.1).
    pub fn token(&self) -> Result<&str, OAuthError> {
        if self.params.is_repeated("token") {
            return Err(OAuthError::invalid_request("parameter token is repeated"));
        }
        self.params
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is required"))
    }
}

/// Parses a form request and authenticates its client: the preamble of the token, revocation
/// and introspection endpoints.
///
/// A body that is not a form is `invalid_request`. Where public clients are accepted (token,
/// revocation) that is checked first. Where only confidential clients are (introspection,
/// which RFC 7662 §2.1 protects), authentication comes first: a caller without valid
/// credentials gets `invalid_client` whatever it sent (credentials in a body that is not a form
/// are not read).
pub async fn authenticated_form(
    storage: &dyn Storage,
    headers: &HeaderMap,
    body: &[u8],
    accept: Accept,
) -> Result<ClientForm, OAuthError> {
    let form = params::is_form(headers);
    let not_form = || OAuthError::invalid_request("body must be application/x-www-form-urlencoded");
    if !form && accept == Accept::Any {
        return Err(not_form());
    }
    let params = Params::parse(if form { body } else { b"" });
    let client = authenticate(storage, extract(headers, &params)?, accept).await?;
    if !form {
        return Err(not_form());
    }
    Ok(ClientForm { params, client })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%20client:s%3Acret+x"));
        assert_eq!(
            parse_basic(Some(&header)),
            Some(("my client".to_owned(), "s:cret x".to_owned()))
        );
        assert_eq!(parse_basic(Some("Bearer abc")), None);
        assert_eq!(parse_basic(Some("Basic !!!")), None);
    }
}
