//! The payment aggregate as `.wasm`: a charge over the account's configured limit is rejected;
//! charges and refunds happen once per order.

use factline_host::aggregate::{AggregateHandler, AggregateOptions, CommandError, CommandRequest};
use factline_host::plugin::{Limits, PluginKind};
use serde_json::{Value, json};

use crate::support::{load, log, msgpack, runtime};

fn send(h: &AggregateHandler, t: &str, payload: Value) -> Result<Vec<String>, CommandError> {
    Ok(h.handle(CommandRequest {
        id: "C1".into(),
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
fn charges_within_the_limit_and_refunds_once() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let plugin = load(
        &rt,
        "payment",
        PluginKind::Aggregate,
        factline_tests::PAYMENT,
        Limits::default(),
    );
    let h = AggregateHandler::new(
        log(dir.path(), &[("payment", 1)]),
        plugin,
        AggregateOptions::new("payment"),
    )
    .unwrap();
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
