//! The `Mcp-Method` / `Mcp-Name` request headers (SEP-2243, required from MCP 2026-07-28): the
//! JSON-RPC method and the tool, prompt or resource it addresses, mirrored from the body so that
//! intermediaries can route without reading it.

use http::HeaderMap;

use super::{McpMessage, Target};

/// The header mirroring the JSON-RPC `method`.
pub(crate) const MCP_METHOD: &str = "mcp-method";
/// The header mirroring `params.name` (`tools/call`, `prompts/get`) or `params.uri`
/// (`resources/read`, `resources/subscribe`, `resources/unsubscribe`).
pub(crate) const MCP_NAME: &str = "mcp-name";

/// The prefix of SEP-2243's encoding for values that are not plain ASCII: such a name is not
/// compared here (the body decides, and the inner service validates the header).
const ENCODED_VALUE: &str = "=?base64?";

/// What the headers announce a request body holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnnouncedCall {
    method: String,
    name: Option<String>,
}

/// A header that is repeated or not visible ASCII: such a request is refused (400).
#[derive(Debug)]
pub(crate) struct MalformedMethodHeaders;

impl AnnouncedCall {
    /// The announcement of `headers`: `None` without an `Mcp-Method` header.
    pub(crate) fn of(headers: &HeaderMap) -> Result<Option<Self>, MalformedMethodHeaders> {
        let method = single(headers, MCP_METHOD)?;
        let name = single(headers, MCP_NAME)?;
        match (method, name) {
            (Some(method), name) => Ok(Some(Self { method, name })),
            // A name without a method announces nothing a server could check.
            (None, Some(_)) => Err(MalformedMethodHeaders),
            (None, None) => Ok(None),
        }
    }

    /// The message the headers describe, when they describe it completely: a method that
    /// addresses nothing, or one whose single target `Mcp-Name` names in plain ASCII. `None`
    /// when only the body can tell (completions, listens, encoded names).
    pub(crate) fn message(&self) -> Option<McpMessage> {
        let targets = match self.target_kind() {
            Kind::None
                if self.name.is_none() && !super::classify::addresses_targets(&self.method) =>
            {
                Vec::new()
            }
            Kind::Named(target) => {
                let name = self
                    .name
                    .as_ref()
                    .filter(|n| !n.starts_with(ENCODED_VALUE))?;
                vec![target(name.clone())]
            }
            Kind::None => return None,
        };
        Some(McpMessage::Call {
            method: self.method.clone(),
            targets,
        })
    }

    /// Whether the body's `messages` are what the headers announce: one call of that method,
    /// addressing the named target (an encoded name is not compared).
    pub(crate) fn matches(&self, messages: &[McpMessage]) -> bool {
        let [McpMessage::Call { method, targets }] = messages else {
            return false;
        };
        if *method != self.method {
            return false;
        }
        match (&self.name, self.target_kind()) {
            (None, _) => true,
            (Some(name), _) if name.starts_with(ENCODED_VALUE) => true,
            (Some(name), Kind::Named(target)) => targets.as_slice() == [target(name.clone())],
            (Some(_), Kind::None) => false,
        }
    }

    fn target_kind(&self) -> Kind {
        match self.method.as_str() {
            "tools/call" => Kind::Named(Target::Tool),
            "prompts/get" => Kind::Named(Target::Prompt),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                Kind::Named(Target::Resource)
            }
            _ => Kind::None,
        }
    }
}

/// Which target `Mcp-Name` names for a method.
enum Kind {
    None,
    Named(fn(String) -> Target),
}

fn single(headers: &HeaderMap, name: &str) -> Result<Option<String>, MalformedMethodHeaders> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value
            .to_str()
            .map(|v| Some(v.trim().to_owned()))
            .map_err(|_| MalformedMethodHeaders),
        (Some(_), Some(_)) => Err(MalformedMethodHeaders),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announced(
        pairs: &[(&'static str, &str)],
    ) -> Result<Option<AnnouncedCall>, MalformedMethodHeaders> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(http::HeaderName::from_static(name), value.parse().unwrap());
        }
        AnnouncedCall::of(&headers)
    }

    fn call(method: &str, targets: Vec<Target>) -> McpMessage {
        McpMessage::Call {
            method: method.into(),
            targets,
        }
    }

    #[test]
    fn headers_describe_a_message_only_when_complete() {
        let a = announced(&[(MCP_METHOD, "tools/call"), (MCP_NAME, "sum")])
            .unwrap()
            .unwrap();
        assert_eq!(
            a.message(),
            Some(call("tools/call", vec![Target::Tool("sum".into())]))
        );
        let a = announced(&[(MCP_METHOD, "resources/read"), (MCP_NAME, "file:///a")])
            .unwrap()
            .unwrap();
        assert_eq!(
            a.message(),
            Some(call(
                "resources/read",
                vec![Target::Resource("file:///a".into())]
            ))
        );
        let a = announced(&[(MCP_METHOD, "tools/list")]).unwrap().unwrap();
        assert_eq!(a.message(), Some(call("tools/list", vec![])));
        for incomplete in [
            &[(MCP_METHOD, "tools/call")][..],
            &[(MCP_METHOD, "tools/call"), (MCP_NAME, "=?base64?c3Vt?=")],
            &[(MCP_METHOD, "completion/complete")],
            &[(MCP_METHOD, "subscriptions/listen")],
            &[(MCP_METHOD, "tools/list"), (MCP_NAME, "x")],
        ] {
            assert_eq!(
                announced(incomplete).unwrap().unwrap().message(),
                None,
                "{incomplete:?}"
            );
        }
        assert!(announced(&[]).unwrap().is_none());
        assert!(announced(&[(MCP_NAME, "sum")]).is_err());
        assert!(announced(&[(MCP_METHOD, "a"), (MCP_METHOD, "b")]).is_err());
    }

    #[test]
    fn mismatches_are_detected() {
        let a = announced(&[(MCP_METHOD, "tools/call"), (MCP_NAME, "read_data")])
            .unwrap()
            .unwrap();
        assert!(a.matches(&[call("tools/call", vec![Target::Tool("read_data".into())])]));
        assert!(!a.matches(&[call("tools/call", vec![Target::Tool("admin".into())])]));
        assert!(!a.matches(&[call(
            "prompts/get",
            vec![Target::Prompt("read_data".into())]
        )]));
        assert!(!a.matches(&[McpMessage::Response]));
        let one = call("tools/call", vec![Target::Tool("read_data".into())]);
        assert!(!a.matches(&[one.clone(), one]));
        let a = announced(&[(MCP_METHOD, "ping"), (MCP_NAME, "x")])
            .unwrap()
            .unwrap();
        assert!(!a.matches(&[call("ping", vec![])]));
    }
}
