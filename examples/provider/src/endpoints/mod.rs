//! One module per HTTP endpoint.

pub mod authorize;
mod interaction;
pub mod introspect;
pub mod jwks;
pub mod metadata;
pub mod register;
pub mod revoke;
pub mod token;
