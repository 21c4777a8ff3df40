//! `delete_note`: a tool call that asks the user before it acts, over two round trips and without
//! any server-side session (MCP 2026-07-28, "multi round-trip requests").
//!
//! The first `tools/call` answers an `InputRequiredResult`: an `elicitation/create` request keyed
//! `confirm` in `inputRequests`, and a `requestState` the client must echo back verbatim. The
//! retry carries that `requestState` and the user's answer in `inputResponses`; only then is the
//! note deleted. rmcp 3.11 models the wire shape (`InputRequiredResult`, and `requestState` /
//! `inputResponses` in `CallToolRequestParams`), and delivers an `InputRequiredResult` only to a
//! client that speaks 2026-07-28.
//!
//! The spec makes `requestState` attacker-controlled input that MUST be integrity-protected when it
//! affects what the server does, and SHOULD carry the principal, an expiry and the request it
//! belongs to. Here it is sealed with [`StateSealer`]: bound to the caller's principal and to this
//! server's resource, valid for [`DEFAULT_REQUEST_STATE_TTL`], and its payload names the tool and
//! the note. A retry whose state was tampered with, sealed for another user, expired, or issued for
//! another note is refused with a JSON-RPC `invalid_params` error naming why, before anything is
//! deleted. The state is not secret (the client can decode it): it holds the handle only.
//!
//! The state proves the question was asked; it is not single-use, which the spec leaves to the
//! server when it matters. Deleting is idempotent here: a replay finds nothing left to delete.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::RngCore as _;
use rmcp::ErrorData;
use rmcp::model::{InputRequiredResult, InputResponses};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_introspect::Principal;
use tower_introspect::mcp::{OpenError, SealingKey, StateSealer};

/// The tool this module implements.
pub const DELETE_NOTE: &str = "delete_note";
/// The key of the confirmation in `inputRequests` and `inputResponses`.
pub const CONFIRM_KEY: &str = "confirm";
/// How long a confirmation question stays answerable.
pub const DEFAULT_REQUEST_STATE_TTL: Duration = Duration::from_secs(300);

/// The current time; injectable so that tests can expire state without waiting.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// What the sealed `requestState` of `delete_note` says: which request asked the question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PendingDeletion {
    tool: String,
    handle: String,
}

/// Seals and opens the `requestState` of `delete_note`.
#[derive(Clone)]
pub struct RequestStates {
    sealer: StateSealer,
    ttl: Duration,
    clock: Clock,
}

impl RequestStates {
    /// State sealed by `sealer`, valid for `ttl`, on the system clock. Several server instances
    /// behind one resource URL must share the sealer's keys.
    pub fn new(sealer: StateSealer, ttl: Duration) -> Self {
        Self {
            sealer,
            ttl,
            clock: Arc::new(SystemTime::now),
        }
    }

    /// A fresh random key, valid for this process only (the demo's default): a restart makes
    /// pending confirmations unanswerable, which is harmless (the user is asked again).
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let key = SealingKey::new("demo", secret).expect("a valid id and a 32-byte secret");
        Self::new(StateSealer::new(key), DEFAULT_REQUEST_STATE_TTL)
    }

    /// The same, reading the time from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn seal(&self, principal: &Principal, resource: &str, handle: &str) -> Result<String, String> {
        let pending = PendingDeletion {
            tool: DELETE_NOTE.to_owned(),
            handle: handle.to_owned(),
        };
        let payload = serde_json::to_vec(&pending).map_err(|e| e.to_string())?;
        self.sealer
            .seal_at(principal, resource, (self.clock)(), self.ttl, &payload)
            .map_err(|e| e.to_string())
    }

    fn open(
        &self,
        principal: &Principal,
        resource: &str,
        state: &str,
    ) -> Result<PendingDeletion, OpenError> {
        let payload = self
            .sealer
            .open_at(principal, resource, state, (self.clock)())?;
        serde_json::from_slice(&payload).map_err(OpenError::Payload)
    }
}

impl Default for RequestStates {
    fn default() -> Self {
        Self::random()
    }
}

/// What `delete_note` decided for one round.
#[derive(Debug)]
pub enum Step {
    /// Ask (again): answer an `InputRequiredResult`.
    Ask(InputRequiredResult),
    /// The user answered: delete if they accepted.
    Answered {
        /// The note to delete.
        handle: String,
        /// Whether the user confirmed.
        confirmed: bool,
    },
}

/// One round of `delete_note` for `principal` at `resource`: the first call (no `request_state`)
/// asks; a retry is checked and, if its state opens for this principal, resource and note, carries
/// the user's answer. Nothing is deleted here: the caller acts on [`Step::Answered`] only.
pub fn step(
    states: &RequestStates,
    principal: &Principal,
    resource: &str,
    handle: &str,
    request_state: Option<&str>,
    input_responses: Option<&InputResponses>,
) -> Result<Step, ErrorData> {
    let Some(state) = request_state else {
        return ask(states, principal, resource, handle);
    };
    let pending = states
        .open(principal, resource, state)
        .map_err(|e| ErrorData::invalid_params(format!("requestState refused: {e}"), None))?;
    if pending.tool != DELETE_NOTE || pending.handle != handle {
        return Err(ErrorData::invalid_params(
            "requestState refused: it was issued for another request",
            None,
        ));
    }
    let Some(answer) = input_responses.and_then(|r| r.get(CONFIRM_KEY)) else {
        // The spec: missing input is asked for again, not an error.
        return ask(states, principal, resource, handle);
    };
    let confirmed = answer["action"] == "accept" && answer["content"]["confirm"] == true;
    Ok(Step::Answered {
        handle: handle.to_owned(),
        confirmed,
    })
}

fn ask(
    states: &RequestStates,
    principal: &Principal,
    resource: &str,
    handle: &str,
) -> Result<Step, ErrorData> {
    let state = states
        .seal(principal, resource, handle)
        .map_err(|e| ErrorData::internal_error(format!("cannot seal requestState: {e}"), None))?;
    let wire = json!({
        "resultType": "input_required",
        "inputRequests": {
            CONFIRM_KEY: {
                "method": "elicitation/create",
                "params": {
                    "mode": "form",
                    "message": format!("Delete note {handle}? This cannot be undone."),
                    "requestedSchema": {
                        "type": "object",
                        "properties": {"confirm": {"type": "boolean", "title": "Delete the note"}},
                        "required": ["confirm"],
                    },
                },
            },
        },
        "requestState": state,
    });
    serde_json::from_value(wire)
        .map(Step::Ask)
        .map_err(|e| ErrorData::internal_error(format!("input request: {e}"), None))
}
