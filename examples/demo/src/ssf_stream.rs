//! Subscribing a resource server to its authorization server's security events (OpenID Shared
//! Signals 1.0, push delivery): the stream the MCP server creates at start-up, and the receiver
//! that acts on what arrives.
//!
//! The server authenticates to the transmitter as an OAuth client with scope `ssf`
//! (`client_credentials`), replaces any stream it created earlier for the same push URL (so that a
//! restart does not leave a dead stream behind, nor run into the transmitter's bound on streams),
//! and creates a push stream whose `Authorization` header is a fresh random secret. The stream's
//! `aud` is what the receiver then requires of every SET.

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde_json::{Value, json};
use tower_introspect::TokenVerifier;
use tower_introspect::cache::CachedVerifier;
use tower_introspect::ssf::{SsfReceiver, event::SUPPORTED_EVENTS};

/// Where a receiver mounts its push endpoint, beside the MCP endpoint.
pub const PUSH_PATH: &str = "/ssf/events";

/// The OAuth client a resource server manages its stream with.
#[derive(Clone, Debug)]
pub struct SsfClient {
    /// Client id (with `client_credentials` and scope `ssf`).
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
}

/// A push stream created at the transmitter.
#[derive(Clone, Debug)]
pub struct Stream {
    /// The transmitter's identifier of the stream.
    pub stream_id: String,
    /// The `aud` of the stream's SETs.
    pub audience: String,
    /// The `Authorization` header value the transmitter sends with each push.
    pub authorization: String,
}

/// The client the demo talks to the transmitter and probes servers with.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

async fn json_of(response: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let body = response.text().await?;
    ensure!(status.is_success(), "{what} answered {status}: {body}");
    serde_json::from_str(&body).with_context(|| format!("{what} is not JSON"))
}

/// Creates (or re-creates) the push stream of `client` at the transmitter `issuer` for
/// `push_url`, asking for every event type the receiver understands.
pub async fn subscribe(issuer: &str, client: &SsfClient, push_url: &str) -> anyhow::Result<Stream> {
    let http = http_client()?;
    let issuer_url = url::Url::parse(issuer)?;
    let path = issuer_url.path().trim_end_matches('/');
    let well_known = |name: &str| {
        let mut url = issuer_url.clone();
        url.set_path(&format!("/.well-known/{name}{path}"));
        url
    };
    let configuration = json_of(
        http.get(well_known("ssf-configuration")).send().await?,
        "the SSF configuration",
    )
    .await?;
    ensure!(
        configuration["issuer"] == issuer,
        "the SSF configuration names another issuer"
    );
    let streams = configuration["configuration_endpoint"]
        .as_str()
        .context("the transmitter has no configuration_endpoint")?
        .to_owned();
    let metadata = json_of(
        http.get(well_known("oauth-authorization-server"))
            .send()
            .await?,
        "the authorization server metadata",
    )
    .await?;
    let token_endpoint = metadata["token_endpoint"]
        .as_str()
        .context("the authorization server has no token_endpoint")?;
    let token = json_of(
        http.post(token_endpoint)
            .basic_auth(&client.client_id, Some(&client.client_secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "ssf")])
            .send()
            .await?,
        "the token endpoint",
    )
    .await?;
    let token = token["access_token"]
        .as_str()
        .context("no access token for scope ssf")?
        .to_owned();

    // A stream this client made earlier for the same endpoint (a previous run) is replaced.
    let existing = json_of(
        http.get(&streams).bearer_auth(&token).send().await?,
        "the stream list",
    )
    .await?;
    for stream in existing.as_array().into_iter().flatten() {
        if stream["delivery"]["endpoint_url"] == push_url
            && let Some(id) = stream["stream_id"].as_str()
        {
            let mut url = url::Url::parse(&streams)?;
            url.query_pairs_mut().append_pair("stream_id", id);
            let response = http.delete(url).bearer_auth(&token).send().await?;
            ensure!(
                response.status().is_success(),
                "deleting the old stream answered {}",
                response.status()
            );
        }
    }

    let mut secret = [0_u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let authorization = format!("Bearer {}", URL_SAFE_NO_PAD.encode(secret));
    let created = json_of(
        http.post(&streams)
            .bearer_auth(&token)
            .json(&json!({
                "delivery": {
                    "method": "urn:ietf:rfc:8935",
                    "endpoint_url": push_url,
                    "authorization_header": authorization,
                },
                "events_requested": SUPPORTED_EVENTS,
                "description": "tower-introspect demo MCP server",
            }))
            .send()
            .await?,
        "creating the stream",
    )
    .await?;
    let audience = match &created["aud"] {
        Value::String(aud) => aud.clone(),
        Value::Array(auds) => auds
            .first()
            .and_then(Value::as_str)
            .context("the stream has an empty aud")?
            .to_owned(),
        _ => bail!("the stream has no aud"),
    };
    Ok(Stream {
        stream_id: created["stream_id"]
            .as_str()
            .context("the stream has no stream_id")?
            .to_owned(),
        audience,
        authorization,
    })
}

/// The receiver for `stream` of the transmitter `issuer`, forgetting `cache`'s verdicts. Keys
/// come from the transmitter's SSF configuration.
pub fn receiver<V: TokenVerifier>(
    issuer: &str,
    stream: &Stream,
    cache: &CachedVerifier<V>,
) -> anyhow::Result<SsfReceiver> {
    Ok(SsfReceiver::builder(issuer, &stream.audience)
        .push_authorization(&stream.authorization)
        .invalidates(cache)
        .build()?)
}

/// Whether the MCP server at `endpoint` now refuses `token` as invalid (`401` with
/// `error="invalid_token"`): a request the bearer layer decides before any MCP handling, so it
/// costs the server one cache lookup while the verdict is cached.
pub async fn refuses(http: &reqwest::Client, endpoint: &str, token: &str) -> anyhow::Result<bool> {
    let response = http
        .get(endpoint)
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .send()
        .await?;
    let invalid = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|challenge| challenge.contains("error=\"invalid_token\""));
    Ok(response.status() == 401 && invalid)
}

/// How long after `since` the server at `endpoint` first refuses `token`, probing every
/// `interval`; `None` if it still accepts it at `deadline`.
pub async fn refused_after(
    http: &reqwest::Client,
    endpoint: &str,
    token: &str,
    since: tokio::time::Instant,
    interval: Duration,
    deadline: Duration,
) -> anyhow::Result<Option<Duration>> {
    loop {
        if refuses(http, endpoint, token).await? {
            return Ok(Some(since.elapsed()));
        }
        if since.elapsed() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(interval).await;
    }
}
