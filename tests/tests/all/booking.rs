//! The booking aggregate as `.wasm`: units bound the bookings; none left is rejected; booking
//! and cancelling happen once.

use factline_host::aggregate::{AggregateHandler, AggregateOptions, CommandError, CommandRequest};
use factline_host::plugin::{Limits, PluginKind};
use serde_json::{Value, json};

use crate::support::{load, log, msgpack, runtime};

fn send(h: &AggregateHandler, t: &str, payload: Value) -> Result<Vec<String>, CommandError> {
    Ok(h.handle(CommandRequest {
        id: "H1".into(),
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
fn books_while_units_are_left() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let plugin = load(
        &rt,
        "hotel",
        PluginKind::Aggregate,
        factline_tests::BOOKING,
        Limits::default(),
    );
    let h = AggregateHandler::new(
        log(dir.path(), &[("hotel", 1)]),
        plugin,
        AggregateOptions::new("hotel"),
    )
    .unwrap();
    let none = send(&h, "book", json!({"booking_id": "T1/hotel"})).unwrap_err();
    assert!(
        matches!(&none, CommandError::Rejected(r) if r.code == "none-left"),
        "{none}"
    );
    send(&h, "add-units", json!({"units": 1})).unwrap();
    assert_eq!(
        send(&h, "book", json!({"booking_id": "T1/hotel"})).unwrap(),
        ["booking.booked"]
    );
    assert!(
        send(&h, "book", json!({"booking_id": "T1/hotel"}))
            .unwrap()
            .is_empty()
    );
    assert!(send(&h, "book", json!({"booking_id": "T2/hotel"})).is_err());
    assert_eq!(
        send(&h, "cancel", json!({"booking_id": "T1/hotel"})).unwrap(),
        ["booking.cancelled"]
    );
    assert!(
        send(&h, "cancel", json!({"booking_id": "T1/hotel"}))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        send(&h, "book", json!({"booking_id": "T2/hotel"})).unwrap(),
        ["booking.booked"]
    );
}
