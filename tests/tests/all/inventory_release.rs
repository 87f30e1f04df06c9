//! The inventory-release policy through the host: a cancelled order releases its reservation;
//! the command carries the event's correlation id and the event's id as causation, and the
//! policy's offset commits with the release.

use factline_host::saga::SagaStatus;
use serde_json::json;

use crate::shop::{Shop, eventually, types};

#[test]
fn a_cancelled_order_releases_its_inventory() {
    let shop = Shop::start();
    shop.restock("P1", 5);
    shop.place_order("ORD-7", "C7", &[("P1", 2, 100)]);
    shop.wait_saga("ORD-7", |i| i.status == SagaStatus::Completed);
    let cancelled = shop
        .send(
            "order",
            "ORD-7",
            "cancel",
            json!({"reason": "changed my mind"}),
        )
        .unwrap()
        .events
        .remove(0);
    let released = eventually(|| {
        shop.events("inventory-main")
            .into_iter()
            .find(|e| e.event_type == "inventory.released")
    });
    assert_eq!(released.correlation_id, cancelled.correlation_id);
    assert_eq!(released.causation_id, cancelled.event_id.to_string());
    let (_, partition) = shop.log().locate("order-ORD-7").unwrap();
    let offset = shop
        .log()
        .group_offset("inventory-release", "order", partition)
        .unwrap();
    assert_eq!(offset, Some(cancelled.offset + 1));
    // Cancelling an order that holds nothing releases nothing (and fails nothing).
    shop.send("order", "ORD-8", "create", json!({"customer_id": "C8"}))
        .unwrap();
    shop.send("order", "ORD-8", "cancel", json!({"reason": "x"}))
        .unwrap();
    let (_, p8) = shop.log().locate("order-ORD-8").unwrap();
    eventually(|| {
        let hwm = shop.log().high_water_mark("order", p8).unwrap();
        (shop
            .log()
            .group_offset("inventory-release", "order", p8)
            .unwrap()
            == Some(hwm))
        .then_some(())
    });
    let inventory = types(&shop.events("inventory-main"));
    assert_eq!(
        inventory
            .iter()
            .filter(|t| *t == "inventory.released")
            .count(),
        1
    );
    assert!(
        shop.log()
            .dead_letters(Some("inventory-release"))
            .unwrap()
            .is_empty()
    );
}
