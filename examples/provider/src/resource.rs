//! RFC 8707 resource indicators: which `resource` a token may be issued for.
//!
//! The server knows the resources it issues tokens for ([`crate::Config::resources`]); a client
//! may further be restricted to some of them ([`crate::model::Client::resources`]). Resources are
//! compared as strings, exactly as configured. One `resource` per request: several are refused
//! with `invalid_target` (RFC 8707 §2 allows a server to refuse what it does not support).

use url::Url;

use crate::model::Client;
use crate::params::Params;
use crate::redirect;
use crate::state::AppState;

/// RFC 8707 §2: an absolute URI without fragment, bounded in length.
pub fn is_valid(resource: &str) -> bool {
    resource.len() <= redirect::MAX_LEN && !resource.contains('#') && Url::parse(resource).is_ok()
}

/// The resource a token or authorization request names, once checked: `Ok(None)` when it names
/// none (the token then carries no audience). Every `Err` is an `invalid_target` description.
pub fn requested<'a>(
    state: &AppState,
    client: &Client,
    params: &'a Params,
) -> Result<Option<&'a str>, &'static str> {
    if params.is_repeated("resource") {
        return Err("several resource parameters are not supported");
    }
    match params.get("resource") {
        None if client.resources.is_empty() => Ok(None),
        None => Err("this client must name the resource it wants a token for"),
        Some(r) if !is_valid(r) => Err("resource must be an absolute URI without fragment"),
        Some(r) => allowed(state, client, r).map(|()| Some(r)),
    }
}

/// Checks that `resource` is known and allowed for `client` (also used for the resource a grant
/// is bound to, so that a resource dropped from the configuration stops being served).
pub fn allowed(state: &AppState, client: &Client, resource: &str) -> Result<(), &'static str> {
    if !state.resources().iter().any(|r| r == resource) {
        return Err("resource is not known to this server");
    }
    if !client.resources.is_empty() && !client.resources.iter().any(|r| r == resource) {
        return Err("resource is not allowed for this client");
    }
    Ok(())
}
