//! The settings every clone of the bearer layer's service shares.

use std::sync::Arc;

use super::miss_budget::{MissBudget, MissTracker};
use crate::challenge::Challenger;
use crate::dpop::Dpop;
use crate::header::DEFAULT_MAX_TOKEN_LENGTH;

/// What every [`BearerAuth`] clone shares besides the verifier.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) challenger: Arc<Challenger>,
    pub(crate) allow_missing_token: bool,
    pub(crate) max_token_length: usize,
    /// Each client's budget of new tokens; `None` when turned off.
    pub(crate) misses: Option<MissTracker>,
    /// DPoP settings; `None` when not configured (bearer tokens only).
    pub(crate) dpop: Option<Dpop>,
    /// Whether a token bound by a method this layer cannot check passes as if unbound.
    pub(crate) accept_unverifiable_bindings: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            challenger: Arc::default(),
            allow_missing_token: false,
            max_token_length: DEFAULT_MAX_TOKEN_LENGTH,
            misses: Some(MissBudget::default().tracker()),
            dpop: None,
            accept_unverifiable_bindings: false,
        }
    }
}
