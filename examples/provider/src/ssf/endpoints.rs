//! The transmitter's HTTP endpoints: SSF configuration metadata (SSF 1.0 §7), stream management
//! (§8: configuration, status, verification), RFC 8936 poll delivery, and the user
//! administration that causes the user events.
//!
//! Everything but the metadata is authorized by `Authorization: Bearer <access token of this
//! server>`: scope `ssf` for streams and polling, `admin` for user administration. A missing
//! token is `401` with a `Bearer` challenge, an unknown, expired, revoked or DPoP-bound token
//! `401 invalid_token`, a token without the scope `403 insufficient_scope`. A stream belongs to
//! the client its creating token was issued to; anybody else's stream is `404`, as an unknown
//! one. Bodies are JSON objects; every field is bounded and every bad value is
//! `400 invalid_request` with nothing changed.

use std::collections::{BTreeMap, HashSet};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::config::{PRIVILEGED_SCOPE, SSF_SCOPE};
use crate::model::{Delivery, Stream, StreamStatus, TokenKind, TokenRecord, UserChange};
use crate::ssf::events;
use crate::state::AppState;
use crate::storage::StorageError;
use crate::tokens::hash_secret;

/// RFC 8935 push delivery.
pub const PUSH: &str = "urn:ietf:rfc:8935";
/// RFC 8936 poll delivery.
pub const POLL: &str = "urn:ietf:rfc:8936";
/// Longest `description`, verification `state`, event type URI or `jti` accepted.
pub const MAX_TEXT: usize = 256;
/// Most event types a stream may request.
pub const MAX_EVENTS_REQUESTED: usize = 32;
/// Longest push `endpoint_url`.
pub const MAX_URL: usize = 2048;
/// Longest push `authorization_header`.
pub const MAX_AUTHORIZATION_HEADER: usize = 4096;
/// Most SETs one poll returns (`maxEvents` is capped to it).
pub const MAX_POLL_EVENTS: u64 = 100;
/// `maxEvents` when the poll request does not say.
pub const DEFAULT_POLL_EVENTS: u64 = 10;
/// Most `ack` plus `setErrs` entries of one poll request.
pub const MAX_POLL_ACKS: usize = 1000;
/// Shortest and longest password set through the admin endpoint, in characters.
pub const PASSWORD_LENGTH: std::ops::RangeInclusive<usize> = 8..=256;

/// An error answer: `{"error", "error_description"}` with `Cache-Control: no-store` and, for
/// 401 and 403, a `Bearer` challenge.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    description: &'static str,
    challenge: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, description: &'static str) -> Self {
        Self {
            status,
            error,
            description,
            challenge: None,
            retry_after: None,
        }
    }

    /// `400 invalid_request`.
    pub fn invalid_request(description: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// `404 not_found`.
    pub fn not_found(description: &'static str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", description)
    }

    fn server_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error",
        )
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        if err.is_unavailable() {
            tracing::warn!(error = %err, "database unavailable");
            return Self {
                retry_after: Some(crate::storage::UNAVAILABLE_RETRY_AFTER.as_secs()),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the database is unavailable; retry later",
                )
            };
        }
        tracing::error!(error = %err, "storage failure");
        Self::server_error()
    }
}

impl From<crate::keys::KeyError> for ApiError {
    fn from(err: crate::keys::KeyError) -> Self {
        if let crate::keys::KeyError::Storage(err) = err {
            return err.into();
        }
        tracing::error!(error = %err, "signing key failure");
        Self::server_error()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({
            "error": self.error,
            "error_description": self.description,
        }));
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The access token of the request, checked to be an active bearer access token of this server
/// carrying `scope`.
async fn authorize(state: &AppState, headers: &HeaderMap, scope: &str) -> ApiResult<TokenRecord> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        let missing = headers.get(header::AUTHORIZATION).is_none();
        return Err(if missing {
            ApiError {
                challenge: Some(format!(
                    "Bearer realm=\"oauth-provider\", scope=\"{scope}\""
                )),
                ..ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "an access token is required",
                )
            }
        } else {
            bad_header()
        });
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty() && !t.contains(' '))
        .ok_or_else(bad_header)?;
    let invalid = || ApiError {
        challenge: Some("Bearer realm=\"oauth-provider\", error=\"invalid_token\"".to_owned()),
        ..ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is invalid, expired or revoked",
        )
    };
    let record = state
        .storage()
        .get_token(&hash_secret(token), state.now())
        .await?
        .filter(|r| r.kind == TokenKind::Access && !r.consumed)
        // A DPoP-bound token is never a bearer credential.
        .filter(|r| r.dpop_jkt.is_none())
        .ok_or_else(invalid)?;
    if !crate::scope::set(&record.scope).contains(scope) {
        return Err(ApiError {
            challenge: Some(format!(
                "Bearer realm=\"oauth-provider\", error=\"insufficient_scope\", scope=\"{scope}\""
            )),
            ..ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "the access token lacks the required scope",
            )
        });
    }
    Ok(record)
}

fn bad_header() -> ApiError {
    ApiError {
        challenge: Some("Bearer realm=\"oauth-provider\", error=\"invalid_request\"".to_owned()),
        ..ApiError::invalid_request("the Authorization header is malformed")
    }
}

/// The body as a JSON object (an empty body is an empty object).
fn object(body: &[u8]) -> ApiResult<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::invalid_request("the body must be a JSON object")),
    }
}

fn query_param(query: Option<&str>, name: &str) -> ApiResult<Option<String>> {
    let mut found = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == name {
            if found.is_some() {
                return Err(ApiError::invalid_request("a query parameter is repeated"));
            }
            found = Some(v.into_owned());
        }
    }
    Ok(found)
}

fn text<'a>(
    map: &'a Map<String, Value>,
    name: &str,
    bad: &'static str,
) -> ApiResult<Option<&'a str>> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_TEXT && !s.is_empty() => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid_request(bad)),
    }
}

fn stream_id_of(map: &Map<String, Value>) -> ApiResult<&str> {
    text(map, "stream_id", "stream_id must be a string")?
        .ok_or_else(|| ApiError::invalid_request("stream_id is required"))
}

/// The caller's stream, or 404 (unknown and foreign streams alike).
async fn owned_stream(
    state: &AppState,
    caller: &TokenRecord,
    stream_id: &str,
) -> ApiResult<Stream> {
    state
        .storage()
        .get_stream(stream_id)
        .await?
        .filter(|s| s.client_id == caller.client_id)
        .ok_or_else(|| ApiError::not_found("no such stream"))
}

/// The stream configuration (SSF 1.0 §8.1.1) as the receiver sees it: never the push
/// `authorization_header`.
pub fn configuration(state: &AppState, stream: &Stream) -> Value {
    let delivery = match &stream.delivery {
        Delivery::Push { endpoint_url, .. } => {
            json!({ "method": PUSH, "endpoint_url": endpoint_url })
        }
        Delivery::Poll => json!({
            "method": POLL,
            "endpoint_url": state.endpoint(&format!("/ssf/poll/{}", stream.stream_id)),
        }),
    };
    let mut config = json!({
        "stream_id": stream.stream_id,
        "iss": state.issuer(),
        "aud": stream.client_id,
        "events_supported": events::SUPPORTED,
        "events_requested": stream.events_requested,
        "events_delivered": stream.events_delivered,
        "delivery": delivery,
        "min_verification_interval": state.ssf().min_verification_interval.as_secs(),
    });
    if let Some(description) = &stream.description {
        config["description"] = json!(description);
    }
    config
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn respond(result: ApiResult<Response>) -> Response {
    match result {
        Ok(response) => no_store(response),
        Err(err) => err.into_response(),
    }
}

/// `GET /.well-known/ssf-configuration` (SSF 1.0 §7.1).
pub async fn metadata(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "spec_version": "1_0",
        "issuer": state.issuer(),
        "jwks_uri": state.endpoint("/jwks"),
        "delivery_methods_supported": [PUSH, POLL],
        "configuration_endpoint": state.endpoint("/ssf/stream"),
        "status_endpoint": state.endpoint("/ssf/status"),
        "verification_endpoint": state.endpoint("/ssf/verify"),
        "authorization_schemes": [{ "spec_urn": "urn:ietf:rfc:6749" }],
        "default_subjects": "ALL",
    }))
}

/// The parts of a stream a receiver sets.
struct StreamFields {
    delivery: Option<Delivery>,
    events_requested: Option<Vec<String>>,
    description: Option<Option<String>>,
}

fn parse_fields(state: &AppState, map: &Map<String, Value>) -> ApiResult<StreamFields> {
    let delivery = match map.get("delivery") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => Some(parse_delivery(state, d)?),
        Some(_) => return Err(ApiError::invalid_request("delivery must be an object")),
    };
    let events_requested = match map.get("events_requested") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) if list.len() <= MAX_EVENTS_REQUESTED => {
            let mut seen = HashSet::new();
            let mut events = Vec::new();
            for e in list {
                let Some(e) = e.as_str().filter(|e| !e.is_empty() && e.len() <= MAX_TEXT) else {
                    return Err(ApiError::invalid_request(
                        "events_requested must be a list of event type URIs",
                    ));
                };
                if seen.insert(e) {
                    events.push(e.to_owned());
                }
            }
            Some(events)
        }
        Some(_) => {
            return Err(ApiError::invalid_request(
                "events_requested must be a list of at most 32 event type URIs",
            ));
        }
    };
    let description = match map.get("description") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_TEXT => Some(Some(s.clone())),
        Some(_) => {
            return Err(ApiError::invalid_request(
                "description must be a string of at most 256 characters",
            ));
        }
    };
    Ok(StreamFields {
        delivery,
        events_requested,
        description,
    })
}

fn parse_delivery(state: &AppState, d: &Map<String, Value>) -> ApiResult<Delivery> {
    match d.get("method").and_then(Value::as_str) {
        Some(POLL) => Ok(Delivery::Poll),
        Some(PUSH) => {
            let endpoint_url = d
                .get("endpoint_url")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::invalid_request("push delivery needs an endpoint_url"))?;
            check_endpoint(state, endpoint_url)?;
            let authorization_header = match d.get("authorization_header") {
                None | Some(Value::Null) => None,
                Some(Value::String(h))
                    if !h.is_empty()
                        && h.len() <= MAX_AUTHORIZATION_HEADER
                        && h.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
                {
                    Some(h.clone())
                }
                Some(_) => {
                    return Err(ApiError::invalid_request(
                        "authorization_header must be a header value of printable ASCII",
                    ));
                }
            };
            Ok(Delivery::Push {
                endpoint_url: endpoint_url.to_owned(),
                authorization_header,
            })
        }
        _ => Err(ApiError::invalid_request(
            "delivery method must be urn:ietf:rfc:8935 or urn:ietf:rfc:8936",
        )),
    }
}

/// A push endpoint must be an `https` URL (or, with the development switch, an `http` URL of
/// a loopback host) with a host, without credentials or fragment; an IP literal must be a public
/// address unless private endpoints are allowed (a name is checked when it is resolved, at each
/// push).
fn check_endpoint(state: &AppState, endpoint: &str) -> ApiResult<()> {
    let bad = || {
        ApiError::invalid_request(
            "endpoint_url must be an https URL (http only to a loopback host when allowed)",
        )
    };
    if endpoint.len() > MAX_URL {
        return Err(bad());
    }
    let url = url::Url::parse(endpoint).map_err(|_| bad())?;
    if url.host().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.fragment().is_some()
    {
        return Err(bad());
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    let settings = state.ssf();
    match url.scheme() {
        "https" => {}
        "http" if loopback && settings.allow_http_loopback => {}
        _ => return Err(bad()),
    }
    if !settings.allow_private_endpoints
        && !crate::outbound::literal_allowed(&url, settings.allow_http_loopback)
    {
        return Err(ApiError::invalid_request(
            "endpoint_url is a private, loopback, link-local or reserved address",
        ));
    }
    Ok(())
}

fn delivered(requested: &[String]) -> Vec<String> {
    requested
        .iter()
        .filter(|e| events::SUPPORTED.contains(&e.as_str()))
        .cloned()
        .collect()
}

/// `POST /ssf/stream`: creates a stream (`201` with its configuration).
pub async fn create(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    respond(
        async {
            let caller = authorize(&state, &headers, SSF_SCOPE).await?;
            let fields = parse_fields(&state, &object(&body)?)?;
            let events_requested = fields.events_requested.unwrap_or_default();
            let stream = Stream {
                stream_id: crate::tokens::random_id(),
                client_id: caller.client_id.clone(),
                delivery: fields.delivery.unwrap_or(Delivery::Poll),
                events_delivered: delivered(&events_requested),
                events_requested,
                description: fields.description.flatten(),
                status: StreamStatus::Enabled,
                created_at: state.now(),
            };
            let max = state.ssf().max_streams_per_client;
            if !state.storage().create_stream(&stream, max).await? {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "invalid_request",
                    "this client already has the maximum number of streams",
                ));
            }
            tracing::info!(client_id = %stream.client_id, stream_id = %stream.stream_id, method = stream.delivery.method_name(), "SSF stream created");
            Ok((StatusCode::CREATED, Json(configuration(&state, &stream))).into_response())
        }
        .await,
    )
}

/// `GET /ssf/stream[?stream_id=…]`: one configuration, or the list of the caller's.
pub async fn read(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    respond(
        async {
            let caller = authorize(&state, &headers, SSF_SCOPE).await?;
            match query_param(query.as_deref(), "stream_id")? {
                Some(id) => {
                    let stream = owned_stream(&state, &caller, &id).await?;
                    Ok(Json(configuration(&state, &stream)).into_response())
                }
                None => {
                    let streams = state.storage().list_streams(&caller.client_id).await?;
                    let list: Vec<Value> =
                        streams.iter().map(|s| configuration(&state, s)).collect();
                    Ok(Json(list).into_response())
                }
            }
        }
        .await,
    )
}

/// `PATCH /ssf/stream` (partial update) and `PUT /ssf/stream` (replacement): `200` with the new
/// configuration. Read-only fields in the body are ignored.
async fn update(state: AppState, headers: HeaderMap, body: Bytes, replace: bool) -> Response {
    respond(
        async {
            let caller = authorize(&state, &headers, SSF_SCOPE).await?;
            let map = object(&body)?;
            let fields = parse_fields(&state, &map)?;
            let mut stream = owned_stream(&state, &caller, stream_id_of(&map)?).await?;
            if replace {
                stream.delivery = fields.delivery.unwrap_or(Delivery::Poll);
                stream.events_requested = fields.events_requested.unwrap_or_default();
                stream.description = fields.description.flatten();
            } else {
                if let Some(delivery) = fields.delivery {
                    stream.delivery = delivery;
                }
                if let Some(requested) = fields.events_requested {
                    stream.events_requested = requested;
                }
                if let Some(description) = fields.description {
                    stream.description = description;
                }
            }
            stream.events_delivered = delivered(&stream.events_requested);
            if !state.storage().update_stream(&stream).await? {
                return Err(ApiError::not_found("no such stream"));
            }
            Ok(Json(configuration(&state, &stream)).into_response())
        }
        .await,
    )
}

/// `PATCH /ssf/stream`.
pub async fn patch(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    update(state, headers, body, false).await
}

/// `PUT /ssf/stream`.
pub async fn put(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    update(state, headers, body, true).await
}

/// `DELETE /ssf/stream?stream_id=…`: `204`; the stream's queued events are dropped.
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    respond(
        async {
            let caller = authorize(&state, &headers, SSF_SCOPE).await?;
            let id = query_param(query.as_deref(), "stream_id")?
                .ok_or_else(|| ApiError::invalid_request("stream_id is required"))?;
            if !state
                .storage()
                .delete_stream(&id, &caller.client_id)
                .await?
            {
                return Err(ApiError::not_found("no such stream"));
            }
            tracing::info!(client_id = %caller.client_id, stream_id = %id, "SSF stream deleted");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

fn status_body(stream_id: &str, status: StreamStatus) -> Response {
    Json(json!({ "stream_id": stream_id, "status": status.as_str() })).into_response()
}

/// `GET /ssf/status?stream_id=…`.
pub async fn get_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    respond(
        async {
            let caller = authorize(&state, &headers, SSF_SCOPE).await?;
            let id = query_param(query.as_deref(), "stream_id")?
                .ok_or_else(|| ApiError::invalid_request("stream_id is required"))?;
            let stream = owned_stream(&state, &caller, &id).await?;
            Ok(status_body(&stream.stream_id, stream.status))
        }
        .await,
    )
}

/// `POST /ssf/status {stream_id, status}`: `enabled`, `paused` (events queue, nothing is
/// delivered) or `disabled` (nothing queues; queued events are dropped).
pub async fn set_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(
        async {
            let caller = authorize(&state, &headers, SSF_SCOPE).await?;
            let map = object(&body)?;
            let id = stream_id_of(&map)?;
            let status = map
                .get("status")
                .and_then(Value::as_str)
                .and_then(StreamStatus::parse)
                .ok_or_else(|| {
                    ApiError::invalid_request("status must be enabled, paused or disabled")
                })?;
            text(&map, "reason", "reason must be a string of at most 256 characters")?;
            if !state
                .storage()
                .set_stream_status(id, &caller.client_id, status)
                .await?
            {
                return Err(ApiError::not_found("no such stream"));
            }
            if status == StreamStatus::Enabled {
                state.ssf_wake().notify_one();
            }
            tracing::info!(client_id = %caller.client_id, stream_id = %id, status = status.as_str(), "SSF stream status set");
            Ok(status_body(id, status))
        }
        .await,
    )
}

/// `POST /ssf/verify {stream_id, state}`: `204`; a verification event is queued for the
/// stream (unless it is disabled).
pub async fn verify(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    respond(
        async {
            let caller = authorize(&state, &headers, SSF_SCOPE).await?;
            let map = object(&body)?;
            let verification_state = text(
                &map,
                "state",
                "state must be a string of at most 256 characters",
            )?;
            let stream = owned_stream(&state, &caller, stream_id_of(&map)?).await?;
            if let Err(wait) = state
                .ssf_verifications()
                .admit(&stream.stream_id, std::time::Instant::now())
            {
                return Err(ApiError {
                    // Whole seconds, rounded up: a client that waits that long is admitted.
                    retry_after: Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)),
                    ..ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too_many_requests",
                        "a verification of this stream was requested less than \
                         min_verification_interval ago",
                    )
                });
            }
            let event = [events::verification(
                state.issuer(),
                &stream.stream_id,
                verification_state,
                state.now(),
            )];
            let fanout = state
                .storage()
                .announce_to_stream(&stream.stream_id, &state.announcement(&event, false))
                .await?;
            state.announced(fanout);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

/// `POST /ssf/poll/{stream_id}` (RFC 8936): acknowledges (`ack`) and refuses (`setErrs`) SETs,
/// then returns up to `maxEvents` pending ones (`moreAvailable` when more wait). Unacknowledged
/// SETs are offered again by the next poll. With `returnImmediately: false` (the default) and
/// nothing pending, the request waits up to the long-poll time for an event.
pub async fn poll(
    State(state): State<AppState>,
    Path(stream_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(
        async {
            let caller = authorize(&state, &headers, SSF_SCOPE).await?;
            let map = object(&body)?;
            let stream = owned_stream(&state, &caller, &stream_id).await?;
            if stream.delivery != Delivery::Poll {
                return Err(ApiError::invalid_request("the stream is not a poll stream"));
            }
            let max_events = match map.get("maxEvents") {
                None | Some(Value::Null) => DEFAULT_POLL_EVENTS,
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| {
                        ApiError::invalid_request("maxEvents must be a non-negative integer")
                    })?
                    .min(MAX_POLL_EVENTS),
            };
            let return_immediately = match map.get("returnImmediately") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(ApiError::invalid_request(
                        "returnImmediately must be a boolean",
                    ));
                }
            };
            let acks = jti_list(map.get("ack"))?;
            let errors = set_errors(map.get("setErrs"))?;
            if acks.len() + errors.len() > MAX_POLL_ACKS {
                return Err(ApiError::invalid_request(
                    "at most 1000 ack and setErrs entries per request",
                ));
            }
            let storage = state.storage();
            let now_ms = crate::ssf::now_ms();
            if !acks.is_empty() {
                storage
                    .acknowledge_outbox(&stream.stream_id, &acks, now_ms, None)
                    .await?;
            }
            for (jti, reason) in &errors {
                tracing::info!(stream_id = %stream.stream_id, jti = %jti, "SET refused by the poll receiver");
                storage
                    .acknowledge_outbox(&stream.stream_id, &[jti.as_str()], now_ms, Some(reason))
                    .await?;
            }
            let mut sets = Map::new();
            let mut more = false;
            if max_events > 0 && stream.status == StreamStatus::Enabled {
                let limit = u32::try_from(max_events + 1).unwrap_or(u32::MAX);
                let deadline = tokio::time::Instant::now() + state.ssf().long_poll;
                let mut pending = storage.pending_outbox(&stream.stream_id, limit).await?;
                while pending.is_empty()
                    && !return_immediately
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    pending = storage.pending_outbox(&stream.stream_id, limit).await?;
                }
                more = pending.len() as u64 > max_events;
                if !pending.is_empty() {
                    let key = crate::keys::current(storage.as_ref(), state.now()).await?;
                    for entry in pending.iter().take(max_events as usize) {
                        let set = crate::ssf::set::sign(&key, entry, &stream.client_id)?;
                        sets.insert(entry.jti.clone(), Value::String(set));
                    }
                }
            }
            Ok(Json(json!({ "sets": sets, "moreAvailable": more })).into_response())
        }
        .await,
    )
}

fn jti_list(value: Option<&Value>) -> ApiResult<Vec<&str>> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) if list.len() <= MAX_POLL_ACKS => list
            .iter()
            .map(|v| {
                v.as_str()
                    .filter(|s| !s.is_empty() && s.len() <= MAX_TEXT)
                    .ok_or_else(|| ApiError::invalid_request("ack must be a list of jti strings"))
            })
            .collect(),
        Some(_) => Err(ApiError::invalid_request(
            "ack must be a list of at most 1000 jti strings",
        )),
    }
}

/// `setErrs`: jti → "err: description" (bounded), for the outbox's record.
fn set_errors(value: Option<&Value>) -> ApiResult<BTreeMap<String, String>> {
    let bad = || ApiError::invalid_request("setErrs must map jti strings to {err, description}");
    match value {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) if map.len() <= MAX_POLL_ACKS => {
            let mut errors = BTreeMap::new();
            for (jti, e) in map {
                if jti.is_empty() || jti.len() > MAX_TEXT {
                    return Err(bad());
                }
                let err = e.get("err").and_then(Value::as_str).ok_or_else(bad)?;
                let description = e.get("description").and_then(Value::as_str).unwrap_or("");
                errors.insert(jti.clone(), receiver_error(err, description));
            }
            Ok(errors)
        }
        Some(_) => Err(bad()),
    }
}

/// A receiver's error as recorded: `err: description`, printable ASCII, at most 256 characters.
pub fn receiver_error(err: &str, description: &str) -> String {
    let text = if description.is_empty() {
        err.to_owned()
    } else {
        format!("{err}: {description}")
    };
    text.chars()
        .take(MAX_TEXT)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

/// `POST /admin/users/{username}/password {"password": …}`: sets a new password for a user of
/// the users file, revokes all of the user's grants and announces a CAEP credential change and a token-revoked
/// event per unexpired access token.
pub async fn set_password(
    State(state): State<AppState>,
    Path(username): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(
        async {
            let caller = authorize(&state, &headers, PRIVILEGED_SCOPE).await?;
            let map = object(&body)?;
            let password = match map.get("password") {
                Some(Value::String(p)) if PASSWORD_LENGTH.contains(&p.chars().count()) => {
                    p.clone()
                }
                _ => {
                    return Err(ApiError::invalid_request(
                        "password must be a string of 8 to 256 characters",
                    ));
                }
            };
            known_user(&state, &username)?;
            let hash = state
                .password_gate()
                .run(move |_| crate::users::hash_password(&password))
                .await
                .map_err(|busy| ApiError {
                    retry_after: Some(busy.retry_after.as_secs()),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "temporarily_unavailable",
                        "the server is busy; retry later",
                    )
                })?
                .and_then(Result::ok)
                .ok_or_else(ApiError::server_error)?;
            let event = [events::credential_change(
                state.issuer(),
                &username,
                state.now(),
            )];
            change(&state, &username, &UserChange::Password(hash), &event).await?;
            tracing::info!(admin = %caller.client_id, user = %username, "password changed; the user's grants were revoked");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

/// `POST /admin/users/{username}/disable`: disables a user (no login, refresh or active
/// token), revokes all of the user's grants and announces a RISC account-disabled event.
pub async fn disable(
    State(state): State<AppState>,
    Path(username): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let caller = authorize(&state, &headers, PRIVILEGED_SCOPE).await?;
            known_user(&state, &username)?;
            let event = [events::account_disabled(
                state.issuer(),
                &username,
                state.now(),
            )];
            change(&state, &username, &UserChange::Disable, &event).await?;
            tracing::info!(admin = %caller.client_id, user = %username, "user disabled; the user's grants were revoked");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

/// `POST /admin/users/{username}/enable`: lets a disabled user log in again (no event).
pub async fn enable(
    State(state): State<AppState>,
    Path(username): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let caller = authorize(&state, &headers, PRIVILEGED_SCOPE).await?;
            known_user(&state, &username)?;
            change(&state, &username, &UserChange::Enable, &[]).await?;
            tracing::info!(admin = %caller.client_id, user = %username, "user enabled");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

fn known_user(state: &AppState, username: &str) -> ApiResult<()> {
    state
        .users()
        .get(username)
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("no such user"))
}

async fn change(
    state: &AppState,
    username: &str,
    change: &UserChange,
    events: &[crate::model::SsfEvent],
) -> ApiResult<()> {
    let now = state.now();
    let fanout = state
        .storage()
        .change_user(
            username,
            change,
            state.revocation_memory(now),
            // A password change ends the user's grants: their access tokens are announced one
            // by one too, so that receivers checking JWTs locally refuse them (credential-change
            // alone only asks receivers to check again).
            &state.announcement(events, matches!(change, UserChange::Password(_))),
        )
        .await?;
    state.announced(fanout);
    Ok(())
}
