//! OpenTelemetry spans from the real binary: `factline run` with `[telemetry] otlp_endpoint`
//! pointing at a tiny OTLP/HTTP receiver (axum, in this test) that decodes the protobuf
//! exports. One order through the worked example gives the span tree
//! HTTP request → command → the saga's batch → its step command → the saga's batch of the
//! answer → the next step command, and a cancellation gives HTTP request → command → the
//! policy's batch → its command; causation and correlation ids ride as attributes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

use crate::support::{RunningHost, factline_binary};
use crate::worked_example::{Client, config};

/// A local OTLP/HTTP collector: every request body posted to `/v1/traces`.
fn receiver(rt: &tokio::runtime::Runtime) -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let sink = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body.to_vec());
                // An empty ExportTraceServiceResponse: everything accepted.
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, bodies)
}

fn attr(span: &Span, key: &str) -> Option<String> {
    let v = span.attributes.iter().find(|a| a.key == key)?;
    match v.value.as_ref()?.value.as_ref()? {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

struct Spans {
    by_id: HashMap<Vec<u8>, Span>,
}

impl Spans {
    /// Spans caused by `parent`: its children, and batches linking it (a batch's parent is its
    /// first event's command; the other events' commands are links).
    fn children<'a>(&'a self, parent: &'a Span) -> impl Iterator<Item = &'a Span> + 'a {
        self.by_id.values().filter(move |s| {
            s.parent_span_id == parent.span_id
                || s.links.iter().any(|l| l.span_id == parent.span_id)
        })
    }

    /// The first span `parent` caused named `name` whose attribute `key` is `value`.
    fn child<'a>(&'a self, parent: &'a Span, name: &str, key: &str, value: &str) -> &'a Span {
        self.children(parent)
            .find(|s| s.name == name && attr(s, key).as_deref() == Some(value))
            .unwrap_or_else(|| {
                panic!(
                    "no {name} span with {key}={value} under {} {:?}:\n{}",
                    parent.name,
                    parent.span_id,
                    self.describe()
                )
            })
    }

    fn describe(&self) -> String {
        let mut lines: Vec<String> = self
            .by_id
            .values()
            .map(|s| {
                format!(
                    "{} {:?} parent {:?} group={:?} aggregate={:?} type={:?}",
                    s.name,
                    &s.span_id,
                    &s.parent_span_id,
                    attr(s, "group"),
                    attr(s, "aggregate"),
                    attr(s, "command_type")
                )
            })
            .collect();
        lines.sort();
        lines.join("\n")
    }
}

#[test]
fn one_commands_span_tree_runs_through_the_saga_and_the_policy_over_otlp() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (collector, bodies) = receiver(&rt);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("factline.toml");
    let text = format!(
        "{}\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:{collector}\"\n",
        config(dir.path())
    );
    std::fs::write(&file, text).unwrap();
    let mut host = RunningHost::spawn(&factline_binary(), &file, &[]);
    host.wait_ready();
    let c = Client { port: host.port() };
    c.open_shop();
    c.place("ORD-1", "CUST-9", &[("SKU-1", 2, 100)]);
    assert_eq!(
        c.finished("order-placement", "ORD-1")["status"],
        "completed"
    );
    c.ok(
        "order",
        "ORD-1",
        "cancel",
        json!({"reason": "changed mind"}),
    );
    c.eventually("/v1/streams/inventory-main", |s| {
        s["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event_type"] == "inventory.released")
    });
    // A clean stop flushes the exporter's queue.
    assert!(host.terminate().success(), "{}", host.stderr());

    let mut by_id = HashMap::new();
    for body in bodies.lock().unwrap().iter() {
        let export = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        for s in export
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
        {
            by_id.insert(s.span_id.clone(), s);
        }
    }
    let spans = Spans { by_id };
    let all = spans.describe();
    let command_of = |ty: &str| {
        spans
            .by_id
            .values()
            .find(|s| {
                s.name == "command"
                    && attr(s, "aggregate").as_deref() == Some("order")
                    && attr(s, "command_type").as_deref() == Some(ty)
            })
            .unwrap_or_else(|| panic!("no {ty} command span:\n{all}"))
    };

    // The saga: HTTP request → command → batch → step command → batch → step command.
    let confirm = command_of("confirm");
    let request = spans
        .by_id
        .get(&confirm.parent_span_id)
        .unwrap_or_else(|| panic!("the confirm command has no parent:\n{all}"));
    assert_eq!(request.name, "http.request");
    assert_eq!(attr(request, "aggregate").as_deref(), Some("order"));
    assert_eq!(attr(request, "id").as_deref(), Some("ORD-1"));
    let saga = spans.child(confirm, "batch", "group", "order-placement");
    let reserve = spans.child(saga, "command", "aggregate", "inventory");
    let answer = spans.child(reserve, "batch", "group", "order-placement");
    let pay = spans.child(answer, "command", "aggregate", "payment");
    // A parent's children are in its trace.
    let chain = [request, confirm, saga, reserve, answer, pay];
    for pair in chain.windows(2) {
        if pair[1].parent_span_id == pair[0].span_id {
            assert_eq!(pair[1].trace_id, pair[0].trace_id, "{all}");
        }
    }
    assert_eq!(reserve.trace_id, saga.trace_id, "{all}");
    assert_eq!(pay.trace_id, answer.trace_id, "{all}");
    // Ids as attributes: the saga's commands carry the trigger's correlation id (a batch
    // carries its first event's, which is another command's when the trigger came linked).
    let correlation = attr(confirm, "correlation_id").unwrap();
    for s in [reserve, pay] {
        assert_eq!(
            attr(s, "correlation_id"),
            Some(correlation.clone()),
            "{all}"
        );
    }
    assert!(attr(reserve, "causation_id").is_some() && attr(reserve, "command_id").is_some());

    // The policy: HTTP request → cancel command → policy batch → its command.
    let cancel = command_of("cancel");
    assert_eq!(spans.by_id[&cancel.parent_span_id].name, "http.request");
    let policy = spans.child(cancel, "batch", "group", "inventory-release");
    let release = spans.child(policy, "command", "aggregate", "inventory");
    assert_eq!(attr(release, "command_type").as_deref(), Some("release"));
    assert_eq!(release.trace_id, policy.trace_id);
    assert_eq!(
        attr(release, "correlation_id"),
        attr(cancel, "correlation_id")
    );
}
