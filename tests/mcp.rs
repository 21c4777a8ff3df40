//! An rmcp streamable-HTTP MCP server on axum behind the bearer layer, the per-tool scope policy
//! and session binding, driven over real HTTP.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tower_introspect::mcp::{McpScopeLayer, McpScopePolicy, McpSessionBindingLayer};
use tower_introspect::{BearerAuthLayer, PrincipalExt};
use wiremock::MockServer;

#[derive(Clone)]
struct Tools;

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = context
            .principal()
            .and_then(|p| p.subject())
            .unwrap_or("nobody")
            .to_owned();
        let text = format!("{} by {caller}", request.name);
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

async fn mcp_server(server: &MockServer) -> SocketAddr {
    mcp_server_with(server, McpScopePolicy::new(), false).await
}

async fn mcp_server_with(
    server: &MockServer,
    base: McpScopePolicy,
    allow_anonymous: bool,
) -> SocketAddr {
    let service = StreamableHttpService::new(
        || Ok(Tools),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let policy = base
        .tool("whoami", [] as [&str; 0])
        .tool("read_data", ["read"])
        .tool("admin_operation", ["admin"])
        .default_scopes(["admin"]);
    let router = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(McpScopeLayer::new(policy))
        .layer(McpSessionBindingLayer::default())
        .layer(
            BearerAuthLayer::introspect(introspector_for(server).build().unwrap())
                .resource_metadata(METADATA)
                .allow_missing_token(allow_anonymous),
        );
    serve(router).await
}

struct Reply {
    status: u16,
    challenge: Option<String>,
    session: Option<String>,
    /// The JSON-RPC message of the body (plain JSON or the first SSE `data:` event).
    message: Option<Value>,
}

/// POSTs a JSON-RPC message; an empty `token` sends no `Authorization` header.
async fn post(addr: SocketAddr, token: &str, session: Option<&str>, body: Value) -> Reply {
    let mut request = client()
        .post(format!("http://{addr}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if !token.is_empty() {
        request = request.header("authorization", bearer(token));
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = header(&response, "www-authenticate");
    let session = header(&response, "mcp-session-id");
    let text = response.text().await.unwrap();
    let message = serde_json::from_str(&text).ok().or_else(|| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .find_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
    });
    Reply {
        status,
        challenge,
        session,
        message,
    }
}

async fn open_session(addr: SocketAddr, token: &str) -> String {
    let reply = post(
        addr,
        token,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
    )
    .await;
    assert_eq!(reply.status, 200);
    let session = reply.session.expect("a session id");
    let reply = post(
        addr,
        token,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(reply.status, 202);
    session
}

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": {}}})
}

fn tool_text(reply: &Reply) -> String {
    reply.message.as_ref().unwrap()["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn tools_see_the_principal_and_scopes_are_enforced_per_tool() {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    expect_introspection(&server, "boss", active("ada", "read admin"), 1).await;
    let addr = mcp_server(&server).await;

    let session = open_session(addr, "reader").await;
    let reply = post(addr, "reader", Some(&session), call(2, "whoami")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(tool_text(&reply), "whoami by rita");

    let reply = post(addr, "reader", Some(&session), call(3, "read_data")).await;
    assert_eq!(tool_text(&reply), "read_data by rita");

    let expected = format!(
        r#"Bearer error="insufficient_scope", error_description="The access token lacks a scope this request requires", scope="admin", resource_metadata="{METADATA}""#
    );
    let reply = post(addr, "reader", Some(&session), call(4, "admin_operation")).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.challenge.as_deref(), Some(expected.as_str()));
    // Unknown tools fall back to the default scopes.
    let reply = post(addr, "reader", Some(&session), call(5, "brand_new_tool")).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.challenge.as_deref(), Some(expected.as_str()));

    // After step-up (a token with admin), the same operation works in a session of its own.
    let boss_session = open_session(addr, "boss").await;
    let reply = post(
        addr,
        "boss",
        Some(&boss_session),
        call(6, "admin_operation"),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(tool_text(&reply), "admin_operation by ada");
}

#[tokio::test]
async fn another_principal_cannot_use_a_session() {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    expect_introspection(&server, "thief", active("mallory", "read admin"), 1).await;
    let addr = mcp_server(&server).await;

    let session = open_session(addr, "reader").await;
    let reply = post(addr, "thief", Some(&session), call(2, "whoami")).await;
    assert_eq!(reply.status, 403);
    assert!(reply.message.is_none());
    // The owner is unaffected.
    let reply = post(addr, "reader", Some(&session), call(3, "whoami")).await;
    assert_eq!(tool_text(&reply), "whoami by rita");
}

#[tokio::test]
async fn malformed_json_reaches_the_mcp_service() {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    let addr = mcp_server(&server).await;
    let response = client()
        .post(format!("http://{addr}/mcp"))
        .header("authorization", bearer("reader"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    // rmcp answers it (with its own error), not the scope layer.
    assert_ne!(response.status(), 403);
    assert!(response.headers().get("www-authenticate").is_none());
}

#[tokio::test]
async fn anonymous_callers_get_public_tools_and_a_challenge_for_the_rest() {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    expect_introspection(&server, "thief", active("mallory", "read"), 1).await;
    let policy = McpScopePolicy::new()
        .public_handshake()
        .public_tool("public_info");
    let addr = mcp_server_with(&server, policy, true).await;

    let session = open_session(addr, "").await;
    let reply = post(addr, "", Some(&session), call(2, "public_info")).await;
    assert_eq!(tool_text(&reply), "public_info by nobody");

    // Not public: the 401 challenge that starts the client's OAuth flow.
    let reply = post(addr, "", Some(&session), call(3, "whoami")).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.challenge.as_deref(),
        Some(format!(r#"Bearer resource_metadata="{METADATA}""#).as_str())
    );

    // The first authenticated use binds the session…
    let reply = post(addr, "reader", Some(&session), call(4, "whoami")).await;
    assert_eq!(tool_text(&reply), "whoami by rita");
    // …after which neither another principal nor an anonymous caller may use it.
    assert_eq!(
        post(addr, "thief", Some(&session), call(5, "whoami"))
            .await
            .status,
        403
    );
    assert_eq!(
        post(addr, "", Some(&session), call(6, "public_info"))
            .await
            .status,
        403
    );
}
