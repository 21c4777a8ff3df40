//! A reference OAuth 2.1 authorization server, the counterpart `tower-introspect` introspects
//! against.
//!
//! It implements the authorization code grant with mandatory PKCE S256 (login and consent pages),
//! refresh-token rotation with family revocation on reuse, client credentials, RFC 7662
//! introspection, RFC 7009 revocation, RFC 7591 dynamic registration, RFC 8414 metadata,
//! RFC 8707 resource indicators and RFC 9207 `iss`, and an OpenID Shared Signals Framework 1.0
//! transmitter (signed security events pushed or polled from a durable outbox, see [`ssf`]); access tokens are opaque or, with
//! [`AccessTokenFormat::Jwt`], RFC 9068 JWTs signed with a stored ES256 key (public keys at
//! `/jwks`). State lives in memory, in SQLite, or in
//! PostgreSQL (which several instances may share).
//!
//! # Running it in-process
//!
//! ```no_run
//! # async fn demo() -> Result<(), oauth_provider::Error> {
//! use oauth_provider::{Config, Server};
//!
//! // Demo accounts (alice/password123, …) and the `mcp-resource-server` client, in memory.
//! let server = Server::bind(Config::demo(), "127.0.0.1:0".parse().unwrap()).await?;
//! println!("issuer: {}", server.issuer());
//! // … point the middleware at format!("{}/introspect", server.issuer()) …
//! server.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! For tests that want the bare router, build an [`AppState`] and call [`router`].

#![deny(missing_docs)]

pub mod body_limit;
pub mod cimd;
pub mod cleanup;
pub mod client_auth;
pub mod clients;
pub mod clock;
pub mod config;
pub mod endpoints;
pub mod error;
pub mod html;
pub mod keys;
pub mod limits;
pub mod model;
pub mod outbound;
pub mod params;
pub mod pkce;
pub mod redirect;
pub mod resource;
pub mod scope;
pub mod seed;
pub mod server;
pub mod ssf;
pub mod state;
pub mod storage;
pub mod tokens;
pub mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use clock::Clock;
pub use config::{
    AccessTokenFormat, Config, DEMO_ADMIN_CLIENT_ID, DEMO_ADMIN_CLIENT_SECRET,
    DEMO_PUBLIC_CLIENT_ID, DEMO_RESOURCE, DEMO_RESOURCE_SERVER_ID, DEMO_RESOURCE_SERVER_SECRET,
    DEMO_SSF_RECEIVER_ID, DEMO_SSF_RECEIVER_SECRET, DatabaseUrl, Lifetimes, NonceSecret,
    PostgresSettings, Secret, StorageConfig,
};
pub use server::{Error, Server};
pub use ssf::SsfSettings;
pub use state::AppState;

/// The HTTP routes of the authorization server, with request bodies bounded by
/// [`Config::max_body_bytes`] (larger bodies get `413`). The API endpoints and unknown paths
/// answer every error, the framework's 404, 405 and 413 included, as RFC 6749 §5.2 JSON with
/// `Cache-Control: no-store`; the authorization endpoint answers browsers with HTML.
pub fn router(state: AppState) -> Router {
    use endpoints::{authorize, introspect, jwks, metadata, register, revoke, token};
    let limit = state.max_body_bytes();
    let api = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::get),
        )
        .route("/jwks", get(jwks::get))
        .route("/token", post(token::post))
        .route("/introspect", post(introspect::post))
        .route("/revoke", post(revoke::post))
        .route("/register", post(register::post))
        .route(
            "/.well-known/ssf-configuration",
            get(ssf::endpoints::metadata),
        )
        .route(
            "/ssf/stream",
            get(ssf::endpoints::read)
                .post(ssf::endpoints::create)
                .patch(ssf::endpoints::patch)
                .put(ssf::endpoints::put)
                .delete(ssf::endpoints::delete),
        )
        .route(
            "/ssf/status",
            get(ssf::endpoints::get_status).post(ssf::endpoints::set_status),
        )
        .route("/ssf/verify", post(ssf::endpoints::verify))
        .route("/ssf/poll/{stream_id}", post(ssf::endpoints::poll))
        .route(
            "/admin/users/{username}/password",
            post(ssf::endpoints::set_password),
        )
        .route(
            "/admin/users/{username}/disable",
            post(ssf::endpoints::disable),
        )
        .route(
            "/admin/users/{username}/enable",
            post(ssf::endpoints::enable),
        )
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            limit,
            body_limit::bound_body,
        ))
        .layer(axum::middleware::map_response(error::json_framework_errors));
    Router::new()
        .route(
            "/authorize",
            get(authorize::get)
                .post(authorize::post)
                .layer(axum::middleware::from_fn_with_state(
                    limit,
                    body_limit::bound_body,
                )),
        )
        .merge(api)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
