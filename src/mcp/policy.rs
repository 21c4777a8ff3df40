//! Which scopes each MCP operation requires.

use std::collections::HashMap;

use serde_json::Value;

use crate::Scopes;

/// Maps MCP operations to the scopes they require.
///
/// Operations are looked up from the JSON-RPC request:
///
/// | method | looked up by | table |
/// |---|---|---|
/// | `tools/call` | `params.name` | [`tool`](Self::tool) |
/// | `resources/read`, `resources/subscribe`, `resources/unsubscribe` | `params.uri` | [`resource`](Self::resource) |
/// | `prompts/get` | `params.name` | [`prompt`](Self::prompt) |
/// | any other method | the method | [`method`](Self::method) |
///
/// A tool, resource or prompt missing from its table requires the
/// [`default_scopes`](Self::default_scopes) (none unless set: set them to fail closed for
/// operations added later). A method missing from the method table requires an authenticated
/// caller and no particular scope.
///
/// Every operation requires an authenticated caller unless marked public
/// ([`public_tool`](Self::public_tool), [`public_method`](Self::public_method),
/// [`public_handshake`](Self::public_handshake)). Public operations only matter when the bearer
/// layer lets anonymous requests through
/// ([`allow_missing_token`](crate::BearerAuthLayer::allow_missing_token)): then an anonymous call
/// of anything else gets the 401 challenge that starts the client's OAuth flow.
///
/// ```
/// use tower_introspect::mcp::McpScopePolicy;
///
/// let policy = McpScopePolicy::new()
///     .tool("read_data", ["read"])
///     .tool("write_data", ["write"])
///     .tool("admin_operation", ["admin"])
///     .tool("public_info", [] as [&str; 0])
///     .default_scopes(["admin"]);
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct McpScopePolicy {
    tools: HashMap<String, Requirement>,
    resources: HashMap<String, Requirement>,
    prompts: HashMap<String, Requirement>,
    methods: HashMap<String, Requirement>,
    default: Requirement,
}

/// What an MCP operation requires of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing: anonymous callers are welcome (if the bearer layer lets them through).
    Public,
    /// An authenticated caller holding every one of these scopes (possibly none).
    Scopes(Scopes),
}

impl Default for Requirement {
    fn default() -> Self {
        Self::Scopes(Scopes::new())
    }
}

impl Requirement {
    /// The requirement of a batch that contains both `self` and `other`.
    pub fn and(&self, other: &Requirement) -> Requirement {
        match (self, other) {
            (Self::Public, other) | (other, Self::Public) => other.clone(),
            (Self::Scopes(a), Self::Scopes(b)) => Self::Scopes(a.union(b)),
        }
    }
}

fn scopes<I, T>(scopes: I) -> Requirement
where
    I: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    Requirement::Scopes(Scopes::configured(scopes))
}

/// Methods every MCP client sends before it can do anything, plus tool discovery.
const HANDSHAKE: [&str; 6] = [
    "initialize",
    "notifications/initialized",
    "notifications/cancelled",
    "ping",
    "tools/list",
    "server/discover",
];

impl McpScopePolicy {
    /// A policy that requires nothing until told otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// Scopes required to call tool `name` (all of them).
    pub fn tool<I, T>(mut self, name: impl Into<String>, required: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.tools.insert(name.into(), scopes(required));
        self
    }

    /// Scopes required to read or subscribe to the resource with this exact `uri`.
    pub fn resource<I, T>(mut self, uri: impl Into<String>, required: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.resources.insert(uri.into(), scopes(required));
        self
    }

    /// Scopes required to get prompt `name`.
    pub fn prompt<I, T>(mut self, name: impl Into<String>, required: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.prompts.insert(name.into(), scopes(required));
        self
    }

    /// Scopes required for a whole JSON-RPC method (e.g. `tools/list`).
    pub fn method<I, T>(mut self, method: impl Into<String>, required: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.methods.insert(method.into(), scopes(required));
        self
    }

    /// Tool `name` may be called without a token.
    pub fn public_tool(mut self, name: impl Into<String>) -> Self {
        self.tools.insert(name.into(), Requirement::Public);
        self
    }

    /// JSON-RPC method `method` may be called without a token.
    pub fn public_method(mut self, method: impl Into<String>) -> Self {
        self.methods.insert(method.into(), Requirement::Public);
        self
    }

    /// Makes the handshake public (`initialize`, `notifications/initialized`,
    /// `notifications/cancelled`, `ping`, `tools/list`, `server/discover`), so that anonymous
    /// clients can connect and call public tools.
    pub fn public_handshake(mut self) -> Self {
        for method in HANDSHAKE {
            self.methods.insert(method.to_owned(), Requirement::Public);
        }
        self
    }

    /// Scopes required by tools, resources and prompts the policy does not name.
    pub fn default_scopes<I, T>(mut self, required: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.default = scopes(required);
        self
    }

    /// What one JSON-RPC message requires. A message without a method (a response to a server
    /// request) requires an authenticated caller.
    pub fn required(&self, message: &Value) -> &Requirement {
        static AUTHENTICATED: Requirement = Requirement::Scopes(Scopes::EMPTY);
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            return &AUTHENTICATED;
        };
        let param = |name: &str| {
            message
                .get("params")
                .and_then(|p| p.get(name))
                .and_then(Value::as_str)
        };
        let (table, key) = match method {
            "tools/call" => (&self.tools, param("name")),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                (&self.resources, param("uri"))
            }
            "prompts/get" => (&self.prompts, param("name")),
            other => return self.methods.get(other).unwrap_or(&AUTHENTICATED),
        };
        key.and_then(|key| table.get(key)).unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookups() {
        let p = McpScopePolicy::new()
            .tool("admin_op", ["admin"])
            .tool("free", [] as [&str; 0])
            .resource("file:///secret", ["secret"])
            .prompt("p", ["prompts"])
            .method("tools/list", ["list"])
            .default_scopes(["fallback"]);
        let call = |method: &str, params: Value| json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let scopes = |s: &str| Requirement::Scopes(Scopes::parse(s));
        let cases = [
            (call("tools/call", json!({"name": "admin_op"})), "admin"),
            (call("tools/call", json!({"name": "free"})), ""),
            (call("tools/call", json!({"name": "new_tool"})), "fallback"),
            (call("tools/call", json!({})), "fallback"),
            (
                call("resources/read", json!({"uri": "file:///secret"})),
                "secret",
            ),
            (
                call("resources/read", json!({"uri": "file:///other"})),
                "fallback",
            ),
            (call("prompts/get", json!({"name": "p"})), "prompts"),
            (call("tools/list", json!({})), "list"),
            (call("initialize", json!({})), ""),
            (json!({"jsonrpc": "2.0", "id": 1, "result": {}}), ""),
        ];
        for (message, expected) in cases {
            assert_eq!(p.required(&message), &scopes(expected), "{message}");
        }
    }

    #[test]
    fn public_operations() {
        let p = McpScopePolicy::new()
            .public_handshake()
            .public_tool("info")
            .tool("x", ["read"]);
        let call = |method: &str, params: Value| json!({"jsonrpc":"2.0","id":1,"method":method,"params":params});
        assert_eq!(
            p.required(&call("initialize", json!({}))),
            &Requirement::Public
        );
        assert_eq!(
            p.required(&call("tools/call", json!({"name":"info"}))),
            &Requirement::Public
        );
        assert_eq!(
            p.required(&call("resources/list", json!({}))),
            &Requirement::default()
        );
        let read = Requirement::Scopes(Scopes::parse("read"));
        assert_eq!(Requirement::Public.and(&read), read);
        assert_eq!(
            Requirement::Public.and(&Requirement::Public),
            Requirement::Public
        );
        assert_eq!(
            read.and(&Requirement::Scopes(Scopes::parse("admin"))),
            Requirement::Scopes(Scopes::parse("admin read"))
        );
    }
}
