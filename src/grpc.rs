//! tonic integration (feature `tonic`): the layers' services keep the wrapped gRPC service's name,
//! so one service of a server can carry its own scope requirement.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tower_layer::Layer;
//! use tower_introspect::RequireScopeLayer;
//!
//! let (_reporter, health) = tonic_health::server::health_reporter();
//! tonic::transport::Server::builder()
//!     // .layer(bearer_auth_layer)
//!     .add_service(RequireScopeLayer::all(["monitoring"])?.layer(health))
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//! # Ok(()) }
//! ```

use tonic::server::NamedService;

use crate::layer::BearerAuth;
use crate::scope::{PathScope, RequireScope};

impl<S: NamedService> NamedService for RequireScope<S> {
    const NAME: &'static str = S::NAME;
}

impl<S: NamedService, V> NamedService for BearerAuth<S, V> {
    const NAME: &'static str = S::NAME;
}

impl<S: NamedService> NamedService for PathScope<S> {
    const NAME: &'static str = S::NAME;
}
