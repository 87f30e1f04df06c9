//! The HTTP API (axum): JSON in and out; payloads are stored as MessagePack.
//!
//! | method | path | what |
//! |---|---|---|
//! | POST | `/v1/aggregates/{aggregate}/{id}` | send a command `{type, payload, command_id?, correlation_id?, expected_version?}` (or `If-Match`) |
//! | GET | `/v1/streams/{stream}?from=1&limit=100` | read a stream |
//! | GET | `/v1/read-models/{projector}/{key}` | one row |
//! | GET | `/v1/read-models/{projector}?prefix=&after=&limit=` | a page of rows by key prefix, `next` cursor and `count` |
//! | GET | `/`, `/ui/app.js`, `/ui/style.css` | the operator's status page (public; its data calls carry the token) |
//! | GET | `/v1/admin/plugins`, `/v1/admin/groups`, `/v1/admin/dlq` | plugins, lag and state, dead letters |
//! | GET | `/v1/admin/topics` | topics and their partitions' high-water marks |
//! | POST | `/v1/admin/dlq/{group}/{topic}/{partition}/{offset}/{retry or discard}` | DLQ operations |
//! | GET | `/v1/admin/dlq/{group}/{topic}/{partition}/{offset}/export` | the dead letter's context as one export file (MessagePack) |
//! | GET | `/v1/admin/plugins/{name}` | running version and the ones before it |
//! | GET | `/v1/admin/sagas?saga=NAME`, `/v1/admin/sagas/{saga}/{id}` | saga instances (data as JSON) and one's log |
//! | POST | `/v1/admin/plugins/{name}/deploy?version=LABEL&gate=true&last=N&accept_changes=true` | body: the component bytes; `gate`: replay the last N events (streams, for an aggregate) through both versions first, 409 `gate-refused` with the diff when effects differ (unless `accept_changes`) or the candidate fails |
//! | POST | `/v1/admin/plugins/{name}/rollback` | back to the previous version |
//! | GET, POST | `/v1/admin/projectors/{name}`, `.../rebuild` | a projector's read models; rebuild one |
//! | GET | `/metrics` | Prometheus text format (open; the admin token with `[http] protect_metrics`) |
//! | GET | `/healthz`, `/readyz` | liveness (200, with the storage state); readiness (503 while storage cannot write) |
//!
//! `docs/openapi.json` describes every route; a test checks it against [`route_list`].
//!
//! Every error is `application/json` `{"error": <kind>, "message": ...}` with its own status
//! (the table is in README.md): 400 malformed body, query or path, 401 missing or wrong admin
//! token, 404 unknown route/aggregate/row, 405 wrong method, 409 expected version not met (with
//! `expected` and `actual`) or other conflicts, 413 body too large, 422 business rejection (with
//! `code`) or bad deploy, 429 too many commands queued for a stream, 431 headers too large, 500
//! plugin failure, 503 storage unavailable (with `Retry-After`). The framework's own refusals
//! get the same shape from [`error::json_errors`]. Admin routes check the token in a route
//! layer, before any extractor reads the body.

mod error;
mod forward;
#[cfg(test)]
mod fuzz;
mod serve;
mod ui;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{self, MethodRouter};
use bytes::Bytes;
use factline_guest::codec::{json_to_msgpack, msgpack_to_json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::aggregate::{CommandError, CommandRequest};
use crate::event::{Event, ExpectedVersion};
use crate::gate::GateOptions;
use crate::host::{Host, RebuildRequestError, SendError};
use crate::log::{AppendError, DeadLetterKey, ReadError};
use crate::reload::{DeployError, DeployOrigin};
use crate::saga::SagaInstance;

pub use error::ApiError;
use error::internal;
pub use serve::serve;

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Largest component a deploy accepts (interpreters built into a component, such as Python's,
/// weigh tens of MiB).
pub const MAX_COMPONENT_BYTES: usize = 256 << 20;

/// The API's router over a running host.
pub fn router(host: Arc<Host>) -> Router {
    let (public, admin) = routes();
    // Behind the token: checked by a route layer, so before any extractor reads a body (an
    // unauthenticated deploy is refused without its 256 MiB being read).
    let admin = admin
        .router
        .route_layer(middleware::from_fn_with_state(host.clone(), require_admin));
    public
        .router
        .merge(admin)
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::unknown_route)
        .layer(middleware::map_response(error::json_errors))
        .layer(middleware::from_fn(serve::header_budget))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(host)
}

/// Every (method, path) the router serves, as it was built (`docs/openapi.json` is checked
/// against it).
pub fn route_list() -> Vec<(Method, &'static str)> {
    let (public, admin) = routes();
    public.list.into_iter().chain(admin.list).collect()
}

/// The public routes and the admin ones.
fn routes() -> (Routes, Routes) {
    let public = Routes::default()
        .post("/v1/aggregates/{aggregate}/{id}", send_command)
        // Host to host on a clustered log: a policy's or saga's command for this host's streams.
        .post("/v1/cluster/commands/{aggregate}", forward::cluster_command)
        .get("/v1/streams/{stream}", read_stream)
        .get("/v1/read-models/{projector}", query_prefix)
        .get("/v1/read-models/{projector}/{key}", query_key)
        .get("/healthz", healthz)
        .get("/readyz", readyz)
        // The status page holds no data: what it shows comes from the admin routes below.
        .get("/", ui::index)
        .get("/ui/app.js", ui::script)
        .get("/ui/style.css", ui::style)
        // Open to scrapers unless `[http] protect_metrics`; the handler checks the token then.
        .get("/metrics", metrics);
    let admin = Routes::default()
        .get("/v1/admin/plugins", plugins)
        .get("/v1/admin/plugins/{name}", plugin_versions)
        .post_with("/v1/admin/plugins/{name}/deploy", deploy, |r| {
            r.layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES))
                .layer(middleware::from_fn(declared_component_size))
        })
        .post("/v1/admin/plugins/{name}/rollback", rollback)
        .get("/v1/admin/projectors/{name}", projector_status)
        .post("/v1/admin/projectors/{name}/rebuild", rebuild_projector)
        .get("/v1/admin/groups", groups)
        .get("/v1/admin/topics", topics)
        .get("/v1/cluster", cluster)
        .get("/v1/admin/sagas", sagas)
        .get("/v1/admin/sagas/{saga}/{id}", saga_instance)
        .get("/v1/admin/dlq", dead_letters)
        .get(
            "/v1/admin/dlq/{group}/{topic}/{partition}/{offset}/export",
            export_dead_letter,
        )
        .post(
            "/v1/admin/dlq/{group}/{topic}/{partition}/{offset}/{action}",
            dead_letter_action,
        );
    (public, admin)
}

/// A router and the (method, path) list it is built from, so the list cannot drift from it.
#[derive(Default)]
struct Routes {
    router: Router<Arc<Host>>,
    list: Vec<(Method, &'static str)>,
}

impl Routes {
    fn get<H: Handler<T, Arc<Host>>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::GET, path, routing::get(h))
    }

    fn post<H: Handler<T, Arc<Host>>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.post_with(path, h, |r| r)
    }

    /// A POST route with layers of its own.
    fn post_with<H: Handler<T, Arc<Host>>, T: 'static>(
        self,
        path: &'static str,
        h: H,
        wrap: impl FnOnce(MethodRouter<Arc<Host>>) -> MethodRouter<Arc<Host>>,
    ) -> Self {
        self.add(Method::POST, path, wrap(routing::post(h)))
    }

    fn add(mut self, method: Method, path: &'static str, route: MethodRouter<Arc<Host>>) -> Self {
        self.router = self.router.route(path, route);
        self.list.push((method, path));
        self
    }
}

/// A deploy whose declared `Content-Length` is over [`MAX_COMPONENT_BYTES`] is refused before
/// any of it is read (the body limit alone would read up to the limit first).
async fn declared_component_size(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|&l| l > MAX_COMPONENT_BYTES as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("a component of {len} bytes is over the limit of {MAX_COMPONENT_BYTES}"),
        )
        .into_response();
    }
    next.run(request).await
}

/// A body the framework could not read: over its limit (413) or broken off.
fn body_error(r: BytesRejection) -> ApiError {
    let status = r.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "too-large", r.body_text())
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed", r.body_text())
    }
}

/// `GET /healthz`: the process serves (200), with the storage state; a full disk is not a
/// reason to restart it, since the log reopens its database by itself.
async fn healthz(State(host): State<Arc<Host>>) -> Json<Value> {
    let storage = host.log().storage_health();
    let status = if storage.available {
        "ok"
    } else {
        "storage-unavailable"
    };
    Json(json!({ "status": status, "storage": storage }))
}

/// `GET /readyz`: 200 while commands can be accepted, 503 `storage-unavailable` (with
/// `Retry-After`) while the store cannot write.
async fn readyz(State(host): State<Arc<Host>>) -> Result<Json<Value>, ApiError> {
    let storage = host.log().storage_health();
    if storage.available {
        Ok(Json(json!({ "status": "ready", "storage": storage })))
    } else {
        Err(ApiError::storage_unavailable(
            storage
                .last_error
                .unwrap_or_else(|| "the store cannot write".into()),
        ))
    }
}

/// An event as JSON, its payload decoded.
fn event_json(e: &Event) -> Value {
    json!({
        "event_id": e.event_id,
        "event_type": e.event_type,
        "stream": e.stream,
        "stream_version": e.stream_version,
        "topic": e.topic,
        "partition": e.partition,
        "offset": e.offset,
        "occurred_at": e.occurred_at,
        "correlation_id": e.correlation_id,
        "causation_id": e.causation_id,
        "schema_version": e.schema_version,
        "payload": msgpack_to_json(&e.payload).unwrap_or(Value::Null),
        "metadata": e.metadata,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommandBody {
    #[serde(rename = "type")]
    pub command_type: String,
    #[serde(default)]
    pub payload: Value,
    pub command_id: Option<uuid::Uuid>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    /// The stream's version the client decided on: a number (0: the stream must not exist) or
    /// `"any"`; parsed by [`expected_version`].
    #[serde(default)]
    pub expected_version: Option<Value>,
}

/// Parses a command body. Whatever its `Content-Type` (none, `text/plain`, or the form type
/// `curl -d` sends): the body is JSON or it is malformed (400), syntax and shape alike.
pub(crate) fn parse_command_body(body: &[u8]) -> Result<CommandBody, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!(
                "the command body is not a command: {e}; send a JSON object \
                 {{\"type\": ..., \"payload\": {{...}}}}"
            ),
        )
    })
}

/// The expected version of a command, from its body's `expected_version` and its `If-Match`
/// header (both may be given, and must then agree). A version `N` means "the stream is at
/// version N before this command" (0: it does not exist yet); `"any"` (or neither) means no
/// check. `If-Match` takes the `ETag` a command or stream read answered (`"N"`, quoted or not).
fn expected_version(
    body: Option<&Value>,
    headers: &HeaderMap,
) -> Result<Option<ExpectedVersion>, ApiError> {
    let malformed = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "malformed", m);
    let from_body = match body {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "any" => Some(ExpectedVersion::Any),
        Some(v) => Some(ExpectedVersion::from_current(v.as_u64().ok_or_else(
            || {
                malformed(format!(
                    "expected_version must be a stream version (0 or more) or \"any\", not {v}"
                ))
            },
        )?)),
    };
    let from_header =
        match headers.get(axum::http::header::IF_MATCH) {
            None => None,
            Some(h) => {
                let text = h.to_str().unwrap_or("").trim();
                let tag = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
                Some(ExpectedVersion::from_current(tag.parse().map_err(|_| {
                malformed(format!(
                    "If-Match must be a stream version as its ETag gives it (\"3\"), not {:?}",
                    text.chars().take(64).collect::<String>()
                ))
            })?))
            }
        };
    match (from_body, from_header) {
        (Some(b), Some(h)) if b != h => Err(malformed(format!(
            "expected_version ({b}) and If-Match ({h}) disagree"
        ))),
        (b, h) => Ok(b.or(h).filter(|e| *e != ExpectedVersion::Any)),
    }
}

/// A version as the expected/actual numbers of a 409 (0: no stream).
fn version_number(e: ExpectedVersion) -> Value {
    match e {
        ExpectedVersion::Any => json!("any"),
        ExpectedVersion::NoStream => json!(0),
        ExpectedVersion::Exact(v) => json!(v),
    }
}

/// `ETag` of a stream at `version`, for a later `If-Match`.
fn etag(version: u64) -> [(axum::http::HeaderName, String); 1] {
    [(axum::http::header::ETAG, format!("\"{version}\""))]
}

async fn send_command(
    State(host): State<Arc<Host>>,
    Path((aggregate, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    if let Some(route) = host.route(&aggregate, &id) {
        let path = format!("/v1/aggregates/{aggregate}/{id}");
        if let forward::Decision::Answer(r) =
            forward::route(&host, route, path, &headers, body.clone()).await?
        {
            return Ok(r);
        }
    }
    let body = parse_command_body(&body)?;
    let expected = expected_version(body.expected_version.as_ref(), &headers)?;
    let request = CommandRequest {
        id,
        command_type: body.command_type,
        payload: json_to_msgpack(&body.payload),
        command_id: body.command_id,
        correlation_id: body.correlation_id,
        causation_id: body.causation_id,
        metadata: Vec::new(),
        expected_version: expected,
    };
    // The root of the command's span tree (command, the batches its events reach, ...).
    let span = tracing::info_span!(
        "http.request",
        http.request.method = "POST",
        http.route = "/v1/aggregates/{aggregate}/{id}",
        aggregate = %aggregate,
        id = %request.id,
    );
    let e = match tracing::Instrument::instrument(host.command(&aggregate, request), span).await {
        Ok(o) => {
            let body = json!({
                "stream": o.stream,
                "version": o.version,
                "command_id": o.command_id,
                "deduplicated": o.deduplicated,
                "events": o.events.iter().map(event_json).collect::<Vec<_>>(),
            });
            return Ok((etag(o.version), Json(body)).into_response());
        }
        Err(SendError::UnknownAggregate(a)) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown-aggregate",
                format!("no aggregate named {a:?}"),
            ));
        }
        Err(SendError::Busy(b)) => return Err(ApiError::busy(b)),
        Err(SendError::Command(e)) => e,
    };
    Err(match e {
        CommandError::Rejected(r) => ApiError::with_body(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": "rejected", "code": r.code, "message": r.message }),
        ),
        CommandError::WrongVersion {
            ref stream,
            expected,
            actual,
        } => ApiError::with_body(
            StatusCode::CONFLICT,
            json!({
                "error": "conflict",
                "message": e.to_string(),
                "stream": stream,
                "expected": version_number(expected),
                "actual": actual,
            }),
        ),
        e @ CommandError::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "contended", e),
        CommandError::Failed { plugin, failure } => ApiError::with_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({
                "error": "plugin-failed",
                "plugin": plugin,
                "kind": failure.kind,
                "message": failure.message,
            }),
        ),
        CommandError::Append(e @ AppendError::InvalidStream(_)) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid-stream", e)
        }
        CommandError::Append(e @ AppendError::IdempotencyConflict { .. }) => {
            ApiError::new(StatusCode::CONFLICT, "idempotency-conflict", e)
        }
        CommandError::Append(e @ (AppendError::Storage(_) | AppendError::Closed)) => {
            ApiError::storage_unavailable(e)
        }
        CommandError::Append(e @ AppendError::Unavailable(_)) => {
            ApiError::unavailable("log-unavailable", e)
        }
        CommandError::Read(e @ ReadError::Storage(_)) => ApiError::storage_unavailable(e),
        // What the plugin decided and the log refuses (event type, size): the plugin's fault.
        CommandError::Append(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "refused", e),
        e => internal(e),
    })
}

#[derive(Deserialize)]
struct StreamQuery {
    from: Option<u64>,
    limit: Option<usize>,
}

async fn read_stream(
    State(host): State<Arc<Host>>,
    Path(stream): Path<String>,
    Query(q): Query<StreamQuery>,
) -> Result<Response, ApiError> {
    let log = host.log();
    let events = log
        .read_stream(
            &stream,
            q.from.unwrap_or(1),
            q.limit.unwrap_or(100).min(10_000),
        )
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-stream", e))?;
    let version = log.stream_version(&stream).map_err(internal)?;
    let body = json!({
        "stream": stream,
        "version": version,
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
    });
    Ok((etag(version), Json(body)).into_response())
}

async fn query_key(
    State(host): State<Arc<Host>>,
    Path((projector, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let row = crate::projector::query(host.log(), &projector, &key).map_err(internal)?;
    match row {
        Some(bytes) => Ok(Json(msgpack_to_json(&bytes).map_err(internal)?)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{projector} has no row {key:?}"),
        )),
    }
}

#[derive(Deserialize)]
struct PrefixQuery {
    prefix: Option<String>,
    /// The `next` of the page before: rows strictly after this key.
    after: Option<String>,
    limit: Option<usize>,
}

/// Rows asked per page at most.
const MAX_PAGE_ROWS: usize = 10_000;

/// `GET /v1/read-models/{projector}?prefix=&after=&limit=`: a page of rows in key order,
/// `next` (the `after` of the next page, null on the last) and `count` (keys matching the
/// prefix, up to [`crate::projector::MAX_COUNT`]; `count_exact` false beyond).
async fn query_prefix(
    State(host): State<Arc<Host>>,
    Path(projector): Path<String>,
    Query(q): Query<PrefixQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE_ROWS).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("limit must be 1 to {MAX_PAGE_ROWS}, not {limit}"),
        ));
    }
    let page = crate::projector::query_page(
        host.log(),
        &projector,
        q.prefix.as_deref().unwrap_or(""),
        q.after.as_deref(),
        limit,
    )
    .map_err(internal)?;
    let rows: Vec<Value> = page
        .rows
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": msgpack_to_json(v).unwrap_or(Value::Null) }))
        .collect();
    Ok(Json(json!({
        "rows": rows,
        "next": page.next,
        "count": page.count,
        "count_exact": page.count_exact,
    })))
}

/// Admin endpoints require `Authorization: Bearer <admin_token>` when a token is configured.
/// A route layer: runs before the handler's extractors, so nothing of the body is read for a
/// request without the token.
async fn require_admin(
    State(host): State<Arc<Host>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    authorize(&host, request.headers())?;
    Ok(next.run(request).await)
}

fn authorize(host: &Host, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &host.config().admin_token else {
        return Ok(());
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Constant-time comparison: the token must not leak through response timing.
    let ok = given.is_some_and(|g| {
        g.len() == token.0.len()
            && g.bytes()
                .zip(token.0.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "admin endpoints need `Authorization: Bearer <admin_token>`",
        ))
    }
}

/// `GET /metrics`: the recorded metrics plus the gauges read now (lag, parked events).
async fn metrics(State(host): State<Arc<Host>>, headers: HeaderMap) -> Result<Response, ApiError> {
    if host.config().http.protect_metrics {
        authorize(&host, &headers)?;
    }
    let Some(handle) = crate::telemetry::handle() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics-unavailable",
            "another metrics recorder is installed in this process",
        ));
    };
    // While the store cannot be read (a full disk being healed) the scrape-time gauges keep
    // their last values: the counters, storage ones included, are what an operator needs then.
    let lag = host.lag().unwrap_or_default();
    let parked = host.log().dead_letters(None).unwrap_or_default();
    let text = crate::telemetry::render(handle, || {
        for (group, partitions) in &lag {
            for p in partitions {
                crate::telemetry::set_lag(group, &p.topic, p.partition, p.lag);
            }
            let n = parked.iter().filter(|d| &d.group == group).count();
            crate::telemetry::set_parked(group, n as u64);
        }
    });
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn plugins(State(host): State<Arc<Host>>) -> Result<Json<Value>, ApiError> {
    let list: Vec<Value> = host
        .plugins()
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "kind": p.kind,
                "version": p.version.to_string(),
                "content_hash": p.version.content_hash,
                "label": p.version.label,
                "cache": p.cache_outcome,
            })
        })
        .collect();
    Ok(Json(json!({ "plugins": list })))
}

async fn plugin_versions(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let history = host.plugin_versions(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-plugin",
            format!("no plugin named {name:?} is configured"),
        )
    })?;
    Ok(Json(json!(history)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployQuery {
    version: Option<String>,
    /// Replay the recent history through both versions first (`crate::gate`).
    #[serde(default)]
    gate: bool,
    /// Events (or streams, for an aggregate) the gate replays.
    last: Option<usize>,
    /// Deploy even when the gate finds different effects.
    #[serde(default)]
    accept_changes: bool,
}

async fn deploy(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
    Query(q): Query<DeployQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    if !q.gate && (q.last.is_some() || q.accept_changes) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-query",
            "`last` and `accept_changes` apply to a gated deploy: add `gate=true`",
        ));
    }
    let report = if q.gate {
        let options = GateOptions::new(q.last, q.accept_changes)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-query", e))?;
        host.deploy_gated(&name, body.to_vec(), q.version, options)
            .await
    } else {
        host.deploy(&name, body.to_vec(), q.version, DeployOrigin::Api)
            .await
    }
    .map_err(deploy_error)?;
    Ok(Json(json!(report)))
}

async fn rollback(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let report = host.rollback(&name).await.map_err(deploy_error)?;
    Ok(Json(json!(report)))
}

fn deploy_error(e: DeployError) -> ApiError {
    if let DeployError::GateRefused { report, .. } = &e {
        // The whole report, for the CLI and the status page to show the diff.
        return ApiError::with_body(
            StatusCode::CONFLICT,
            json!({ "error": "gate-refused", "message": e.to_string(), "gate": report }),
        );
    }
    let (status, kind) = match &e {
        DeployError::UnknownPlugin(_) => (StatusCode::NOT_FOUND, "unknown-plugin"),
        DeployError::Load { .. } | DeployError::Instantiate { .. } | DeployError::Saga { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid-component")
        }
        DeployError::NoPrevious(_) => (StatusCode::CONFLICT, "no-previous-version"),
        DeployError::Swap { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "swap-failed"),
        DeployError::Rebuilding(_) => (StatusCode::CONFLICT, "rebuilding"),
        DeployError::Storage { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
        DeployError::Gate {
            source: crate::gate::GateError::Last(_),
            ..
        } => (StatusCode::BAD_REQUEST, "bad-query"),
        DeployError::Gate { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
        DeployError::GateRefused { .. } => (StatusCode::CONFLICT, "gate-refused"),
    };
    ApiError::new(status, kind, e)
}

async fn projector_status(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let status = host.projector(&name).map_err(internal)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-projector",
            format!("no projector named {name:?} is configured"),
        )
    })?;
    Ok(Json(json!(status)))
}

/// Starts a blue/green rebuild; `202 Accepted` with its first status (poll
/// `GET /v1/admin/projectors/{name}` for progress).
async fn rebuild_projector(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let status = host.rebuild_projector(&name).await.map_err(|e| {
        let (status, kind) = match &e {
            RebuildRequestError::UnknownProjector(_) => {
                (StatusCode::NOT_FOUND, "unknown-projector")
            }
            RebuildRequestError::AlreadyRunning(_) => (StatusCode::CONFLICT, "rebuilding"),
        };
        ApiError::new(status, kind, e)
    })?;
    Ok((StatusCode::ACCEPTED, Json(json!(status))))
}

#[derive(Deserialize)]
struct SagaQuery {
    saga: Option<String>,
}

async fn sagas(
    State(host): State<Arc<Host>>,
    Query(q): Query<SagaQuery>,
) -> Result<Json<Value>, ApiError> {
    let all = crate::saga::list(host.log(), q.saga.as_deref()).map_err(internal)?;
    let all: Vec<Value> = all.iter().map(SagaInstance::to_json).collect();
    Ok(Json(json!({ "instances": all })))
}

async fn saga_instance(
    State(host): State<Arc<Host>>,
    Path((saga, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let found = crate::saga::find(host.log(), Some(&saga), &id).map_err(internal)?;
    let instance = found.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-saga-instance",
            format!("no instance {id:?} of saga {saga:?}"),
        )
    })?;
    Ok(Json(instance.to_json()))
}

/// `GET /v1/admin/groups`: every group's lag per partition, its plugin kind and its state:
/// `rebuilding` (its projector's read model is being rebuilt; `rebuild` has the progress),
/// `paused` (nothing runs it), `blocked` (a `block` dead letter holds a partition; `blocked`
/// lists them) or `running`.
async fn groups(State(host): State<Arc<Host>>) -> Result<Json<Value>, ApiError> {
    let lag = host.lag().map_err(internal)?;
    let parked = host.log().dead_letters(None).map_err(internal)?;
    let mut groups = Vec::with_capacity(lag.len());
    for (name, partitions) in &lag {
        let total: u64 = partitions.iter().map(|p| p.lag).sum();
        let parts: Vec<Value> = partitions
            .iter()
            .map(|p| json!({ "topic": p.topic, "partition": p.partition, "committed": p.committed, "high_water_mark": p.high_water_mark, "lag": p.lag }))
            .collect();
        // A rebuild's own group (`name@rebuild`) belongs to its projector.
        let owner = name.strip_suffix("@rebuild").unwrap_or(name);
        let kind = host
            .config()
            .plugins
            .iter()
            .find(|p| p.role.group().is_some_and(|g| g.name == owner))
            .map(|p| p.kind());
        let rebuild = host
            .projector(owner)
            .map_err(internal)?
            .and_then(|s| s.rebuild)
            .filter(|r| r.is_running());
        let blocked: Vec<Value> = parked
            .iter()
            .filter(|d| d.blocking && d.group == *name)
            .map(|d| json!({ "topic": d.topic, "partition": d.partition, "offset": d.offset }))
            .collect();
        let running = host
            .groups()
            .iter()
            .find(|g| g.name() == name)
            .is_none_or(|g| g.is_running());
        let state = if rebuild.is_some() {
            "rebuilding"
        } else if !running {
            "paused"
        } else if !blocked.is_empty() {
            "blocked"
        } else {
            "running"
        };
        groups.push(json!({
            "group": name,
            "kind": kind,
            "state": state,
            "lag": total,
            "partitions": parts,
            "blocked": blocked,
            "rebuild": rebuild,
        }));
    }
    Ok(Json(json!({ "groups": groups })))
}

/// `GET /v1/admin/topics`: every topic with its partitions' high-water marks (events stored).
async fn topics(State(host): State<Arc<Host>>) -> Result<Json<Value>, ApiError> {
    let log = host.log();
    let mut topics = Vec::with_capacity(log.topics().len());
    for t in log.topics() {
        let marks = (0..t.partitions)
            .map(|p| log.high_water_mark(&t.name, p))
            .collect::<Result<Vec<u64>, _>>()
            .map_err(internal)?;
        let partitions: Vec<Value> = marks
            .iter()
            .enumerate()
            .map(|(p, hwm)| json!({ "partition": p, "high_water_mark": hwm }))
            .collect();
        topics.push(json!({
            "topic": t.name,
            "events": marks.iter().sum::<u64>(),
            "partitions": partitions,
        }));
    }
    Ok(Json(json!({ "topics": topics })))
}

/// The cluster as this host's replica sees it; 404 on the embedded log.
async fn cluster(State(host): State<Arc<Host>>) -> Result<Json<Value>, ApiError> {
    match host.cluster_status() {
        Some(s) => Ok(Json(serde_json::to_value(s).map_err(internal)?)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-clustered",
            "this host runs the embedded log (`[log] backend = \"redb\"`)",
        )),
    }
}

async fn dead_letters(State(host): State<Arc<Host>>) -> Result<Json<Value>, ApiError> {
    let letters = host.log().dead_letters(None).map_err(internal)?;
    Ok(Json(json!({ "dead_letters": letters })))
}

/// The export file of one dead letter (`factline export`), built off the async workers: it
/// reads up to [`crate::export::MAX_STATE_BYTES`] of state.
async fn export_dead_letter(
    State(host): State<Arc<Host>>,
    Path((group, topic, partition, offset)): Path<(String, String, u32, u64)>,
) -> Result<Response, ApiError> {
    use crate::export::ExportError;
    let key = DeadLetterKey {
        group,
        topic,
        partition,
        offset,
    };
    let built = tokio::task::spawn_blocking(move || host.export_dead_letter(&key))
        .await
        .map_err(internal)?;
    match built {
        Ok(bytes) => Ok((
            [(
                axum::http::header::CONTENT_TYPE,
                "application/vnd.factline.export+msgpack",
            )],
            bytes,
        )
            .into_response()),
        Err(e @ (ExportError::NoDeadLetter(_) | ExportError::UnknownGroup(_))) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "no-dead-letter", e))
        }
        Err(e @ ExportError::TooLarge { .. }) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "export-too-large",
            e,
        )),
        Err(e) => Err(internal(e)),
    }
}

async fn dead_letter_action(
    State(host): State<Arc<Host>>,
    Path((group, topic, partition, offset, action)): Path<(String, String, u32, u64, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = DeadLetterKey {
        group: group.clone(),
        topic,
        partition,
        offset,
    };
    let handle = host
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown-group",
                format!("no consumer group {group:?}"),
            )
        })?;
    let not_found = |e: crate::consumer::ConsumerError| {
        ApiError::new(StatusCode::NOT_FOUND, "no-dead-letter", e)
    };
    match action.as_str() {
        "retry" => {
            let outcome = handle.retry_dead_letter(key).await.map_err(not_found)?;
            Ok(Json(json!({ "retried": format!("{outcome:?}") })))
        }
        "discard" => {
            handle.discard_dead_letter(key).await.map_err(not_found)?;
            Ok(Json(json!({ "discarded": true })))
        }
        other => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-action",
            format!("{other:?}: use retry or discard"),
        )),
    }
}
