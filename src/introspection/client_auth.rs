//! How the resource server authenticates itself to the introspection endpoint (RFC 7662 §2.1).

use std::fmt;

/// Client authentication for introspection requests.
///
/// RFC 7662 requires the protected resource to authenticate; most servers expect a confidential
/// client with a secret. Secrets are never printed by `Debug`.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// No authentication (only for servers that allow it, e.g. on a private network).
    #[default]
    None,
    /// `client_secret_basic`: HTTP Basic with the id and secret each form-encoded first, as
    /// RFC 6749 §2.3.1 requires (servers decode them, so an unencoded `:` or `%` would break).
    SecretBasic {
        /// Client identifier.
        client_id: String,
        /// Client secret.
        client_secret: String,
    },
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    SecretPost {
        /// Client identifier.
        client_id: String,
        /// Client secret.
        client_secret: String,
    },
    /// A static credential sent as `Authorization: Bearer …` (some servers, e.g. Ory Hydra's admin
    /// port behind a gateway, protect introspection this way).
    Bearer(String),
}

impl ClientAuth {
    /// Adds the credentials to an introspection request whose form is `form`.
    pub(crate) fn apply<'a>(
        &'a self,
        request: reqwest::RequestBuilder,
        form: &mut Vec<(&'static str, &'a str)>,
    ) -> reqwest::RequestBuilder {
        match self {
            Self::None => request,
            Self::SecretBasic {
                client_id,
                client_secret,
            } => request.basic_auth(form_encode(client_id), Some(form_encode(client_secret))),
            Self::SecretPost {
                client_id,
                client_secret,
            } => {
                form.push(("client_id", client_id));
                form.push(("client_secret", client_secret));
                request
            }
            Self::Bearer(credential) => request.bearer_auth(credential),
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::SecretBasic { client_id, .. } => f
                .debug_struct("SecretBasic")
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .finish(),
            Self::SecretPost { client_id, .. } => f
                .debug_struct("SecretPost")
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .finish(),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_of_basic_credentials() {
        assert_eq!(form_encode("a b:c%d/é"), "a+b%3Ac%25d%2F%C3%A9");
        assert_eq!(form_encode("plain-id_1.x~"), "plain-id_1.x%7E");
    }

    #[test]
    fn debug_never_prints_secrets() {
        let auth = ClientAuth::SecretBasic {
            client_id: "rs".into(),
            client_secret: "hunter2".into(),
        };
        let printed = format!("{auth:?}");
        assert!(printed.contains("rs") && !printed.contains("hunter2"));
        assert!(!format!("{:?}", ClientAuth::Bearer("hunter2".into())).contains("hunter2"));
    }
}
