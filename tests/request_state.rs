//! Multi round-trip requests (MCP 2026-07-28) in the demo MCP server: `delete_note` asks the user
//! to confirm, and its state travels in a sealed `requestState`. Only the principal it was issued
//! to, unaltered, before it expires and for the note it names, gets the note deleted; every other
//! retry is refused before the tool acts.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_introspect::mcp::{SealingKey, StateSealer};
use tower_introspect_demo::confirmation::RequestStates;
use tower_introspect_demo::mcp_client::{McpSession, Outcome};
use tower_introspect_demo::mcp_server::McpServer;
use wiremock::MockServer;

use common::{ISSUER, demo_auth, expect_introspection, install_crypto, now};

const TTL: Duration = Duration::from_secs(60);

fn active(sub: &str, resource: &str) -> Value {
    json!({
        "active": true, "sub": sub, "client_id": "client-1", "scope": "read",
        "aud": resource, "iss": ISSUER, "exp": now() + 3600,
    })
}

/// A clock the test sets, in Unix seconds.
struct TestClock(Arc<AtomicU64>);

impl TestClock {
    fn start() -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        Self(Arc::new(AtomicU64::new(now.as_secs())))
    }

    fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_secs(), Ordering::SeqCst);
    }

    fn rewind(&self, by: Duration) {
        self.0.fetch_sub(by.as_secs(), Ordering::SeqCst);
    }

    fn request_states(&self) -> RequestStates {
        let seconds = self.0.clone();
        let sealer = StateSealer::new(SealingKey::new("test", [42u8; 32]).unwrap());
        RequestStates::new(sealer, TTL).with_clock(Arc::new(move || {
            UNIX_EPOCH + Duration::from_secs(seconds.load(Ordering::SeqCst))
        }))
    }
}

fn allowed(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Allowed(text) => serde_json::from_str(&text).expect("the tool answers JSON"),
        other => panic!("expected the tool to run, got {other}: {other:?}"),
    }
}

fn accept() -> Option<Value> {
    Some(json!({"confirm": {"action": "accept", "content": {"confirm": true}}}))
}

struct Fixture {
    _authorization_server: MockServer,
    server: McpServer,
    clock: TestClock,
}

/// The demo server, and an authorization server that knows `users` (token `<user>-1`), each
/// introspected exactly once (the verdicts are cached).
async fn start(users: &[&str]) -> Fixture {
    install_crypto();
    let authorization_server = MockServer::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource = format!("http://{}/mcp", listener.local_addr().unwrap());
    for user in users {
        let token = format!("{user}-1");
        expect_introspection(&authorization_server, &token, active(user, &resource), 1).await;
    }
    let auth = demo_auth(&authorization_server);
    let clock = TestClock::start();
    let server = McpServer::start_with_request_states(listener, &auth, clock.request_states())
        .await
        .unwrap();
    Fixture {
        _authorization_server: authorization_server,
        server,
        clock,
    }
}

async fn create_note(session: &mut McpSession, text: &str) -> String {
    let created = allowed(
        session
            .call_tool("create_note", json!({"text": text}))
            .await
            .unwrap(),
    );
    created["handle"].as_str().expect("a handle").to_owned()
}

async fn read_note(session: &mut McpSession, handle: &str) -> Outcome {
    session
        .call_tool("read_note", json!({"handle": handle}))
        .await
        .unwrap()
}

/// The first round: the question and its sealed state.
async fn ask_to_delete(session: &mut McpSession, handle: &str) -> String {
    let outcome = session
        .call_tool("delete_note", json!({"handle": handle}))
        .await
        .unwrap();
    let Outcome::InputRequired {
        input_requests,
        request_state,
    } = outcome
    else {
        panic!("expected an InputRequiredResult, got {outcome:?}");
    };
    assert_eq!(input_requests["confirm"]["method"], "elicitation/create");
    assert_eq!(input_requests["confirm"]["params"]["mode"], "form");
    assert_eq!(
        input_requests["confirm"]["params"]["requestedSchema"]["required"],
        json!(["confirm"])
    );
    request_state.expect("a requestState")
}

async fn retry(
    session: &mut McpSession,
    handle: &str,
    responses: Option<Value>,
    state: &str,
) -> Outcome {
    session
        .call_tool_with(
            "delete_note",
            json!({"handle": handle}),
            responses,
            Some(state),
        )
        .await
        .unwrap()
}

/// The message of the JSON-RPC error (HTTP 200) refusing the state.
fn refused(outcome: Outcome) -> String {
    match outcome {
        Outcome::Other(status, message) if message.starts_with("requestState refused") => {
            assert_eq!(status, 200, "{message}");
            message
        }
        other => panic!("expected the requestState to be refused, got {other:?}"),
    }
}

#[tokio::test]
async fn the_same_user_continues_with_the_state_and_the_note_is_deleted() {
    let fixture = start(&["alice"]).await;
    let mut alice = McpSession::sessionless(&fixture.server.url, Some("alice-1")).unwrap();
    let handle = create_note(&mut alice, "to be deleted").await;
    let state = ask_to_delete(&mut alice, &handle).await;
    // Asking deleted nothing.
    assert!(read_note(&mut alice, &handle).await.is_allowed());

    let done = allowed(retry(&mut alice, &handle, accept(), &state).await);
    assert_eq!(done, json!({"deleted": true, "handle": handle}));
    assert_eq!(
        read_note(&mut alice, &handle).await,
        Outcome::Other(200, "no such note".to_owned())
    );
    // A replay of the same state finds nothing left to delete.
    assert_eq!(
        retry(&mut alice, &handle, accept(), &state).await,
        Outcome::Other(200, "no such note".to_owned())
    );
}

#[tokio::test]
async fn another_user_presenting_the_state_is_refused_and_nothing_is_deleted() {
    let fixture = start(&["alice", "bob"]).await;
    let mut alice = McpSession::sessionless(&fixture.server.url, Some("alice-1")).unwrap();
    let handle = create_note(&mut alice, "alice's").await;
    let state = ask_to_delete(&mut alice, &handle).await;

    let mut bob = McpSession::sessionless(&fixture.server.url, Some("bob-1")).unwrap();
    assert_eq!(
        refused(retry(&mut bob, &handle, accept(), &state).await),
        "requestState refused: the sealed value belongs to another principal"
    );
    assert_eq!(
        allowed(read_note(&mut alice, &handle).await),
        json!({"text": "alice's"})
    );
}

#[tokio::test]
async fn tampered_state_is_refused_and_nothing_is_deleted() {
    let fixture = start(&["alice"]).await;
    let mut alice = McpSession::sessionless(&fixture.server.url, Some("alice-1")).unwrap();
    let handle = create_note(&mut alice, "kept").await;
    let state = ask_to_delete(&mut alice, &handle).await;

    // One character of the sealed bytes changed (the last one carries MAC bits only partly, so
    // change one in the middle).
    let mut tampered = state.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(
        refused(retry(&mut alice, &handle, accept(), &tampered).await),
        "requestState refused: the sealed value failed its integrity check"
    );
    assert_eq!(
        refused(retry(&mut alice, &handle, accept(), "not a sealed value").await),
        "requestState refused: the sealed value is malformed"
    );
    // A state issued for one note does not delete another.
    let other = create_note(&mut alice, "also kept").await;
    assert_eq!(
        refused(retry(&mut alice, &other, accept(), &state).await),
        "requestState refused: it was issued for another request"
    );
    assert!(read_note(&mut alice, &handle).await.is_allowed());
    assert!(read_note(&mut alice, &other).await.is_allowed());
}

#[tokio::test]
async fn expired_state_is_refused_and_nothing_is_deleted() {
    let fixture = start(&["alice"]).await;
    let mut alice = McpSession::sessionless(&fixture.server.url, Some("alice-1")).unwrap();
    let handle = create_note(&mut alice, "kept").await;
    let state = ask_to_delete(&mut alice, &handle).await;

    fixture.clock.advance(TTL);
    assert_eq!(
        refused(retry(&mut alice, &handle, accept(), &state).await),
        "requestState refused: the sealed value has expired"
    );
    assert!(read_note(&mut alice, &handle).await.is_allowed());

    // One second earlier the same state is still good.
    fixture.clock.rewind(Duration::from_secs(1));
    let done = allowed(retry(&mut alice, &handle, accept(), &state).await);
    assert_eq!(done["deleted"], true);
}

#[tokio::test]
async fn a_missing_answer_is_asked_again_and_a_declined_one_deletes_nothing() {
    let fixture = start(&["alice"]).await;
    let mut alice = McpSession::sessionless(&fixture.server.url, Some("alice-1")).unwrap();
    let handle = create_note(&mut alice, "kept").await;
    let state = ask_to_delete(&mut alice, &handle).await;

    let again = retry(&mut alice, &handle, None, &state).await;
    assert!(
        matches!(
            &again,
            Outcome::InputRequired {
                request_state: Some(_),
                ..
            }
        ),
        "{again:?}"
    );
    let declined = Some(json!({"confirm": {"action": "decline"}}));
    assert_eq!(
        allowed(retry(&mut alice, &handle, declined, &state).await),
        json!({"deleted": false, "handle": handle})
    );
    assert!(read_note(&mut alice, &handle).await.is_allowed());
}

#[tokio::test]
async fn a_client_of_an_older_version_is_told_why_and_nothing_is_deleted() {
    let fixture = start(&["alice"]).await;
    let mut alice = McpSession::connect(&fixture.server.url, Some("alice-1"))
        .await
        .unwrap();
    let handle = create_note(&mut alice, "kept").await;
    assert_eq!(
        alice
            .call_tool("delete_note", json!({"handle": handle}))
            .await
            .unwrap(),
        Outcome::Other(
            200,
            "delete_note asks the user to confirm in a multi round-trip request, which needs MCP \
             2026-07-28"
                .to_owned()
        )
    );
    assert!(read_note(&mut alice, &handle).await.is_allowed());
}

/// The spec: a server must not send an input request the client has not declared support for.
#[tokio::test]
async fn a_client_without_elicitation_gets_no_input_request_and_nothing_is_deleted() {
    let fixture = start(&["alice"]).await;
    let mut alice = McpSession::sessionless(&fixture.server.url, Some("alice-1"))
        .unwrap()
        .declare_elicitation(false);
    let handle = create_note(&mut alice, "kept").await;
    assert_eq!(
        alice
            .call_tool("delete_note", json!({"handle": handle}))
            .await
            .unwrap(),
        Outcome::Other(
            200,
            "delete_note asks the user to confirm: the client must declare the elicitation \
             capability"
                .to_owned()
        )
    );
    assert!(read_note(&mut alice, &handle).await.is_allowed());
}

#[tokio::test]
async fn without_a_token_the_tool_is_challenged_before_it_runs() {
    let fixture = start(&[]).await;
    let mut anonymous = McpSession::sessionless(&fixture.server.url, None).unwrap();
    let outcome = anonymous
        .call_tool(
            "delete_note",
            json!({"handle": "0123456789abcdef0123456789abcdef"}),
        )
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Unauthorized(None));
}
