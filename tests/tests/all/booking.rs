//! The booking aggregate as `.wasm`: units bound the bookings; none left is rejected; booking
//! and cancelling happen once.

use factline_host::{AggregateHandler, CommandError};
use serde_json::{Value, json};

use crate::support::{self, aggregate_handler, appended};

fn send(h: &AggregateHandler, t: &str, payload: Value) -> Result<Vec<String>, CommandError> {
    appended(support::send(h, "H1", t, payload))
}

#[test]
fn books_while_units_are_left() {
    let dir = tempfile::tempdir().unwrap();
    let h = aggregate_handler(dir.path(), "hotel", factline_tests::BOOKING);
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
