//! A minimal MCP client over streamable HTTP: enough to open a session (MCP 2025-11-25) or to
//! speak sessionless MCP 2026-07-28, call tools, and see the HTTP status and challenge of every
//! answer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use tower_introspect::dpop::{DPOP, DPOP_NONCE, DpopKey};

use crate::oauth_client::challenge_param;

/// What a tool call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The tool ran; its text.
    Allowed(String),
    /// 403 `insufficient_scope`; the scopes the challenge asks for.
    InsufficientScope(String),
    /// 401; the challenge's `error` if any.
    Unauthorized(Option<String>),
    /// Anything else: the status and the tool's error text, the JSON-RPC error's message, or the
    /// body.
    Other(u16, String),
    /// MCP 2026-07-28 `InputRequiredResult`: the tool asks for more input before it completes.
    InputRequired {
        /// `inputRequests`, as sent.
        input_requests: Value,
        /// `requestState`, to echo back verbatim in the retry.
        request_state: Option<String>,
    },
}

impl Outcome {
    /// Whether the tool ran.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed(_))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allowed(_) => f.write_str("allowed"),
            Self::InsufficientScope(scope) => write!(f, "403 needs {scope}"),
            Self::Unauthorized(None) => f.write_str("401"),
            Self::Unauthorized(Some(error)) => write!(f, "401 {error}"),
            Self::Other(status, _) => write!(f, "HTTP {status}"),
            Self::InputRequired { .. } => f.write_str("input required"),
        }
    }
}

/// The protocol version this client speaks without a session.
pub const SESSIONLESS_VERSION: &str = "2026-07-28";

/// An MCP session with a fixed bearer token (or none), or a DPoP-bound token and its key.
pub struct McpSession {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    /// With a key, the token is sent as `Authorization: DPoP` with a fresh proof per request.
    dpop: Option<Arc<DpopKey>>,
    /// The latest `DPoP-Nonce` the server handed out.
    dpop_nonce: Option<String>,
    session_id: Option<String>,
    /// MCP 2026-07-28: no handshake; every request names its version, method and tool.
    sessionless: bool,
    /// Whether sessionless requests declare the `elicitation` capability.
    elicitation: bool,
    next_id: u64,
}

impl McpSession {
    /// A sessionless MCP 2026-07-28 client at `url` with `token` (no handshake: each request
    /// carries `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` and the `_meta` the version
    /// requires, declaring the `elicitation` capability unless
    /// [`declare_elicitation`](Self::declare_elicitation) says otherwise).
    pub fn sessionless(url: &str, token: Option<&str>) -> anyhow::Result<Self> {
        Ok(Self {
            http: http_client()?,
            url: url.to_owned(),
            token: token.map(str::to_owned),
            dpop: None,
            dpop_nonce: None,
            session_id: None,
            sessionless: true,
            elicitation: true,
            next_id: 1,
        })
    }

    /// Sends the token as a DPoP-bound token (RFC 9449): `Authorization: DPoP <token>` and a
    /// fresh proof signed with `key` on every request.
    pub fn with_dpop(mut self, key: Arc<DpopKey>) -> Self {
        self.dpop = Some(key);
        self
    }

    /// The latest `DPoP-Nonce` the server handed out, if any.
    pub fn dpop_nonce(&self) -> Option<&str> {
        self.dpop_nonce.as_deref()
    }

    /// Whether sessionless requests declare the `elicitation` capability (default: yes).
    pub fn declare_elicitation(mut self, declare: bool) -> Self {
        self.elicitation = declare;
        self
    }

    /// Initializes a session at `url`, authenticated with `token` if given.
    pub async fn connect(url: &str, token: Option<&str>) -> anyhow::Result<Self> {
        match Self::try_connect(url, token).await? {
            Ok(session) => Ok(session),
            Err(outcome) => anyhow::bail!("initialize refused: {outcome}"),
        }
    }

    /// Like [`connect`](Self::connect), but a refused `initialize` is an [`Outcome`] (e.g. the
    /// 401 `invalid_token` of a revoked token), not an error.
    pub async fn try_connect(
        url: &str,
        token: Option<&str>,
    ) -> anyhow::Result<Result<Self, Outcome>> {
        Self::try_connect_with(url, token, None).await
    }

    /// Like [`try_connect`](Self::try_connect), the token sent with DPoP proofs of `key` when
    /// given (see [`with_dpop`](Self::with_dpop)).
    pub async fn try_connect_with(
        url: &str,
        token: Option<&str>,
        dpop: Option<Arc<DpopKey>>,
    ) -> anyhow::Result<Result<Self, Outcome>> {
        let mut session = Self {
            http: http_client()?,
            url: url.to_owned(),
            token: token.map(str::to_owned),
            dpop,
            dpop_nonce: None,
            session_id: None,
            sessionless: false,
            elicitation: false,
            next_id: 1,
        };
        let (status, headers, body) = session
            .post(
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "tower-introspect-demo", "version": "0.1.0"}}}),
                None,
            )
            .await?;
        if status != 200 {
            return Ok(Err(outcome(status, &headers, body)?));
        }
        session.session_id = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (status, _, _) = session
            .post(
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                None,
            )
            .await?;
        ensure!(status == 202, "notifications/initialized answered {status}");
        Ok(Ok(session))
    }

    /// Calls tool `name` with `arguments`.
    pub async fn call_tool(&mut self, name: &str, arguments: Value) -> anyhow::Result<Outcome> {
        self.call_tool_with(name, arguments, None, None).await
    }

    /// Calls tool `name` with `arguments`, and for the retry of a multi round-trip request
    /// (2026-07-28) the `inputResponses` and the `requestState` echoed from the
    /// [`Outcome::InputRequired`] answer.
    pub async fn call_tool_with(
        &mut self,
        name: &str,
        arguments: Value,
        input_responses: Option<Value>,
        request_state: Option<&str>,
    ) -> anyhow::Result<Outcome> {
        self.next_id += 1;
        let mut params = json!({"name": name, "arguments": arguments});
        if let Some(responses) = input_responses {
            params["inputResponses"] = responses;
        }
        if let Some(state) = request_state {
            params["requestState"] = json!(state);
        }
        if self.sessionless {
            let capabilities = if self.elicitation {
                json!({"elicitation": {"form": {}}})
            } else {
                json!({})
            };
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": SESSIONLESS_VERSION,
                "io.modelcontextprotocol/clientInfo":
                    {"name": "tower-introspect-demo", "version": "0.1.0"},
                "io.modelcontextprotocol/clientCapabilities": capabilities,
            });
        }
        let (status, headers, body) = self
            .post(
                json!({"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                         "params": params}),
                Some(name),
            )
            .await?;
        outcome(status, &headers, body)
    }

    /// Posts `message`; with DPoP, retried once with the server's nonce after a 401
    /// `use_dpop_nonce` (RFC 9449 §9).
    async fn post(
        &mut self,
        message: Value,
        tool: Option<&str>,
    ) -> anyhow::Result<(u16, reqwest::header::HeaderMap, String)> {
        let first = self.post_once(&message, tool).await?;
        if self.dpop.is_none()
            || first.0 != 401
            || challenge_error(&first.1).as_deref() != Some("use_dpop_nonce")
        {
            return Ok(first);
        }
        ensure!(
            first.1.contains_key(DPOP_NONCE),
            "use_dpop_nonce without a DPoP-Nonce header"
        );
        self.post_once(&message, tool).await
    }

    async fn post_once(
        &mut self,
        message: &Value,
        tool: Option<&str>,
    ) -> anyhow::Result<(u16, reqwest::header::HeaderMap, String)> {
        let mut request = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .json(message);
        if self.sessionless {
            request = request.header("mcp-protocol-version", SESSIONLESS_VERSION);
            if let Some(method) = message["method"].as_str() {
                request = request.header("mcp-method", method);
            }
            if let Some(tool) = tool {
                request = request.header("mcp-name", tool);
            }
        }
        match (&self.token, &self.dpop) {
            (Some(token), Some(key)) => {
                let proof = key.proof("POST", &self.url, Some(token), self.dpop_nonce.as_deref());
                request = request
                    .header("authorization", format!("{DPOP} {token}"))
                    .header(DPOP, proof);
            }
            (Some(token), None) => request = request.bearer_auth(token),
            (None, _) => {}
        }
        if let Some(session) = &self.session_id {
            request = request.header("mcp-session-id", session);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let Some(nonce) = headers.get(DPOP_NONCE).and_then(|v| v.to_str().ok()) {
            self.dpop_nonce = Some(nonce.to_owned());
        }
        Ok((status, headers, response.text().await?))
    }
}

/// The `error` of a response's `WWW-Authenticate` challenge.
fn challenge_error(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let challenge = headers.get("www-authenticate")?.to_str().ok()?;
    challenge_param(challenge, "error")
}

/// What one hand-made sessionless `tools/call` came to: the status, the `WWW-Authenticate`
/// challenge (empty when none) and the outcome.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The `WWW-Authenticate` header, as sent.
    pub challenge: String,
    /// The outcome.
    pub outcome: Outcome,
}

/// One sessionless MCP 2026-07-28 `tools/call` of `tool` with exactly the `authorization` and
/// `dpop` headers given: for showing what the server does with a downgraded token or a replayed
/// proof.
pub async fn raw_call(
    url: &str,
    authorization: &str,
    dpop: Option<&str>,
    tool: &str,
) -> anyhow::Result<RawAnswer> {
    let message = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
    "name": tool, "arguments": {},
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": SESSIONLESS_VERSION,
        "io.modelcontextprotocol/clientInfo":
            {"name": "tower-introspect-demo", "version": "0.1.0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }}});
    let mut request = http_client()?
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", SESSIONLESS_VERSION)
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .header("authorization", authorization)
        .json(&message);
    if let Some(proof) = dpop {
        request = request.header(DPOP, proof);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let challenge = headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let outcome = outcome(status, &headers, response.text().await?)?;
    Ok(RawAnswer {
        status,
        challenge,
        outcome,
    })
}

/// Classifies an answer.
fn outcome(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: String,
) -> anyhow::Result<Outcome> {
    let challenge = headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Ok(match status {
        200 => {
            let message = json_rpc_message(&body).context("no JSON-RPC message")?;
            let result = &message["result"];
            if let Some(error) = message.get("error") {
                let text = error["message"].as_str().unwrap_or_default().to_owned();
                return Ok(Outcome::Other(200, text));
            }
            if result["resultType"] == "input_required" {
                return Ok(Outcome::InputRequired {
                    input_requests: result["inputRequests"].clone(),
                    request_state: result["requestState"].as_str().map(str::to_owned),
                });
            }
            let text = result["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if result["isError"] == true {
                Outcome::Other(200, text)
            } else {
                Outcome::Allowed(text)
            }
        }
        403 if challenge_param(challenge, "error").as_deref() == Some("insufficient_scope") => {
            Outcome::InsufficientScope(challenge_param(challenge, "scope").unwrap_or_default())
        }
        401 => Outcome::Unauthorized(challenge_param(challenge, "error")),
        other => {
            // A JSON-RPC error answered with an HTTP error status: its message, else the body.
            let text = json_rpc_message(&body)
                .and_then(|m| m["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or(body);
            Outcome::Other(other, text)
        }
    })
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// The JSON-RPC message of a response body: plain JSON, or the first SSE `data:` event that is one.
fn json_rpc_message(body: &str) -> Option<Value> {
    serde_json::from_str(body).ok().or_else(|| {
        body.lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .find_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
    })
}
