//! Scope strings (RFC 6749 §3.3): space-delimited, case-sensitive, order-insensitive sets.

use std::collections::BTreeSet;

/// Splits a scope string into its distinct tokens, or `None` if a token contains characters
/// outside RFC 6749's `scope-token` grammar (printable ASCII except space, `"` and `\`).
pub fn parse(scope: &str) -> Option<BTreeSet<String>> {
    let mut set = BTreeSet::new();
    for token in scope.split(' ').filter(|t| !t.is_empty()) {
        let ok = token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
        if !ok {
            return None;
        }
        set.insert(token.to_owned());
    }
    Some(set)
}

/// Joins a set back into a scope string (sorted, so equal sets give equal strings).
pub fn join<'a>(scopes: impl IntoIterator<Item = &'a String>) -> String {
    scopes
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses a scope string that the server itself produced (never fails; bad tokens are dropped).
pub fn set(scope: &str) -> BTreeSet<String> {
    scope
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// True when every scope in `requested` is in `allowed`.
pub fn is_subset(requested: &BTreeSet<String>, allowed: &str) -> bool {
    requested.is_subset(&set(allowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let s = parse("write  read write").unwrap();
        assert_eq!(join(&s), "read write");
        assert!(parse("bad\"scope").is_none());
        assert!(is_subset(&s, "admin read write"));
        assert!(!is_subset(&s, "read"));
    }
}
