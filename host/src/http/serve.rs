//! Serving the router over HTTP/1.1 with hyper directly (rather than `axum::serve`) for one
//! reason: hyper answers headers over its own limits with a bare `431` and no body, before any
//! layer runs. Its limits are set here well above the API's ([`MAX_HEADER_BYTES`],
//! [`MAX_HEADERS`]), so [`header_budget`] refuses oversized headers in the API's JSON shape;
//! only a request past the hard limits ([`HARD_HEADER_BUFFER`]) still gets hyper's bare 431.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::error::ApiError;

/// Most header bytes (names + values) a request may carry.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most headers a request may carry.
pub const MAX_HEADERS: usize = 100;
/// hyper's read buffer limit: the head must fit in it to reach [`header_budget`].
pub const HARD_HEADER_BUFFER: usize = 1 << 20;
/// hyper's own header count limit, above [`MAX_HEADERS`] for the same reason.
const HARD_HEADERS: usize = 1000;
/// A client that does not finish its head in this time is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Layer: refuses requests whose headers exceed the API's budget, as JSON `431`.
pub(super) async fn header_budget(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            format!(
                "{} headers of {bytes} bytes; at most {MAX_HEADERS} headers of {MAX_HEADER_BYTES} bytes",
                headers.len()
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(HARD_HEADER_BUFFER)
        .max_headers(HARD_HEADERS);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
