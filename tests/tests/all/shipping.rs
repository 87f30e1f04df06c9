//! The shipping aggregate as `.wasm`: capacity rejects, a paused depot only queues, cancel
//! frees a slot.

use factline_host::{AggregateHandler, CommandError};
use serde_json::{Value, json};

use crate::support::{self, aggregate_handler, appended};

fn send(h: &AggregateHandler, t: &str, payload: Value) -> Result<Vec<String>, CommandError> {
    appended(support::send(h, "main", t, payload))
}

#[test]
fn schedules_within_capacity_queues_while_paused_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let h = aggregate_handler(dir.path(), "shipping", factline_tests::SHIPPING);
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
