//! The inventory-release policy through the host: a cancelled order releases its reservation;
//! the command carries the event's correlation id and the event's id as causation, and the
//! policy's offset commits with the release.

use factline_host::SagaStatus;
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

/// A new version of a running policy (and of a saga) is deployed through the host like any
/// plugin: swapped between batches, listed, and the policy keeps working on the new version.
#[test]
fn policies_and_sagas_are_hot_deployed() {
    use factline_host::DeployOrigin;
    let shop = Shop::start();
    shop.restock("P1", 5);
    // Same code, another content hash: a custom section appended (`name` "v", payload "2").
    let mut policy = std::fs::read(factline_tests::INVENTORY_RELEASE).unwrap();
    policy.extend_from_slice(&[0, 3, 1, b'v', b'2']);
    let host = shop.host();
    // `File`: as the watcher deploys, so the build's own component file is not rewritten.
    let report = shop
        .rt
        .block_on(host.deploy("inventory-release", policy, None, DeployOrigin::File))
        .unwrap();
    assert!(report.swapped, "{report:?}");
    let running = host
        .plugins()
        .into_iter()
        .find(|p| p.name == "inventory-release")
        .unwrap();
    assert_eq!(running.version, report.current);

    let saga = std::fs::read(factline_tests::ORDER_PLACEMENT_V2).unwrap();
    let report = shop
        .rt
        .block_on(host.deploy("order-placement", saga, None, DeployOrigin::File))
        .unwrap();
    assert!(report.swapped, "{report:?}");
    assert!(
        host.saga("order-placement")
            .unwrap()
            .loaded_versions()
            .contains(&report.current.content_hash),
        "the runner has the new version"
    );

    // The new policy version releases a cancelled order's stock, once.
    shop.place_order("ORD-9", "C9", &[("P1", 2, 100)]);
    shop.wait_saga("ORD-9", |i| i.status == SagaStatus::Completed);
    shop.send("order", "ORD-9", "cancel", json!({"reason": "x"}))
        .unwrap();
    eventually(|| {
        shop.events("inventory-main")
            .into_iter()
            .find(|e| e.event_type == "inventory.released")
    });
}
