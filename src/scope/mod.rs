//! Scope enforcement after the bearer layer: [`RequireScopeLayer`] per route,
//! [`PathScopeLayer`] per path (gRPC methods are paths), a [`ScopeHierarchy`] for scopes that
//! imply others, and the [`StepUpScopes`] a 403 challenge names.
//!
//! Every check runs on every request, also when the principal came from the cache, and fails
//! closed: a layer that finds no principal (placed without the bearer layer) refuses.

mod future;
mod hierarchy;
mod path;
mod require;
mod step_up;

pub use self::future::ScopeFuture;
pub use self::hierarchy::{ScopeHierarchy, ScopeHierarchyBuilder, ScopeHierarchyError};
pub use self::path::{PathScope, PathScopeLayer, PathScopeLayerBuilder};
#[cfg(feature = "mcp")]
pub(crate) use self::require::check_scopes;
pub(crate) use self::require::guard;
pub use self::require::{RequireScope, RequireScopeLayer};
pub(crate) use self::step_up::OFFLINE_ACCESS;
pub use self::step_up::StepUpScopes;
