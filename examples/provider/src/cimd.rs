//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, MCP SEP-991).
//!
//! A `client_id` that is an `https` URL names a JSON document, published by the client, that
//! describes it. Instead of registering, the client presents that URL; this server fetches the
//! document and treats it as the client's registration. The URL is attacker-chosen, so fetching it
//! is a server-side request forgery risk, and every step is bounded:
//!
//! - **URL shape**: `https`, a host, a path other than `/`, no user information, no fragment, at
//!   most [`MAX_URL_LEN`] bytes, and already in the canonical form a URL parser gives (so no dot
//!   segments or other spellings of the same URL).
//! - **Address**: only public addresses, checked when the host is resolved and before any
//!   connection ([`crate::outbound`]: no private, loopback, link-local or reserved address, no
//!   DNS rebinding). Only loopback can be allowed, by the development flag
//!   [`CimdSettings::allow_loopback`]. Proxies from the environment are ignored.
//! - **Transfer**: one `GET`, no redirects (a 3xx is a failure), status 200 only, a JSON media
//!   type only (`application/json` or a `+json` type, parameters allowed; anything else is an
//!   invalid document), a time bound for the whole exchange ([`CimdSettings::timeout`]) and a
//!   size bound on the body ([`CimdSettings::max_bytes`], checked while reading, not trusted
//!   from `Content-Length`).
//! - **Content**: the document's `client_id` must equal the URL exactly; `redirect_uris` must be
//!   present and each must pass the registration rules ([`crate::redirect`]);
//!   `token_endpoint_auth_method` must be `none` or absent (such clients are public: a shared
//!   secret cannot be published, and `private_key_jwt` is not supported). The client gets the
//!   authorization code and refresh token grants only, never `client_credentials`, and its scope
//!   is bounded like an open registration's for those grants: the document's `scope` within the
//!   supported scopes (default: all of them), since each token it obtains is approved by a user on
//!   the consent page and bounded by that user's scopes. (The registrable scopes bound clients
//!   that grant themselves tokens, which a document's client never does.)
//! - **Cache**: documents are kept per their `Cache-Control` (`no-store` / `no-cache` → not
//!   kept; `max-age` clamped to [`CimdSettings::min_ttl`] ..= [`CimdSettings::max_ttl`]; no
//!   header → `min_ttl`), in a cache of at most [`CimdSettings::cache_entries`] documents. Failures
//!   are not cached.
//! - **Fetches in flight**: concurrent requests for one URL share a single fetch (and its result);
//!   at most [`CimdSettings::max_fetches_in_flight`] fetches run at once, beyond which a request
//!   is refused at once ([`CimdError::Busy`], answered `503` with `Retry-After`), so slow
//!   document servers cannot hold an unbounded number of outbound connections.
//!
//! The authorization endpoint stores the resulting client (updated when a changed document is
//! fetched; a new one admitted like an anonymous registration) so that the token, refresh and
//! revocation endpoints find it like any public client.

use std::collections::HashMap;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use url::Url;

use crate::model::{AuthMethod, Client};
use crate::outbound::{CheckedResolver, literal_allowed, refused_by_address_policy};
use crate::redirect;
use crate::scope;

/// Longest accepted document URL.
pub const MAX_URL_LEN: usize = 2000;
/// Most redirect URIs a document may list.
const MAX_REDIRECT_URIS: usize = 10;
/// Longest `client_name` kept.
const MAX_NAME_LEN: usize = 200;

/// How client metadata documents are fetched and kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CimdSettings {
    /// Development only: allow documents on loopback addresses (default false).
    pub allow_loopback: bool,
    /// A PEM file of extra trusted root certificates (private PKI, tests). Default none.
    pub ca_file: Option<PathBuf>,
    /// Bound on one whole fetch: connect, TLS, headers and body (default 5 s).
    pub timeout: Duration,
    /// Largest accepted document in bytes (default 5 KiB).
    pub max_bytes: usize,
    /// Shortest time a document is kept unless it says `no-store` (default 60 s).
    pub min_ttl: Duration,
    /// Longest time a document is kept, whatever it says (default 1 hour).
    pub max_ttl: Duration,
    /// Most documents kept (default 1000).
    pub cache_entries: usize,
    /// Most document fetches running at once (default 16); beyond, a request is refused with
    /// `503` and `Retry-After`. Concurrent requests for one URL share one fetch.
    pub max_fetches_in_flight: usize,
}

impl Default for CimdSettings {
    fn default() -> Self {
        Self {
            allow_loopback: false,
            ca_file: None,
            timeout: Duration::from_secs(5),
            max_bytes: 5 * 1024,
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
            cache_entries: 1000,
            max_fetches_in_flight: 16,
        }
    }
}

/// Why a client metadata document cannot be used. The messages are shown to the user and name
/// no detail of the fetched content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CimdError {
    /// The `client_id` URL is not an acceptable document URL.
    #[error("The client_id is not a valid client metadata document URL.")]
    BadUrl,
    /// The host resolves to an address this server does not connect to.
    #[error("The client metadata document's host is not allowed.")]
    ForbiddenAddress,
    /// Connecting, TLS, or the transfer failed or took too long.
    #[error("The client metadata document could not be fetched.")]
    Fetch,
    /// The server answered with a redirect or another non-200 status.
    #[error("The client metadata document could not be fetched (unexpected status).")]
    Status,
    /// The document is larger than allowed.
    #[error("The client metadata document is too large.")]
    TooLarge,
    /// The document is not JSON of the expected shape, or breaks a rule.
    #[error("The client metadata document is invalid.")]
    Invalid,
    /// The document's `client_id` is not exactly its URL.
    #[error("The client metadata document's client_id does not match its URL.")]
    ClientIdMismatch,
    /// As many fetches as allowed are running; retry shortly.
    #[error(
        "The server is fetching too many client metadata documents (temporarily_unavailable). \
         Please try again shortly."
    )]
    Busy,
}

/// Errors building the fetcher.
#[derive(Debug, thiserror::Error)]
pub enum CimdSetupError {
    /// The CA file cannot be read.
    #[error("cannot read the CIMD CA file: {0}")]
    Io(#[from] std::io::Error),
    /// The CA file holds no usable certificate, or the HTTP client cannot be built.
    #[error("invalid CIMD TLS setup: {0}")]
    Tls(String),
}

/// True when `client_id` is meant as a client metadata document URL (it is then never looked up
/// among registered clients).
pub fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://")
}

/// The host of a document URL, shown on the login and consent pages as the client's identity.
pub fn host_of(client_id: &str) -> Option<String> {
    Url::parse(client_id)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
}

/// Fetches, checks and caches client metadata documents. Cheap to clone.
#[derive(Clone)]
pub struct CimdFetcher {
    inner: Arc<FetcherInner>,
}

struct FetcherInner {
    http: reqwest::Client,
    settings: CimdSettings,
    cache: Mutex<HashMap<String, Cached>>,
    /// The fetch under way per URL, shared by every request for that URL that arrives meanwhile.
    flights: Mutex<HashMap<String, Flight>>,
    /// One permit per fetch allowed in flight.
    slots: tokio::sync::Semaphore,
}

/// The outcome of one fetch: the document and its time-to-live, or why not.
type Fetched = Result<(Document, Option<Duration>), CimdError>;
/// One fetch, awaited by every request for its URL.
type Flight = Arc<tokio::sync::OnceCell<Fetched>>;

struct Cached {
    document: Document,
    expires: Instant,
}

/// The members of a document this server uses; others are ignored.
#[derive(Clone, Debug, Deserialize)]
struct Document {
    client_id: String,
    client_name: Option<String>,
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: Option<String>,
    scope: Option<String>,
    /// RFC 9449 §5.2: the client always sends DPoP proofs to the token endpoint.
    #[serde(default)]
    dpop_bound_access_tokens: bool,
}

impl CimdFetcher {
    /// Builds the fetcher and its HTTP client.
    pub fn new(settings: CimdSettings) -> Result<Self, CimdSetupError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race with another installer is fine: a provider is then in place.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(true)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .dns_resolver(Arc::new(CheckedResolver::new(settings.allow_loopback)));
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| CimdSetupError::Tls(e.to_string()))?;
            if certs.is_empty() {
                return Err(CimdSetupError::Tls("no certificate in the CA file".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| CimdSetupError::Tls(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(FetcherInner {
                http,
                cache: Mutex::new(HashMap::new()),
                flights: Mutex::new(HashMap::new()),
                slots: tokio::sync::Semaphore::new(settings.max_fetches_in_flight),
                settings,
            }),
        })
    }

    /// The client described by the document at `client_id`, from the cache or fetched now.
    /// `scope_bound` bounds the client's scope (the authorization server passes its supported
    /// scopes, as for an open registration of an authorization code client).
    pub async fn client(
        &self,
        client_id: &str,
        scope_bound: &[String],
        now: i64,
    ) -> Result<Client, CimdError> {
        let url = check_url(client_id)?;
        if let Some(document) = self.cached(client_id) {
            return to_client(document, scope_bound, now);
        }
        // An IP literal is not resolved, so the resolver's check does not run: check here.
        if !literal_allowed(&url, self.inner.settings.allow_loopback) {
            return Err(CimdError::ForbiddenAddress);
        }
        let (document, _) = self.fetch_once(client_id, url).await?;
        if document.client_id != client_id {
            return Err(CimdError::ClientIdMismatch);
        }
        to_client(document, scope_bound, now)
    }

    /// The fetch of `client_id`'s document, shared with every concurrent request for it: the
    /// first request starts it (if a slot is free) and caches a keepable document; the others
    /// wait for its outcome. Should the first request go away, a waiting one carries on.
    async fn fetch_once(&self, client_id: &str, url: Url) -> Fetched {
        let flight = {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|e| e.into_inner());
            flights.entry(client_id.to_owned()).or_default().clone()
        };
        let outcome = flight
            .get_or_init(|| async {
                // Cached by a flight that ended between our cache look-up and joining.
                if let Some(document) = self.cached(client_id) {
                    return Ok((document, None));
                }
                let Ok(_slot) = self.inner.slots.try_acquire() else {
                    tracing::debug!("client metadata document refused: fetches in flight");
                    return Err(CimdError::Busy);
                };
                let fetched = self.fetch(url).await;
                if let Ok((document, Some(ttl))) = &fetched
                    && document.client_id == client_id
                {
                    self.store(client_id, document.clone(), *ttl);
                }
                fetched
            })
            .await
            .clone();
        let mut flights = self.inner.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights
            .get(client_id)
            .is_some_and(|f| Arc::ptr_eq(f, &flight))
        {
            flights.remove(client_id);
        }
        outcome
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &CimdSettings {
        &self.inner.settings
    }

    fn cached(&self, client_id: &str) -> Option<Document> {
        let cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(client_id)
            .filter(|c| c.expires > Instant::now())
            .map(|c| c.document.clone())
    }

    fn store(&self, client_id: &str, document: Document, ttl: Duration) {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if cache.len() >= self.inner.settings.cache_entries {
            cache.retain(|_, c| c.expires > now);
        }
        if cache.len() >= self.inner.settings.cache_entries {
            // Still full of live entries: drop the one expiring soonest.
            if let Some(key) = cache
                .iter()
                .min_by_key(|(_, c)| c.expires)
                .map(|(k, _)| k.clone())
            {
                cache.remove(&key);
            }
        }
        if self.inner.settings.cache_entries > 0 {
            cache.insert(
                client_id.to_owned(),
                Cached {
                    document,
                    expires: now + ttl,
                },
            );
        }
    }

    /// One bounded `GET`; the time-to-live is `None` when the document must not be kept.
    async fn fetch(&self, url: Url) -> Result<(Document, Option<Duration>), CimdError> {
        let settings = &self.inner.settings;
        let exchange = async {
            let mut response = self
                .inner
                .http
                .get(url)
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| fetch_error(&e))?;
            if response.status() != reqwest::StatusCode::OK {
                return Err(CimdError::Status);
            }
            if !is_json_media_type(response.headers()) {
                return Err(CimdError::Invalid);
            }
            if response
                .content_length()
                .is_some_and(|len| len > settings.max_bytes as u64)
            {
                return Err(CimdError::TooLarge);
            }
            let ttl = ttl_of(response.headers(), settings);
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| fetch_error(&e))? {
                if body.len() + chunk.len() > settings.max_bytes {
                    return Err(CimdError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            let document: Document =
                serde_json::from_slice(&body).map_err(|_| CimdError::Invalid)?;
            Ok((document, ttl))
        };
        // reqwest's timeout covers the body as well; this is the same bound, kept explicit.
        tokio::time::timeout(settings.timeout, exchange)
            .await
            .unwrap_or(Err(CimdError::Fetch))
    }
}

/// A refused address surfaces as a connect error whose source is our resolver's error.
fn fetch_error(err: &reqwest::Error) -> CimdError {
    if refused_by_address_policy(err) {
        return CimdError::ForbiddenAddress;
    }
    tracing::debug!(error = %err, "client metadata document fetch failed");
    CimdError::Fetch
}

/// True when the response has one `Content-Type`, `application/json` or a `+json` type
/// (parameters such as `charset` allowed). Anything else (`text/html`, none) is not a document.
fn is_json_media_type(headers: &reqwest::header::HeaderMap) -> bool {
    let mut values = headers.get_all(reqwest::header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Some(essence) = value.to_str().ok().and_then(|v| v.split(';').next()) else {
        return false;
    };
    let essence = essence.trim().to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    token(kind)
        && token(subtype)
        && ((kind == "application" && subtype == "json")
            || subtype.strip_suffix("+json").is_some_and(|s| !s.is_empty()))
}

/// The time-to-live from `Cache-Control`, or `None` for `no-store` / `no-cache`.
fn ttl_of(headers: &reqwest::header::HeaderMap, settings: &CimdSettings) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(reqwest::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else {
            return None;
        };
        for directive in value.split(',').map(|d| d.trim().to_ascii_lowercase()) {
            if directive == "no-store" || directive == "no-cache" {
                return None;
            }
            if let Some(secs) = directive.strip_prefix("max-age=") {
                max_age = secs.trim_matches('"').parse::<u64>().ok();
            }
        }
    }
    let ttl = max_age.map_or(settings.min_ttl, Duration::from_secs);
    Some(ttl.clamp(settings.min_ttl, settings.max_ttl.max(settings.min_ttl)))
}

/// Checks the shape of a document URL (see the module docs).
fn check_url(client_id: &str) -> Result<Url, CimdError> {
    if client_id.len() > MAX_URL_LEN {
        return Err(CimdError::BadUrl);
    }
    let url = Url::parse(client_id).map_err(|_| CimdError::BadUrl)?;
    let ok = url.scheme() == "https"
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.fragment().is_none()
        && url.path() != "/"
        && !url.path().is_empty()
        && url.as_str() == client_id;
    if ok { Ok(url) } else { Err(CimdError::BadUrl) }
}

/// Turns a checked document into the client it describes.
fn to_client(document: Document, bound: &[String], now: i64) -> Result<Client, CimdError> {
    match document.token_endpoint_auth_method.as_deref() {
        None | Some("none") => {}
        Some(_) => return Err(CimdError::Invalid),
    }
    if document.redirect_uris.is_empty() || document.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(CimdError::Invalid);
    }
    if document
        .redirect_uris
        .iter()
        .any(|uri| redirect::validate_for_registration(uri).is_err())
    {
        return Err(CimdError::Invalid);
    }
    let bound_set = scope::join(bound);
    let scope = match document.scope.as_deref() {
        None => bound_set,
        Some(s) => {
            let requested = scope::parse(s).ok_or(CimdError::Invalid)?;
            let kept: Vec<String> = requested
                .into_iter()
                .filter(|s| bound.contains(s))
                .collect();
            scope::join(&kept)
        }
    };
    let client_name = document
        .client_name
        .filter(|n| !n.is_empty() && n.len() <= MAX_NAME_LEN && !n.chars().any(is_hidden));
    Ok(Client {
        client_id: document.client_id,
        secret_hash: None,
        client_name,
        redirect_uris: document.redirect_uris,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        scope,
        auth_method: AuthMethod::None,
        issued_at: now,
        resource_server: false,
        resources: Vec::new(),
        dpop_bound_access_tokens: document.dpop_bound_access_tokens,
    })
}

/// Control and format characters could hide or reorder text on the consent page.
fn is_hidden(c: char) -> bool {
    use unicode_general_category::{GeneralCategory, get_general_category};
    c.is_control() || get_general_category(c) == GeneralCategory::Format
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_urls_must_be_canonical_https_with_a_path() {
        for bad in [
            "http://app.example/client.json",
            "https://app.example",
            "https://app.example/",
            "https://user@app.example/client.json",
            "https://app.example/client.json#x",
            "https://app.example/a/../client.json",
            "https://APP.example/client.json",
        ] {
            assert_eq!(check_url(bad).unwrap_err(), CimdError::BadUrl, "{bad}");
        }
        assert!(check_url("https://app.example/client.json").is_ok());
    }

    #[test]
    fn only_json_media_types_are_documents() {
        let is_json = |values: &[&str]| {
            let mut headers = reqwest::header::HeaderMap::new();
            for v in values {
                headers.append(reqwest::header::CONTENT_TYPE, v.parse().unwrap());
            }
            is_json_media_type(&headers)
        };
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/json;charset=\"utf-8\"",
            "application/vnd.example+json",
        ] {
            assert!(is_json(&[ok]), "{ok}");
        }
        for bad in [
            "text/html",
            "text/html; charset=utf-8",
            "text/plain",
            "application/json5",
            "application/+json",
            "application/jsonp",
            "json",
            "",
        ] {
            assert!(!is_json(&[bad]), "{bad}");
        }
        assert!(!is_json(&[]), "no Content-Type");
        assert!(!is_json(&["application/json", "text/html"]), "two");
    }

    #[test]
    fn cache_control_sets_the_time_to_live_within_bounds() {
        let settings = CimdSettings::default();
        let ttl = |value: &str| {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(reqwest::header::CACHE_CONTROL, value.parse().unwrap());
            ttl_of(&headers, &settings)
        };
        assert_eq!(ttl("no-store"), None);
        assert_eq!(ttl("public, no-cache"), None);
        assert_eq!(ttl("max-age=600"), Some(Duration::from_secs(600)));
        assert_eq!(ttl("max-age=1"), Some(settings.min_ttl));
        assert_eq!(ttl("max-age=99999999"), Some(settings.max_ttl));
        let none = reqwest::header::HeaderMap::new();
        assert_eq!(ttl_of(&none, &settings), Some(settings.min_ttl));
    }
}
