//! Session id handling, through `McpSessionBindingLayer` in front of an rmcp-like session store,
//! against a model of who owns each session: whatever sequence of creations, uses, deletions and
//! odd session-id bytes, a session bound to one principal never serves a request of another
//! principal (anonymous callers included).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower_introspect::Principal;
use tower_introspect::mcp::{MCP_SESSION_ID, McpSessionBindingLayer};
use tower_layer::Layer;
use tower_service::Service;

use crate::fixtures::{bearer, principal};
use crate::recorder::{Received, Recorder};

/// One request: `(kind, who, session, raw_id)`. `kind % 4` is create (`POST` without a session),
/// use or delete (`DELETE`) the `session`-th session created so far, or present `raw_id` as the
/// session id; `who` picks the caller.
pub type Op = (u8, u8, u8, Vec<u8>);

/// The callers: anonymous, alice (two clients), bob, and two tokens with neither `sub` nor
/// `client_id`.
const CALLERS: usize = 6;

fn caller(who: u8) -> (usize, Option<Principal>) {
    let who = usize::from(who) % CALLERS;
    let principal = match who {
        0 => None,
        1 => Some(principal(Some("alice"), Some("web"), 0b111)),
        2 => Some(principal(Some("alice"), Some("cli"), 0b111)),
        3 => Some(principal(Some("bob"), Some("web"), 0b111)),
        _ => Some(principal(None, None, 0b111)),
    };
    (who, principal)
}

/// rmcp's session store, reduced: `POST` without an id creates a session, a known id is served,
/// `DELETE` ends it, an unknown id gets 404.
fn session_store() -> impl Fn(&Received) -> Response<()> + Clone + Send + 'static {
    let sessions = Arc::new(Mutex::new((0_u32, HashSet::<String>::new())));
    move |request: &Received| {
        let mut store = sessions.lock().expect("store lock");
        let presented = request.parts.headers.get(&MCP_SESSION_ID);
        let mut response = Response::new(());
        match presented {
            None => {
                store.0 += 1;
                let id = format!("session-{}", store.0);
                store.1.insert(id.clone());
                response
                    .headers_mut()
                    .insert(MCP_SESSION_ID, HeaderValue::try_from(id).expect("ascii id"));
            }
            Some(id) => {
                let id = String::from_utf8_lossy(id.as_bytes()).into_owned();
                if !store.1.contains(&id) {
                    *response.status_mut() = StatusCode::NOT_FOUND;
                } else if request.parts.method == Method::DELETE {
                    store.1.remove(&id);
                }
            }
        }
        response
    }
}

/// Runs `ops` through the layer and checks every request that reached the session store.
pub fn check(ops: &[Op]) {
    let max_sessions = 4;
    let recorder = Recorder::new(session_store());
    let mut service = McpSessionBindingLayer::default()
        .max_sessions(max_sessions)
        .max_sessions_per_principal(2)
        .max_anonymous_sessions(2)
        .idle_timeout(Duration::from_secs(3600))
        .layer(recorder.clone());
    // The model: session id -> owner (None while anonymous-owned), and the ids created so far.
    let mut owners: HashMap<String, Option<usize>> = HashMap::new();
    let mut created: Vec<String> = Vec::new();

    for (kind, who, session, raw_id) in ops.iter().take(64) {
        let existing = (!created.is_empty()).then(|| {
            created[usize::from(*session) % created.len()]
                .clone()
                .into_bytes()
        });
        let (method, id) = match (kind % 4, existing) {
            (1, Some(id)) => (Method::POST, Some(id)),
            (2, Some(id)) => (Method::DELETE, Some(id)),
            (3, _) => (Method::POST, Some(raw_id.clone())),
            _ => (Method::POST, None),
        };
        let (who, principal) = caller(*who);
        let mut request = Request::builder()
            .method(method.clone())
            .uri("/mcp")
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        let token = format!("token-{who}");
        if principal.is_some() {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, bearer(&token));
        }
        tower_introspect::fuzz_support::as_if_authenticated(
            &mut request,
            principal.clone(),
            &token,
        );
        if let Some(id) = &id {
            match HeaderValue::from_bytes(id) {
                Ok(value) => request.headers_mut().insert(MCP_SESSION_ID, value),
                Err(_) => continue,
            };
        }
        let before = recorder.count();
        let response = service
            .call(request)
            .now_or_never()
            .expect("the layer and the store never wait")
            .expect("infallible");
        let reached = recorder.count() > before;

        let Some(id) = id else {
            if let Some(new) = response.headers().get(&MCP_SESSION_ID) {
                let new = new.to_str().expect("ascii id").to_owned();
                owners.insert(new.clone(), principal.is_some().then_some(who));
                created.push(new);
            }
            continue;
        };
        // What the session store saw: the same bytes, decoded as it decodes them.
        let id = String::from_utf8_lossy(&id).into_owned();
        match owners.get(&id).copied() {
            Some(Some(bound)) if reached => assert_eq!(
                bound, who,
                "session {id:?} of caller {bound} served caller {who}"
            ),
            Some(None) => assert!(
                !(reached && principal.is_some()),
                "anonymous session {id:?} served the authenticated caller {who}: a session \
                 created anonymously is never claimed"
            ),
            None => assert!(
                !reached,
                "session id {id:?} that the layer never issued (or ended) was passed through"
            ),
            _ => {}
        }
        if reached && method == Method::DELETE && response.status().is_success() {
            owners.remove(&id);
        }
    }
}
