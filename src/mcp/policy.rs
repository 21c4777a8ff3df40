//! Which scopes each MCP operation requires.

use std::collections::HashMap;

use super::classify::{McpMessage, Target, addresses_targets};
use crate::{ConfigError, Scopes};

/// Maps MCP operations to the scopes they require.
///
/// [`McpScopeLayer`](super::McpScopeLayer) classifies each JSON-RPC message with
/// [`classify_body`](super::classify_body) and judges it here:
///
/// | method | judged by | table |
/// |---|---|---|
/// | `tools/call` | `params.name` | [`tool`](McpScopePolicyBuilder::tool) |
/// | `prompts/get` | `params.name` | [`prompt`](McpScopePolicyBuilder::prompt) |
/// | `resources/read`, `resources/subscribe`, `resources/unsubscribe`, `resources/directory/read` | `params.uri` | [`resource`](McpScopePolicyBuilder::resource) |
/// | `completion/complete` | `params.ref`: `ref/prompt` by its `name`, `ref/resource` by its `uri` | [`prompt`](McpScopePolicyBuilder::prompt), [`resource`](McpScopePolicyBuilder::resource) |
/// | `subscriptions/listen` (2026-07-28) | each URI of `params.notifications.resourceSubscriptions` | [`resource`](McpScopePolicyBuilder::resource) |
/// | any other method | the method | [`method`](McpScopePolicyBuilder::method) |
///
/// A tool, resource or prompt missing from its table requires the
/// [`default_scopes`](McpScopePolicyBuilder::default_scopes) (none unless set: set them to fail closed for
/// operations added later). A method of the MCP specification missing from the method table
/// requires an authenticated caller and no particular scope; a method the specification does not
/// define (a server's own extension, or one added by a later version) requires the
/// [`unknown_method_scopes`](McpScopePolicyBuilder::unknown_method_scopes), by default the `default_scopes`.
///
/// A method-table entry for a method of the first rows (e.g. `method("tools/call", ["mcp"])`)
/// applies to *every* call of that method, on top of what the addressed tool, prompt or resource
/// requires.
///
/// Every operation requires an authenticated caller unless marked public
/// ([`public_tool`](McpScopePolicyBuilder::public_tool),
/// [`public_method`](McpScopePolicyBuilder::public_method),
/// [`public_handshake`](McpScopePolicyBuilder::public_handshake)). Public operations only matter when the bearer
/// layer lets anonymous requests through
/// ([`allow_missing_token`](crate::BearerAuthLayer::allow_missing_token)): then an anonymous call
/// of anything else gets the 401 challenge that starts the client's OAuth flow.
///
/// ```
/// use tower_introspect::mcp::McpScopePolicy;
///
/// # fn main() -> Result<(), tower_introspect::ConfigError> {
/// let policy = McpScopePolicy::builder()
///     .tool("read_data", ["read"])
///     .tool("write_data", ["write"])
///     .tool("admin_operation", ["admin"])
///     .tool("public_info", [] as [&str; 0])
///     .resource("file:///reports/q3", ["read"])
///     .default_scopes(["admin"])
///     .build()?;
/// # let _ = policy;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct McpScopePolicy {
    tools: HashMap<String, Requirement>,
    resources: HashMap<String, Requirement>,
    prompts: HashMap<String, Requirement>,
    methods: HashMap<String, Requirement>,
    default: Requirement,
    unknown_methods: Option<Requirement>,
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

/// Methods every MCP client sends before it can do anything, plus tool discovery.
const HANDSHAKE: [&str; 6] = [
    "initialize",
    "notifications/initialized",
    "notifications/cancelled",
    "ping",
    "tools/list",
    "server/discover",
];

/// Configures an [`McpScopePolicy`]; [`build`](Self::build) reports the first mistake.
#[derive(Debug, Default)]
#[must_use]
pub struct McpScopePolicyBuilder {
    policy: McpScopePolicy,
    error: Option<ConfigError>,
}

impl McpScopePolicy {
    /// Configures a policy that requires nothing until told otherwise.
    pub fn builder() -> McpScopePolicyBuilder {
        McpScopePolicyBuilder::default()
    }

    /// What one JSON-RPC message requires. A message without a method (a response to a server
    /// request) requires an authenticated caller.
    pub fn required(&self, message: &McpMessage) -> Requirement {
        let McpMessage::Call { method, targets } = message else {
            return Requirement::default();
        };
        if let Some(required) = self.methods.get(method) {
            return targets.iter().fold(required.clone(), |acc, target| {
                acc.and(self.target_requirement(target))
            });
        }
        if addresses_targets(method) {
            // Every target must be allowed; a listen without resources asks for nothing more
            // than an authenticated caller.
            if targets.is_empty() {
                return Requirement::default();
            }
            return targets.iter().fold(Requirement::Public, |acc, target| {
                acc.and(self.target_requirement(target))
            });
        }
        if SPECIFIED_METHODS.contains(&method.as_str()) {
            Requirement::default()
        } else {
            self.unknown_methods
                .clone()
                .unwrap_or_else(|| self.default.clone())
        }
    }

    /// What the tool, prompt or resource `target` requires.
    fn target_requirement(&self, target: &Target) -> &Requirement {
        let (table, key) = match target {
            Target::Tool(name) => (&self.tools, name),
            Target::Prompt(name) => (&self.prompts, name),
            Target::Resource(uri) => (&self.resources, uri),
        };
        table.get(key).unwrap_or(&self.default)
    }

    /// What a whole body (one message or a batch) requires: everything any message requires.
    pub fn required_for_all(&self, messages: &[McpMessage]) -> Requirement {
        messages
            .iter()
            .fold(Requirement::Public, |acc, m| acc.and(&self.required(m)))
    }
}

impl McpScopePolicyBuilder {
    /// The requirement of `scopes`, or the first configuration error, kept for
    /// [`build`](Self::build) (the entry then requires nothing, but the policy is never built).
    fn scopes<I, T>(&mut self, setting: &'static str, scopes: I) -> Requirement
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        match Scopes::configured(setting, scopes) {
            Ok(scopes) => Requirement::Scopes(scopes),
            Err(error) => {
                self.error.get_or_insert(error);
                Requirement::Public
            }
        }
    }

    /// The policy, or the first scope that is not a valid RFC 6749 `scope-token` (or is
    /// `offline_access`), or public method that addresses tools, prompts or resources.
    pub fn build(self) -> Result<McpScopePolicy, ConfigError> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.policy),
        }
    }

    /// Scopes required to call tool `name` (all of them).
    pub fn tool<I, T>(mut self, name: impl Into<String>, required: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let required = self.scopes("tool", required);
        self.policy.tools.insert(name.into(), required);
        self
    }

    /// Scopes required to read or subscribe to the resource with this exact `uri`.
    pub fn resource<I, T>(mut self, uri: impl Into<String>, required: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let required = self.scopes("resource", required);
        self.policy.resources.insert(uri.into(), required);
        self
    }

    /// Scopes required to get prompt `name`.
    pub fn prompt<I, T>(mut self, name: impl Into<String>, required: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let required = self.scopes("prompt", required);
        self.policy.prompts.insert(name.into(), required);
        self
    }

    /// Scopes required for a whole JSON-RPC method (e.g. `tools/list`).
    pub fn method<I, T>(mut self, method: impl Into<String>, required: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let required = self.scopes("method", required);
        self.policy.methods.insert(method.into(), required);
        self
    }

    /// Tool `name` may be called without a token.
    pub fn public_tool(mut self, name: impl Into<String>) -> Self {
        self.policy.tools.insert(name.into(), Requirement::Public);
        self
    }

    /// JSON-RPC method `method` may be called without a token.
    ///
    /// [`build`](Self::build) refuses a `method` that addresses tools, prompts or resources
    /// (`tools/call`, `prompts/get`, `resources/read`, `resources/subscribe`,
    /// `resources/unsubscribe`, `resources/directory/read`, `completion/complete`,
    /// `subscriptions/listen`): what those require is decided by what they address, so a public
    /// entry for the method could only be ignored (or make every tool public, which nobody
    /// means). Use [`public_tool`](Self::public_tool) for each public tool instead.
    pub fn public_method(mut self, method: impl Into<String>) -> Self {
        let method = method.into();
        if addresses_targets(&method) {
            self.error.get_or_insert(ConfigError::Invalid {
                setting: "public_method",
                reason: format!(
                    "{method:?} addresses tools, prompts or resources; make each of them public \
                     instead (e.g. public_tool)"
                ),
            });
            return self;
        }
        self.policy.methods.insert(method, Requirement::Public);
        self
    }

    /// Makes the handshake public (`initialize`, `notifications/initialized`,
    /// `notifications/cancelled`, `ping`, `tools/list`, `server/discover`), so that anonymous
    /// clients can connect and call public tools.
    pub fn public_handshake(mut self) -> Self {
        for method in HANDSHAKE {
            self.policy
                .methods
                .insert(method.to_owned(), Requirement::Public);
        }
        self
    }

    /// Scopes required by tools, resources and prompts the policy does not name.
    pub fn default_scopes<I, T>(mut self, required: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.policy.default = self.scopes("default_scopes", required);
        self
    }

    /// Scopes required by JSON-RPC methods that the MCP specification does not define and the
    /// method table does not name (default: the [`default_scopes`](Self::default_scopes)), so
    /// that a method added later fails closed along with unnamed tools.
    pub fn unknown_method_scopes<I, T>(mut self, required: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.policy.unknown_methods = Some(self.scopes("unknown_method_scopes", required));
        self
    }
}

/// The methods a client may send under some version of the MCP specification (2024-11-05 to
/// 2026-07-28), besides those that address tools, prompts or resources. Anything else is an
/// unknown method.
const SPECIFIED_METHODS: [&str; 17] = [
    "initialize",
    "ping",
    "server/discover",
    "logging/setLevel",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "notifications/tasks/status",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::classify_body;
    use serde_json::{Value, json};

    fn scopes(s: &str) -> Requirement {
        Requirement::Scopes(Scopes::parse(s))
    }

    fn message(method: &str, params: Value) -> McpMessage {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        classify_body(body.to_string().as_bytes())
            .unwrap()
            .remove(0)
    }

    #[test]
    fn lookups() {
        let p = McpScopePolicy::builder()
            .tool("admin_op", ["admin"])
            .tool("free", [] as [&str; 0])
            .resource("file:///secret", ["secret"])
            .prompt("p", ["prompts"])
            .method("tools/list", ["list"])
            .default_scopes(["fallback"])
            .build()
            .unwrap();
        let cases = [
            (message("tools/call", json!({"name": "admin_op"})), "admin"),
            (message("tools/call", json!({"name": "free"})), ""),
            (
                message("tools/call", json!({"name": "new_tool"})),
                "fallback",
            ),
            (
                message("resources/read", json!({"uri": "file:///secret"})),
                "secret",
            ),
            (
                message("resources/read", json!({"uri": "file:///other"})),
                "fallback",
            ),
            (message("prompts/get", json!({"name": "p"})), "prompts"),
            (message("tools/list", json!({})), "list"),
            (message("initialize", json!({})), ""),
            (message("resources/list", json!({})), ""),
            (McpMessage::Response, ""),
        ];
        for (message, expected) in cases {
            assert_eq!(p.required(&message), scopes(expected), "{message:?}");
        }
    }

    #[test]
    fn every_method_addressing_a_resource_is_judged_by_the_resource_table() {
        let p = McpScopePolicy::builder()
            .resource("file:///admin", ["admin"])
            .resource("file:///public", ["read"])
            .prompt("secret_prompt", ["admin"])
            .build()
            .unwrap();
        let admin = scopes("admin");
        let cases = [
            message("resources/read", json!({"uri": "file:///admin"})),
            message("resources/subscribe", json!({"uri": "file:///admin"})),
            message("resources/unsubscribe", json!({"uri": "file:///admin"})),
            message("resources/directory/read", json!({"uri": "file:///admin"})),
            message(
                "completion/complete",
                json!({"ref": {"type": "ref/resource", "uri": "file:///admin"},
                       "argument": {"name": "a", "value": ""}}),
            ),
            message(
                "completion/complete",
                json!({"ref": {"type": "ref/prompt", "name": "secret_prompt"},
                       "argument": {"name": "a", "value": ""}}),
            ),
            message(
                "subscriptions/listen",
                json!({"notifications": {"resourceSubscriptions": ["file:///admin"]}}),
            ),
        ];
        for message in cases {
            assert_eq!(p.required(&message), admin, "{message:?}");
        }
        let listen = message(
            "subscriptions/listen",
            json!({"notifications": {"resourceSubscriptions": ["file:///public", "file:///admin"]}}),
        );
        assert_eq!(p.required(&listen), scopes("admin read"));
        let listen_lists = message(
            "subscriptions/listen",
            json!({"notifications": {"toolsListChanged": true}}),
        );
        assert_eq!(p.required(&listen_lists), Requirement::default());
    }

    #[test]
    fn unknown_methods_fall_under_a_default_that_can_fail_closed() {
        let custom = message("acme/erase_everything", json!({}));
        assert_eq!(
            McpScopePolicy::default().required(&custom),
            Requirement::default()
        );
        let closed = || McpScopePolicy::builder().default_scopes(["admin"]);
        assert_eq!(closed().build().unwrap().required(&custom), scopes("admin"));
        // Methods of the specification are not unknown.
        assert_eq!(
            closed()
                .build()
                .unwrap()
                .required(&message("tools/list", json!({}))),
            Requirement::default()
        );
        let own = || closed().unknown_method_scopes(["ops"]);
        assert_eq!(own().build().unwrap().required(&custom), scopes("ops"));
        // A method-table entry wins over the unknown-method default.
        let named = own()
            .method("acme/erase_everything", ["erase"])
            .build()
            .unwrap();
        assert_eq!(named.required(&custom), scopes("erase"));
    }

    #[test]
    fn method_entries_for_addressing_methods_apply_to_every_call() {
        let p = McpScopePolicy::builder()
            .public_tool("info")
            .tool("admin_op", ["admin"])
            .method("tools/call", ["mcp"])
            .method("resources/read", ["files"])
            .build()
            .unwrap();
        let tool = |name: &str| message("tools/call", json!({"name": name}));
        assert_eq!(p.required(&tool("admin_op")), scopes("admin mcp"));
        assert_eq!(p.required(&tool("info")), scopes("mcp"));
        assert_eq!(p.required(&tool("other")), scopes("mcp"));
        assert_eq!(
            p.required(&message("resources/read", json!({"uri": "u"}))),
            scopes("files")
        );
    }

    #[test]
    fn a_public_entry_for_an_addressing_method_is_refused_when_built() {
        let error = McpScopePolicy::builder()
            .public_method("tools/call")
            .build()
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("public_method: \"tools/call\" addresses tools"),
            "{error}"
        );
    }

    #[test]
    fn every_addressing_method_refuses_a_public_entry() {
        for method in [
            "tools/call",
            "prompts/get",
            "resources/read",
            "resources/subscribe",
            "resources/unsubscribe",
            "resources/directory/read",
            "completion/complete",
            "subscriptions/listen",
        ] {
            let built = McpScopePolicy::builder().public_method(method).build();
            assert!(built.is_err(), "{method}");
        }
    }

    #[test]
    fn public_operations() {
        let p = McpScopePolicy::builder()
            .public_handshake()
            .public_tool("info")
            .tool("x", ["read"])
            .build()
            .unwrap();
        assert_eq!(
            p.required(&message("initialize", json!({}))),
            Requirement::Public
        );
        assert_eq!(
            p.required(&message("tools/call", json!({"name": "info"}))),
            Requirement::Public
        );
        assert_eq!(
            p.required(&message("resources/list", json!({}))),
            Requirement::default()
        );
        let batch = [
            message("tools/call", json!({"name": "info"})),
            message("tools/call", json!({"name": "x"})),
        ];
        assert_eq!(p.required_for_all(&batch), scopes("read"));
        let read = scopes("read");
        assert_eq!(Requirement::Public.and(&read), read);
        assert_eq!(
            Requirement::Public.and(&Requirement::Public),
            Requirement::Public
        );
        assert_eq!(read.and(&scopes("admin")), scopes("admin read"));
    }
}
