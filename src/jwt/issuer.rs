//! One trusted issuer of JWT access tokens: its keys, its algorithms and the claims its tokens
//! must carry for this resource.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::access_token::token_claims;
use super::algorithm::JwsAlgorithm;
use super::compact::{self, UnverifiedJwt};
use super::jwks::{DEFAULT_UNKNOWN_KID_REFETCH, Endpoint, FetchLimits, KeySource, key_source};
use super::keys::{DEFAULT_MAX_KEYS, KeySet, VerificationKey, parse_jwks};
use crate::claims::{ClaimChecks, DEFAULT_LEEWAY};
use crate::introspection::unix_now;
use crate::remote::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_REQUEST_TIMEOUT, default_client,
};
use crate::{
    ConfigError, InvalidToken, Principal, TokenClaims, TokenVerifier, VerifierKind, VerifyError,
};

/// A trusted issuer of RFC 9068 JWT access tokens, verified locally with its published keys.
///
/// Checks, in this order, each refusal a 401 `invalid_token` (503 when the keys cannot be had):
/// the JWS shape and header (`crit` refused, `jku`/`x5u`/`jwk`/`x5c` never followed); `alg` in
/// this issuer's allow-list (asymmetric only; `none` and HMAC never); `typ` is `at+jwt`; the
/// signature, with the key named by `kid` whose type, curve and own `alg` fit; then `iss` exactly
/// this issuer, `aud` containing the configured audience, `exp` (required), `nbf` and `iat`
/// within the leeway, and not a refresh token.
///
/// Use it alone, or several in a [`JwtVerifier`](super::JwtVerifier) that routes each token by
/// its `iss`. Cloning is cheap and clones share the key set.
#[derive(Clone, Debug)]
pub struct JwtIssuer {
    inner: Arc<IssuerInner>,
}

#[derive(Debug)]
struct IssuerInner {
    issuer: String,
    checks: ClaimChecks,
    algorithms: Vec<JwsAlgorithm>,
    accept_generic_typ: bool,
    keys: KeySource,
}

impl JwtIssuer {
    /// Configures an issuer whose `iss` is exactly `issuer`.
    pub fn builder(issuer: impl Into<String>) -> JwtIssuerBuilder {
        JwtIssuerBuilder::new(issuer.into())
    }

    /// The issuer identifier tokens must carry in `iss`.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Verifies a parsed token that names this issuer.
    pub(crate) async fn verify_parsed(
        &self,
        jwt: UnverifiedJwt<'_>,
    ) -> Result<TokenClaims, VerifyError> {
        let inner = &*self.inner;
        let alg = JwsAlgorithm::from_name(&jwt.header.alg)
            .filter(|alg| inner.algorithms.contains(alg))
            .ok_or(InvalidToken::Malformed)?;
        if !typ_accepted(jwt.header.typ.as_deref(), inner.accept_generic_typ) {
            return Err(InvalidToken::NotAnAccessToken.into());
        }
        let key = inner.keys.key(jwt.header.kid.as_deref(), alg).await?;
        if !key.verify(jwt.signing_input, jwt.signature, alg) {
            return Err(InvalidToken::InvalidSignature.into());
        }
        let claims = token_claims(jwt.claims, VerifierKind::Jwt)?;
        inner.checks.check(&claims, unix_now())?;
        Ok(claims)
    }
}

impl TokenVerifier for JwtIssuer {
    async fn verify(&self, token: &str) -> Result<Principal, VerifyError> {
        let jwt = compact::parse(token)?;
        if super::unverified_issuer(&jwt)? != self.inner.issuer {
            return Err(InvalidToken::UnknownIssuer.into());
        }
        let verdict = self.verify_parsed(jwt).await;
        crate::metrics::verification(VerifierKind::Jwt, &verdict);
        verdict.map(Principal::new)
    }
}

/// RFC 9068 §4: `typ` must be `at+jwt` (or the full media type `application/at+jwt`; media types
/// compare case-insensitively). With the generic opt-out, `JWT` or no `typ` is accepted too.
fn typ_accepted(typ: Option<&str>, accept_generic: bool) -> bool {
    match typ {
        Some(typ) => {
            let typ = typ
                .get(..12)
                .filter(|prefix| prefix.eq_ignore_ascii_case("application/"))
                .map_or(typ, |_| &typ[12..]);
            typ.eq_ignore_ascii_case("at+jwt")
                || (accept_generic && typ.eq_ignore_ascii_case("jwt"))
        }
        None => accept_generic,
    }
}

/// Configures a [`JwtIssuer`]. Only the audience has no default.
///
/// Keys: by default the issuer's `jwks_uri` is found by RFC 8414 / OpenID discovery on first use
/// (so a service can start while the issuer is down: requests get 503 until its keys are
/// fetched). [`jwks_uri`](Self::jwks_uri) names it instead; [`jwks`](Self::jwks) and
/// [`pem_key`](Self::pem_key) give fixed keys (tests, offline use) and fetch nothing.
#[derive(Debug)]
#[must_use]
pub struct JwtIssuerBuilder {
    issuer: String,
    audience: Option<String>,
    leeway: Duration,
    algorithms: Vec<JwsAlgorithm>,
    accept_generic_typ: bool,
    jwks_uri: Option<String>,
    fixed: Option<Result<Vec<Arc<VerificationKey>>, ConfigError>>,
    client: Option<reqwest::Client>,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_jwks_bytes: usize,
    max_keys: usize,
    unknown_kid_refetch: Duration,
    allow_insecure_http: bool,
}

impl JwtIssuerBuilder {
    fn new(issuer: String) -> Self {
        Self {
            issuer,
            audience: None,
            leeway: DEFAULT_LEEWAY,
            algorithms: JwsAlgorithm::DEFAULT_ALLOWED.to_vec(),
            accept_generic_typ: false,
            jwks_uri: None,
            fixed: None,
            client: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_jwks_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_keys: DEFAULT_MAX_KEYS,
            unknown_kid_refetch: DEFAULT_UNKNOWN_KID_REFETCH,
            allow_insecure_http: false,
        }
    }

    /// The resource identifier `aud` must contain (RFC 8707, RFC 9068 §4). Required: a JWT
    /// signed by a trusted issuer for *another* resource verifies just as well, so without an
    /// audience check any of that issuer's tokens would do.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Clock-skew allowance for `exp`, `nbf` and `iat` (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The signature algorithms accepted from this issuer (default RS256, PS256, ES256, EdDSA).
    /// Name only those the issuer uses: each extra one is attack surface.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = JwsAlgorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Also accepts `typ: JWT` or no `typ` (default: only `at+jwt`, RFC 9068 §2.1).
    ///
    /// Microsoft Entra ID and Auth0 send `typ: JWT`. This is weaker: `at+jwt` is what tells an
    /// access token from the issuer's other JWTs (an OpenID Connect ID token is a JWT signed with
    /// the same keys). With this on, an ID token whose `aud` happens to equal your configured
    /// audience would be accepted; keep the audience distinct from client ids.
    pub fn accept_generic_typ(mut self, accept: bool) -> Self {
        self.accept_generic_typ = accept;
        self
    }

    /// Where the issuer publishes its JWK Set, instead of discovering it.
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.jwks_uri = Some(url.into());
        self
    }

    /// Fixed keys from a JWK Set document: nothing is fetched. Keys that must not verify
    /// (private members, `use` other than `sig`, unsupported types) are left out, each logged.
    pub fn jwks(mut self, document: &str) -> Self {
        let keys = parse_jwks(document.as_bytes(), usize::MAX)
            .map(KeySet::into_keys)
            .map_err(|reason| ConfigError::Invalid {
                setting: "jwks",
                reason,
            });
        self.add_fixed(keys);
        self
    }

    /// A fixed public key in PEM (SubjectPublicKeyInfo; PKCS#1 for RSA), for tokens signed with
    /// `alg` (and naming `kid`, if given). May be called several times.
    pub fn pem_key(mut self, alg: JwsAlgorithm, pem: &[u8], kid: Option<&str>) -> Self {
        let key = VerificationKey::from_pem(pem, alg, kid.map(str::to_owned))
            .map(|key| vec![Arc::new(key)])
            .map_err(|reason| ConfigError::Invalid {
                setting: "pem_key",
                reason,
            });
        self.add_fixed(key);
        self
    }

    fn add_fixed(&mut self, keys: Result<Vec<Arc<VerificationKey>>, ConfigError>) {
        self.fixed = Some(match (self.fixed.take(), keys) {
            (None, keys) => keys,
            (Some(Err(e)), _) | (Some(Ok(_)), Err(e)) => Err(e),
            (Some(Ok(mut have)), Ok(more)) => {
                have.extend(more);
                Ok(have)
            }
        });
    }

    /// The HTTP client for key set and discovery requests (default: rustls, no redirects, the
    /// connect timeout). Bring your own for proxies or custom roots; give it no redirect policy
    /// you would not trust with key sets.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Time to establish a connection (default 2 s; only for the default client).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time for a whole key set or discovery request, body included (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Largest key set document read (default 64 KiB); a larger one is refused.
    pub fn max_jwks_bytes(mut self, bytes: usize) -> Self {
        self.max_jwks_bytes = bytes;
        self
    }

    /// Most keys in a key set (default 32); a set with more is refused.
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = keys;
        self
    }

    /// Least time between two key set fetches caused by tokens naming an unknown `kid`
    /// (default 30 s). Lower means a new key is picked up sooner; higher means garbage `kid`s
    /// cost the issuer less.
    pub fn unknown_kid_refetch_interval(mut self, interval: Duration) -> Self {
        self.unknown_kid_refetch = interval;
        self
    }

    /// Allows `http` for the key set and discovery off loopback (default: https only, except on
    /// loopback). Keys fetched in clear can be replaced by anyone on the path.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Checks the settings and builds the issuer. Nothing is fetched here.
    pub fn build(self) -> Result<JwtIssuer, ConfigError> {
        Url::parse(&self.issuer).map_err(|e| ConfigError::InvalidUrl {
            url: self.issuer.clone(),
            reason: e.to_string(),
        })?;
        let Some(audience) = self.audience else {
            return Err(ConfigError::Missing {
                setting: "audience",
                why: "a token for another resource of the same issuer would otherwise be accepted",
            });
        };
        if self.algorithms.is_empty() {
            return Err(ConfigError::Invalid {
                setting: "algorithms",
                reason: "at least one algorithm must be allowed".into(),
            });
        }
        let fixed = self.fixed.map(|keys| keys.map(KeySet::from_keys));
        let keys = key_source(fixed, self.jwks_uri, (&self.issuer, Endpoint::Jwks), || {
            Ok(FetchLimits {
                client: match self.client {
                    Some(client) => client,
                    None => default_client(self.connect_timeout)?,
                },
                timeout: self.request_timeout,
                max_bytes: self.max_jwks_bytes,
                max_keys: self.max_keys,
                allow_http: self.allow_insecure_http,
                unknown_kid_refetch: self.unknown_kid_refetch,
            })
        })?;
        Ok(JwtIssuer {
            inner: Arc::new(IssuerInner {
                checks: ClaimChecks {
                    leeway: self.leeway,
                    audience: Some(audience),
                    issuer: Some(self.issuer.clone()),
                },
                issuer: self.issuer,
                algorithms: self.algorithms,
                accept_generic_typ: self.accept_generic_typ,
                keys,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_is_at_jwt_unless_opted_out() {
        for ok in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
        ] {
            assert!(typ_accepted(Some(ok), false), "{ok}");
        }
        for refused in [
            None,
            Some("JWT"),
            Some("jwt"),
            Some("dpop+jwt"),
            Some(""),
            Some("at+jwt "),
        ] {
            assert!(!typ_accepted(refused, false), "{refused:?}");
        }
        assert!(typ_accepted(None, true));
        assert!(typ_accepted(Some("JWT"), true));
        assert!(typ_accepted(Some("application/jwt"), true));
        assert!(!typ_accepted(Some("secevent+jwt"), true));
    }

    #[test]
    fn configuration_mistakes_are_errors_not_panics() {
        let missing = JwtIssuer::builder("https://as.example")
            .build()
            .unwrap_err();
        assert!(matches!(
            missing,
            ConfigError::Missing {
                setting: "audience",
                ..
            }
        ));
        let none = JwtIssuer::builder("https://as.example")
            .audience("https://rs")
            .algorithms([])
            .build()
            .unwrap_err();
        assert!(matches!(
            none,
            ConfigError::Invalid {
                setting: "algorithms",
                ..
            }
        ));
        let http = JwtIssuer::builder("http://as.example")
            .audience("https://rs")
            .build()
            .unwrap_err();
        assert!(matches!(http, ConfigError::InvalidUrl { .. }));
        let pem = JwtIssuer::builder("https://as.example")
            .audience("https://rs")
            .pem_key(JwsAlgorithm::ES256, b"not pem", None)
            .build()
            .unwrap_err();
        assert!(matches!(
            pem,
            ConfigError::Invalid {
                setting: "pem_key",
                ..
            }
        ));
        let both = JwtIssuer::builder("https://as.example")
            .audience("https://rs")
            .jwks(r#"{"keys": []}"#)
            .jwks_uri("https://as.example/jwks")
            .build()
            .unwrap_err();
        assert!(matches!(
            both,
            ConfigError::Invalid {
                setting: "jwks_uri",
                ..
            }
        ));
    }
}
