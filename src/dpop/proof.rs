//! Checking a DPoP proof (RFC 9449 §4.3): everything but the binding to a token's `cnf.jkt`,
//! which the caller compares once it knows the token's claims.
//!
//! The checks run cheapest first and all on attacker-controlled input: the proof's shape and
//! size, `typ`, `alg` against the allow-list (asymmetric algorithms only: [`JwsAlgorithm`]
//! cannot name HMAC or `none`), the embedded public key (no private members, fitting the
//! algorithm), the signature, then the claims (`htm`, `htu`, `iat`, `ath`, `nonce`). The `jti` is
//! recorded separately ([`ProofChecker::record`]), only once the whole request is known to be
//! acceptable: a proof that fails anything else takes no room in the replay store.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use super::htu::{Origins, same_resource};
use super::nonce::{NonceSource, NonceStatus};
use super::thumbprint::jwk_thumbprint;
use crate::ConfigError;
use crate::jwt::JwsAlgorithm;
use crate::jwt::compact;
use crate::jwt::keys::parse_jwk;
use crate::replay::{DEFAULT_REPLAY_CAPACITY, RecordError, ReplayCache};

/// Default window around now in which a proof's `iat` must lie (RFC 9449 §11.1 leaves it to the
/// server; the MCP DPoP extension uses ±5 minutes).
pub const DEFAULT_IAT_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Longest proof accepted, in bytes: a proof with a 4096-bit RSA key is about 1.5 KiB.
pub const MAX_PROOF_LENGTH: usize = 8 * 1024;

/// Longest `jti` accepted, in bytes (random identifiers are 16 to 64 characters).
const MAX_JTI_LENGTH: usize = 256;

/// Why a DPoP proof was refused.
///
/// Each reason has a fixed, non-revealing description, sent as `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProofError {
    /// No `DPoP` header, or more than one.
    Missing,
    /// Not a compact JWS with JSON header and claims, too long, or a claim missing or of the
    /// wrong type.
    Malformed,
    /// `typ` is not `dpop+jwt`.
    WrongType,
    /// `alg` is not one of the allowed asymmetric algorithms.
    UnsupportedAlgorithm,
    /// `jwk` is missing, holds private key material, is of an unsupported type, or does not fit
    /// `alg`.
    InvalidKey,
    /// The signature does not verify with `jwk`.
    InvalidSignature,
    /// `htm` is not the request's method.
    WrongMethod,
    /// `htu` is not the request's URL.
    WrongUrl,
    /// `iat` is outside the accepted window around now.
    NotFresh,
    /// `ath` is missing or is not the hash of the access token sent with the proof.
    WrongTokenHash,
    /// The proof's `jti` was seen before, while the proof is still fresh.
    Replayed,
    /// The proof's key is not the key the token is bound to.
    KeyMismatch,
    /// The server requires a nonce and the proof has none, or one that is not (or no longer)
    /// valid. The client retries with the nonce in the `DPoP-Nonce` response header.
    UseNonce,
    /// The replay store is full of fresh proofs: the proof cannot be checked for replay now.
    /// Answered as a server problem (503), never by forgetting a fresh proof.
    ReplayStoreFull,
}

impl ProofError {
    /// The `error` code of the challenge (RFC 9449 §7.1, §9): `use_dpop_nonce` or
    /// `invalid_dpop_proof`.
    pub fn error_code(self) -> &'static str {
        match self {
            Self::UseNonce => "use_dpop_nonce",
            _ => "invalid_dpop_proof",
        }
    }

    /// The `error_description` sent to the client.
    pub fn description(self) -> &'static str {
        match self {
            Self::Missing => "Exactly one DPoP proof header is required",
            Self::Malformed => "The DPoP proof is malformed",
            Self::WrongType => "The DPoP proof's typ is not dpop+jwt",
            Self::UnsupportedAlgorithm => "The DPoP proof's algorithm is not supported",
            Self::InvalidKey => "The DPoP proof's key is not an acceptable public key",
            Self::InvalidSignature => "The DPoP proof's signature is invalid",
            Self::WrongMethod => "The DPoP proof is for another HTTP method",
            Self::WrongUrl => "The DPoP proof is for another URL",
            Self::NotFresh => "The DPoP proof was not issued recently",
            Self::WrongTokenHash => "The DPoP proof is not bound to this access token",
            Self::Replayed => "The DPoP proof was already used",
            Self::KeyMismatch => "The DPoP proof's key is not the key the token is bound to",
            Self::UseNonce => "A DPoP nonce from the server is required",
            Self::ReplayStoreFull => "The DPoP proof could not be checked, try again later",
        }
    }

    /// A short, stable identifier for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::WrongType => "wrong_type",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::InvalidKey => "invalid_key",
            Self::InvalidSignature => "invalid_signature",
            Self::WrongMethod => "wrong_method",
            Self::WrongUrl => "wrong_url",
            Self::NotFresh => "not_fresh",
            Self::WrongTokenHash => "wrong_token_hash",
            Self::Replayed => "replayed",
            Self::KeyMismatch => "key_mismatch",
            Self::UseNonce => "use_nonce",
            Self::ReplayStoreFull => "replay_store_full",
        }
    }
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for ProofError {}

/// The request a proof must be for: its method and URL.
#[derive(Debug, Clone, Copy)]
pub struct ProofTarget<'a> {
    method: &'a str,
    url: TargetUrl<'a>,
}

#[derive(Debug, Clone, Copy)]
enum TargetUrl<'a> {
    /// A full URL, as an authorization server knows its token endpoint's.
    Exact(&'a Url),
    /// A request path under one of a resource's public origins.
    UnderOrigins(&'a Origins, &'a str),
}

impl<'a> ProofTarget<'a> {
    /// A request with `method` (e.g. `"POST"`) to `url` (its query and fragment are ignored).
    pub fn new(method: &'a str, url: &'a Url) -> Self {
        Self {
            method,
            url: TargetUrl::Exact(url),
        }
    }

    pub(crate) fn under_origins(method: &'a str, origins: &'a Origins, path: &'a str) -> Self {
        Self {
            method,
            url: TargetUrl::UnderOrigins(origins, path),
        }
    }

    fn url_matches(&self, htu: &str) -> bool {
        match self.url {
            TargetUrl::Exact(url) => {
                Url::parse(htu).is_ok_and(|claimed| same_resource(&claimed, url))
            }
            TargetUrl::UnderOrigins(origins, path) => origins.matches(htu, path),
        }
    }
}

/// A proof that passed every check but the replay check and the token binding.
#[derive(Debug, Clone)]
pub struct VerifiedProof {
    thumbprint: String,
    jti: String,
    /// The Unix second until which the `jti` must be remembered.
    remember_until: u64,
    algorithm: JwsAlgorithm,
    nonce: Option<NonceStatus>,
}

impl VerifiedProof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key: what a bound token's `cnf.jkt` must
    /// equal.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The proof's signature algorithm.
    pub fn algorithm(&self) -> JwsAlgorithm {
        self.algorithm
    }

    /// Whether the proof carried a nonce of the previous period: the response should hand out a
    /// fresh one (`DPoP-Nonce`) so that the client's next proof is not refused.
    pub fn nonce_is_stale(&self) -> bool {
        self.nonce == Some(NonceStatus::Stale)
    }
}

/// Checks DPoP proofs and remembers their identifiers. Cheap to clone: clones share the replay
/// store, so one checker serves every clone of a layer (or every worker of a token endpoint).
#[derive(Debug, Clone)]
pub struct ProofChecker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    algorithms: Vec<JwsAlgorithm>,
    iat_window: u64,
    replay: ReplayCache,
    nonces: Option<NonceSource>,
}

impl Default for ProofChecker {
    fn default() -> Self {
        ProofChecker::builder()
            .build()
            .expect("the default settings are valid")
    }
}

/// Builds a [`ProofChecker`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ProofCheckerBuilder {
    algorithms: Vec<JwsAlgorithm>,
    iat_window: Duration,
    replay_capacity: usize,
    nonces: Option<NonceSource>,
}

impl ProofCheckerBuilder {
    /// The algorithms a proof may be signed with (default: RS256, PS256, ES256 and EdDSA).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = JwsAlgorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// How far a proof's `iat` may be from now, either way (default ±5 minutes). The replay
    /// store keeps each `jti` this long after its `iat`.
    pub fn iat_window(mut self, window: Duration) -> Self {
        self.iat_window = window;
        self
    }

    /// How many proof identifiers the replay store holds (default [`DEFAULT_REPLAY_CAPACITY`]).
    /// Size it for the peak rate of new proofs times the window: when it is full of fresh
    /// proofs, new ones are refused with 503 until some expire.
    pub fn replay_capacity(mut self, entries: usize) -> Self {
        self.replay_capacity = entries;
        self
    }

    /// Requires every proof to carry a nonce from `nonces` (RFC 9449 §9). A proof without one is
    /// refused with `use_dpop_nonce` and a fresh nonce in `DPoP-Nonce`.
    pub fn nonces(mut self, nonces: NonceSource) -> Self {
        self.nonces = Some(nonces);
        self
    }

    /// The checker, or what is wrong with the settings.
    pub fn build(self) -> Result<ProofChecker, ConfigError> {
        if self.algorithms.is_empty() {
            return Err(ConfigError::Invalid {
                setting: "algorithms",
                reason: "at least one algorithm must be allowed".into(),
            });
        }
        let iat_window = self.iat_window.as_secs();
        if iat_window == 0 || iat_window > 3600 {
            return Err(ConfigError::Invalid {
                setting: "iat_window",
                reason: "the window must be between one second and one hour".into(),
            });
        }
        if self.replay_capacity == 0 {
            return Err(ConfigError::Invalid {
                setting: "replay_capacity",
                reason: "the replay store must hold at least one proof".into(),
            });
        }
        Ok(ProofChecker {
            inner: Arc::new(Inner {
                algorithms: self.algorithms,
                iat_window,
                replay: ReplayCache::new(self.replay_capacity),
                nonces: self.nonces,
            }),
        })
    }
}

impl ProofChecker {
    /// A builder with the default settings.
    pub fn builder() -> ProofCheckerBuilder {
        ProofCheckerBuilder {
            algorithms: JwsAlgorithm::DEFAULT_ALLOWED.to_vec(),
            iat_window: DEFAULT_IAT_WINDOW,
            replay_capacity: DEFAULT_REPLAY_CAPACITY,
            nonces: None,
        }
    }

    /// The algorithms a proof may be signed with, for `algs` in challenges and
    /// `dpop_signing_alg_values_supported` in metadata.
    pub fn algorithms(&self) -> &[JwsAlgorithm] {
        &self.inner.algorithms
    }

    /// The server nonces proofs must carry, if any.
    pub fn nonces(&self) -> Option<&NonceSource> {
        self.inner.nonces.as_ref()
    }

    /// How many proof identifiers the replay store holds at most.
    pub fn replay_capacity(&self) -> usize {
        self.inner.replay.capacity()
    }

    /// An upper bound on the replay store's memory, in bytes.
    pub fn replay_max_bytes(&self) -> usize {
        self.inner.replay.max_bytes()
    }

    /// Proof identifiers the replay store holds now.
    pub fn replay_len(&self) -> usize {
        self.inner.replay.len()
    }

    /// Checks `proof` for a request to `target` that presents `access_token` (`None` at a token
    /// endpoint, where no access token exists yet and `ath` is not required).
    pub fn check(
        &self,
        proof: &str,
        target: &ProofTarget<'_>,
        access_token: Option<&str>,
    ) -> Result<VerifiedProof, ProofError> {
        self.check_at(proof, target, access_token, SystemTime::now())
    }

    /// [`check`](Self::check) at `now` (for servers with a clock of their own).
    pub fn check_at(
        &self,
        proof: &str,
        target: &ProofTarget<'_>,
        access_token: Option<&str>,
        now: SystemTime,
    ) -> Result<VerifiedProof, ProofError> {
        if proof.len() > MAX_PROOF_LENGTH {
            return Err(ProofError::Malformed);
        }
        let jwt = compact::parse(proof).map_err(|_| ProofError::Malformed)?;
        let typ = jwt.header.typ.as_deref().unwrap_or_default();
        if !(typ.eq_ignore_ascii_case("dpop+jwt")
            || typ.eq_ignore_ascii_case("application/dpop+jwt"))
        {
            return Err(ProofError::WrongType);
        }
        let algorithm = JwsAlgorithm::from_name(&jwt.header.alg)
            .filter(|alg| self.inner.algorithms.contains(alg))
            .ok_or(ProofError::UnsupportedAlgorithm)?;
        let jwk = jwt.header.jwk.as_ref().ok_or(ProofError::InvalidKey)?;
        let key = parse_jwk(jwk).map_err(|_| ProofError::InvalidKey)?;
        if !key.fits(algorithm) {
            return Err(ProofError::InvalidKey);
        }
        let thumbprint = jwk
            .as_object()
            .and_then(jwk_thumbprint)
            .ok_or(ProofError::InvalidKey)?;
        if !key.verify(jwt.signing_input, jwt.signature, algorithm) {
            return Err(ProofError::InvalidSignature);
        }

        let claims = &jwt.claims;
        let text = |name: &str| match claims.get(name) {
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            None => Ok(None),
            Some(_) => Err(ProofError::Malformed),
        };
        let jti = text("jti")?.ok_or(ProofError::Malformed)?;
        if jti.is_empty() || jti.len() > MAX_JTI_LENGTH {
            return Err(ProofError::Malformed);
        }
        let htm = text("htm")?.ok_or(ProofError::Malformed)?;
        let htu = text("htu")?.ok_or(ProofError::Malformed)?;
        let iat = match claims.get("iat") {
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                .ok_or(ProofError::Malformed)?,
            _ => return Err(ProofError::Malformed),
        };
        let ath = text("ath")?;
        let nonce = text("nonce")?;

        if htm != target.method {
            return Err(ProofError::WrongMethod);
        }
        if !target.url_matches(htu) {
            return Err(ProofError::WrongUrl);
        }
        let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let now_secs = i64::try_from(now_secs).unwrap_or(i64::MAX);
        let window = i64::try_from(self.inner.iat_window).unwrap_or(i64::MAX);
        if iat.abs_diff(now_secs) > window.unsigned_abs() {
            return Err(ProofError::NotFresh);
        }
        if let Some(token) = access_token
            && ath != Some(token_hash(token).as_str())
        {
            return Err(ProofError::WrongTokenHash);
        }
        let nonce = match &self.inner.nonces {
            None => None,
            Some(source) => match source.check_at(nonce.unwrap_or_default(), now) {
                NonceStatus::Invalid => return Err(ProofError::UseNonce),
                status => Some(status),
            },
        };
        Ok(VerifiedProof {
            thumbprint,
            jti: jti.to_owned(),
            // Fresh until `iat + window`; one second more for the boundary.
            remember_until: u64::try_from(iat.saturating_add(window).saturating_add(1))
                .unwrap_or_default(),
            algorithm,
            nonce,
        })
    }

    /// Records the proof's `jti`: the last step, once the request is otherwise acceptable.
    /// [`ProofError::Replayed`] if it was seen before; [`ProofError::ReplayStoreFull`] if the
    /// store is full of fresh proofs.
    pub fn record(&self, proof: &VerifiedProof) -> Result<(), ProofError> {
        self.record_at(proof, SystemTime::now())
    }

    /// [`record`](Self::record) at `now`.
    pub fn record_at(&self, proof: &VerifiedProof, now: SystemTime) -> Result<(), ProofError> {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        self.inner
            .replay
            .record(&proof.thumbprint, &proof.jti, proof.remember_until, now)
            .map_err(|e| match e {
                RecordError::Replayed => ProofError::Replayed,
                RecordError::Full => ProofError::ReplayStoreFull,
            })
    }
}

/// `ath`: the base64url SHA-256 hash of the access token's ASCII bytes (RFC 9449 §4.2).
pub(crate) fn token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}
