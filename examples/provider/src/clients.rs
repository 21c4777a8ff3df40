//! Configured clients: the clients file (`--clients-file`), the only way besides `--demo` to
//! create resource servers, resource-restricted clients and `client_credentials` clients without
//! the initial access token.
//!
//! TOML (or JSON when the name ends in `.json`):
//!
//! ```toml
//! [[clients]]
//! client_id = "billing-api"
//! secret_hash = "…"            # from `oauth-provider hash-client-secret`; omit for a public client
//! resource_server = true       # may introspect any token (default false)
//! grant_types = ["client_credentials"]
//! scope = "read"
//! resources = ["https://billing.example.com/"]   # default: every known resource
//! ```
//!
//! Other keys: `client_name`, `redirect_uris`, `token_endpoint_auth_method` (default
//! `client_secret_basic`, or `none` for a public client). Every entry is validated as strictly as a
//! registration (redirect URIs, scopes within `scopes_supported`, resources within the known
//! ones); a bad file stops the server. Clients are stored at every start (an upsert: their tokens
//! are kept), so editing the file and restarting changes them.

use std::path::Path;

use serde::Deserialize;

use crate::model::{AuthMethod, Client};
use crate::redirect;

/// One configured client, as written in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    client_id: String,
    secret_hash: Option<String>,
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    grant_types: Vec<String>,
    #[serde(default)]
    scope: String,
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    resource_server: bool,
    #[serde(default)]
    resources: Vec<String>,
    /// RFC 9449 §5.2: the client must send a DPoP proof to the token endpoint.
    #[serde(default)]
    dpop_bound_access_tokens: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsFile {
    #[serde(default)]
    clients: Vec<Entry>,
}

/// Errors loading the clients file.
#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    /// The file could not be read.
    #[error("cannot read clients file: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not valid TOML/JSON of the expected shape.
    #[error("invalid clients file: {0}")]
    Parse(String),
    /// A client entry is invalid.
    #[error("invalid client {0:?}: {1}")]
    Invalid(String, &'static str),
}

/// What an entry is checked against.
pub struct Known<'a> {
    /// `scopes_supported`.
    pub scopes: &'a [String],
    /// The known resources.
    pub resources: &'a [String],
}

/// Reads and validates a clients file.
pub fn load_file(path: &Path, known: &Known<'_>, now: i64) -> Result<Vec<Client>, ClientsError> {
    let text = std::fs::read_to_string(path)?;
    let file: ClientsFile = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| ClientsError::Parse(e.to_string()))?
    } else {
        toml::from_str(&text).map_err(|e| ClientsError::Parse(e.to_string()))?
    };
    let mut clients: Vec<Client> = Vec::with_capacity(file.clients.len());
    for entry in file.clients {
        let client = validate(entry, known, now)?;
        if clients.iter().any(|c| c.client_id == client.client_id) {
            return Err(ClientsError::Invalid(
                client.client_id,
                "duplicate client_id",
            ));
        }
        clients.push(client);
    }
    Ok(clients)
}

fn validate(entry: Entry, known: &Known<'_>, now: i64) -> Result<Client, ClientsError> {
    let id = entry.client_id.clone();
    let invalid = |why| ClientsError::Invalid(id.clone(), why);
    if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
        return Err(invalid("bad client_id"));
    }
    // An https URL names a client metadata document: such ids are looked up by fetching the
    // document, never among configured clients, so a configured one could never be used and its
    // settings would be confused with whatever the URL serves.
    if crate::cimd::is_document_url(&id) {
        return Err(invalid(
            "client_id must not be an https URL (reserved for client metadata documents)",
        ));
    }
    let auth_method = match entry.token_endpoint_auth_method.as_deref() {
        None => AuthMethod::ClientSecretBasic,
        Some(name) => AuthMethod::parse(name).ok_or_else(|| invalid("unknown auth method"))?,
    };
    let secret_hash = entry.secret_hash.filter(|h| !h.is_empty());
    match (auth_method, &secret_hash) {
        (AuthMethod::None, None) => {}
        (AuthMethod::None, Some(_)) => return Err(invalid("a public client has no secret")),
        (_, None) => return Err(invalid("a confidential client needs secret_hash")),
        (_, Some(hash)) if !is_secret_hash(hash) => {
            return Err(invalid("secret_hash is not from `hash-client-secret`"));
        }
        _ => {}
    }
    for grant in &entry.grant_types {
        if !matches!(
            grant.as_str(),
            "authorization_code" | "refresh_token" | "client_credentials"
        ) {
            return Err(invalid("unknown grant type"));
        }
    }
    let grants = |g: &str| entry.grant_types.iter().any(|x| x == g);
    if grants("client_credentials") && secret_hash.is_none() {
        return Err(invalid("client_credentials needs a confidential client"));
    }
    if grants("authorization_code") && entry.redirect_uris.is_empty() {
        return Err(invalid("authorization_code needs redirect_uris"));
    }
    for uri in &entry.redirect_uris {
        redirect::validate_for_registration(uri).map_err(invalid)?;
    }
    let scope = crate::scope::parse(&entry.scope).ok_or_else(|| invalid("malformed scope"))?;
    if !scope.iter().all(|s| known.scopes.contains(s)) {
        return Err(invalid("scope is not supported"));
    }
    if !entry.resources.iter().all(|r| known.resources.contains(r)) {
        return Err(invalid("resources must be known resources (--resource)"));
    }
    if entry.resource_server && secret_hash.is_none() {
        return Err(invalid("a resource server must be confidential"));
    }
    Ok(Client {
        client_id: entry.client_id,
        secret_hash,
        client_name: entry.client_name,
        redirect_uris: entry.redirect_uris,
        grant_types: entry.grant_types,
        scope: crate::scope::join(&scope),
        auth_method,
        issued_at: now,
        resource_server: entry.resource_server,
        resources: entry.resources,
        dpop_bound_access_tokens: entry.dpop_bound_access_tokens,
    })
}

/// base64url(SHA-256) without padding: 43 characters of the URL-safe alphabet.
fn is_secret_hash(hash: &str) -> bool {
    hash.len() == 43
        && hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::hash_secret;

    fn known() -> (Vec<String>, Vec<String>) {
        (
            vec!["read".into(), "write".into()],
            vec!["https://api.example/".into()],
        )
    }

    #[test]
    fn a_resource_server_entry_loads_and_bad_entries_stop_the_server() {
        let (scopes, resources) = known();
        let known = Known {
            scopes: &scopes,
            resources: &resources,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clients.toml");
        let good = format!(
            "[[clients]]\nclient_id = \"rs\"\nsecret_hash = \"{}\"\nresource_server = true\n\
             grant_types = [\"client_credentials\"]\nscope = \"read\"\n\
             resources = [\"https://api.example/\"]\n",
            hash_secret("s")
        );
        std::fs::write(&path, &good).unwrap();
        let clients = load_file(&path, &known, 7).unwrap();
        assert_eq!(clients.len(), 1);
        assert!(clients[0].resource_server);
        assert_eq!(clients[0].resources, ["https://api.example/"]);
        assert_eq!(clients[0].auth_method, AuthMethod::ClientSecretBasic);

        for (bad, why) in [
            (good.replace("read", "admin"), "scope is not supported"),
            (
                good.replace("https://api.example/", "https://other.example/"),
                "resources must be known resources (--resource)",
            ),
            (
                good.replace(&hash_secret("s"), "plaintext"),
                "secret_hash is not from `hash-client-secret`",
            ),
            (format!("{good}{}", good), "duplicate client_id"),
            (
                good.replace(
                    "client_id = \"rs\"",
                    "client_id = \"https://rs.example/client\"",
                ),
                "client_id must not be an https URL (reserved for client metadata documents)",
            ),
        ] {
            std::fs::write(&path, &bad).unwrap();
            match load_file(&path, &known, 7) {
                Err(ClientsError::Invalid(_, reason)) => assert_eq!(reason, why),
                other => panic!("{bad}: {other:?}"),
            }
        }
        std::fs::write(&path, "[[clients]]\nclient_id = \"x\"\nunknown = 1\n").unwrap();
        assert!(matches!(
            load_file(&path, &known, 7),
            Err(ClientsError::Parse(_))
        ));
    }
}
