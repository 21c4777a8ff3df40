//! Sessionless state in the demo MCP server: a handle made by one principal's `create_note` is
//! usable in its next call, also with a refreshed token, and by nobody else.

mod common;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_introspect_demo::mcp_client::{McpSession, Outcome};
use tower_introspect_demo::mcp_server::McpServer;
use wiremock::MockServer;

use common::{ISSUER, demo_auth, expect_introspection, install_crypto, now};

fn active(sub: &str, resource: &str) -> Value {
    json!({
        "active": true, "sub": sub, "client_id": "client-1", "scope": "read",
        "aud": resource, "iss": ISSUER, "exp": now() + 3600,
    })
}

fn allowed(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Allowed(text) => serde_json::from_str(&text).expect("the tool answers JSON"),
        other => panic!("expected the tool to run, got {other}"),
    }
}

#[tokio::test]
async fn a_note_handle_works_for_its_creator_only() {
    install_crypto();
    let authorization_server = MockServer::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let resource = format!("http://{}/mcp", listener.local_addr().unwrap());
    // One introspection per token: the verdicts are cached.
    for (token, sub) in [("alice-1", "alice"), ("alice-2", "alice"), ("bob-1", "bob")] {
        expect_introspection(&authorization_server, token, active(sub, &resource), 1).await;
    }
    let auth = demo_auth(&authorization_server);
    let server = McpServer::start(listener, &auth).await.unwrap();

    let mut alice = McpSession::connect(&server.url, Some("alice-1"))
        .await
        .unwrap();
    let created = allowed(
        alice
            .call_tool("create_note", json!({"text": "alice's secret"}))
            .await
            .unwrap(),
    );
    let handle = created["handle"].as_str().expect("a handle").to_owned();
    assert_eq!(handle.len(), 32, "{handle}");

    let read = allowed(
        alice
            .call_tool("read_note", json!({"handle": handle}))
            .await
            .unwrap(),
    );
    assert_eq!(read, json!({"text": "alice's secret"}));

    // A new token of the same user and client (a refresh), in a new session: same owner.
    let mut alice_again = McpSession::connect(&server.url, Some("alice-2"))
        .await
        .unwrap();
    let read = allowed(
        alice_again
            .call_tool("read_note", json!({"handle": handle}))
            .await
            .unwrap(),
    );
    assert_eq!(read, json!({"text": "alice's secret"}));

    // Bob presents alice's handle: the same answer as a made-up handle, nothing leaked.
    let mut bob = McpSession::connect(&server.url, Some("bob-1"))
        .await
        .unwrap();
    for presented in [handle.as_str(), "0123456789abcdef0123456789abcdef"] {
        let outcome = bob
            .call_tool("read_note", json!({"handle": presented}))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Other(200, "no such note".to_owned()));
    }

    // Without a token the tools are challenged before they run.
    let mut anonymous = McpSession::connect(&server.url, None).await.unwrap();
    let outcome = anonymous
        .call_tool("read_note", json!({"handle": handle}))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Unauthorized(None));
    // The `expect(1)` of each introspection mock is checked when the server drops.
}
