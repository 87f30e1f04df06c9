//! A command whose stream another host owns (clustered log) is forwarded to that host's API and
//! its answer relayed as is; the client never needs to know which host owns what.

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;

use super::ApiError;
use crate::cluster::{ForwardAnswer, Route};
use crate::host::Host;

use crate::cluster::FORWARDED_BY;
/// Most bytes of an owner's answer relayed (a command's answer is its events: bounded by the
/// aggregate's output budget, far below this).
const MAX_ANSWER_BYTES: u64 = 64 << 20;

/// What `send_command` does with a command before deciding it here.
pub(super) enum Decision {
    Local,
    Answer(Response),
}

/// Forwards the command to its owner, or refuses it when no host owns its partition now.
pub(super) async fn route(
    host: &Host,
    route: Route,
    path: String,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Decision, ApiError> {
    match route {
        Route::Local => Ok(Decision::Local),
        Route::NoOwner { partition } => Err(ApiError::unavailable(
            "no-owner",
            format!(
                "no host owns partition {partition} now (a failover is under way); retry with the same command id"
            ),
        )),
        Route::Forward { host_id: owner, .. } if headers.contains_key(FORWARDED_BY) => {
            Err(ApiError::unavailable(
                "not-owner",
                format!(
                    "this host does not own the stream's partition ({owner} does, as this host's replica says); retry with the same command id"
                ),
            ))
        }
        Route::Forward {
            host_id: owner,
            url,
        } => {
            crate::telemetry::cluster_forwarded();
            let if_match = headers.get(header::IF_MATCH).cloned();
            let from = match &host.config().log {
                crate::config::LogBackend::Kafka(k) => k.host_id.clone(),
                crate::config::LogBackend::Redb => String::new(),
            };
            let target = format!("{url}{path}");
            let sent = tokio::task::spawn_blocking(move || send(&target, &from, if_match, &body))
                .await
                .map_err(|e| ApiError::unavailable("owner-unreachable", e))?;
            sent.map(Decision::Answer).map_err(|e| {
                ApiError::unavailable(
                    "owner-unreachable",
                    format!("forwarding to {owner} ({url}): {e}; retry with the same command id"),
                )
            })
        }
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            // The owner's answer, whatever its status, is the client's answer.
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    })
}

fn send(
    url: &str,
    from: &str,
    if_match: Option<HeaderValue>,
    body: &[u8],
) -> Result<Response, ureq::Error> {
    let mut request = agent()
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(FORWARDED_BY, from);
    if let Some(v) = if_match {
        request = request.header(header::IF_MATCH, v);
    }
    let mut answer = request.send(body)?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let kept: Vec<(header::HeaderName, HeaderValue)> =
        [header::CONTENT_TYPE, header::ETAG, header::RETRY_AFTER]
            .into_iter()
            .filter_map(|h| Some((h.clone(), answer.headers().get(&h)?.clone())))
            .collect();
    let bytes = answer
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (k, v) in kept {
        response.headers_mut().insert(k, v);
    }
    Ok(response)
}

/// `POST /v1/cluster/commands/{aggregate}`: a policy's or saga's command another host forwarded
/// here because this host owns its stream (`cluster::ClusterCommands`). The body is the
/// MessagePack of the command request; the answer, always 200 once the request is understood,
/// the MessagePack of its [`ForwardAnswer`]. Never forwarded again: a host that does not own
/// the stream answers `Unavailable` and the sender retries.
pub(super) async fn cluster_command(
    axum::extract::State(host): axum::extract::State<std::sync::Arc<Host>>,
    axum::extract::Path(aggregate): axum::extract::Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: crate::aggregate::CommandRequest = rmp_serde::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("a forwarded command is the MessagePack of a command request: {e}"),
        )
    })?;
    let answer = match host.route(&aggregate, &request.id) {
        None if host.cluster_status().is_none() => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not-clustered",
                "this host runs the embedded log",
            ));
        }
        Some(Route::Local) => match host.command(&aggregate, request).await {
            Ok(o) => ForwardAnswer::of(Ok(o)),
            Err(crate::host::SendError::Command(e)) => ForwardAnswer::of(Err(e)),
            Err(e) => ForwardAnswer::Unavailable(e.to_string()),
        },
        Some(Route::Forward { host_id, .. }) => ForwardAnswer::Unavailable(format!(
            "this host does not own the stream's partition ({host_id} does, as this host's replica says)"
        )),
        Some(Route::NoOwner { partition }) => ForwardAnswer::Unavailable(format!(
            "no host owns partition {partition} now (a failover is under way)"
        )),
        None => ForwardAnswer::Unavailable(format!("no aggregate named {aggregate:?}")),
    };
    let mut response = Response::new(Body::from(answer.encode()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/msgpack"),
    );
    Ok(response)
}
