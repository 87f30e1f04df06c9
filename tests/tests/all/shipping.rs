//! The shipping aggregate as `.wasm`: capacity rejects, a paused depot only queues, cancel
//! frees a slot.

use factline_host::aggregate::{AggregateHandler, AggregateOptions, CommandError, CommandRequest};
use factline_host::plugin::{Limits, PluginKind};
use serde_json::{Value, json};

use crate::support::{load, log, msgpack, runtime};

fn send(h: &AggregateHandler, t: &str, payload: Value) -> Result<Vec<String>, CommandError> {
    Ok(h.handle(CommandRequest {
        id: "main".into(),
        command_type: t.into(),
        payload: msgpack(payload),
        ..Default::default()
    })?
    .events
    .into_iter()
    .map(|e| e.event_type)
    .collect())
}

#[test]
fn schedules_within_capacity_queues_while_paused_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let plugin = load(
        &rt,
        "shipping",
        PluginKind::Aggregate,
        factline_tests::SHIPPING,
        Limits::default(),
    );
    let h = AggregateHandler::new(
        log(dir.path(), &[("shipping", 1)]),
        plugin,
        AggregateOptions::new("shipping"),
    )
    .unwrap();
    send(&h, "set-capacity", json!({"slots": 1})).unwrap();
    assert_eq!(
        send(&h, "schedule", json!({"order_id": "O1"})).unwrap(),
        ["shipping.scheduled"]
    );
    let full = send(&h, "schedule", json!({"order_id": "O2"})).unwrap_err();
    assert!(
        matches!(&full, CommandError::Rejected(r) if r.code == "no-capacity"),
        "{full}"
    );
    assert_eq!(
        send(&h, "cancel", json!({"order_id": "O1"})).unwrap(),
        ["shipping.cancelled"]
    );
    assert!(
        send(&h, "cancel", json!({"order_id": "O1"}))
            .unwrap()
            .is_empty()
    );
    send(&h, "pause", json!({})).unwrap();
    assert_eq!(
        send(&h, "schedule", json!({"order_id": "O2"})).unwrap(),
        ["shipping.queued"]
    );
}
