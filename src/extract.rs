//! Axum extractors for [`Principal`] (feature `axum`).
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_introspect::Principal;
//!
//! // Required: without a principal the handler is not run and the client gets a 401 challenge.
//! async fn me(principal: Principal) -> String {
//!     principal.subject().unwrap_or_default().to_owned()
//! }
//!
//! // Optional: for routes behind `allow_missing_token(true)`.
//! async fn greeting(principal: Option<Principal>) -> String {
//!     match principal {
//!         Some(p) => format!("hello {}", p.subject().unwrap_or("user")),
//!         None => "hello stranger".to_owned(),
//!     }
//! }
//!
//! let app: Router = Router::new().route("/me", get(me)).route("/", get(greeting));
//! # let _ = app;
//! ```

use std::convert::Infallible;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::Response;
use http::request::Parts;

use crate::{Challenger, Principal, Rejection};

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    /// A 401 challenge worded like the bearer layer's: a missing principal means the request was
    /// not authenticated (a layer-order mistake fails closed rather than with a 500).
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            Challenger::from_extensions(&parts.extensions)
                .response(&Rejection::MissingToken, &parts.headers)
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}
