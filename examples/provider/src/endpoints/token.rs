//! `POST /token`: authorization code (with PKCE), refresh token (with rotation) and client
//! credentials grants.
//!
//! Every check that can fail runs *before* the single atomic state change of a grant (consuming
//! the code, rotating the refresh token), so a rejected request changes nothing. The exception is
//! deliberate: presenting an already used code or refresh token is treated as theft and revokes the
//! whole grant family (RFC 9700 §2.2.2, §4.14.2). The one exception is a client retrying a refresh
//! whose response it lost: see [`crate::config::Lifetimes::refresh_reuse_grace`].
//!
//! # DPoP (RFC 9449)
//!
//! A request may carry one `DPoP` proof header (two are `invalid_dpop_proof`), checked for
//! `POST` to the token endpoint URL the metadata advertises, with the server nonce when one is
//! configured. With a valid proof the access token is bound to the proof's key (`token_type:
//! DPoP`, `cnf.jkt` in the JWT and in introspection), and so is a public client's refresh token:
//! refreshing it then needs a proof signed with the same key. An authorization code whose request
//! named `dpop_jkt` is redeemed only with a proof of that key, and a client registered with
//! `dpop_bound_access_tokens` only with some proof. Every refusal of a proof comes before the
//! grant's state change (a refused proof consumes no code and rotates no refresh token), and the
//! proof's `jti` is recorded last, once the whole request is otherwise acceptable.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tower_introspect::dpop::{DPOP_NONCE, ProofError, ProofTarget, VerifiedProof};

use crate::client_auth::{self, Accept, ClientForm};
use crate::config::AccessTokenFormat;
use crate::error::{ErrorCode, OAuthError};
use crate::keys::{self, AccessTokenClaims};
use crate::model::{Client, SigningKey, TokenKind, TokenRecord, UnixTime};
use crate::params::Params;
use crate::pkce;
use crate::resource;
use crate::scope;
use crate::state::{AppState, secs};
use crate::storage::Rotation;
use crate::tokens::{self, hash_secret};

/// `POST /token`.
pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(issued) => {
            let mut response = no_store(Json(issued.body).into_response());
            // RFC 9449 §8.2: the proof's nonce is about to expire; hand out the next one.
            if issued.stale_nonce
                && let Some(nonce) = fresh_nonce(&state)
                && let Ok(value) = HeaderValue::from_str(&nonce)
            {
                response.headers_mut().insert(DPOP_NONCE, value);
            }
            response
        }
        Err(err) => err.into_response(),
    }
}

/// A successful token response.
struct Issued {
    body: Value,
    /// The request's proof carried a nonce of the previous period.
    stale_nonce: bool,
}

/// The nonce to send now, when nonces are required.
fn fresh_nonce(state: &AppState) -> Option<String> {
    state
        .dpop()
        .nonces()
        .map(|nonces| nonces.current_at(state.system_time()))
}

/// A refused proof, with a fresh nonce when the refusal asks for one.
fn dpop_error(state: &AppState, err: ProofError) -> OAuthError {
    let nonce = (err == ProofError::UseNonce)
        .then(|| fresh_nonce(state))
        .flatten();
    OAuthError::dpop(err, nonce)
}

/// The request's DPoP proof, checked for `POST` to the token endpoint: `None` without a `DPoP`
/// header. Everything but the replay check ([`record_proof`]).
fn checked_proof(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<VerifiedProof>, OAuthError> {
    let mut values = headers.get_all("dpop").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(dpop_error(state, ProofError::Missing));
    }
    let proof = value
        .to_str()
        .map_err(|_| dpop_error(state, ProofError::Malformed))?;
    let target = ProofTarget::new("POST", state.token_endpoint());
    state
        .dpop()
        .check_at(proof, &target, None, state.system_time())
        .map(Some)
        .map_err(|err| dpop_error(state, err))
}

/// A grant bound to the key `bound` (a code's `dpop_jkt`, a bound refresh token) is used only
/// with a proof signed by that key.
fn require_key(proof: Option<&VerifiedProof>, bound: Option<&str>) -> Result<(), OAuthError> {
    match (bound, proof) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(OAuthError::dpop(ProofError::Missing, None)),
        (Some(jkt), Some(proof)) if proof.thumbprint() == jkt => Ok(()),
        (Some(_), Some(_)) => Err(OAuthError::dpop(ProofError::KeyMismatch, None)),
    }
}

/// Records the proof's `jti` (the replay check): the last check, once the request is otherwise
/// acceptable, and before the grant's state changes.
fn record_proof(state: &AppState, proof: Option<&VerifiedProof>) -> Result<(), OAuthError> {
    if let Some(proof) = proof {
        state
            .dpop()
            .record_at(proof, state.system_time())
            .map_err(|err| dpop_error(state, err))?;
    }
    Ok(())
}

/// The keys a grant's new tokens are bound to: the access token to the proof's key, and a
/// public client's refresh token too (RFC 9449 §5; a confidential client's refresh token is
/// protected by its authentication instead).
fn bindings<'a>(
    client: &Client,
    proof: Option<&'a VerifiedProof>,
) -> (Option<&'a str>, Option<&'a str>) {
    let access = proof.map(VerifiedProof::thumbprint);
    let refresh = if client.is_confidential() {
        None
    } else {
        access
    };
    (access, refresh)
}

/// Adds `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub fn no_store(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Issued, OAuthError> {
    let ClientForm { params, client } =
        client_auth::authenticated_form(state.storage().as_ref(), headers, body, Accept::Any)
            .await?;
    let proof = checked_proof(state, headers)?;
    // RFC 9449 §5.2: such a client always proves its key.
    if client.dpop_bound_access_tokens && proof.is_none() {
        return Err(OAuthError::dpop(ProofError::Missing, None));
    }
    let proof = proof.as_ref();
    // Checked before the generic repetition rule: RFC 8707 asks for `invalid_target`.
    if params.is_repeated("resource") {
        return Err(OAuthError::invalid_target(
            "several resource parameters are not supported",
        ));
    }
    if params.first_repeated().is_some() {
        return Err(OAuthError::invalid_request("a parameter is repeated"));
    }
    let grant_type = params
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    let known = matches!(
        grant_type,
        "authorization_code" | "refresh_token" | "client_credentials"
    );
    if !known {
        return Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            "unsupported grant_type",
        ));
    }
    if !client.allows_grant(grant_type)
        || (grant_type == "client_credentials" && !client.is_confidential())
    {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the client may not use this grant type",
        ));
    }
    let resource =
        resource::requested(state, &client, &params).map_err(OAuthError::invalid_target)?;
    let body = match grant_type {
        "authorization_code" => authorization_code(state, &client, &params, resource, proof).await,
        "refresh_token" => refresh_token(state, &client, &params, resource, proof).await,
        _ => client_credentials(state, &client, &params, resource, proof).await,
    }?;
    Ok(Issued {
        body,
        stale_nonce: proof.is_some_and(VerifiedProof::nonce_is_stale),
    })
}

/// The resource a grant is bound to must still be known and allowed, and a `resource` the
/// token request names must be that one.
fn check_grant_resource(
    state: &AppState,
    client: &Client,
    bound: Option<&str>,
    requested: Option<&str>,
) -> Result<(), OAuthError> {
    if let Some(bound) = bound {
        resource::allowed(state, client, bound).map_err(OAuthError::invalid_target)?;
    }
    if requested.is_some_and(|r| Some(r) != bound) {
        return Err(OAuthError::invalid_target(
            "resource does not match the authorization grant",
        ));
    }
    Ok(())
}

async fn authorization_code(
    state: &AppState,
    client: &Client,
    params: &Params,
    resource: Option<&str>,
    proof: Option<&VerifiedProof>,
) -> Result<Value, OAuthError> {
    let code = required(params, "code")?;
    let redirect_uri = required(params, "redirect_uri")?;
    let verifier = required(params, "code_verifier")?;
    let code_hash = hash_secret(code);
    let now = state.now();
    let storage = state.storage();
    let record = storage
        .get_code(&code_hash, now)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("authorization code is invalid or expired"))?;
    // The binding comes first: a code presented by another client is refused without touching
    // the owner's grant (otherwise anyone who saw a used code could revoke the owner's tokens).
    if record.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "authorization code was issued to another client",
        ));
    }
    if record.consumed {
        revoke_after_replay(
            state,
            &record.family_id,
            "authorization code replayed",
            None,
        )
        .await?;
        return Err(OAuthError::invalid_grant(
            "authorization code was already used",
        ));
    }
    if record.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    if !pkce::verify(verifier, &record.code_challenge) {
        return Err(OAuthError::invalid_grant("PKCE verification failed"));
    }
    check_grant_resource(state, client, record.resource.as_deref(), resource)?;
    refuse_disabled(state, Some(&record.subject)).await?;
    // RFC 9449 §10: the authorization request's `dpop_jkt` names the key.
    require_key(proof, record.dpop_jkt.as_deref())?;
    record_proof(state, proof)?;
    if !storage.consume_code(&code_hash, now).await? {
        // Lost a race against a concurrent redemption: that is a replay too.
        revoke_after_replay(
            state,
            &record.family_id,
            "authorization code redeemed concurrently",
            None,
        )
        .await?;
        return Err(OAuthError::invalid_grant(
            "authorization code was already used",
        ));
    }
    let (access_jkt, refresh_jkt) = bindings(client, proof);
    let grant = Grant {
        family_id: &record.family_id,
        client_id: &client.client_id,
        subject: Some(&record.subject),
        resource: record.resource.as_deref(),
        grant_scope: &record.scope,
        access_scope: &record.scope,
        refresh: client.allows_grant("refresh_token"),
        access_jkt,
        refresh_jkt,
    };
    issue(state, &grant, now).await
}

async fn refresh_token(
    state: &AppState,
    client: &Client,
    params: &Params,
    resource: Option<&str>,
    proof: Option<&VerifiedProof>,
) -> Result<Value, OAuthError> {
    let presented = required(params, "refresh_token")?;
    let token_hash = hash_secret(presented);
    let now = state.now();
    let storage = state.storage();
    let record = storage
        .get_token(&token_hash, now)
        .await?
        .filter(|t| t.kind == TokenKind::Refresh)
        .ok_or_else(|| OAuthError::invalid_grant("refresh token is invalid, expired or revoked"))?;
    if record.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "refresh token was issued to another client",
        ));
    }
    // RFC 9449 §5: a bound refresh token is used only with its key. Refused before anything
    // else, and never counted as reuse: without the key a copied token is worth nothing.
    require_key(proof, record.dpop_jkt.as_deref())?;
    let access_scope = match params.get("scope") {
        None => record.scope.clone(),
        Some(s) => {
            let requested =
                scope::parse(s).ok_or_else(|| OAuthError::invalid_scope("scope is malformed"))?;
            if requested.is_empty() {
                return Err(OAuthError::invalid_scope("scope is blank"));
            }
            if !scope::is_subset(&requested, &record.scope) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "scope exceeds the original grant",
                ));
            }
            scope::join(&requested)
        }
    };
    check_grant_resource(state, client, record.resource.as_deref(), resource)?;
    refuse_disabled(state, record.subject.as_deref()).await?;
    record_proof(state, proof)?;
    let (access_jkt, refresh_jkt) = bindings(client, proof);
    let grant = Grant {
        family_id: &record.family_id,
        client_id: &client.client_id,
        subject: record.subject.as_deref(),
        resource: record.resource.as_deref(),
        // RFC 6749 §6: the new refresh token keeps the original scope even when the access token
        // is narrowed.
        grant_scope: &record.scope,
        access_scope: &access_scope,
        refresh: true,
        access_jkt,
        refresh_jkt,
    };
    let (body, successors) = mint(state, &grant, now).await?;
    // Consuming the old token and storing the new pair is one transaction. A token rotated
    // within the grace whose successor was never used may be presented again (the client lost
    // the response); everything else that finds the token consumed is reuse.
    let retry_since = now - secs(state.lifetimes().refresh_reuse_grace);
    match storage
        .rotate_refresh_token(&token_hash, now, retry_since, &successors)
        .await?
    {
        Rotation::Rotated => {}
        Rotation::Replaced => {
            tracing::info!(client_id = %client.client_id, family = %record.family_id, "refresh retried within the grace; unused successor revoked");
        }
        Rotation::Refused => {
            revoke_after_replay(
                state,
                &record.family_id,
                "rotated refresh token reused",
                record.subject.as_deref(),
            )
            .await?;
            return Err(OAuthError::invalid_grant("refresh token was already used"));
        }
    }
    tracing::info!(client_id = %grant.client_id, family = %grant.family_id, jti = %successors[0].jti, "tokens issued");
    Ok(body)
}

async fn client_credentials(
    state: &AppState,
    client: &Client,
    params: &Params,
    resource: Option<&str>,
    proof: Option<&VerifiedProof>,
) -> Result<Value, OAuthError> {
    let supported = scope::join(state.scopes_supported());
    let scope = match params.get("scope") {
        None => client.scope.clone(),
        Some(s) => {
            let requested =
                scope::parse(s).ok_or_else(|| OAuthError::invalid_scope("scope is malformed"))?;
            if requested.is_empty() {
                return Err(OAuthError::invalid_scope("scope is blank"));
            }
            if !scope::is_subset(&requested, &client.scope)
                || !scope::is_subset(&requested, &supported)
            {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "scope is not allowed for this client",
                ));
            }
            scope::join(&requested)
        }
    };
    record_proof(state, proof)?;
    let family_id = tokens::random_id();
    let (access_jkt, _) = bindings(client, proof);
    let grant = Grant {
        family_id: &family_id,
        client_id: &client.client_id,
        subject: None,
        resource,
        grant_scope: &scope,
        access_scope: &scope,
        refresh: false,
        access_jkt,
        refresh_jkt: None,
    };
    issue(state, &grant, state.now()).await
}

fn required<'a>(params: &'a Params, name: &'static str) -> Result<&'a str, OAuthError> {
    params.get(name).ok_or_else(|| {
        OAuthError::invalid_request(match name {
            "code" => "code is required",
            "redirect_uri" => "redirect_uri is required",
            "code_verifier" => "code_verifier is required",
            "refresh_token" => "refresh_token is required",
            _ => "a required parameter is missing",
        })
    })
}

async fn revoke_after_replay(
    state: &AppState,
    family_id: &str,
    reason: &'static str,
    reused_refresh_of: Option<&str>,
) -> Result<(), OAuthError> {
    tracing::warn!(family = %family_id, reason, "revoking grant family");
    let now = state.now();
    // A reused refresh token of a user's grant revokes their session (CAEP session-revoked,
    // the family being the session); a replayed code revokes the tokens it yielded
    // (token-revoked per access token). Both are written with the revocation.
    let events: Vec<_> = reused_refresh_of
        .map(|user| crate::ssf::events::session_revoked(state.issuer(), user, family_id, now))
        .into_iter()
        .collect();
    let announce = state.announcement(&events, reused_refresh_of.is_none());
    let fanout = state
        .storage()
        .revoke_family(family_id, state.revocation_memory(now), &announce)
        .await?;
    state.announced(fanout);
    Ok(())
}

/// Refuses grants of a disabled user (whose tokens were revoked when they were disabled).
async fn refuse_disabled(state: &AppState, subject: Option<&str>) -> Result<(), OAuthError> {
    let Some(user) = subject else {
        return Ok(());
    };
    let disabled = state
        .storage()
        .get_user_override(user)
        .await?
        .is_some_and(|o| o.disabled);
    if disabled {
        return Err(OAuthError::invalid_grant("the user account is disabled"));
    }
    Ok(())
}

/// What to issue.
struct Grant<'a> {
    family_id: &'a str,
    client_id: &'a str,
    subject: Option<&'a str>,
    resource: Option<&'a str>,
    grant_scope: &'a str,
    access_scope: &'a str,
    refresh: bool,
    /// The DPoP key the access token is bound to.
    access_jkt: Option<&'a str>,
    /// The DPoP key the refresh token is bound to.
    refresh_jkt: Option<&'a str>,
}

/// The stored record of a token (its hash only), before the token string exists.
fn record(grant: &Grant<'_>, kind: TokenKind, scope: &str, now: UnixTime, ttl: i64) -> TokenRecord {
    TokenRecord {
        token_hash: String::new(),
        kind,
        family_id: grant.family_id.to_owned(),
        client_id: grant.client_id.to_owned(),
        subject: grant.subject.map(str::to_owned),
        scope: scope.to_owned(),
        resource: grant.resource.map(str::to_owned),
        jti: tokens::random_id(),
        issued_at: now,
        expires_at: now + ttl,
        consumed: false,
        dpop_jkt: match kind {
            TokenKind::Access => grant.access_jkt,
            TokenKind::Refresh => grant.refresh_jkt,
        }
        .map(str::to_owned),
    }
}

/// The access token for `record`: a random string, or with a signing key an RFC 9068 JWT whose
/// claims are the record's (so that it introspects with the same values).
fn access_token(
    state: &AppState,
    record: &TokenRecord,
    signer: Option<&SigningKey>,
) -> Result<String, OAuthError> {
    let Some(key) = signer else {
        return Ok(tokens::random_token(tokens::ACCESS_TOKEN_PREFIX));
    };
    let claims = AccessTokenClaims {
        iss: state.issuer(),
        // RFC 9068 §2.2: a client-credentials token's subject is the client.
        sub: record.subject.as_deref().unwrap_or(&record.client_id),
        aud: record.resource.as_deref(),
        exp: record.expires_at,
        iat: record.issued_at,
        nbf: record.issued_at,
        jti: &record.jti,
        sid: &record.family_id,
        client_id: &record.client_id,
        scope: &record.scope,
        cnf: record.dpop_jkt.as_ref().map(|jkt| json!({ "jkt": jkt })),
    };
    Ok(keys::sign(key, &claims)?)
}

/// The key to sign access tokens with: `None` for opaque tokens. Read from storage for every
/// grant, after `now` was taken, so a key another process retired in the meantime is never used
/// for a token that would outlive its publication (see [`crate::keys`]).
async fn signer(state: &AppState, now: UnixTime) -> Result<Option<SigningKey>, OAuthError> {
    match state.access_token_format() {
        AccessTokenFormat::Opaque => Ok(None),
        AccessTokenFormat::Jwt => Ok(Some(keys::current(state.storage().as_ref(), now).await?)),
    }
}

/// Creates the tokens of a grant: the response body and the records to store. Both kinds of
/// access token, and refresh tokens, are stored as hashes only.
async fn mint(
    state: &AppState,
    grant: &Grant<'_>,
    now: UnixTime,
) -> Result<(Value, Vec<TokenRecord>), OAuthError> {
    let access_ttl = secs(state.lifetimes().access_token);
    let mut access = record(
        grant,
        TokenKind::Access,
        grant.access_scope,
        now,
        access_ttl,
    );
    let signer = signer(state, now).await?;
    let access_token = access_token(state, &access, signer.as_ref())?;
    access.token_hash = hash_secret(&access_token);
    let mut records = vec![access];
    let mut body = json!({
        "access_token": access_token,
        "token_type": if grant.access_jkt.is_some() { "DPoP" } else { "Bearer" },
        "expires_in": access_ttl,
        "scope": grant.access_scope,
    });
    if grant.refresh {
        let refresh_token = tokens::random_token(tokens::REFRESH_TOKEN_PREFIX);
        let refresh_ttl = secs(state.lifetimes().refresh_token);
        let mut refresh = record(
            grant,
            TokenKind::Refresh,
            grant.grant_scope,
            now,
            refresh_ttl,
        );
        refresh.token_hash = hash_secret(&refresh_token);
        records.push(refresh);
        body["refresh_token"] = Value::String(refresh_token);
    }
    Ok((body, records))
}

async fn issue(state: &AppState, grant: &Grant<'_>, now: UnixTime) -> Result<Value, OAuthError> {
    let (body, records) = mint(state, grant, now).await?;
    state.storage().put_tokens(&records).await?;
    tracing::info!(client_id = %grant.client_id, family = %grant.family_id, jti = %records[0].jti, "tokens issued");
    Ok(body)
}
