//! [`BearerAuthLayer`] and its service [`BearerAuth`].

use std::fmt;
use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

use crate::cache::{CacheConfig, CachedVerifier, token_key};
use crate::challenge::{ChallengeContext, Challenger, DpopChallenge, Rejection};
use crate::scope::StepUpScopes;
mod admission;
mod binding;
mod future;
mod miss_budget;
mod settings;

use self::admission::{admit, decide};
use self::binding::{bearer_allowed, check_proof};
pub use self::future::ResponseFuture;
pub use self::miss_budget::{
    ClientKey, ClientKeyFn, DEFAULT_MAX_TRACKED_CLIENTS, DEFAULT_MISS_WINDOW,
    DEFAULT_MISSES_PER_WINDOW, MissBudget, peer_address,
};
pub(crate) use self::settings::Settings;
use crate::dpop::{Dpop, DpopPolicy};
pub use crate::header::DEFAULT_MAX_TOKEN_LENGTH;
use crate::header::{Credentials, credentials};
use crate::jwt::JwtVerifier;
use crate::metrics::{self, Unverified};
use crate::telemetry::{CacheResult, VerificationSpan};
use crate::{
    ConfigError, HybridVerifier, Introspector, ProtectedResourceMetadata, ScopeHierarchy, Scopes,
    TokenVerifier,
};

/// Validates the bearer token of every request and hands the caller's
/// [`Principal`](crate::Principal) to the inner service as a request extension.
///
/// See the [crate documentation](crate) for the request path and the rejection table.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_introspect::{BearerAuthLayer, Introspector};
///
/// let introspector = Introspector::builder()
///     .endpoint("https://auth.example.com/oauth/introspect")
///     .client_secret_basic("api", "s3cret")
///     .audience("https://api.example.com")
///     .build()?;
/// let auth = BearerAuthLayer::introspect(introspector)
///     .resource_metadata("https://api.example.com/.well-known/oauth-protected-resource");
/// // Keep a handle on the cache: statistics, invalidation after a revocation.
/// let cache = auth.verifier().clone();
/// # let _ = cache;
/// # Ok(()) }
/// ```
pub struct BearerAuthLayer<V> {
    verifier: Arc<V>,
    settings: Arc<Settings>,
}

impl<V> Clone for BearerAuthLayer<V> {
    fn clone(&self) -> Self {
        Self {
            verifier: self.verifier.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<V> fmt::Debug for BearerAuthLayer<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl BearerAuthLayer<CachedVerifier<Introspector>> {
    /// Introspects tokens with `introspector`, behind a cache with the default settings (5 min
    /// positive, 10 s negative, 100,000 entries) and the introspector's leeway.
    pub fn introspect(introspector: Introspector) -> Self {
        let config = CacheConfig::default().leeway(introspector.leeway());
        Self::introspect_with_cache(introspector, config)
    }

    /// Introspects tokens with `introspector`, behind a cache configured by `config`.
    pub fn introspect_with_cache(introspector: Introspector, config: CacheConfig) -> Self {
        Self::new(CachedVerifier::new(introspector, config))
    }
}

impl BearerAuthLayer<CachedVerifier<JwtVerifier>> {
    /// A layer that verifies JWT access tokens locally with `verifier`'s issuers, caching
    /// verdicts with the default [`CacheConfig`].
    pub fn jwt(verifier: JwtVerifier) -> Self {
        Self::new(CachedVerifier::new(verifier, CacheConfig::default()))
    }
}

impl BearerAuthLayer<CachedVerifier<HybridVerifier>> {
    /// A layer that verifies JWTs locally and introspects opaque tokens (see
    /// [`HybridVerifier`]), caching verdicts with the default [`CacheConfig`].
    pub fn hybrid(verifier: HybridVerifier) -> Self {
        Self::new(CachedVerifier::new(verifier, CacheConfig::default()))
    }
}

impl<V: TokenVerifier> BearerAuthLayer<V> {
    /// Verifies tokens with `verifier` as it is (no cache is added: wrap it in a
    /// [`CachedVerifier`] if it is expensive).
    pub fn new(verifier: V) -> Self {
        Self {
            verifier: Arc::new(verifier),
            settings: Arc::default(),
        }
    }
}

impl<V> BearerAuthLayer<V> {
    /// The verifier, e.g. the [`CachedVerifier`] whose statistics and invalidation you want.
    pub fn verifier(&self) -> &V {
        &self.verifier
    }

    fn configure(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        change(Arc::make_mut(&mut self.settings));
        self
    }

    /// Changes how challenges are worded (the challenger re-renders its fixed challenge).
    fn reword(self, change: impl FnOnce(&mut Challenger)) -> Self {
        self.configure(|s| Arc::make_mut(&mut s.challenger).reconfigure(change))
    }

    /// The `realm` parameter of challenges (omitted by default).
    #[must_use]
    pub fn realm(self, realm: impl Into<String>) -> Self {
        let realm = realm.into();
        self.reword(|c| c.realm = Some(realm))
    }

    /// The `resource_metadata` parameter of challenges: the URL of this resource's RFC 9728
    /// metadata, from which MCP clients discover the authorization server.
    #[must_use]
    pub fn resource_metadata(self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.reword(|c| c.resource_metadata = Some(url))
    }

    /// Points `resource_metadata` at the document `metadata` describes (its
    /// [`metadata_url`](ProtectedResourceMetadata::metadata_url)), so the challenge and the served
    /// document come from one configuration.
    #[must_use]
    pub fn protected_resource(self, metadata: &ProtectedResourceMetadata) -> Self {
        self.resource_metadata(metadata.metadata_url())
    }

    /// The `scope` parameter of the no-token challenge: what a client should ask for
    /// (space-separated, as the MCP specification recommends). Kept in the order given.
    ///
    /// An error names a scope that is not a valid RFC 6749 `scope-token` (see
    /// [`Scopes::is_scope_token`](crate::Scopes::is_scope_token)), which would reach clients
    /// mangled, or `offline_access`.
    pub fn challenge_scope(self, scope: impl Into<String>) -> Result<Self, ConfigError> {
        let scope = scope.into();
        Scopes::configured("challenge_scope", [scope.as_str()])?;
        // Normalised to single spaces, in the caller's order.
        let scope = scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(self.reword(|c| c.scope = Some(scope)))
    }

    /// Makes `insufficient_scope` challenges (of the scope layers inside this one) name the scopes
    /// the token already has besides the missing ones (`true`: [`StepUpScopes::RequiredAndGranted`])
    /// or only the required ones (`false`: [`StepUpScopes::RequiredOnly`]), whatever the request's
    /// MCP protocol version. See [`step_up_scopes`](Self::step_up_scopes).
    #[must_use]
    pub fn step_up_with_granted_scopes(self, include: bool) -> Self {
        self.step_up_scopes(if include {
            StepUpScopes::RequiredAndGranted
        } else {
            StepUpScopes::RequiredOnly
        })
    }

    /// Which scopes the `insufficient_scope` challenges of the scope layers inside this one name
    /// (default [`StepUpScopes::ByProtocolVersion`]: what the request's `MCP-Protocol-Version`
    /// asks for).
    #[must_use]
    pub fn step_up_scopes(self, strategy: StepUpScopes) -> Self {
        self.reword(|c| c.step_up = strategy)
    }

    /// How granted scopes satisfy required ones in every scope check inside this layer
    /// ([`RequireScopeLayer`](crate::RequireScopeLayer), [`PathScopeLayer`](crate::PathScopeLayer),
    /// the MCP policy, [`Principal::satisfies`](crate::Principal::satisfies)); default
    /// [`ScopeHierarchy::exact`]. It travels with the request's [`Principal`](crate::Principal),
    /// like the challenge parameters, so inner layers and handlers cannot disagree.
    #[must_use]
    pub fn scope_hierarchy(self, hierarchy: ScopeHierarchy) -> Self {
        let hierarchy = Arc::new(hierarchy);
        self.reword(|c| c.hierarchy = hierarchy)
    }

    /// `Retry-After` seconds of the 503 sent when the authorization server is unavailable
    /// (default 5).
    #[must_use]
    pub fn retry_after(self, seconds: u32) -> Self {
        self.reword(|c| c.retry_after = HeaderValue::from(seconds))
    }

    /// Lets requests without a bearer token through, without a `Principal` (default: refused with
    /// 401). A token that is present is still verified, and a bad one is still refused: a client
    /// that sends a token wants to be authenticated and must learn that it was not.
    #[must_use]
    pub fn allow_missing_token(self, allow: bool) -> Self {
        self.configure(|s| s.allow_missing_token = allow)
    }

    /// Each client's budget of new tokens (default [`MissBudget::default`]: 20 per second per
    /// peer address); `None` turns budgets off. See [`MissBudget`] for what counts and how
    /// clients are told apart.
    pub fn miss_budget(self, budget: Option<MissBudget>) -> Self {
        self.configure(|s| s.misses = budget.as_ref().map(MissBudget::tracker))
    }

    /// Accepts DPoP-bound tokens (RFC 9449) as `dpop` says: its policy, the public origins proofs
    /// are checked against, and its proof checker. Without it, the `DPoP` scheme is not
    /// recognised, and a token bound to a key is refused as a bearer token all the same. See
    /// the [`dpop`](crate::dpop) module.
    #[must_use]
    pub fn dpop(self, dpop: Dpop) -> Self {
        let challenge = DpopChallenge {
            policy: dpop.policy(),
            algs: dpop
                .checker()
                .algorithms()
                .iter()
                .map(|alg| alg.name())
                .collect::<Vec<_>>()
                .join(" "),
            nonces: dpop.checker().nonces().cloned(),
        };
        self.configure(|s| s.dpop = Some(dpop))
            .reword(|c| c.dpop = Some(challenge))
    }

    /// Accepts tokens bound by a confirmation method this layer cannot check as if that binding
    /// were not there (default: refused, `invalid_token`). Such a token carries a `cnf` member
    /// other than DPoP's `jkt`, most often mutual TLS (`x5t#S256`, RFC 8705): its issuer promised
    /// that only the holder of a certificate can use it, and a layer that waves it through as a
    /// bearer token breaks that promise for whoever stole it. Turn this on only when something
    /// else enforces the binding for every request that reaches this layer; a DPoP `jkt` is
    /// still checked, and a malformed `cnf` (not an object, a `jkt` that is not a string) still
    /// refused.
    #[must_use]
    pub fn accept_unverifiable_bindings(self, accept: bool) -> Self {
        self.configure(|s| s.accept_unverifiable_bindings = accept)
    }

    /// Longest token accepted, in bytes (default 4096); longer ones are `invalid_request`.
    #[must_use]
    pub fn max_token_length(self, bytes: usize) -> Self {
        self.configure(|s| s.max_token_length = bytes)
    }
}

impl<S, V> Layer<S> for BearerAuthLayer<V> {
    type Service = BearerAuth<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            verifier: self.verifier.clone(),
            settings: self.settings.clone(),
        }
    }
}

/// The service built by [`BearerAuthLayer`].
pub struct BearerAuth<S, V> {
    inner: S,
    verifier: Arc<V>,
    settings: Arc<Settings>,
}

impl<S: Clone, V> Clone for BearerAuth<S, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            verifier: self.verifier.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<S: fmt::Debug, V> fmt::Debug for BearerAuth<S, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, V, ReqBody, ResBody> Service<Request<ReqBody>> for BearerAuth<S, V>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    V: TokenVerifier,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let settings = &self.settings;
        let accept_dpop = settings
            .dpop
            .as_ref()
            .is_some_and(|d| d.policy() != DpopPolicy::Disabled);
        let presented = match credentials(request.headers(), settings.max_token_length, accept_dpop)
        {
            Credentials::Bearer(token) => match bearer_allowed(settings) {
                Ok(presented) => Ok((token, presented)),
                Err(rejection) => {
                    metrics::unverified(Unverified::DpopRequired);
                    Err(rejection)
                }
            },
            Credentials::Dpop(token) => {
                let dpop = settings
                    .dpop
                    .as_ref()
                    .expect("accepted only when configured");
                match check_proof(&request, token, dpop) {
                    Ok(presented) => Ok((token, presented)),
                    Err(rejection) => {
                        metrics::unverified(Unverified::InvalidDpopProof);
                        Err(rejection)
                    }
                }
            }
            Credentials::Missing if settings.allow_missing_token => {
                let mut request = request;
                request
                    .extensions_mut()
                    .insert(ChallengeContext(settings.challenger.clone()));
                metrics::unverified(Unverified::Anonymous);
                return ResponseFuture::calling(self.inner.call(request), None);
            }
            Credentials::Missing => {
                metrics::unverified(Unverified::MissingToken);
                Err(Rejection::MissingToken)
            }
            Credentials::Malformed(reason) => {
                metrics::unverified(Unverified::Malformed);
                Err(Rejection::InvalidRequest(reason))
            }
        };
        let (token, presented) = match presented {
            Ok(verifiable) => verifiable,
            Err(rejection) => {
                tracing::debug!(
                    reason = rejection.description(),
                    "request refused before verification"
                );
                return ResponseFuture::rejected(
                    settings.challenger.response(&rejection, request.headers()),
                );
            }
        };
        // The warm path: a verdict known at once (a cache hit) needs no future, no copy of the
        // token, and the inner service that was driven to readiness is called now.
        let span = VerificationSpan::start();
        if let Some(verdict) = self.verifier.verify_cached(token) {
            let verdict = verdict.map(|principal| match principal.token_key() {
                Some(_) => principal,
                None => principal.with_token_key(token_key(token)),
            });
            return match decide(verdict, &presented, &span, CacheResult::Hit, settings) {
                Ok(confirmed) => {
                    let _entered = span.span().enter();
                    let mut request = request;
                    admit(&mut request, confirmed.principal, settings);
                    ResponseFuture::calling(self.inner.call(request), confirmed.nonce)
                }
                Err(rejection) => ResponseFuture::rejected(
                    settings.challenger.response(&rejection, request.headers()),
                ),
            };
        }
        if let Some(misses) = &settings.misses
            && self.verifier.would_call(token)
            && let Err(seconds) = misses.charge(request.headers(), request.extensions())
        {
            metrics::unverified(Unverified::OverBudget);
            let rejection = Rejection::TooManyRequests(seconds);
            tracing::debug!(
                retry_after = seconds,
                "client over its budget of new tokens"
            );
            return ResponseFuture::rejected(
                settings.challenger.response(&rejection, request.headers()),
            );
        }
        let token = token.to_owned();
        let verifier = self.verifier.clone();
        let verification = Box::pin(
            async move {
                let principal = verifier.verify(&token).await?;
                Ok(principal.with_token_key(token_key(&token)))
            }
            .instrument(span.span().clone()),
        );
        // `self.inner` is the service that was driven to readiness: take it, leave a clone.
        let clone = self.inner.clone();
        let inner = mem::replace(&mut self.inner, clone);
        ResponseFuture::verifying(
            verification,
            span,
            presented,
            inner,
            request,
            settings.clone(),
        )
    }
}
