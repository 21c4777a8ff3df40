//! The client side of the full flow, as an MCP client does it: discovery from the 401 challenge,
//! RFC 9728 and RFC 8414 metadata, RFC 7591 registration, authorization with PKCE through the
//! real login and consent forms, token redemption, refresh and revocation.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower_introspect::dpop::{DPOP, DPOP_NONCE, DpopKey};
use url::Url;

/// The redirect URI the demo client registers (loopback: the port may vary, nothing listens).
pub const REDIRECT_URI: &str = "http://127.0.0.1:8976/callback";

/// What the client learned from the resource server and its authorization server.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// `resource_metadata` from the 401 challenge.
    pub resource_metadata_url: String,
    /// The resource identifier (RFC 9728 `resource`), sent as RFC 8707 `resource`.
    pub resource: String,
    /// The authorization server's issuer.
    pub issuer: String,
    /// RFC 8414 endpoints.
    pub authorization_endpoint: String,
    /// Token endpoint.
    pub token_endpoint: String,
    /// Registration endpoint.
    pub registration_endpoint: String,
    /// Revocation endpoint.
    pub revocation_endpoint: String,
    /// Whether the authorization server accepts a Client ID Metadata Document URL as `client_id`
    /// (its metadata's `client_id_metadata_document_supported`), so that no registration is
    /// needed.
    pub client_id_metadata_document_supported: bool,
}

/// A token response.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    /// The access token.
    pub access_token: String,
    /// The refresh token, if issued.
    pub refresh_token: Option<String>,
    /// Granted scope.
    #[serde(default)]
    pub scope: String,
    /// Lifetime in seconds.
    pub expires_in: Option<u64>,
    /// `Bearer`, or `DPoP` for a token bound to the key of the request's proof (RFC 9449).
    #[serde(default)]
    pub token_type: String,
    /// The last `DPoP-Nonce` the token endpoint handed out (after a `use_dpop_nonce` answer),
    /// if any: not part of the response body.
    #[serde(skip)]
    pub dpop_nonce: Option<String>,
}

/// An OAuth error response of the token endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct OAuthError {
    /// The `error` code.
    pub error: String,
}

fn http_client(cookies: bool) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(cookies)
        .build()?)
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Reads the value of parameter `name` from a `WWW-Authenticate: Bearer …` challenge.
pub fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &challenge[start..];
    let mut value = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?),
            '"' => return Some(value),
            c => value.push(c),
        }
    }
    None
}

/// Steps 1–3: provoke the 401, follow `resource_metadata`, fetch the AS metadata.
pub async fn discover(mcp_url: &str) -> anyhow::Result<Discovery> {
    let http = http_client(false)?;
    let response = http
        .post(mcp_url)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "get_user_profile", "arguments": {}}}))
        .send()
        .await?;
    ensure!(
        response.status() == 401,
        "expected a 401 challenge, got {}",
        response.status()
    );
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .context("401 without WWW-Authenticate")?
        .to_owned();
    let resource_metadata_url = challenge_param(&challenge, "resource_metadata")
        .context("challenge without resource_metadata")?;
    let metadata: Value = http
        .get(&resource_metadata_url)
        .send()
        .await?
        .json()
        .await?;
    let resource = metadata["resource"]
        .as_str()
        .context("metadata without resource")?
        .to_owned();
    ensure!(
        resource == mcp_url,
        "metadata names resource {resource}, expected {mcp_url}"
    );
    let issuer = metadata["authorization_servers"][0]
        .as_str()
        .context("metadata without authorization_servers")?
        .to_owned();
    let as_metadata: Value = http
        .get(format!("{issuer}/.well-known/oauth-authorization-server"))
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        as_metadata["issuer"] == issuer.as_str(),
        "AS metadata issuer mismatch"
    );
    ensure!(
        as_metadata["code_challenge_methods_supported"]
            .as_array()
            .is_some_and(|m| m.iter().any(|v| v == "S256")),
        "the AS does not advertise PKCE S256"
    );
    let endpoint = |name: &str| -> anyhow::Result<String> {
        Ok(as_metadata[name]
            .as_str()
            .with_context(|| format!("AS metadata without {name}"))?
            .to_owned())
    };
    Ok(Discovery {
        resource_metadata_url,
        resource,
        authorization_endpoint: endpoint("authorization_endpoint")?,
        token_endpoint: endpoint("token_endpoint")?,
        registration_endpoint: endpoint("registration_endpoint")?,
        revocation_endpoint: endpoint("revocation_endpoint")?,
        client_id_metadata_document_supported: as_metadata["client_id_metadata_document_supported"]
            == true,
        issuer,
    })
}

/// Step 4: dynamic client registration of a public client; returns its `client_id`.
pub async fn register(discovery: &Discovery, name: &str) -> anyhow::Result<String> {
    let response = http_client(false)?
        .post(&discovery.registration_endpoint)
        .json(&json!({
            "client_name": name,
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": "read write admin",
        }))
        .send()
        .await?;
    ensure!(
        response.status() == 201,
        "registration answered {}",
        response.status()
    );
    let body: Value = response.json().await?;
    Ok(body["client_id"]
        .as_str()
        .context("no client_id")?
        .to_owned())
}

/// The hidden fields of the provider's login or consent form.
fn hidden_fields(html: &str) -> anyhow::Result<(String, String)> {
    let field = |name: &str| -> anyhow::Result<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html
            .find(&marker)
            .with_context(|| format!("form without {name}"))?
            + marker.len();
        let end = html[start..].find('"').context("unterminated attribute")?;
        Ok(html[start..start + end].replace("&amp;", "&"))
    };
    Ok((field("request_id")?, field("csrf_token")?))
}

/// Steps 5–6: authorization code with PKCE, logging in as `username` through the HTML forms,
/// then redeeming the code.
pub async fn authorize(
    discovery: &Discovery,
    client_id: &str,
    username: &str,
    password: &str,
    scope: &str,
) -> anyhow::Result<Tokens> {
    authorize_with(discovery, client_id, username, password, scope, None).await
}

/// Like [`authorize`], with DPoP (RFC 9449) when `key` is given: the authorization request
/// names the key (`dpop_jkt`), the code is redeemed with a proof of it, and the token must come
/// back as `token_type: DPoP`.
pub async fn authorize_with(
    discovery: &Discovery,
    client_id: &str,
    username: &str,
    password: &str,
    scope: &str,
    key: Option<&DpopKey>,
) -> anyhow::Result<Tokens> {
    let browser = http_client(true)?;
    let verifier = random_b64(32);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = random_b64(16);
    let mut url = Url::parse(&discovery.authorization_endpoint)?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", scope)
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", &discovery.resource);
    if let Some(key) = key {
        url.query_pairs_mut()
            .append_pair("dpop_jkt", key.thumbprint());
    }

    let login_page = browser.get(url).send().await?;
    ensure!(
        login_page.status() == 200,
        "authorize answered {}",
        login_page.status()
    );
    let (request_id, csrf) = hidden_fields(&login_page.text().await?)?;
    let consent_page = browser
        .post(&discovery.authorization_endpoint)
        .form(&[
            ("request_id", request_id.as_str()),
            ("csrf_token", csrf.as_str()),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await?;
    let consent_html = consent_page.text().await?;
    let (request_id, csrf) = hidden_fields(&consent_html)
        .with_context(|| format!("login as {username} did not reach the consent page"))?;
    let redirect = browser
        .post(&discovery.authorization_endpoint)
        .form(&[
            ("request_id", request_id.as_str()),
            ("csrf_token", csrf.as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await?;
    ensure!(
        redirect.status().is_redirection(),
        "consent answered {}",
        redirect.status()
    );
    let location = Url::parse(
        redirect
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .context("redirect without Location")?,
    )?;
    let param = |name: &str| {
        location
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    ensure!(
        param("state").as_deref() == Some(state.as_str()),
        "state mismatch"
    );
    ensure!(
        param("iss").as_deref() == Some(discovery.issuer.as_str()),
        "RFC 9207 iss mismatch"
    );
    if let Some(error) = param("error") {
        bail!("authorization failed: {error}");
    }
    let code = param("code").context("redirect without code")?;
    token_request(
        discovery,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", client_id),
            ("code_verifier", &verifier),
            ("resource", &discovery.resource),
        ],
        key,
    )
    .await?
    .map_err(|e| anyhow!("code redemption failed: {}", e.error))
}

/// A refresh (rotation): the new tokens, or the OAuth error.
pub async fn refresh(
    discovery: &Discovery,
    client_id: &str,
    refresh_token: &str,
) -> anyhow::Result<Result<Tokens, OAuthError>> {
    refresh_with(discovery, client_id, refresh_token, None).await
}

/// Like [`refresh`], with a DPoP proof of `key` when given (a public client's bound refresh
/// token needs one; the new access token must be `token_type: DPoP`).
pub async fn refresh_with(
    discovery: &Discovery,
    client_id: &str,
    refresh_token: &str,
    key: Option<&DpopKey>,
) -> anyhow::Result<Result<Tokens, OAuthError>> {
    token_request(
        discovery,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
            ("resource", &discovery.resource),
        ],
        key,
    )
    .await
}

/// A token request; with `key`, it carries a DPoP proof for `POST <token endpoint>`, retried
/// once with the server's nonce after a `use_dpop_nonce` answer (RFC 9449 §8).
async fn token_request(
    discovery: &Discovery,
    form: &[(&str, &str)],
    key: Option<&DpopKey>,
) -> anyhow::Result<Result<Tokens, OAuthError>> {
    let http = http_client(false)?;
    let mut nonce: Option<String> = None;
    let mut retried = false;
    loop {
        let mut request = http.post(&discovery.token_endpoint).form(form);
        if let Some(key) = key {
            request = request.header(
                DPOP,
                key.proof("POST", &discovery.token_endpoint, None, nonce.as_deref()),
            );
        }
        let response = request.send().await?;
        ensure!(
            response
                .headers()
                .get("cache-control")
                .is_some_and(|v| v == "no-store"),
            "token response without Cache-Control: no-store"
        );
        let handed_out = response
            .headers()
            .get(DPOP_NONCE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if handed_out.is_some() {
            nonce = handed_out;
        }
        if response.status().is_success() {
            let mut tokens: Tokens = response.json().await?;
            tokens.dpop_nonce = nonce;
            if key.is_some() {
                ensure!(
                    tokens.token_type.eq_ignore_ascii_case("DPoP"),
                    "the token endpoint was sent a DPoP proof but answered token_type {:?}, \
                     not DPoP: the token is not bound to the key",
                    tokens.token_type
                );
            }
            return Ok(Ok(tokens));
        }
        let status = response.status();
        let error: OAuthError = response.json().await?;
        if key.is_some() && status == 400 && error.error == "use_dpop_nonce" && !retried {
            ensure!(
                nonce.is_some(),
                "use_dpop_nonce without a DPoP-Nonce header"
            );
            retried = true;
            continue;
        }
        return Ok(Err(error));
    }
}

/// RFC 7009 revocation by a public client.
pub async fn revoke(discovery: &Discovery, client_id: &str, token: &str) -> anyhow::Result<()> {
    let response = http_client(false)?
        .post(&discovery.revocation_endpoint)
        .form(&[("token", token), ("client_id", client_id)])
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "revocation answered {}",
        response.status()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_challenge_parameters() {
        let c = r#"Bearer realm="a\"b", scope="read write", resource_metadata="http://x/.well-known/y""#;
        assert_eq!(challenge_param(c, "realm").as_deref(), Some("a\"b"));
        assert_eq!(challenge_param(c, "scope").as_deref(), Some("read write"));
        assert_eq!(
            challenge_param(c, "resource_metadata").as_deref(),
            Some("http://x/.well-known/y")
        );
        assert_eq!(challenge_param(c, "error"), None);
    }
}
