//! The trip aggregate as `.wasm`: a trip is requested once, with the id of its stream; the
//! travel-booking saga it starts runs in `travel_booking.rs` and `worked_example.rs`.

use serde_json::json;

use crate::support::{aggregate_handler, appended, send};

#[test]
fn a_trip_is_requested_once() {
    let dir = tempfile::tempdir().unwrap();
    let trips = aggregate_handler(dir.path(), "trip", factline_tests::TRIP);
    let request =
        json!({"customer_id": "C1", "flight": "F1", "hotel": "H1", "car": "A1", "amount": 900});
    let first = send(&trips, "T1", "request", request.clone()).unwrap();
    assert_eq!(first.events.len(), 1);
    let payload: serde_json::Value = rmp_serde::from_slice(&first.events[0].payload).unwrap();
    assert_eq!(payload["trip_id"], "T1");
    assert_eq!(payload["amount"], 900);
    match send(&trips, "T1", "request", request) {
        Err(factline_host::CommandError::Rejected(r)) => assert_eq!(r.code, "already-requested"),
        other => panic!("{other:?}"),
    }
    let free =
        json!({"customer_id": "C1", "flight": "F1", "hotel": "H1", "car": "A1", "amount": 0});
    assert!(matches!(
        appended(send(&trips, "T2", "request", free)),
        Err(factline_host::CommandError::Rejected(r)) if r.code == "no-amount"
    ));
}
