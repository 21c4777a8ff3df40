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
/// operations added later). A method missing from the method table requires nothing, so
/// `initialize`, `ping` and notifications always work.
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
    tools: HashMap<String, Scopes>,
    resources: HashMap<String, Scopes>,
    prompts: HashMap<String, Scopes>,
    methods: HashMap<String, Scopes>,
    default: Scopes,
}

fn scopes<I, T>(scopes: I) -> Scopes
where
    I: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    scopes.into_iter().collect()
}

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

    /// Scopes required by tools, resources and prompts the policy does not name.
    pub fn default_scopes<I, T>(mut self, required: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.default = scopes(required);
        self
    }

    /// The scopes one JSON-RPC message requires (empty when none).
    pub fn required(&self, message: &Value) -> &Scopes {
        static NONE: Scopes = Scopes::EMPTY;
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            return &NONE;
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
            other => return self.methods.get(other).unwrap_or(&NONE),
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
        let call = |method: &str, params: Value| json!({"jsonrpc":"2.0","id":1,"method":method,"params":params});
        assert_eq!(
            p.required(&call("tools/call", json!({"name":"admin_op"})))
                .to_string(),
            "admin"
        );
        assert!(
            p.required(&call("tools/call", json!({"name":"free"})))
                .is_empty()
        );
        assert_eq!(
            p.required(&call("tools/call", json!({"name":"new_tool"})))
                .to_string(),
            "fallback"
        );
        assert_eq!(
            p.required(&call("tools/call", json!({}))).to_string(),
            "fallback"
        );
        assert_eq!(
            p.required(&call("resources/read", json!({"uri":"file:///secret"})))
                .to_string(),
            "secret"
        );
        assert_eq!(
            p.required(&call("prompts/get", json!({"name":"p"})))
                .to_string(),
            "prompts"
        );
        assert_eq!(
            p.required(&call("tools/list", json!({}))).to_string(),
            "list"
        );
        assert!(p.required(&call("initialize", json!({}))).is_empty());
        assert!(
            p.required(&json!({"jsonrpc":"2.0","id":1,"result":{}}))
                .is_empty()
        );
    }
}
