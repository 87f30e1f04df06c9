//! The payment aggregate as `.wasm`: a charge over the account's configured limit is rejected;
//! charges and refunds happen once per order.

use factline_host::{AggregateHandler, CommandError};
use serde_json::{Value, json};

use crate::support::{self, aggregate_handler, appended};

fn send(h: &AggregateHandler, t: &str, payload: Value) -> Result<Vec<String>, CommandError> {
    appended(support::send(h, "C1", t, payload))
}

#[test]
fn charges_within_the_limit_and_refunds_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = aggregate_handler(dir.path(), "payment", factline_tests::PAYMENT);
    send(&h, "set-limit", json!({"limit": 1000})).unwrap();
    let over = send(&h, "charge", json!({"order_id": "O1", "amount": 1001})).unwrap_err();
    assert!(
        matches!(&over, CommandError::Rejected(r) if r.code == "over-limit"),
        "{over}"
    );
    assert_eq!(
        send(&h, "charge", json!({"order_id": "O1", "amount": 1000})).unwrap(),
        ["payment.charged"]
    );
    assert!(
        send(&h, "charge", json!({"order_id": "O1", "amount": 1000}))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        send(&h, "refund", json!({"order_id": "O1"})).unwrap(),
        ["payment.refunded"]
    );
    assert!(
        send(&h, "refund", json!({"order_id": "O1"}))
            .unwrap()
            .is_empty()
    );
    assert!(
        send(&h, "refund", json!({"order_id": "O2"}))
            .unwrap()
            .is_empty()
    );
}
