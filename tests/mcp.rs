//! An rmcp streamable-HTTP MCP server on axum behind the bearer layer, the per-tool scope policy
//! and session binding, driven over real HTTP.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, ResourceContents,
    ResourceUpdatedNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tower_introspect::mcp::{
    McpScopeLayer, McpScopePolicy, McpScopePolicyBuilder, McpSessionBindingLayer,
};
use tower_introspect::{BearerAuthLayer, PrincipalExt};
use wiremock::MockServer;

/// Tools and resources that say who called them, counting every call that reached them.
#[derive(Clone)]
struct Tools {
    handled: Arc<AtomicUsize>,
}

fn caller_of(context: &RequestContext<RoleServer>) -> String {
    context
        .principal()
        .and_then(|p| p.subject())
        .unwrap_or("nobody")
        .to_owned()
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_resources()
                .enable_tools()
                .build(),
        )
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.handled.fetch_add(1, Ordering::SeqCst);
        if request.name == "notify" {
            // A message produced for the caller, on the session's own stream (the `GET` one),
            // not on this request's response.
            let uri = format!("file:///private/{}", caller_of(&context));
            context
                .peer
                .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                .await
                .unwrap();
        }
        let text = format!("{} by {}", request.name, caller_of(&context));
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.handled.fetch_add(1, Ordering::SeqCst);
        let text = format!("{} for {}", request.uri, caller_of(&context));
        Ok(ReadResourceResult::new(vec![ResourceContents::text(text, request.uri)]).into())
    }
}

/// A running MCP server and what the test can observe of it.
struct Running {
    addr: SocketAddr,
    /// Tool calls and resource reads that reached the MCP handler.
    handled: Arc<AtomicUsize>,
    /// Sessions the MCP server created.
    created: Arc<AtomicUsize>,
    /// The session layer (a handle on its table).
    sessions: McpSessionBindingLayer,
}

/// How a test server is put together.
struct Setup {
    policy: McpScopePolicyBuilder,
    allow_anonymous: bool,
    sessions: McpSessionBindingLayer,
    /// tower-http's request decompression placed *inside* the scope layer.
    decompress: bool,
    max_body_bytes: usize,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            policy: McpScopePolicy::builder(),
            allow_anonymous: false,
            sessions: McpSessionBindingLayer::default(),
            decompress: false,
            max_body_bytes: tower_introspect::mcp::DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// The rmcp service the tests serve, with its counters.
fn rmcp_service(
    handled: &Arc<AtomicUsize>,
    created: &Arc<AtomicUsize>,
    sessions: Arc<LocalSessionManager>,
) -> StreamableHttpService<Tools, LocalSessionManager> {
    let (handled, created) = (handled.clone(), created.clone());
    StreamableHttpService::new(
        move || {
            created.fetch_add(1, Ordering::SeqCst);
            Ok(Tools {
                handled: handled.clone(),
            })
        },
        sessions,
        StreamableHttpServerConfig::default(),
    )
}

/// The policy every test server starts from, on top of the test's own.
fn base_policy(policy: McpScopePolicyBuilder) -> McpScopePolicy {
    policy
        .tool("whoami", [] as [&str; 0])
        .tool("read_data", ["read"])
        .tool("admin_operation", ["admin"])
        .resource("file:///public", ["read"])
        .resource("file:///admin", ["admin"])
        .default_scopes(["admin"])
        .build()
        .unwrap()
}

fn bearer_layer(
    server: &MockServer,
    allow_anonymous: bool,
) -> BearerAuthLayer<tower_introspect::cache::CachedVerifier<tower_introspect::Introspector>> {
    BearerAuthLayer::introspect(introspector_for(server).build().unwrap())
        .resource_metadata(METADATA)
        .allow_missing_token(allow_anonymous)
}

async fn start(server: &MockServer, setup: Setup) -> Running {
    let handled = Arc::new(AtomicUsize::new(0));
    let created = Arc::new(AtomicUsize::new(0));
    let service = rmcp_service(&handled, &created, Arc::default());
    let router = if setup.decompress {
        let decompressing = tower::ServiceBuilder::new()
            .layer(tower_http::decompression::RequestDecompressionLayer::new())
            .service(service);
        axum::Router::new().nest_service("/mcp", decompressing)
    } else {
        axum::Router::new().nest_service("/mcp", service)
    };
    let router = router
        .layer(McpScopeLayer::new(base_policy(setup.policy)).max_body_bytes(setup.max_body_bytes))
        .layer(setup.sessions.clone())
        .layer(bearer_layer(server, setup.allow_anonymous));
    Running {
        addr: serve(router).await,
        handled,
        created,
        sessions: setup.sessions,
    }
}

async fn mcp_server(server: &MockServer) -> SocketAddr {
    start(server, Setup::default()).await.addr
}

async fn mcp_server_with(
    server: &MockServer,
    policy: McpScopePolicyBuilder,
    allow_anonymous: bool,
) -> SocketAddr {
    let setup = Setup {
        policy,
        allow_anonymous,
        ..Setup::default()
    };
    start(server, setup).await.addr
}

struct Reply {
    status: u16,
    content_type: Option<String>,
    challenge: Option<String>,
    session: Option<String>,
    /// The JSON-RPC message of the body (plain JSON or the first SSE `data:` event).
    message: Option<Value>,
    /// The body as text.
    body: String,
}

thread_local! {
    /// One client per test thread: building one (its TLS roots) costs more than a request, and
    /// the flood tests send thousands.
    static HTTP: reqwest::Client = client();
}

/// POSTs a JSON-RPC message; an empty `token` sends no `Authorization` header.
async fn post(addr: SocketAddr, token: &str, session: Option<&str>, body: Value) -> Reply {
    post_raw(addr, token, session, body.to_string().into_bytes(), &[]).await
}

/// POSTs `body` as it is, with `headers` besides the usual ones.
async fn post_raw(
    addr: SocketAddr,
    token: &str,
    session: Option<&str>,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = HTTP
        .with(Clone::clone)
        .post(format!("http://{addr}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body);
    if !token.is_empty() {
        request = request.header("authorization", bearer(token));
    }
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = header(&response, "www-authenticate");
    let session = header(&response, "mcp-session-id");
    let content_type = header(&response, "content-type");
    let text = response.text().await.unwrap();
    let message = serde_json::from_str(&text).ok().or_else(|| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .find_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
    });
    Reply {
        status,
        content_type,
        challenge,
        session,
        message,
        body: text,
    }
}

/// The JSON-RPC `initialize` request of a 2025-11-25 client.
fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}})
}

async fn open_session(addr: SocketAddr, token: &str) -> String {
    let reply = post(addr, token, None, initialize()).await;
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

/// The JSON-RPC error body of an MCP layer's refusal.
fn refused(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

const UNKNOWN_SESSION: &str = "Session not found: start a new session";

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
    assert_eq!(
        reply.message,
        Some(refused(
            json!(null),
            -32002,
            "Forbidden: the session belongs to another principal"
        ))
    );
    // The owner is unaffected.
    let reply = post(addr, "reader", Some(&session), call(3, "whoami")).await;
    assert_eq!(tool_text(&reply), "whoami by rita");
}

#[tokio::test]
async fn anonymous_callers_get_public_tools_and_a_challenge_for_the_rest() {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    expect_introspection(&server, "thief", active("mallory", "read"), 1).await;
    let policy = McpScopePolicy::builder()
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

    // Signed in, the client starts a new session: the anonymous one stays anonymous.
    let reply = post(addr, "reader", Some(&session), call(4, "whoami")).await;
    assert_eq!(reply.status, 404);
    let signed_in = open_session(addr, "reader").await;
    let reply = post(addr, "reader", Some(&signed_in), call(5, "whoami")).await;
    assert_eq!(tool_text(&reply), "whoami by rita");
    // Neither another principal nor an anonymous caller may use the signed-in session.
    assert_eq!(
        post(addr, "thief", Some(&signed_in), call(6, "whoami"))
            .await
            .status,
        403
    );
    assert_eq!(
        post(addr, "", Some(&signed_in), call(7, "public_info"))
            .await
            .status,
        403
    );
    // The anonymous session still serves anonymous callers.
    let reply = post(addr, "", Some(&session), call(8, "public_info")).await;
    assert_eq!(tool_text(&reply), "public_info by nobody");
}

/// What a `GET /mcp` stream has carried so far, read in the background.
struct Stream {
    status: u16,
    received: Arc<std::sync::Mutex<String>>,
}

impl Stream {
    fn text(&self) -> String {
        self.received.lock().unwrap().clone()
    }

    /// Waits until the stream has carried `needle` (at most five seconds).
    async fn wait_for(&self, needle: &str) {
        for _ in 0..500 {
            if self.text().contains(needle) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the stream never carried {needle:?}: {:?}", self.text());
    }
}

/// Opens the session's `GET` stream, where rmcp sends what the server initiates.
async fn open_stream(addr: SocketAddr, token: &str, session: &str) -> Stream {
    let mut request = HTTP
        .with(Clone::clone)
        .get(format!("http://{addr}/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session);
    if !token.is_empty() {
        request = request.header("authorization", bearer(token));
    }
    let mut response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let received = Arc::new(std::sync::Mutex::new(String::new()));
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok(Some(chunk)) = response.chunk().await {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    Stream { status, received }
}

#[tokio::test]
async fn an_anonymous_session_is_never_taken_over_so_its_stream_never_carries_a_principals_messages()
 {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    let setup = Setup {
        policy: McpScopePolicy::builder()
            .public_handshake()
            .tool("notify", ["read"]),
        allow_anonymous: true,
        ..Setup::default()
    };
    let running = start(&server, setup).await;
    let addr = running.addr;

    // The attacker opens an anonymous session and holds its stream.
    let planted = open_session(addr, "").await;
    let attacker = open_stream(addr, "", &planted).await;
    assert_eq!(attacker.status, 200);

    // The victim, signed in, is sent to the planted session: 404, nothing runs.
    let reply = post(addr, "reader", Some(&planted), call(2, "notify")).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !attacker.text().contains("file:///private/rita"),
        "{}",
        attacker.text()
    );
    assert_eq!(reply.status, 404);
    assert_eq!(running.handled.load(Ordering::SeqCst), 0);
    // The planted session stays anonymous, also for the victim's stream.
    assert_eq!(open_stream(addr, "reader", &planted).await.status, 404);

    // The victim starts a session of its own, as after any 404: the message produced for it
    // arrives on its own stream…
    let own = open_session(addr, "reader").await;
    let victim = open_stream(addr, "reader", &own).await;
    assert_eq!(victim.status, 200);
    let reply = post(addr, "reader", Some(&own), call(3, "notify")).await;
    assert_eq!(tool_text(&reply), "notify by rita");
    victim.wait_for("file:///private/rita").await;
    // …and never on the attacker's, which the attacker cannot move onto the victim's session.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !attacker.text().contains("file:///private/rita"),
        "{}",
        attacker.text()
    );
    assert_eq!(open_stream(addr, "", &own).await.status, 403);
    assert_eq!(running.handled.load(Ordering::SeqCst), 1);
}

/// The 403 a `read` token gets for something that requires `admin`.
fn admin_required() -> String {
    format!(
        r#"Bearer error="insufficient_scope", error_description="The access token lacks a scope this request requires", scope="admin", resource_metadata="{METADATA}""#
    )
}

fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

#[tokio::test]
async fn every_resource_method_is_judged_by_the_resource_table() {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    expect_introspection(&server, "boss", active("ada", "read admin"), 1).await;
    let running = start(&server, Setup::default()).await;
    let addr = running.addr;
    let session = open_session(addr, "reader").await;

    let completion =
        |reference: Value| json!({"ref": reference, "argument": {"name": "a", "value": ""}});
    let attempts = [
        ("resources/read", json!({"uri": "file:///admin"})),
        ("resources/subscribe", json!({"uri": "file:///admin"})),
        ("resources/unsubscribe", json!({"uri": "file:///admin"})),
        ("resources/directory/read", json!({"uri": "file:///admin"})),
        (
            "completion/complete",
            completion(json!({"type": "ref/resource", "uri": "file:///admin"})),
        ),
        (
            "completion/complete",
            completion(json!({"type": "ref/prompt", "name": "unnamed_prompt"})),
        ),
        (
            "subscriptions/listen",
            json!({"notifications": {"toolsListChanged": true, "resourceSubscriptions": ["file:///admin"]}}),
        ),
        ("resources/read", json!({"uri": "file:///not-in-the-table"})),
    ];
    for (id, (method, params)) in (10..).zip(attempts) {
        let reply = post(addr, "reader", Some(&session), request(id, method, params)).await;
        assert_eq!(reply.status, 403, "{method}");
        assert_eq!(reply.challenge.as_deref(), Some(admin_required().as_str()));
        assert_eq!(reply.body, "", "{method}");
    }
    assert_eq!(running.handled.load(Ordering::SeqCst), 0);

    // What the token may read, it reads; what needs admin, an admin token reads.
    let reply = post(
        addr,
        "reader",
        Some(&session),
        request(30, "resources/read", json!({"uri": "file:///public"})),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.message.unwrap()["result"]["contents"][0]["text"],
        "file:///public for rita"
    );
    let boss_session = open_session(addr, "boss").await;
    let reply = post(
        addr,
        "boss",
        Some(&boss_session),
        request(31, "resources/read", json!({"uri": "file:///admin"})),
    )
    .await;
    assert_eq!(
        reply.message.unwrap()["result"]["contents"][0]["text"],
        "file:///admin for ada"
    );
    assert_eq!(running.handled.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unknown_methods_fall_under_the_default_and_fail_closed() {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    let addr = mcp_server(&server).await;
    let session = open_session(addr, "reader").await;
    let reply = post(
        addr,
        "reader",
        Some(&session),
        request(2, "acme/erase_everything", json!({})),
    )
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.challenge.as_deref(), Some(admin_required().as_str()));
    // A method of the specification is not unknown: an authenticated caller may list.
    let reply = post(
        addr,
        "reader",
        Some(&session),
        request(3, "tools/list", json!({})),
    )
    .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn a_method_entry_for_tools_call_applies_to_every_tool() {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    let setup = Setup {
        policy: McpScopePolicy::builder().method("tools/call", ["mcp:tools"]),
        ..Setup::default()
    };
    let running = start(&server, setup).await;
    let session = open_session(running.addr, "reader").await;
    // `whoami` needs no scope of its own, but every tool call needs `mcp:tools`.
    let reply = post(running.addr, "reader", Some(&session), call(2, "whoami")).await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.challenge.as_deref(),
        Some(
            format!(
                r#"Bearer error="insufficient_scope", error_description="The access token lacks a scope this request requires", scope="mcp:tools", resource_metadata="{METADATA}""#
            )
            .as_str()
        )
    );
    assert_eq!(running.handled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn bodies_the_layer_cannot_classify_are_refused_not_passed_through() {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    let running = start(&server, Setup::default()).await;
    let session = open_session(running.addr, "reader").await;
    let bodies: [&[u8]; 7] = [
        b"{not json",
        b"\xff\xfe",
        br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","name":"admin_operation"}}"#,
        br#"{"id":2,"method":"tools/call","params":{"name":"whoami"}}"#,
        br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":["admin_operation"]}}"#,
        br#"[]"#,
        br#"[{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami"}}, 7]"#,
    ];
    let not_json = (
        json!(null),
        -32700,
        "Parse error: the body is not JSON without duplicate keys",
    );
    let expected = [
        not_json.clone(),
        not_json.clone(),
        not_json,
        (
            json!(2),
            -32600,
            r#"Invalid request: not a JSON-RPC 2.0 message: `jsonrpc` is not "2.0""#,
        ),
        (
            json!(2),
            -32602,
            "Invalid params: the method does not name what it addresses: a name or URI is not a string",
        ),
        (
            json!(null),
            -32600,
            "Invalid request: not a JSON-RPC 2.0 message: empty batch",
        ),
        (
            json!(null),
            -32600,
            "Invalid request: not a JSON-RPC 2.0 message: a message is not an object",
        ),
    ];
    for (body, (id, code, message)) in bodies.into_iter().zip(expected) {
        let reply = post_raw(running.addr, "reader", Some(&session), body.to_vec(), &[]).await;
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(reply.content_type.as_deref(), Some("application/json"));
        assert_eq!(reply.message, Some(refused(id, code, message)));
        assert_eq!(reply.challenge, None);
    }
    assert_eq!(running.handled.load(Ordering::SeqCst), 0);
}

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn a_compressed_body_is_refused_even_with_a_decoding_layer_inside() {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    let setup = Setup {
        decompress: true,
        ..Setup::default()
    };
    let running = start(&server, setup).await;
    let session = open_session(running.addr, "reader").await;
    let admin_call = call(2, "admin_operation").to_string().into_bytes();

    for coding in ["gzip", "GZIP", "identity, gzip", "br"] {
        let reply = post_raw(
            running.addr,
            "reader",
            Some(&session),
            gzip(&admin_call),
            &[("content-encoding", coding)],
        )
        .await;
        assert_eq!(reply.status, 415, "{coding}");
        assert_eq!(
            reply.message,
            Some(refused(
                json!(null),
                -32006,
                "Unsupported Content-Encoding: send the body uncompressed"
            ))
        );
    }
    assert_eq!(running.handled.load(Ordering::SeqCst), 0);

    // `identity` is no coding at all: judged as usual.
    let reply = post_raw(
        running.addr,
        "reader",
        Some(&session),
        admin_call,
        &[("content-encoding", "identity")],
    )
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.challenge.as_deref(), Some(admin_required().as_str()));
    let reply = post_raw(
        running.addr,
        "reader",
        Some(&session),
        call(3, "whoami").to_string().into_bytes(),
        &[("content-encoding", "identity")],
    )
    .await;
    assert_eq!(tool_text(&reply), "whoami by rita");
}

#[tokio::test]
async fn a_flood_of_anonymous_sessions_neither_evicts_nor_frees_a_victims_session() {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    expect_introspection(&server, "thief", active("mallory", "read admin"), 1).await;
    let setup = Setup {
        policy: McpScopePolicy::builder()
            .public_handshake()
            .public_tool("public_info"),
        allow_anonymous: true,
        // Small bounds, so that the flood overruns them.
        sessions: McpSessionBindingLayer::default()
            .max_sessions(120)
            .max_anonymous_sessions(100),
        ..Setup::default()
    };
    let running = start(&server, setup).await;
    let addr = running.addr;
    let victim = open_session(addr, "reader").await;

    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..150 {
        let reply = post(addr, "", None, initialize()).await;
        *statuses.entry(reply.status).or_insert(0) += 1;
    }
    assert_eq!(statuses, [(200, 100), (429, 50)].into());
    assert_eq!(running.sessions.session_count(), 101);

    // The victim's session is still bound: the thief with the leaked id is refused, anonymous
    // or not, and the victim carries on.
    let reply = post(addr, "thief", Some(&victim), call(2, "whoami")).await;
    assert_eq!(reply.status, 403);
    let reply = post(addr, "", Some(&victim), call(3, "public_info")).await;
    assert_eq!(reply.status, 403);
    let reply = post(addr, "reader", Some(&victim), call(4, "whoami")).await;
    assert_eq!(tool_text(&reply), "whoami by rita");
    assert_eq!(running.handled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn session_creation_is_bounded_per_owner_and_in_total() {
    use futures_util::StreamExt;

    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    expect_introspection(&server, "writer", active("will", "write"), 1).await;
    let setup = Setup {
        policy: McpScopePolicy::builder().public_handshake(),
        allow_anonymous: true,
        sessions: McpSessionBindingLayer::default()
            .max_sessions(110)
            .max_anonymous_sessions(100)
            .max_sessions_per_principal(5),
        ..Setup::default()
    };
    let running = start(&server, setup).await;
    let addr = running.addr;

    // 2,000 anonymous creations, 16 at a time: the first 100 get a session, the rest 429.
    let statuses: Vec<u16> = futures_util::stream::iter(0..2_000)
        .map(|_| async move { post(addr, "", None, initialize()).await.status })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 100);
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 1_900);
    // Refused creations never reached the MCP server: memory is bounded by the bound.
    assert_eq!(running.created.load(Ordering::SeqCst), 100);
    assert_eq!(running.sessions.session_count(), 100);

    // A principal gets its own 5, not one more.
    for _ in 0..5 {
        assert_eq!(post(addr, "reader", None, initialize()).await.status, 200);
    }
    assert_eq!(post(addr, "reader", None, initialize()).await.status, 429);
    // The server's bound (110) is reached: another principal gets 503.
    for _ in 0..5 {
        assert_eq!(post(addr, "writer", None, initialize()).await.status, 200);
    }
    assert_eq!(running.sessions.session_count(), 110);
    expect_introspection(&server, "third", active("tess", "read"), 1).await;
    assert_eq!(post(addr, "third", None, initialize()).await.status, 503);
    assert_eq!(running.created.load(Ordering::SeqCst), 110);
}

#[tokio::test]
async fn two_tokens_without_subject_or_client_do_not_share_sessions() {
    let server = MockServer::start().await;
    let nameless = || {
        let mut claims = active("x", "read");
        let object = claims.as_object_mut().unwrap();
        object.remove("sub");
        object.remove("username");
        object.remove("client_id");
        claims
    };
    expect_introspection(&server, "first", nameless(), 1).await;
    expect_introspection(&server, "second", nameless(), 1).await;
    let running = start(&server, Setup::default()).await;

    let session = open_session(running.addr, "first").await;
    let reply = post(running.addr, "second", Some(&session), call(2, "whoami")).await;
    assert_eq!(reply.status, 403);
    let reply = post(running.addr, "first", Some(&session), call(3, "whoami")).await;
    assert_eq!(tool_text(&reply), "whoami by nobody");
    assert_eq!(running.handled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_session_the_layer_does_not_know_is_refused_even_when_the_server_knows_it() {
    let server = MockServer::start().await;
    // Once per bearer layer (each has its own cache).
    expect_introspection(&server, "reader", active("rita", "read"), 2).await;
    expect_introspection(&server, "thief", active("mallory", "read admin"), 1).await;
    // One MCP server (one session store) behind two session layers: the second one has never
    // seen the session, as after a restart of the layer or a binding forgotten for any reason.
    let handled = Arc::new(AtomicUsize::new(0));
    let created = Arc::new(AtomicUsize::new(0));
    let store = Arc::new(LocalSessionManager::default());
    let serve_with = |sessions: McpSessionBindingLayer| {
        let router = axum::Router::new()
            .nest_service("/mcp", rmcp_service(&handled, &created, store.clone()))
            .layer(McpScopeLayer::new(base_policy(McpScopePolicy::builder())))
            .layer(sessions)
            .layer(bearer_layer(&server, false));
        serve(router)
    };
    let first = serve_with(McpSessionBindingLayer::default()).await;
    let forgetful = serve_with(McpSessionBindingLayer::default()).await;

    let session = open_session(first, "reader").await;
    for token in ["thief", "reader"] {
        let reply = post(forgetful, token, Some(&session), call(2, "whoami")).await;
        assert_eq!(reply.status, 404, "{token}");
        assert_eq!(
            reply.message,
            Some(refused(json!(null), -32001, UNKNOWN_SESSION))
        );
    }
    assert_eq!(handled.load(Ordering::SeqCst), 0);
    // A made-up id is just as unknown.
    let reply = post(first, "reader", Some("made-up"), call(3, "whoami")).await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn the_session_layer_outside_the_bearer_layer_refuses() {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 0).await;
    let handled = Arc::new(AtomicUsize::new(0));
    let created = Arc::new(AtomicUsize::new(0));
    // The layer-order mistake: the session layer wraps the bearer layer.
    let router = axum::Router::new()
        .nest_service("/mcp", rmcp_service(&handled, &created, Arc::default()))
        .layer(bearer_layer(&server, true))
        .layer(McpSessionBindingLayer::default());
    let addr = serve(router).await;
    for token in ["reader", ""] {
        let reply = post(addr, token, None, initialize()).await;
        assert_eq!(reply.status, 401, "{token:?}");
        assert_eq!(reply.challenge.as_deref(), Some("Bearer"));
    }
    assert_eq!(created.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn every_refusal_of_the_mcp_layers_says_why_in_a_json_rpc_error() {
    let server = MockServer::start().await;
    expect_introspection(&server, "reader", active("rita", "read"), 1).await;
    expect_introspection(&server, "thief", active("mallory", "read"), 1).await;
    expect_introspection(&server, "writer", active("will", "write"), 1).await;
    let setup = Setup {
        policy: McpScopePolicy::builder()
            .public_handshake()
            .public_tool("public_info"),
        allow_anonymous: true,
        sessions: McpSessionBindingLayer::default()
            .max_sessions(3)
            .max_anonymous_sessions(1)
            .max_sessions_per_principal(1),
        max_body_bytes: 1_000,
        ..Setup::default()
    };
    let running = start(&server, setup).await;
    let addr = running.addr;
    let session = open_session(addr, "reader").await;
    let anonymous = open_session(addr, "").await;
    let check = |reply: Reply, status: u16, id: Value, code: i64, message: &str| {
        assert_eq!(reply.status, status, "{message}");
        assert_eq!(
            reply.content_type.as_deref(),
            Some("application/json"),
            "{message}"
        );
        assert_eq!(reply.message, Some(refused(id, code, message)));
        assert_eq!(reply.challenge, None, "{message}");
    };

    // 413: the body is over the limit, never read whole: no id.
    let mut big = call(5, "whoami");
    big["params"]["arguments"]["pad"] = json!("x".repeat(1_000));
    let reply = post(addr, "reader", Some(&session), big).await;
    check(
        reply,
        413,
        json!(null),
        -32005,
        "Request body too large: the limit is 1000 bytes",
    );
    // 415: a content coding.
    let body = gzip(call(6, "whoami").to_string().as_bytes());
    let reply = post_raw(
        addr,
        "reader",
        Some(&session),
        body,
        &[("content-encoding", "gzip")],
    )
    .await;
    check(
        reply,
        415,
        json!(null),
        -32006,
        "Unsupported Content-Encoding: send the body uncompressed",
    );
    // 400: method headers malformed (judged before the body is read), or disagreeing with it.
    let body = call(7, "admin_operation").to_string().into_bytes();
    let reply = post_raw(
        addr,
        "reader",
        Some(&session),
        body.clone(),
        &[("mcp-name", "whoami")],
    )
    .await;
    check(
        reply,
        400,
        json!(null),
        -32600,
        "Invalid request: the Mcp-Method / Mcp-Name headers are repeated, not visible ASCII, or Mcp-Name comes without Mcp-Method",
    );
    let headers = [("mcp-method", "tools/call"), ("mcp-name", "whoami")];
    let reply = post_raw(addr, "reader", Some(&session), body, &headers).await;
    check(
        reply,
        400,
        json!(7),
        -32020,
        "Header mismatch: the Mcp-Method / Mcp-Name headers disagree with the body",
    );
    // 400: two session ids.
    let body = call(8, "whoami").to_string().into_bytes();
    let reply = post_raw(
        addr,
        "reader",
        Some(&session),
        body,
        &[("mcp-session-id", "other")],
    )
    .await;
    check(
        reply,
        400,
        json!(null),
        -32600,
        "Invalid request: the Mcp-Session-Id header is repeated or not visible ASCII",
    );
    // 404: an unknown session, and an anonymous one presented with a token.
    let reply = post(addr, "reader", Some("made-up"), call(9, "whoami")).await;
    check(reply, 404, json!(null), -32001, UNKNOWN_SESSION);
    let reply = post(addr, "reader", Some(&anonymous), call(10, "whoami")).await;
    check(
        reply,
        404,
        json!(null),
        -32001,
        "Session not found: the session was created without a token; start a new session",
    );
    // 403: another principal's session.
    let reply = post(addr, "thief", Some(&session), call(11, "whoami")).await;
    check(
        reply,
        403,
        json!(null),
        -32002,
        "Forbidden: the session belongs to another principal",
    );
    // 429: the caller's bound; 503: the server's.
    let reply = post(addr, "reader", None, initialize()).await;
    check(
        reply,
        429,
        json!(null),
        -32003,
        "Too many sessions: end one or wait for one to expire",
    );
    assert_eq!(post(addr, "thief", None, initialize()).await.status, 200);
    let reply = post(addr, "writer", None, initialize()).await;
    check(
        reply,
        503,
        json!(null),
        -32004,
        "Server busy: too many sessions, try again later",
    );
    // The bearer layer's own refusals are unchanged: a challenge with an empty body.
    let reply = post(addr, "", Some(&anonymous), call(12, "whoami")).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body, "");
    assert!(reply.challenge.is_some());
    assert_eq!(running.handled.load(Ordering::SeqCst), 0);
}
