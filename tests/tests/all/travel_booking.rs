//! The travel-booking saga through the host: flight → hotel → car → payment; a hotel with no
//! rooms fails the saga at reserve_hotel and cancels the flight.

use std::path::Path;

use factline_host::Config;
use factline_host::Host;
use factline_host::SagaStatus;
use factline_host::{ExpectedVersion, NewEvent};
use serde_json::{Value, json};

use crate::shop::{eventually, types};
use crate::support::msgpack;

fn config(dir: &Path) -> Config {
    let mut t = format!("data_dir = {:?}\n", dir.join("data").display().to_string());
    for topic in ["trip", "flight", "hotel", "car", "payment"] {
        t += &format!("[[topics]]\nname = {topic:?}\npartitions = 1\n");
    }
    for name in ["flight", "hotel", "car"] {
        t += &format!(
            "[[plugins]]\nname = {name:?}\nkind = \"aggregate\"\ncomponent = {:?}\n",
            factline_tests::BOOKING
        );
    }
    t += &format!(
        "[[plugins]]\nname = \"payment\"\nkind = \"aggregate\"\ncomponent = {:?}\n",
        factline_tests::PAYMENT
    );
    t += &format!(
        "[[plugins]]\nname = \"travel-booking\"\nkind = \"saga\"\ncomponent = {:?}\nsubscriptions = [\"trip\", \"flight\", \"hotel\", \"car\", \"payment\"]\n",
        factline_tests::TRAVEL_BOOKING
    );
    Config::parse(&t, Path::new("travel.toml"), dir).unwrap()
}

fn send(host: &Host, aggregate: &str, id: &str, t: &str, payload: Value) {
    crate::support::send(host.aggregate(aggregate).unwrap(), id, t, payload).unwrap();
}

fn request_trip(host: &Host, trip: &str, hotel: &str) {
    let payload = json!({"trip_id": trip, "customer_id": "C1", "flight": "F1", "hotel": hotel, "car": "A1", "amount": 900});
    host.log()
        .append(
            &format!("trip-{trip}"),
            ExpectedVersion::NoStream,
            vec![NewEvent::new("trip.requested", msgpack(payload))],
        )
        .unwrap();
}

#[test]
fn books_everything_or_cancels_the_flight_when_the_hotel_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let host = {
        let _guard = rt.enter();
        Host::start(config(dir.path())).unwrap()
    };
    send(&host, "flight", "F1", "add-units", json!({"units": 10}));
    send(&host, "hotel", "H1", "add-units", json!({"units": 10}));
    send(&host, "car", "A1", "add-units", json!({"units": 10}));
    let instance = |id: &str, done: &dyn Fn(&factline_host::SagaInstance) -> bool| {
        eventually(|| {
            factline_host::find_saga_instance(host.log(), Some("travel-booking"), id)
                .unwrap()
                .filter(|i| done(i))
        })
    };
    let events = |stream: &str| types(&host.log().read_stream(stream, 1, 100).unwrap());

    request_trip(&host, "T1", "H1");
    let ok = instance("T1", &|i| !i.status.in_flight());
    assert_eq!(ok.status, SagaStatus::Completed, "{ok:#?}");
    assert_eq!(events("payment-C1"), ["payment.charged"]);

    // H2 has no rooms.
    request_trip(&host, "T2", "H2");
    let failed = instance("T2", &|i| !i.status.in_flight());
    assert_eq!(failed.status, SagaStatus::Failed, "{failed:#?}");
    assert_eq!(failed.failed_step.as_deref(), Some("reserve_hotel"));
    assert!(
        failed
            .failure_reason
            .as_ref()
            .unwrap()
            .contains("none-left")
    );
    let statuses: Vec<String> = failed.steps.iter().map(|s| s.status.to_string()).collect();
    assert_eq!(statuses, ["compensated", "failed", "pending", "pending"]);
    assert_eq!(
        events("flight-F1"),
        [
            "booking.units-added",
            "booking.booked",
            "booking.booked",
            "booking.cancelled"
        ]
    );
    assert!(events("car-A1").iter().all(|t| t != "booking.cancelled"));
    assert_eq!(events("payment-C1"), ["payment.charged"]);
    rt.block_on(host.shutdown());
}
