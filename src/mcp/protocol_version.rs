//! The MCP protocol version a request declares (`MCP-Protocol-Version`), as far as the rules of
//! this crate depend on it.

use http::HeaderMap;

/// The request header naming the MCP protocol version.
pub(crate) const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";

/// The first version whose step-up guidance adds the granted scopes to a challenge.
const STEP_UP_WITH_GRANTED: &str = "2025-11-25";
/// The first version that wants exactly the required scopes in a challenge and requires servers to
/// validate `Mcp-Method` / `Mcp-Name` against the body (SEP-2243).
const REQUIRED_ONLY_AND_METHOD_HEADERS: &str = "2026-07-28";

/// The generations of MCP whose rules differ here, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum McpGeneration {
    /// No header, or a version before 2025-11-25 (a missing header means 2025-03-26, the MCP
    /// default), or a value that is not a version.
    Before2025_11_25,
    /// 2025-11-25 up to (not including) 2026-07-28.
    V2025_11_25,
    /// 2026-07-28, any later date, and drafts (`DRAFT-…`).
    V2026_07_28,
}

impl McpGeneration {
    /// The generation `headers` declare. A header sent twice, or a value that is not a
    /// `YYYY-MM-DD` date or a draft, counts as absent: the oldest rules, which never rely on the
    /// client or the inner service doing more.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut values = headers.get_all(MCP_PROTOCOL_VERSION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Self::Before2025_11_25;
        };
        let Ok(version) = value.to_str() else {
            return Self::Before2025_11_25;
        };
        let version = version.trim();
        if version
            .get(..6)
            .is_some_and(|head| head.eq_ignore_ascii_case("draft-"))
        {
            return Self::V2026_07_28;
        }
        if !is_date(version) {
            return Self::Before2025_11_25;
        }
        // `YYYY-MM-DD` dates order as strings.
        if version >= REQUIRED_ONLY_AND_METHOD_HEADERS {
            Self::V2026_07_28
        } else if version >= STEP_UP_WITH_GRANTED {
            Self::V2025_11_25
        } else {
            Self::Before2025_11_25
        }
    }
}

fn is_date(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: &[&str]) -> McpGeneration {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(MCP_PROTOCOL_VERSION, value.parse().unwrap());
        }
        McpGeneration::of(&headers)
    }

    #[test]
    fn versions_map_to_generations() {
        use McpGeneration::*;
        assert_eq!(of(&[]), Before2025_11_25);
        assert_eq!(of(&["2025-03-26"]), Before2025_11_25);
        assert_eq!(of(&["2025-06-18"]), Before2025_11_25);
        assert_eq!(of(&["2025-11-25"]), V2025_11_25);
        assert_eq!(of(&["2026-07-27"]), V2025_11_25);
        assert_eq!(of(&["2026-07-28"]), V2026_07_28);
        assert_eq!(of(&["2027-01-01"]), V2026_07_28);
        assert_eq!(of(&["DRAFT-2026-v1"]), V2026_07_28);
        assert_eq!(of(&["9999-99-99x"]), Before2025_11_25);
        assert_eq!(of(&["latest"]), Before2025_11_25);
        assert_eq!(of(&["2026-07-28", "2026-07-28"]), Before2025_11_25);
    }
}
