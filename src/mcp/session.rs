//! [`McpSessionBindingLayer`]: an MCP session belongs to the principal that created it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::mem;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::HeaderName;
use http::{HeaderMap, Method, Request, Response};
use sha2::{Digest, Sha256};
use tower_layer::Layer;
use tower_service::Service;

use super::owner::OwnerKey;
use super::refusal::Refusal;
use super::scope_layer::McpScopeFuture;
use crate::Principal;
use crate::challenge::{ChallengeContext, Challenger, Rejection};

/// The MCP session header.
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// Default bound on sessions, all principals and anonymous callers together.
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;
/// Default bound on the sessions of one principal.
pub const DEFAULT_MAX_SESSIONS_PER_PRINCIPAL: usize = 100;
/// Default bound on the sessions created without a token, all anonymous callers together.
pub const DEFAULT_MAX_ANONYMOUS_SESSIONS: usize = 1_000;
/// Default time a session binding is kept after its last use: five minutes, as long as rmcp's
/// `LocalSessionManager` keeps an idle session by default. A binding that outlived its session
/// would hold a place in its owner's bound for nothing; one that ends first only makes the
/// client re-initialize.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(300);

/// How often, at most, a full table looks for idle bindings to drop.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A SHA-256 digest: session ids and owners are kept only in this form, so the table's memory
/// per session is fixed and a dump of it reveals no usable session id.
type Key = [u8; 32];

/// Who owns a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Owner {
    /// Created without a token (the bearer layer lets anonymous requests through).
    Anonymous,
    /// The principal's [`OwnerKey`].
    Principal(Key),
}

impl Owner {
    /// The owner of what this request creates; `None` when the request cannot be attributed.
    fn of(principal: Option<&Principal>) -> Option<Owner> {
        let Some(principal) = principal else {
            return Some(Owner::Anonymous);
        };
        OwnerKey::of(principal).map(|owner| Owner::Principal(owner.into()))
    }
}

fn session_key(id: &str) -> Key {
    Sha256::digest(id.as_bytes()).into()
}

/// The bounds of a [`McpSessionBindingLayer`].
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_sessions: usize,
    per_principal: usize,
    anonymous: usize,
    idle: Duration,
}

impl Limits {
    fn of(&self, owner: Owner) -> usize {
        match owner {
            Owner::Anonymous => self.anonymous,
            Owner::Principal(_) => self.per_principal,
        }
    }
}

struct Binding {
    owner: Owner,
    last_used: Instant,
}

/// Why a session may not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    /// The owner holds as many sessions as one owner may: 429.
    Owner,
    /// The server holds as many sessions as it may: 503.
    Server,
}

impl Full {
    fn refusal(self) -> Refusal {
        match self {
            Full::Owner => Refusal::OwnerFull,
            Full::Server => Refusal::ServerFull,
        }
    }
}

/// What the table says about a presented session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Granted,
    Unknown,
    Foreign,
    /// A session created without a token, presented with one.
    Anonymous,
}

/// The bindings, with a count per owner of its bindings and pending creations.
#[derive(Default)]
struct Table {
    bindings: HashMap<Key, Binding>,
    /// Bindings plus reservations, per owner; never holds a zero.
    counts: HashMap<Owner, usize>,
    /// Bindings plus reservations.
    total: usize,
    last_sweep: Option<Instant>,
}

impl Table {
    fn count(&self, owner: Owner) -> usize {
        self.counts.get(&owner).copied().unwrap_or(0)
    }

    fn add(&mut self, owner: Owner) {
        *self.counts.entry(owner).or_default() += 1;
        self.total += 1;
    }

    fn release(&mut self, owner: Owner) {
        if let Entry::Occupied(mut count) = self.counts.entry(owner) {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                count.remove();
            }
        }
        self.total -= 1;
    }

    /// Whether `owner` may hold one more session, after dropping idle bindings if that helps.
    fn room_for(&mut self, owner: Owner, now: Instant, limits: &Limits) -> Result<(), Full> {
        let full = |table: &Table| {
            if table.count(owner) >= limits.of(owner) {
                Err(Full::Owner)
            } else if table.total >= limits.max_sessions {
                Err(Full::Server)
            } else {
                Ok(())
            }
        };
        if full(self).is_ok() {
            return Ok(());
        }
        if self
            .last_sweep
            .is_none_or(|last| now.duration_since(last) >= SWEEP_INTERVAL)
        {
            self.sweep(now, limits.idle);
        }
        full(self)
    }

    /// Drops every binding idle for `idle` or longer.
    fn sweep(&mut self, now: Instant, idle: Duration) {
        self.last_sweep = Some(now);
        let mut dropped = Vec::new();
        self.bindings.retain(|_, binding| {
            let live = now.duration_since(binding.last_used) < idle;
            if !live {
                dropped.push(binding.owner);
            }
            live
        });
        for owner in dropped {
            self.release(owner);
        }
    }

    /// Judges a presented session id and, when granted, records the use.
    fn access(&mut self, session: &Key, caller: Owner, now: Instant, limits: &Limits) -> Access {
        let Some(binding) = self.bindings.get(session) else {
            return Access::Unknown;
        };
        if now.duration_since(binding.last_used) >= limits.idle {
            let owner = binding.owner;
            self.bindings.remove(session);
            self.release(owner);
            return Access::Unknown;
        }
        let bound = binding.owner;
        if bound != caller {
            return if bound == Owner::Anonymous {
                // Never claimed by a principal: an anonymous caller may hold a stream on it
                // (rmcp sends server-initiated messages to the first stream), which would then
                // carry the principal's messages. The client starts a new session, as after
                // any 404.
                Access::Anonymous
            } else {
                Access::Foreign
            };
        }
        let binding = self.bindings.get_mut(session).expect("looked up above");
        binding.last_used = now;
        Access::Granted
    }
}

/// The table and bounds every clone of a layer and its services share.
struct Shared {
    table: Mutex<Table>,
    limits: Limits,
    clock: Clock,
}

/// Where the layer reads the time (a hand-moved clock in tests).
type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        // The table is consistent after every statement that can panic, so a poisoned lock
        // (a panic elsewhere while holding it) leaves nothing half-done.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Binds each `Mcp-Session-Id` to the principal whose request created it, refuses it to anyone
/// else, and refuses session ids it does not know.
///
/// Session ids travel in a plain header; the MCP specification asks servers not to treat them as
/// authentication and to bind them to the user. With this layer a leaked session id is useless to
/// anyone holding a different token (the same user with a refreshed token keeps working, since the
/// binding is to issuer, subject and client, not to the token). A principal with neither subject
/// nor client id owns its sessions by its token (a SHA-256 of it; the token itself is not kept):
/// two such tokens never share a session.
///
/// | request | answer |
/// |---|---|
/// | session id of another principal, or of a principal's session presented without a token | 403 |
/// | session id of a session created without a token, presented with one | 404: the client starts a new session |
/// | session id the layer does not know (never seen, idle past the limit, ended, or from before a restart) | 404, as the MCP transport prescribes for an expired session: the client starts a new one |
/// | several `Mcp-Session-Id` headers, or one that is not visible ASCII | 400 |
/// | a new session beyond the principal's bound (anonymous callers share one) | 429 |
/// | a new session beyond the server's bound | 503 |
/// | the layer outside [`BearerAuthLayer`](crate::BearerAuthLayer) (no principal and no sign of the bearer layer) | 401, like the scope layers: it fails closed |
///
/// The refusals other than the 401 carry a JSON-RPC 2.0 error (`Content-Type: application/json`,
/// `id` `null`: the layer reads no body) naming the reason: `-32001` for 404, `-32002` for 403,
/// `-32003` for 429, `-32004` for 503 and `-32600` for 400 (see
/// [`McpScopeLayer`](super::McpScopeLayer) for the body types it is written for).
///
/// An unknown session id is never passed through: a binding forgotten for any reason must not
/// turn its session into one anybody may use. The consequence is that after a restart (the
/// bindings live in memory) every client re-initializes, as it would when the MCP server itself
/// forgot its sessions. Match the [`idle_timeout`](Self::idle_timeout) to how long the MCP
/// server keeps an idle session: shorter makes clients re-initialize sooner than needed, longer
/// keeps places in the bounds for sessions that are gone.
///
/// The bounds are enforced by refusing new sessions, never by evicting live ones: eviction would
/// let a flood of new sessions (even anonymous ones) make a victim's session unknown, a denial of
/// service. A new session needs room both in its owner's bound (default 100 per principal,
/// 1,000 for all anonymous callers together) and in the server's (default 100,000); idle
/// bindings free their room after the idle timeout (default five minutes) or a `DELETE` that ends
/// the session. A flood of anonymous sessions can thus deny new *anonymous* sessions for that
/// long, but neither authenticated users' new sessions (as long as the anonymous bound is below
/// the server's) nor anybody's existing ones. Each binding holds two SHA-256 digests and a time
/// stamp (about 100 bytes with the table's overhead), so the default bound costs this layer at
/// most about 10 MB; the MCP server's own state per session is the larger cost, which the bounds
/// cap too, since a refused creation never reaches it: size them with it.
///
/// A `POST` without a session id may create one, so it holds a place in its owner's bound until
/// its response arrives (a response without a session id frees it): a stateless server's
/// requests only count while they wait for their response headers.
///
/// A session created anonymously (bearer layer in
/// [`allow_missing_token`](crate::BearerAuthLayer::allow_missing_token) mode) stays anonymous: a
/// request with a token on it gets 404, so the client starts a new session with its token. It is
/// never handed to a principal, since whoever opened its stream anonymously would keep receiving
/// what the server sends on the session.
///
/// Place it inside [`BearerAuthLayer`](crate::BearerAuthLayer).
///
/// ```
/// use std::time::Duration;
/// use tower_introspect::mcp::McpSessionBindingLayer;
///
/// let sessions = McpSessionBindingLayer::default()
///     .max_sessions(20_000)
///     .max_sessions_per_principal(10)
///     .max_anonymous_sessions(0) // no anonymous sessions at all
///     .idle_timeout(Duration::from_secs(30 * 60));
/// # let _ = sessions;
/// ```
#[derive(Clone)]
pub struct McpSessionBindingLayer {
    shared: Arc<Shared>,
}

impl Default for McpSessionBindingLayer {
    fn default() -> Self {
        Self::with_limits(
            Limits {
                max_sessions: DEFAULT_MAX_SESSIONS,
                per_principal: DEFAULT_MAX_SESSIONS_PER_PRINCIPAL,
                anonymous: DEFAULT_MAX_ANONYMOUS_SESSIONS,
                idle: DEFAULT_SESSION_IDLE,
            },
            Arc::new(Instant::now),
        )
    }
}

impl McpSessionBindingLayer {
    fn with_limits(limits: Limits, clock: Clock) -> Self {
        Self {
            shared: Arc::new(Shared {
                table: Mutex::default(),
                limits,
                clock,
            }),
        }
    }

    /// A layer with new limits and a fresh (empty) table; settings are given before serving.
    fn reconfigure(self, change: impl FnOnce(&mut Limits)) -> Self {
        let mut limits = self.shared.limits;
        change(&mut limits);
        Self::with_limits(limits, self.shared.clock.clone())
    }

    /// Bound on sessions, all owners together (default 100,000).
    #[must_use]
    pub fn max_sessions(self, max: usize) -> Self {
        self.reconfigure(|l| l.max_sessions = max)
    }

    /// Bound on the sessions of one principal (default 100).
    #[must_use]
    pub fn max_sessions_per_principal(self, max: usize) -> Self {
        self.reconfigure(|l| l.per_principal = max)
    }

    /// Bound on the sessions created without a token, all anonymous callers together
    /// (default 1,000; 0 refuses anonymous sessions).
    #[must_use]
    pub fn max_anonymous_sessions(self, max: usize) -> Self {
        self.reconfigure(|l| l.anonymous = max)
    }

    /// How long a binding is kept after its last use (default five minutes, rmcp's default
    /// session keep-alive); the session id is then unknown (404). Match it to how long the MCP
    /// server keeps an idle session.
    #[must_use]
    pub fn idle_timeout(self, idle: Duration) -> Self {
        self.reconfigure(|l| l.idle = idle)
    }

    /// Number of sessions bound or being created.
    pub fn session_count(&self) -> usize {
        self.shared.table().total
    }

    #[cfg(test)]
    fn with_clock(self, clock: Clock) -> Self {
        Self::with_limits(self.shared.limits, clock)
    }
}

impl fmt::Debug for McpSessionBindingLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpSessionBindingLayer")
            .field("limits", &self.shared.limits)
            .field("sessions", &self.session_count())
            .finish()
    }
}

impl<S> Layer<S> for McpSessionBindingLayer {
    type Service = McpSessionBinding<S>;

    fn layer(&self, inner: S) -> Self::Service {
        McpSessionBinding {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service built by [`McpSessionBindingLayer`].
#[derive(Clone)]
pub struct McpSessionBinding<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for McpSessionBinding<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpSessionBinding")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// A place held in an owner's bound for a session being created; given back on drop unless the
/// session was bound.
struct Reservation {
    shared: Arc<Shared>,
    owner: Owner,
    held: bool,
}

impl Reservation {
    fn bind(mut self, session: Key) {
        let shared = self.shared.clone();
        let mut table = shared.table();
        if table.bindings.contains_key(&session) {
            // The server handed out an id that is already bound: keep the first owner.
            drop(table);
            tracing::warn!("MCP server reused a bound session id; the new binding is refused");
            return; // dropping `self` gives the place back
        }
        self.held = false;
        let last_used = (shared.clock)();
        table.bindings.insert(
            session,
            Binding {
                owner: self.owner,
                last_used,
            },
        );
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held {
            self.shared.table().release(self.owner);
        }
    }
}

/// The one `Mcp-Session-Id` of a request: `Ok(None)` without one, `Err` for several or an
/// unreadable one (the inner service might read another copy, or read it otherwise).
fn presented_session(headers: &HeaderMap) -> Result<Option<&str>, ()> {
    let mut values = headers.get_all(&MCP_SESSION_ID).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    let id = value.to_str().map_err(|_| ())?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(());
    }
    Ok(Some(id))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for McpSessionBinding<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = McpScopeFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let refuse = |refusal: Refusal| -> Self::Future {
            // The layer reads no body: no request `id` to name.
            let response = refusal.response(serde_json::Value::Null);
            Box::pin(async move { Ok(response) })
        };
        let extensions = request.extensions();
        let principal = extensions.get::<Principal>();
        if principal.is_none() && extensions.get::<ChallengeContext>().is_none() {
            // Neither a principal nor the bearer layer's mark: the layer is outside the bearer
            // layer, where every caller would look anonymous and share every session.
            tracing::error!("McpSessionBindingLayer is not inside BearerAuthLayer; refusing");
            let challenger = Challenger::of(&request);
            let response = challenger.response(&Rejection::MissingToken, request.headers());
            return Box::pin(async move { Ok(response) });
        }
        let Some(owner) = Owner::of(principal) else {
            tracing::warn!("MCP request by a principal with no subject, client or token; refused");
            return refuse(Refusal::Unattributable);
        };
        let presented = match presented_session(request.headers()) {
            Ok(presented) => presented.map(session_key),
            Err(()) => return refuse(Refusal::SessionHeader),
        };
        let shared = self.shared.clone();
        let now = (shared.clock)();
        let reservation = match presented {
            Some(session) => match shared.table().access(&session, owner, now, &shared.limits) {
                Access::Granted => None,
                Access::Unknown => {
                    tracing::debug!("unknown MCP session id refused");
                    return refuse(Refusal::UnknownSession);
                }
                Access::Foreign => {
                    tracing::warn!(
                        "MCP session id presented by a principal that did not create it"
                    );
                    return refuse(Refusal::ForeignSession);
                }
                Access::Anonymous => {
                    tracing::debug!("anonymous MCP session presented with a token; refused");
                    return refuse(Refusal::AnonymousSession);
                }
            },
            None if request.method() == Method::POST => {
                let mut table = shared.table();
                if let Err(full) = table.room_for(owner, now, &shared.limits) {
                    tracing::debug!(?full, "new MCP session refused: bound reached");
                    return refuse(full.refusal());
                }
                table.add(owner);
                Some(Reservation {
                    shared: shared.clone(),
                    owner,
                    held: true,
                })
            }
            None => None,
        };
        let ends_session = request.method() == Method::DELETE;
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            match (presented, reservation) {
                (Some(session), _) if ends_session && response.status().is_success() => {
                    let mut table = shared.table();
                    if let Some(binding) = table.bindings.remove(&session) {
                        table.release(binding.owner);
                    }
                }
                (None, Some(reservation)) => {
                    if let Ok(Some(created)) = presented_session(response.headers()) {
                        reservation.bind(session_key(created));
                    }
                }
                _ => {}
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    use http::{HeaderValue, StatusCode};
    use tower::ServiceExt;

    use crate::IntrospectionResponse;

    /// A clock the test moves by hand, in seconds.
    fn manual_clock() -> (Arc<AtomicU64>, Clock) {
        let seconds = Arc::new(AtomicU64::new(0));
        let origin = Instant::now();
        let read = seconds.clone();
        let clock: Clock =
            Arc::new(move || origin + Duration::from_secs(read.load(Ordering::SeqCst)));
        (seconds, clock)
    }

    fn principal(claims: serde_json::Value, token: &str) -> Principal {
        let claims: IntrospectionResponse = serde_json::from_value(claims).unwrap();
        Principal::new(claims.into()).with_token_key(crate::cache::token_key(token))
    }

    /// A stand-in MCP server: a `POST` without a session id creates session `s<n>`.
    fn server(
        layer: &McpSessionBindingLayer,
    ) -> impl Service<
        Request<()>,
        Response = Response<String>,
        Error = std::convert::Infallible,
        Future = McpScopeFuture<Response<String>, std::convert::Infallible>,
    > + Clone {
        let created = Arc::new(AtomicU64::new(0));
        layer.layer(tower::service_fn(move |request: Request<()>| {
            let created = created.clone();
            async move {
                let mut response = Response::new(String::new());
                if request.method() == Method::POST
                    && !request.headers().contains_key(&MCP_SESSION_ID)
                {
                    let n = created.fetch_add(1, Ordering::SeqCst);
                    response.headers_mut().insert(
                        MCP_SESSION_ID,
                        HeaderValue::from_str(&format!("s{n}")).unwrap(),
                    );
                }
                Ok(response)
            }
        }))
    }

    fn request(method: Method, principal: Option<Principal>, session: Option<&str>) -> Request<()> {
        let mut request = Request::builder().method(method).uri("/mcp");
        if let Some(session) = session {
            request = request.header(MCP_SESSION_ID, session);
        }
        let mut request = request.body(()).unwrap();
        match principal {
            Some(p) => {
                request.extensions_mut().insert(p);
            }
            None => {
                // What the bearer layer leaves on an anonymous request it lets through.
                request
                    .extensions_mut()
                    .insert(ChallengeContext(Arc::default()));
            }
        }
        request
    }

    async fn send<S>(service: &S, request: Request<()>) -> Response<String>
    where
        S: Service<Request<()>, Response = Response<String>, Error = std::convert::Infallible>
            + Clone,
    {
        service.clone().oneshot(request).await.unwrap()
    }

    async fn create<S>(service: &S, principal: Option<Principal>) -> String
    where
        S: Service<Request<()>, Response = Response<String>, Error = std::convert::Infallible>
            + Clone,
    {
        let response = send(service, request(Method::POST, principal, None)).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.headers()[&MCP_SESSION_ID]
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[tokio::test]
    async fn an_idle_binding_expires_into_an_unknown_id_not_a_free_one() {
        let (seconds, clock) = manual_clock();
        let layer = McpSessionBindingLayer::default()
            .idle_timeout(Duration::from_secs(60))
            .with_clock(clock);
        let service = server(&layer);
        let alice = principal(serde_json::json!({"active": true, "sub": "alice"}), "a");
        let mallory = principal(serde_json::json!({"active": true, "sub": "mallory"}), "m");
        let session = create(&service, Some(alice.clone())).await;

        seconds.fetch_add(59, Ordering::SeqCst);
        let used = send(
            &service,
            request(Method::POST, Some(alice.clone()), Some(&session)),
        )
        .await;
        assert_eq!(used.status(), StatusCode::OK);
        // Use refreshed the binding: 59 s later it still holds, and still refuses the thief.
        seconds.fetch_add(59, Ordering::SeqCst);
        let stolen = send(
            &service,
            request(Method::POST, Some(mallory.clone()), Some(&session)),
        )
        .await;
        assert_eq!(stolen.status(), StatusCode::FORBIDDEN);
        // A full idle period later, the id is unknown to everybody, the thief included.
        seconds.fetch_add(60, Ordering::SeqCst);
        for caller in [Some(mallory), None, Some(alice)] {
            let late = send(&service, request(Method::POST, caller, Some(&session))).await;
            assert_eq!(late.status(), StatusCode::NOT_FOUND);
        }
        assert_eq!(layer.session_count(), 0);
    }

    #[tokio::test]
    async fn an_anonymous_session_stays_anonymous_and_a_token_on_it_gets_404() {
        let layer = McpSessionBindingLayer::default().max_sessions_per_principal(1);
        let service = server(&layer);
        let alice = principal(serde_json::json!({"active": true, "sub": "alice"}), "a");
        let session = create(&service, None).await;
        for method in [Method::POST, Method::GET, Method::DELETE] {
            let claimed = send(
                &service,
                request(method.clone(), Some(alice.clone()), Some(&session)),
            )
            .await;
            assert_eq!(claimed.status(), StatusCode::NOT_FOUND, "{method}");
        }
        // Still anonymous: anonymous callers carry on, and alice's bound is untouched.
        let used = send(&service, request(Method::POST, None, Some(&session))).await;
        assert_eq!(used.status(), StatusCode::OK);
        create(&service, Some(alice)).await;
        assert_eq!(layer.session_count(), 2);
    }

    #[tokio::test]
    async fn idle_bindings_free_their_room_in_the_bound() {
        let (seconds, clock) = manual_clock();
        let layer = McpSessionBindingLayer::default()
            .max_anonymous_sessions(2)
            .idle_timeout(Duration::from_secs(10))
            .with_clock(clock);
        let service = server(&layer);
        create(&service, None).await;
        create(&service, None).await;
        let refused = send(&service, request(Method::POST, None, None)).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        seconds.fetch_add(10, Ordering::SeqCst);
        create(&service, None).await;
        assert_eq!(layer.session_count(), 1);
    }

    #[tokio::test]
    async fn a_creation_without_a_session_in_its_response_gives_its_place_back() {
        let layer = McpSessionBindingLayer::default().max_sessions_per_principal(1);
        // A stateless server: never a session id.
        let service = layer.layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(String::new()))
        }));
        let alice = principal(serde_json::json!({"active": true, "sub": "alice"}), "a");
        for _ in 0..3 {
            let response = service
                .clone()
                .oneshot(request(Method::POST, Some(alice.clone()), None))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        assert_eq!(layer.session_count(), 0);
    }

    #[tokio::test]
    async fn a_delete_frees_the_binding_and_the_id_becomes_unknown() {
        let layer = McpSessionBindingLayer::default().max_sessions_per_principal(1);
        let service = server(&layer);
        let alice = principal(serde_json::json!({"active": true, "sub": "alice"}), "a");
        let session = create(&service, Some(alice.clone())).await;
        let full = send(&service, request(Method::POST, Some(alice.clone()), None)).await;
        assert_eq!(full.status(), StatusCode::TOO_MANY_REQUESTS);
        let ended = send(
            &service,
            request(Method::DELETE, Some(alice.clone()), Some(&session)),
        )
        .await;
        assert_eq!(ended.status(), StatusCode::OK);
        assert_eq!(layer.session_count(), 0);
        let gone = send(
            &service,
            request(Method::POST, Some(alice.clone()), Some(&session)),
        )
        .await;
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
        create(&service, Some(alice)).await;
    }

    #[tokio::test]
    async fn session_ids_that_cannot_be_read_one_way_are_refused() {
        let layer = McpSessionBindingLayer::default();
        let service = server(&layer);
        let alice = principal(serde_json::json!({"active": true, "sub": "alice"}), "a");
        let session = create(&service, Some(alice.clone())).await;
        let mut twice = request(Method::POST, Some(alice.clone()), Some(&session));
        twice
            .headers_mut()
            .append(MCP_SESSION_ID, HeaderValue::from_static("other"));
        assert_eq!(
            send(&service, twice).await.status(),
            StatusCode::BAD_REQUEST
        );
        let mut opaque = request(Method::POST, Some(alice.clone()), None);
        opaque
            .headers_mut()
            .insert(MCP_SESSION_ID, HeaderValue::from_bytes(b"s0\xff").unwrap());
        assert_eq!(
            send(&service, opaque).await.status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(layer.session_count(), 1);
    }

    #[test]
    fn owners_are_issuer_subject_and_client_or_else_the_token() {
        let owner = |claims: serde_json::Value, token: &str| {
            Owner::of(Some(&principal(claims, token))).unwrap()
        };
        let alice =
            serde_json::json!({"active": true, "iss": "i", "sub": "alice", "client_id": "c"});
        // Another token of the same user and client: the same owner.
        assert_eq!(owner(alice.clone(), "t1"), owner(alice, "t2"));
        // Nobody named: the token is the owner.
        let nameless = serde_json::json!({"active": true, "scope": "read"});
        assert_ne!(owner(nameless.clone(), "t1"), owner(nameless.clone(), "t2"));
        assert_eq!(owner(nameless.clone(), "t1"), owner(nameless.clone(), "t1"));
        // Field boundaries count: ("ab", "c") is not ("a", "bc").
        assert_ne!(
            owner(
                serde_json::json!({"active": true, "iss": "ab", "sub": "c"}),
                "t"
            ),
            owner(
                serde_json::json!({"active": true, "iss": "a", "sub": "bc"}),
                "t"
            )
        );
        // A principal nobody can attribute (no names, no token) is not an owner.
        let unattributable = Principal::new(
            serde_json::from_value::<IntrospectionResponse>(nameless)
                .unwrap()
                .into(),
        );
        assert_eq!(Owner::of(Some(&unattributable)), None);
        assert_eq!(Owner::of(None), Some(Owner::Anonymous));
    }
}
