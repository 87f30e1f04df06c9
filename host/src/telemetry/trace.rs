//! OpenTelemetry spans over OTLP/HTTP (protobuf), when configured (`[telemetry] otlp_endpoint`
//! or `OTEL_EXPORTER_OTLP_ENDPOINT`). Off by default: no layer, no exporter thread, and the
//! causation bookkeeping below returns at one relaxed load.
//!
//! A command's events are consumed later, on another task, by a batch that holds events of
//! many commands; the causation chain crosses that hop by parent: the span that appended an
//! event (a `command` span) is remembered by the event's id, and a batch span takes the span
//! of its first event as parent and links the others' (`adopt`). Bounded: the newest
//! [`REMEMBERED`] events; older ones (or ones from before a restart) start new traces.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::event::Event;

/// Events whose appending span is remembered for the batches that consume them.
const REMEMBERED: usize = 65_536;
/// Most bytes of a collector's answer the exporter reads.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

static ENABLED: AtomicBool = AtomicBool::new(false);
static APPENDED_BY: Mutex<Option<lru::LruCache<Uuid, SpanContext>>> = Mutex::new(None);

/// Why spans could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("the OTLP endpoint {endpoint:?} must be an http:// URL (no TLS client is built in)")]
    Scheme { endpoint: String },
    #[error("building the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The running span exporter; dropping it flushes what is queued and stops it.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Drop for Tracing {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown() {
            eprintln!("factline: flushing spans to the OTLP collector: {e}");
        }
    }
}

/// The OTLP endpoint in effect: `configured` (a collector's base URL; `/v1/traces` is
/// appended), else the standard environment variables (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
/// as is, `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces`). `None`: spans stay in-process.
pub fn otlp_endpoint(configured: Option<&str>) -> Option<String> {
    let base = |url: &str| format!("{}/v1/traces", url.trim_end_matches('/'));
    let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    configured
        .map(base)
        .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT").map(|v| base(&v)))
}

/// A `tracing` layer exporting spans to `endpoint` (the full `/v1/traces` URL) in batches, and
/// the handle that keeps the exporter running.
pub fn otlp_layer<S>(
    endpoint: &str,
) -> Result<
    (
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
        Tracing,
    ),
    TraceError,
>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    if !endpoint.starts_with("http://") {
        return Err(TraceError::Scheme {
            endpoint: endpoint.to_owned(),
        });
    }
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(UreqClient(agent))
        .with_endpoint(endpoint)
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("factline")
                .build(),
        )
        .build();
    let tracer = provider.tracer("factline");
    *APPENDED_BY.lock().unwrap_or_else(|p| p.into_inner()) = Some(lru::LruCache::new(
        std::num::NonZeroUsize::new(REMEMBERED).expect("not zero"),
    ));
    ENABLED.store(true, Ordering::Relaxed);
    Ok((
        tracing_opentelemetry::layer().with_tracer(tracer),
        Tracing { provider },
    ))
}

/// Remembers the current span as the one that appended events `ids`.
pub(crate) fn appended(ids: impl IntoIterator<Item = Uuid>) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let cx = tracing::Span::current().context();
    let span = cx.span().span_context().clone();
    if !span.is_valid() {
        return;
    }
    if let Some(map) = APPENDED_BY
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
    {
        for id in ids {
            map.put(id, span.clone());
        }
    }
}

/// Parents `span` on the span that appended the first of `events` (when remembered) and
/// links it to the other events' appending spans.
pub(crate) fn adopt(span: &tracing::Span, events: &[Event]) {
    if !ENABLED.load(Ordering::Relaxed) || span.is_none() {
        return;
    }
    let mut seen: Vec<SpanContext> = Vec::new();
    {
        let mut guard = APPENDED_BY.lock().unwrap_or_else(|p| p.into_inner());
        let Some(map) = guard.as_mut() else { return };
        for e in events {
            if let Some(sc) = map.get(&e.event_id)
                && !seen.contains(sc)
            {
                seen.push(sc.clone());
            }
        }
    }
    let mut causes = seen.into_iter();
    if let Some(parent) = causes.next() {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
    for other in causes {
        span.add_link(other);
    }
}

/// The exporter's HTTP client: the ureq agent the CLI uses already. The batch processor calls
/// it on its own thread (blocking there is expected), never on the async runtime.
#[derive(Debug)]
struct UreqClient(ureq::Agent);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for UreqClient {
    async fn send_bytes(
        &self,
        request: ureq::http::Request<bytes::Bytes>,
    ) -> Result<ureq::http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let mut answer = self
            .0
            .run(ureq::http::Request::from_parts(parts, body.to_vec()))?;
        let status = answer.status();
        let body = answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()?;
        Ok(ureq::http::Response::builder()
            .status(status)
            .body(bytes::Bytes::from(body))?)
    }
}
