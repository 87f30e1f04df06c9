//! The order-summary projector: its scenarios natively and as `.wasm`, then the full host path
//! (log → projector → read model + offset in one commit), resumed after a restart.

use factline_host::ScenarioRunner;
use factline_host::{AggregateHandler, AggregateOptions, CommandRequest};
use factline_host::{Limits, PluginKind};
use factline_host::{query_read_model, query_read_model_prefix};
use serde_json::json;

use crate::support::{load, log, msgpack, runtime};

#[test]
fn scenarios_pass_natively_and_as_wasm() {
    let scenarios = order_summary::scenarios::all();
    assert!(!scenarios.is_empty());
    let runner = ScenarioRunner::new().unwrap();
    for s in &scenarios {
        crate::support::native_projector::<order_summary::OrderSummary>(s);
        runner
            .run(factline_tests::ORDER_SUMMARY.as_ref(), s)
            .unwrap_or_else(|e| panic!("wasm: {e}"));
    }
}

#[test]
fn projects_through_the_host_and_resumes_without_double_counting() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let order = load(
        &rt,
        "order",
        PluginKind::Aggregate,
        factline_tests::ORDER,
        Limits::default(),
    );
    let summary = load(
        &rt,
        "order-summary",
        PluginKind::Projector,
        factline_tests::ORDER_SUMMARY,
        Limits::default(),
    );
    let send = |h: &AggregateHandler, id: &str, t: &str, v: serde_json::Value| {
        h.handle(CommandRequest {
            id: id.into(),
            command_type: t.into(),
            payload: msgpack(v),
            ..Default::default()
        })
        .unwrap();
    };
    {
        let log = log(dir.path(), &[("order", 4)]);
        let h = AggregateHandler::new(log.clone(), order.clone(), AggregateOptions::new("order"))
            .unwrap();
        for i in 0..20 {
            let id = format!("ORD-{i}");
            send(&h, &id, "create", json!({"customer_id": "C"}));
            send(
                &h,
                &id,
                "add-item",
                json!({"product_id": "P", "quantity": 2, "unit_price": 500}),
            );
        }
        let mut p = crate::support::projector_group(&log, "order-summary", &["order"], 7, &summary);
        assert_eq!(p.run_until_idle().unwrap(), 40);
        send(&h, "ORD-3", "confirm", json!({}));
    }
    // "Restart": a new log handle and projector continue from the committed offsets.
    let log = log(dir.path(), &[("order", 4)]);
    let mut p = crate::support::projector_group(&log, "order-summary", &["order"], 100, &summary);
    assert_eq!(
        p.run_until_idle().unwrap(),
        1,
        "only the new event is processed"
    );
    let row = factline_guest::codec::msgpack_to_json(
        &query_read_model(&log, "order-summary", "ORD-3")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&row["status"], &row["item_count"], &row["total"]),
        (&json!("confirmed"), &json!(2), &json!(1000))
    );
    let rows = query_read_model_prefix(&log, "order-summary", "ORD-1", 100).unwrap();
    assert_eq!(rows.len(), 11, "ORD-1 and ORD-10..19");
    let offsets: u64 = (0..4)
        .map(|p| {
            log.group_offset("order-summary", "order", p)
                .unwrap()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(offsets, 41);
}
