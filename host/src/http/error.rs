//! The one error shape of the API, `{"error": <kind>, "message": ...}` as `application/json`,
//! and the layer that gives it to the framework's own refusals too (axum's extractor
//! rejections, unknown routes, wrong methods, body limits), which answer `text/plain` or an
//! empty body otherwise.

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An API error: status + JSON body.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) body: Value,
    /// Seconds for a `Retry-After` header (503: storage unavailable).
    pub(super) retry_after: Option<u32>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, kind: &str, message: impl std::fmt::Display) -> Self {
        ApiError {
            status,
            body: json!({ "error": kind, "message": message.to_string() }),
            retry_after: None,
        }
    }

    pub(super) fn with_body(status: StatusCode, body: Value) -> Self {
        ApiError {
            status,
            body,
            retry_after: None,
        }
    }

    /// The store cannot write now (disk full, I/O error): the log reopens it by itself, so the
    /// client should come back (`Retry-After`). Nothing of the request was written.
    pub(super) fn storage_unavailable(e: impl std::fmt::Display) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: json!({
                "error": "storage-unavailable",
                "code": "storage-unavailable",
                "message": e.to_string(),
            }),
            retry_after: Some(1),
        }
    }

    /// A clustered log cannot decide the command now (no owner, fenced, owner unreachable):
    /// nothing was acknowledged; retry with the same command id (`Retry-After`).
    pub(super) fn unavailable(kind: &str, e: impl std::fmt::Display) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: json!({ "error": kind, "code": kind, "message": e.to_string() }),
            retry_after: Some(1),
        }
    }

    /// Too many commands wait for the stream (429, `Retry-After`): nothing was decided.
    pub(super) fn busy(e: crate::host::Busy) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: json!({
                "error": "busy",
                "message": e.to_string(),
                "stream": e.stream,
                "limit": e.limit,
            }),
            retry_after: Some(1),
        }
    }

    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    #[cfg(test)]
    pub fn body(&self) -> &Value {
        &self.body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e)
}

/// The error kind the framework's own refusals get, by status.
pub(super) fn kind_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "malformed",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "unknown-route",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::UNPROCESSABLE_ENTITY => "malformed",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers-too-large",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

/// Longest framework message kept (axum's rejection texts are a line or two).
const MAX_FRAMEWORK_MESSAGE: usize = 4 * 1024;

/// `map_response` layer: an error response that is not JSON (one the framework made) becomes
/// the API's JSON shape, keeping its status and its text as the message. An extractor's
/// rejection for a malformed request (axum answers some with 422) is a 400 here: 422 is kept
/// for business rejections, which always carry a `code`.
pub(super) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_FRAMEWORK_MESSAGE).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let body = serde_json::to_vec(&json!({ "error": kind_of(status), "message": message }))
        .expect("a JSON value serializes");
    parts.status = status;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// Fallback of the router: an unknown route.
pub(super) async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown-route",
        format!("no route {}", uri.path()),
    )
}

/// A known route asked with a method it does not serve.
pub(super) async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("this route does not serve {method}"),
    )
}
