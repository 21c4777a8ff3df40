//! Reading the [`Principal`] from rmcp tool handlers (feature `rmcp`).
//!
//! rmcp's streamable HTTP service copies each request's `http::request::Parts` (with the extensions
//! the bearer layer inserted) into the tool call's context. [`PrincipalExt`] spares handlers the
//! two-level lookup:
//!
//! ```
//! use rmcp::service::RequestContext;
//! use rmcp::RoleServer;
//! use tower_introspect::PrincipalExt;
//!
//! fn caller(ctx: &RequestContext<RoleServer>) -> String {
//!     ctx.principal()
//!         .and_then(|p| p.subject())
//!         .unwrap_or("anonymous")
//!         .to_owned()
//! }
//! ```

use crate::Principal;

/// Access to the authenticated [`Principal`] of an MCP request.
pub trait PrincipalExt {
    /// The principal the bearer layer attached to this request, if any.
    fn principal(&self) -> Option<&Principal>;
}

impl PrincipalExt for http::request::Parts {
    fn principal(&self) -> Option<&Principal> {
        self.extensions.get::<Principal>()
    }
}

impl PrincipalExt for http::Extensions {
    fn principal(&self) -> Option<&Principal> {
        self.get::<Principal>()
    }
}

impl PrincipalExt for rmcp::model::Extensions {
    fn principal(&self) -> Option<&Principal> {
        self.get::<http::request::Parts>()?.principal()
    }
}

impl<R: rmcp::service::ServiceRole> PrincipalExt for rmcp::service::RequestContext<R> {
    fn principal(&self) -> Option<&Principal> {
        self.extensions.principal()
    }
}
