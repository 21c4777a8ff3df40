//! An independent parser of one `WWW-Authenticate` challenge (RFC 9110 §11.2 / RFC 7235):
//!
//! ```text
//! challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param  = token BWS "=" BWS ( token / quoted-string )
//! ```
//!
//! Strict on purpose: anything it cannot parse means the renderer produced something a client
//! could misread.

/// A parsed challenge: its scheme and its parameters, in order, values unescaped.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The auth-scheme.
    pub scheme: String,
    /// `(name, value)` pairs in the order they appear.
    pub params: Vec<(String, String)>,
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn skip_ows(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
        i += 1;
    }
    i
}

fn token(bytes: &[u8], start: usize) -> Option<(String, usize)> {
    let mut i = start;
    while i < bytes.len() && is_tchar(bytes[i]) {
        i += 1;
    }
    (i > start).then(|| (String::from_utf8_lossy(&bytes[start..i]).into_owned(), i))
}

/// `quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE`, returning the unescaped value.
fn quoted_string(bytes: &[u8], start: usize) -> Option<(String, usize)> {
    if bytes.get(start) != Some(&b'"') {
        return None;
    }
    let mut value = Vec::new();
    let mut i = start + 1;
    loop {
        match *bytes.get(i)? {
            b'"' => return Some((String::from_utf8(value).ok()?, i + 1)),
            b'\\' => {
                let escaped = *bytes.get(i + 1)?;
                // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                if !(escaped == b'\t' || escaped == b' ' || escaped.is_ascii_graphic()) {
                    return None;
                }
                value.push(escaped);
                i += 2;
            }
            // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text; we also refuse obs-text,
            // which a renderer promising visible ASCII must never emit.
            c if c == b'\t' || c == b' ' || (c.is_ascii_graphic() && c != b'\\') => {
                value.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
}

/// Parses `value` as exactly one challenge with auth-params (no token68), or `None`.
pub fn parse_challenge(value: &[u8]) -> Option<Challenge> {
    let (scheme, mut i) = token(value, 0)?;
    let mut params = Vec::new();
    if i == value.len() {
        return Some(Challenge { scheme, params });
    }
    if value[i] != b' ' {
        return None;
    }
    i = skip_ows(value, i);
    loop {
        let (name, next) = token(value, i)?;
        i = skip_ows(value, next);
        if value.get(i) != Some(&b'=') {
            return None;
        }
        i = skip_ows(value, i + 1);
        let (param, next) = quoted_string(value, i).or_else(|| token(value, i))?;
        params.push((name.to_ascii_lowercase(), param));
        i = skip_ows(value, next);
        if i == value.len() {
            return Some(Challenge { scheme, params });
        }
        if value[i] != b',' {
            return None;
        }
        i = skip_ows(value, i + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escapes_and_rejects_garbage() {
        let c = parse_challenge(br#"Bearer realm="a\"b\\c", error=invalid_token"#).unwrap();
        assert_eq!(c.scheme, "Bearer");
        assert_eq!(
            c.params,
            [
                ("realm".into(), "a\"b\\c".into()),
                ("error".into(), "invalid_token".into())
            ]
        );
        assert_eq!(parse_challenge(b"Bearer").unwrap().params, []);
        assert!(parse_challenge(br#"Bearer realm="x"#).is_none());
        assert!(parse_challenge(br#"Bearer realm="x" y="z""#).is_none());
        assert!(parse_challenge(b"Bearer realm=\"\x01\"").is_none());
    }
}
