//! Demo clients, seeded only when the demo switch is on.

use crate::config::{
    DEMO_ADMIN_CLIENT_ID, DEMO_ADMIN_CLIENT_SECRET, DEMO_PUBLIC_CLIENT_ID, DEMO_RESOURCE_SERVER_ID,
    DEMO_RESOURCE_SERVER_SECRET, DEMO_SSF_RECEIVER_ID, DEMO_SSF_RECEIVER_SECRET,
};
use crate::model::{AuthMethod, Client};
use crate::storage::{Storage, StorageResult};
use crate::tokens::hash_secret;

/// The demo clients:
/// - `mcp-resource-server` / `resource-server-secret`: confidential, configured as a resource
///   server (may introspect any token), and the `client_credentials` grant with scope `read`;
/// - `demo-client`: public, authorization code + refresh token, redirect URIs
///   `http://127.0.0.1/callback` and `http://localhost/callback` (any port), scopes
///   `read write admin`;
/// - `ssf-receiver` / `ssf-receiver-secret`: confidential, `client_credentials` with scope
///   `ssf` (manages SSF streams and polls them; the `aud` of its streams' SETs);
/// - `admin-console` / `admin-console-secret`: confidential, `client_credentials` with scope
///   `admin` (the user administration endpoints).
pub fn demo_clients(now: i64) -> Vec<Client> {
    let service = |id: &str, secret: &str, name: &str, scope: &str| Client {
        client_id: id.to_owned(),
        secret_hash: Some(hash_secret(secret)),
        client_name: Some(name.to_owned()),
        redirect_uris: Vec::new(),
        grant_types: vec!["client_credentials".to_owned()],
        scope: scope.to_owned(),
        auth_method: AuthMethod::ClientSecretBasic,
        issued_at: now,
        resource_server: false,
        resources: Vec::new(),
        dpop_bound_access_tokens: false,
    };
    vec![
        service(
            DEMO_SSF_RECEIVER_ID,
            DEMO_SSF_RECEIVER_SECRET,
            "SSF receiver (demo)",
            "ssf",
        ),
        service(
            DEMO_ADMIN_CLIENT_ID,
            DEMO_ADMIN_CLIENT_SECRET,
            "Admin console (demo)",
            "admin",
        ),
        Client {
            client_id: DEMO_RESOURCE_SERVER_ID.to_owned(),
            secret_hash: Some(hash_secret(DEMO_RESOURCE_SERVER_SECRET)),
            client_name: Some("MCP resource server (demo)".to_owned()),
            redirect_uris: Vec::new(),
            grant_types: vec!["client_credentials".to_owned()],
            scope: "read".to_owned(),
            auth_method: AuthMethod::ClientSecretBasic,
            issued_at: now,
            resource_server: true,
            resources: Vec::new(),
            dpop_bound_access_tokens: false,
        },
        Client {
            client_id: DEMO_PUBLIC_CLIENT_ID.to_owned(),
            secret_hash: None,
            client_name: Some("Demo client".to_owned()),
            redirect_uris: vec![
                "http://127.0.0.1/callback".to_owned(),
                "http://localhost/callback".to_owned(),
            ],
            grant_types: vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
            scope: "read write admin".to_owned(),
            auth_method: AuthMethod::None,
            issued_at: now,
            resource_server: false,
            resources: Vec::new(),
            dpop_bound_access_tokens: false,
        },
    ]
}

/// Stores the demo clients (idempotent: an existing client with the same id is updated, its
/// tokens are kept).
pub async fn seed_demo_clients(storage: &dyn Storage, now: i64) -> StorageResult<()> {
    for client in demo_clients(now) {
        storage.put_client(&client).await?;
    }
    Ok(())
}
