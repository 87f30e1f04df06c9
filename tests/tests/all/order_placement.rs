//! The order-placement saga end to end through the host with the real `.wasm` plugins: the
//! happy path, a failing payment, a failing shipping (compensations in reverse order), a step
//! that never answers (timeout, also across a restart), and a host restarted mid-saga.

use factline_host::projector::query_prefix;
use factline_host::saga::SagaStatus;

use crate::shop::{Shop, expect_steps, is, types};

#[test]
fn happy_path_reserves_charges_schedules_confirms_and_completes() {
    let shop = Shop::start();
    shop.restock("P1", 5);
    shop.restock("P2", 5);
    let correlation = shop.place_order("ORD-1", "C1", &[("P1", 2, 500), ("P2", 1, 1000)]);
    let done = shop.wait_saga("ORD-1", is(SagaStatus::Completed));
    expect_steps(
        &done,
        &[
            ("reserve_inventory", "completed"),
            ("process_payment", "completed"),
            ("schedule_shipping", "completed"),
            ("send_confirmation", "completed"),
        ],
    );
    assert_eq!((done.failed_step, done.failure_reason), (None, None));
    assert!(
        done.steps
            .iter()
            .all(|s| s.sent_at.is_some() && s.updated_at.is_some())
    );

    let inventory = shop.events("inventory-main");
    assert_eq!(
        types(&inventory)[2..],
        [
            "inventory.item-reserved",
            "inventory.item-reserved",
            "inventory.reserved"
        ]
    );
    let payment = shop.events("payment-C1");
    assert_eq!(types(&payment), ["payment.charged"]);
    assert_eq!(types(&shop.events("shipping-main")), ["shipping.scheduled"]);
    assert_eq!(
        types(&shop.events("notification-ORD-1")),
        ["notification.sent"]
    );
    // Every command the saga sent carries the order's correlation id.
    for e in inventory[2..].iter().chain(&payment) {
        assert_eq!(e.correlation_id, correlation, "{e:?}");
    }
    // The confirmation is recorded in the notification log's read model.
    let rows = crate::shop::eventually(|| {
        let rows = query_prefix(shop.log(), "notification-log", "C1/", 10).unwrap();
        (!rows.is_empty()).then_some(rows)
    });
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row: serde_json::Value = rmp_serde::from_slice(&rows[0].1).unwrap();
    assert_eq!(row["subject"], "Order confirmed: ORD-1");
}

#[test]
fn failed_payment_releases_the_inventory_and_names_process_payment() {
    let shop = Shop::start();
    shop.restock("P1", 5);
    shop.send(
        "payment",
        "C2",
        "set-limit",
        serde_json::json!({"limit": 1000}),
    )
    .unwrap();
    shop.place_order("ORD-2", "C2", &[("P1", 3, 500)]);
    let failed = shop.wait_terminal("ORD-2");
    assert_eq!(failed.status, SagaStatus::Failed, "{failed:#?}");
    assert_eq!(failed.failed_step.as_deref(), Some("process_payment"));
    let reason = failed.failure_reason.clone().unwrap();
    assert!(reason.contains("over-limit"), "{reason}");
    expect_steps(
        &failed,
        &[
            ("reserve_inventory", "compensated"),
            ("process_payment", "failed"),
            ("schedule_shipping", "pending"),
            ("send_confirmation", "pending"),
        ],
    );
    assert_eq!(
        types(&shop.events("inventory-main"))[1..],
        [
            "inventory.item-reserved",
            "inventory.reserved",
            "inventory.released"
        ]
    );
    assert_eq!(types(&shop.events("payment-C2")), ["payment.limit-set"]);
    assert!(shop.events("shipping-main").is_empty());
}

#[test]
fn failed_shipping_refunds_then_releases() {
    let shop = Shop::start();
    shop.restock("P1", 5);
    shop.send(
        "shipping",
        "main",
        "set-capacity",
        serde_json::json!({"slots": 0}),
    )
    .unwrap();
    shop.place_order("ORD-3", "C3", &[("P1", 1, 700)]);
    let failed = shop.wait_terminal("ORD-3");
    assert_eq!(failed.status, SagaStatus::Failed, "{failed:#?}");
    assert_eq!(failed.failed_step.as_deref(), Some("schedule_shipping"));
    assert!(
        failed
            .failure_reason
            .as_ref()
            .unwrap()
            .contains("no-capacity")
    );
    expect_steps(
        &failed,
        &[
            ("reserve_inventory", "compensated"),
            ("process_payment", "compensated"),
            ("schedule_shipping", "failed"),
            ("send_confirmation", "pending"),
        ],
    );
    // Compensations in reverse order: the refund before the release, in the saga log and in
    // the log's clock.
    let compensated: Vec<&str> = failed
        .history
        .iter()
        .filter(|h| h.what.starts_with("compensated"))
        .map(|h| h.step.as_str())
        .collect();
    assert_eq!(compensated, ["process_payment", "reserve_inventory"]);
    let refund = shop.events("payment-C3").pop().unwrap();
    let release = shop.events("inventory-main").pop().unwrap();
    assert_eq!(
        (refund.event_type.as_str(), release.event_type.as_str()),
        ("payment.refunded", "inventory.released")
    );
    assert!(refund.occurred_at <= release.occurred_at);
}

#[test]
fn a_step_that_never_answers_times_out_and_compensates_even_across_a_restart() {
    let mut shop = Shop::start();
    shop.restock("P1", 5);
    // A paused depot only queues: schedule_shipping gets no answer.
    shop.send("shipping", "main", "pause", serde_json::json!({}))
        .unwrap();
    shop.place_order("ORD-4", "C4", &[("P1", 1, 700)]);
    let waiting = shop.wait_saga("ORD-4", |i| i.steps[2].sent_at.is_some());
    assert_eq!(waiting.status, SagaStatus::Running);
    // The timer is durable: it fires in the next host.
    shop.restart();
    let failed = shop.wait_terminal("ORD-4");
    assert_eq!(failed.status, SagaStatus::Failed, "{failed:#?}");
    assert_eq!(failed.failed_step.as_deref(), Some("schedule_shipping"));
    assert!(
        failed
            .failure_reason
            .as_ref()
            .unwrap()
            .contains("timed out")
    );
    assert_eq!(
        types(&shop.events("payment-C4")),
        ["payment.charged", "payment.refunded"]
    );
    assert_eq!(
        types(&shop.events("shipping-main")),
        ["shipping.paused", "shipping.queued"]
    );
    assert_eq!(
        shop.events("inventory-main").last().unwrap().event_type,
        "inventory.released"
    );
}

#[test]
fn restarts_while_orders_are_in_flight_apply_each_effect_once() {
    let mut shop = Shop::start();
    shop.restock("P1", 100);
    let orders: Vec<String> = (0..8).map(|i| format!("ORD-R{i}")).collect();
    for (i, order) in orders.iter().enumerate() {
        shop.place_order(order, &format!("C{i}"), &[("P1", 1, 100)]);
        if i % 3 == 2 {
            shop.restart();
        }
    }
    shop.restart();
    for order in &orders {
        let done = shop.wait_terminal(order);
        assert_eq!(done.status, SagaStatus::Completed, "{done:#?}");
    }
    let inventory = types(&shop.events("inventory-main"));
    let count = |all: &[String], t: &str| all.iter().filter(|x| *x == t).count();
    assert_eq!(count(&inventory, "inventory.reserved"), orders.len());
    assert_eq!(count(&inventory, "inventory.item-reserved"), orders.len());
    let shipping = types(&shop.events("shipping-main"));
    assert_eq!(count(&shipping, "shipping.scheduled"), orders.len());
    for (i, order) in orders.iter().enumerate() {
        assert_eq!(
            types(&shop.events(&format!("payment-C{i}"))),
            ["payment.charged"]
        );
        assert_eq!(
            types(&shop.events(&format!("notification-{order}"))),
            ["notification.sent"]
        );
    }
}
