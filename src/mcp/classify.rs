//! [`classify_body`]: what a JSON-RPC request body asks for, or why it cannot be told.
//!
//! A pure function of the body bytes, so that the scope layer, property tests and fuzz targets
//! all exercise the same code. It is deliberately stricter than a JSON-RPC server: whatever it
//! accepts, it understands exactly as a server would, and everything else is an error (the layer
//! answers 400). A body the layer cannot judge must never reach the server, or a server that
//! parses it more leniently (or a decoding layer inside) would run an operation nobody judged.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// One JSON-RPC message of a request body, as the scope policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpMessage {
    /// A request or notification: its method and what it addresses by name or URI.
    Call {
        /// The JSON-RPC method, e.g. `tools/call`.
        method: String,
        /// The tools, prompts and resources the message addresses (empty for other methods).
        targets: Vec<Target>,
    },
    /// A response to a request of the server (a result or an error, no method).
    Response,
}

/// A named thing a message addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A tool, by `params.name` of `tools/call`.
    Tool(String),
    /// A prompt, by `params.name` of `prompts/get` or a `ref/prompt` completion.
    Prompt(String),
    /// A resource, by URI: `resources/read`, `resources/subscribe`, `resources/unsubscribe`,
    /// `resources/directory/read`, a `ref/resource` completion, or each of the
    /// `resourceSubscriptions` of `subscriptions/listen`.
    Resource(String),
}

/// Why a body cannot be classified. Each is answered 400 by [`McpScopeLayer`](super::McpScopeLayer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnclassifiableBody {
    /// Not JSON, or JSON with a key repeated in one object (servers disagree on which copy wins).
    #[error("the body is not JSON without duplicate keys")]
    NotJson,
    /// JSON, but not a JSON-RPC 2.0 message or a non-empty batch of them.
    #[error("not a JSON-RPC 2.0 message: {0}")]
    NotJsonRpc(&'static str),
    /// A method that addresses a tool, prompt or resource without saying which, or saying it
    /// with the wrong type.
    #[error("`{method}` does not name what it addresses: {reason}")]
    BadParams {
        /// The message's method.
        method: String,
        /// What is wrong with its parameters.
        reason: &'static str,
    },
}

/// Methods whose parameters address resources by URI in `params.uri`.
const RESOURCE_METHODS: [&str; 4] = [
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "resources/directory/read",
];

/// Classifies a JSON-RPC request body: a single message or a non-empty batch.
///
/// ```
/// use tower_introspect::mcp::{McpMessage, Target, classify_body};
///
/// let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sum"}}"#;
/// assert_eq!(
///     classify_body(body).unwrap(),
///     vec![McpMessage::Call {
///         method: "tools/call".into(),
///         targets: vec![Target::Tool("sum".into())],
///     }]
/// );
/// assert!(classify_body(b"{not json").is_err());
/// ```
pub fn classify_body(body: &[u8]) -> Result<Vec<McpMessage>, UnclassifiableBody> {
    let StrictJson(value) =
        serde_json::from_slice(body).map_err(|_| UnclassifiableBody::NotJson)?;
    match value {
        Value::Array(batch) if batch.is_empty() => {
            Err(UnclassifiableBody::NotJsonRpc("empty batch"))
        }
        Value::Array(batch) => batch.iter().map(classify_message).collect(),
        single => Ok(vec![classify_message(&single)?]),
    }
}

fn classify_message(message: &Value) -> Result<McpMessage, UnclassifiableBody> {
    use UnclassifiableBody::NotJsonRpc;
    let Value::Object(message) = message else {
        return Err(NotJsonRpc("a message is not an object"));
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(NotJsonRpc("`jsonrpc` is not \"2.0\""));
    }
    match message.get("id") {
        None | Some(Value::String(_) | Value::Number(_)) => {}
        Some(Value::Null) if !message.contains_key("method") => {}
        Some(_) => return Err(NotJsonRpc("`id` is not a string or a number")),
    }
    let Some(method) = message.get("method") else {
        return if message.contains_key("result") != message.contains_key("error") {
            Ok(McpMessage::Response)
        } else {
            Err(NotJsonRpc("neither a request nor a response"))
        };
    };
    let Value::String(method) = method else {
        return Err(NotJsonRpc("`method` is not a string"));
    };
    if message.contains_key("result") || message.contains_key("error") {
        return Err(NotJsonRpc("both a request and a response"));
    }
    let params = match message.get("params") {
        None => None,
        Some(Value::Object(params)) => Some(params),
        Some(Value::Array(_)) if !addresses_targets(method) => None,
        Some(_) => return Err(NotJsonRpc("`params` is not an object")),
    };
    let targets = targets(method, params).map_err(|reason| UnclassifiableBody::BadParams {
        method: method.clone(),
        reason,
    })?;
    Ok(McpMessage::Call {
        method: method.clone(),
        targets,
    })
}

/// Whether `method` addresses tools, prompts or resources through its parameters.
pub(crate) fn addresses_targets(method: &str) -> bool {
    matches!(
        method,
        "tools/call" | "prompts/get" | "completion/complete" | "subscriptions/listen"
    ) || RESOURCE_METHODS.contains(&method)
}

/// What `method` addresses, read from its `params`.
fn targets(method: &str, params: Option<&Map<String, Value>>) -> Result<Vec<Target>, &'static str> {
    if !addresses_targets(method) {
        return Ok(Vec::new());
    }
    let params = params.ok_or("no `params`")?;
    let string = |object: &Map<String, Value>, key: &'static str| match object.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err("a name or URI is not a string"),
        None => Err("a name or URI is missing"),
    };
    Ok(match method {
        "tools/call" => vec![Target::Tool(string(params, "name")?)],
        "prompts/get" => vec![Target::Prompt(string(params, "name")?)],
        "completion/complete" => {
            let Some(Value::Object(reference)) = params.get("ref") else {
                return Err("`ref` is not an object");
            };
            match reference.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => vec![Target::Prompt(string(reference, "name")?)],
                Some("ref/resource") => vec![Target::Resource(string(reference, "uri")?)],
                _ => return Err("`ref.type` is neither ref/prompt nor ref/resource"),
            }
        }
        "subscriptions/listen" => {
            let notifications = match params.get("notifications") {
                None => return Ok(Vec::new()),
                Some(Value::Object(n)) => n,
                Some(_) => return Err("`notifications` is not an object"),
            };
            match notifications.get("resourceSubscriptions") {
                None => Vec::new(),
                Some(Value::Array(uris)) => uris
                    .iter()
                    .map(|uri| match uri {
                        Value::String(uri) => Ok(Target::Resource(uri.clone())),
                        _ => Err("a subscribed URI is not a string"),
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err("`resourceSubscriptions` is not an array"),
            }
        }
        _ => vec![Target::Resource(string(params, "uri")?)],
    })
}

/// A JSON value parsed with every object's keys unique: with duplicates, parsers disagree on
/// which copy counts (serde_json keeps the last, others the first), so a body could name one tool
/// to this layer and another to the server.
struct StrictJson(Value);

impl<'de> Deserialize<'de> for StrictJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON without duplicate keys")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom("duplicate key"));
            }
            let StrictJson(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use UnclassifiableBody::{BadParams, NotJson, NotJsonRpc};

    fn call(method: &str, targets: Vec<Target>) -> McpMessage {
        McpMessage::Call {
            method: method.to_owned(),
            targets,
        }
    }

    fn classify(body: &str) -> Result<Vec<McpMessage>, UnclassifiableBody> {
        classify_body(body.as_bytes())
    }

    #[test]
    fn names_what_each_addressing_method_addresses() {
        let cases = [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{}}}"#,
                call("tools/call", vec![Target::Tool("t".into())]),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"a","method":"prompts/get","params":{"name":"p"}}"#,
                call("prompts/get", vec![Target::Prompt("p".into())]),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#,
                call("resources/read", vec![Target::Resource("file:///a".into())]),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"u"}}"#,
                call("resources/subscribe", vec![Target::Resource("u".into())]),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{"uri":"u"}}"#,
                call("resources/unsubscribe", vec![Target::Resource("u".into())]),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/directory/read","params":{"uri":"skill://x"}}"#,
                call(
                    "resources/directory/read",
                    vec![Target::Resource("skill://x".into())],
                ),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"u"},"argument":{"name":"a","value":""}}}"#,
                call("completion/complete", vec![Target::Resource("u".into())]),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"a","value":""}}}"#,
                call("completion/complete", vec![Target::Prompt("p".into())]),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true,"resourceSubscriptions":["a","b"]}}}"#,
                call(
                    "subscriptions/listen",
                    vec![Target::Resource("a".into()), Target::Resource("b".into())],
                ),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true}}}"#,
                call("subscriptions/listen", vec![]),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                call("notifications/initialized", vec![]),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"custom","params":[1,2]}"#,
                call("custom", vec![]),
            ),
            (
                r#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
                McpMessage::Response,
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#,
                McpMessage::Response,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(classify(body), Ok(vec![expected]), "{body}");
        }
    }

    #[test]
    fn batches_classify_every_message() {
        let body = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},
                       {"jsonrpc":"2.0","id":2,"method":"ping"}]"#;
        assert_eq!(
            classify(body),
            Ok(vec![
                call("tools/call", vec![Target::Tool("a".into())]),
                call("ping", vec![])
            ])
        );
        assert_eq!(classify("[]"), Err(NotJsonRpc("empty batch")));
        // One message it cannot judge spoils the batch.
        let body = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, 3]"#;
        assert_eq!(
            classify(body),
            Err(NotJsonRpc("a message is not an object"))
        );
    }

    #[test]
    fn refuses_what_is_not_json() {
        for body in ["", "{not json", "\u{feff}{}", "{\"jsonrpc\":\"2.0\"", "nul"] {
            assert_eq!(classify(body), Err(NotJson), "{body:?}");
        }
        assert_eq!(classify_body(b"\xff\xfe{}"), Err(NotJson));
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","name":"admin"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"admin"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":[{"k":1,"k":2}]}}"#,
        ] {
            assert_eq!(classify(body), Err(NotJson), "{body}");
        }
    }

    #[test]
    fn refuses_what_is_not_json_rpc() {
        let cases = [
            ("3", "a message is not an object"),
            (r#""tools/call""#, "a message is not an object"),
            (r#"{"id":1,"method":"ping"}"#, "`jsonrpc` is not \"2.0\""),
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
                "`jsonrpc` is not \"2.0\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":["tools/call"]}"#,
                "`method` is not a string",
            ),
            (
                r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
                "`id` is not a string or a number",
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                "`id` is not a string or a number",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1}"#,
                "neither a request nor a response",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
                "neither a request nor a response",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","result":{},"params":{"name":"a"}}"#,
                "both a request and a response",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#,
                "`params` is not an object",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["admin"]}"#,
                "`params` is not an object",
            ),
        ];
        for (body, reason) in cases {
            assert_eq!(classify(body), Err(NotJsonRpc(reason)), "{body}");
        }
    }

    #[test]
    fn refuses_addressing_methods_that_do_not_say_what_they_address() {
        let bad = |method: &str, reason| {
            Err(BadParams {
                method: method.to_owned(),
                reason,
            })
        };
        let cases = [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
                bad("tools/call", "no `params`"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
                bad("tools/call", "a name or URI is missing"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["admin"]}}"#,
                bad("tools/call", "a name or URI is not a string"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":null}}"#,
                bad("resources/read", "a name or URI is not a string"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/other","uri":"u"}}}"#,
                bad(
                    "completion/complete",
                    "`ref.type` is neither ref/prompt nor ref/resource",
                ),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":"u"}}"#,
                bad("completion/complete", "`ref` is not an object"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":"u"}}}"#,
                bad(
                    "subscriptions/listen",
                    "`resourceSubscriptions` is not an array",
                ),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["a",1]}}}"#,
                bad("subscriptions/listen", "a subscribed URI is not a string"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":[]}}"#,
                bad("subscriptions/listen", "`notifications` is not an object"),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(classify(body), expected, "{body}");
        }
    }

    proptest::proptest! {
        /// Any bytes at all: an answer, never a panic.
        #[test]
        fn any_bytes_classify_or_fail_without_panicking(body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = classify_body(&body);
        }

        /// Whatever a tool call's name is, the classifier names that tool: the policy judges
        /// exactly what the server will run.
        #[test]
        fn a_tool_call_names_exactly_its_tool(name in ".*", id in proptest::num::i64::ANY) {
            let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                                          "params": {"name": name, "arguments": {}}});
            let classified = classify_body(body.to_string().as_bytes());
            proptest::prop_assert_eq!(classified, Ok(vec![call("tools/call", vec![Target::Tool(name)])]));
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(classify(&body), Err(NotJson));
    }
}
