//! The order-placement saga end to end through the host with the real `.wasm` plugins: the
//! happy path, a failing payment, a failing shipping (compensations in reverse order), a step
//! that never answers (timeout, also across a restart), and a host restarted mid-saga.

use factline_host::SagaStatus;
use factline_host::query_read_model_prefix;

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
        let rows = query_read_model_prefix(shop.log(), "notification-log", "C1/", 10).unwrap();
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
    let failed = shop.wait_failed("ORD-2", "process_payment", "over-limit");
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
    let failed = shop.wait_failed("ORD-3", "schedule_shipping", "no-capacity");
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
    shop.wait_failed("ORD-4", "schedule_shipping", "timed out");
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

/// SIGKILL of the real `factline run` between (and during) steps, repeatedly: every saga ends
/// as it would without the kills, and each effect happens once.
#[test]
fn sigkill_between_steps_repeatedly_changes_nothing_and_duplicates_nothing() {
    use factline_host::{EventLog, LogOptions, TopicConfig};
    use factline_host::{ExpectedVersion, NewEvent};
    use rand::Rng;
    use serde_json::json;

    use crate::support::{RunningHost, factline_binary, msgpack};

    // Enough work that a kill soon after `ready` lands mid-saga (the engine is quick).
    const ORDERS: usize = 48;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("factline.toml");
    let text = crate::shop::config_text(&data, factline_tests::ORDER_PLACEMENT).replacen(
        '\n',
        "\n[http]\naddress = \"127.0.0.1:0\"\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    // Every customer C<i> with i % 4 == 3 has a limit below its order: that saga fails.
    let customer = |i: usize| format!("C{i}");
    {
        let topics = crate::shop::TOPICS.iter().map(|t| TopicConfig::new(*t, 2));
        let log = EventLog::open(&data, LogOptions::with_topics(topics)).unwrap();
        let append = |stream: &str, t: &str, payload: serde_json::Value| {
            log.append(
                stream,
                ExpectedVersion::Any,
                vec![NewEvent::new(t, msgpack(payload))],
            )
            .unwrap();
        };
        append(
            "inventory-main",
            "inventory.restocked",
            json!({"product_id": "P1", "quantity": 1000}),
        );
        for i in (0..ORDERS).filter(|i| i % 4 == 3) {
            append(
                &format!("payment-{}", customer(i)),
                "payment.limit-set",
                json!({"limit": 50}),
            );
        }
        for i in 0..ORDERS {
            let order = format!("ORD-K{i}");
            append(
                &format!("order-{order}"),
                "order.placed",
                json!({"order_id": order, "customer_id": customer(i), "total": 100, "currency": "JPY", "discount": 0,
                       "items": [{"product_id": "P1", "quantity": 1, "unit_price": 100}]}),
            );
        }
    }
    let bin = factline_binary();
    let mut rng = rand::rng();
    let open = || {
        let topics = crate::shop::TOPICS.iter().map(|t| TopicConfig::new(*t, 2));
        EventLog::open(&data, LogOptions::with_topics(topics)).unwrap()
    };
    // Instances in flight seen right after each kill: the kills must land mid-saga.
    let mut in_flight_at_kills = Vec::new();
    for _ in 0..8 {
        let mut host = RunningHost::spawn(&bin, &config, &[]);
        host.wait_ready();
        std::thread::sleep(std::time::Duration::from_millis(rng.random_range(0..30)));
        host.kill();
        let all = factline_host::saga_instances(&open(), Some("order-placement")).unwrap();
        let started = all.len();
        let in_flight = all.iter().filter(|i| i.status.in_flight()).count();
        in_flight_at_kills.push(in_flight + (ORDERS - started));
    }
    assert!(
        in_flight_at_kills.iter().any(|n| *n > 0),
        "no kill landed mid-saga: {in_flight_at_kills:?}"
    );
    let mut host = RunningHost::spawn(&bin, &config, &["--exit-when-idle"]);
    host.wait_ready();
    let status = host.wait(std::time::Duration::from_secs(60));
    assert!(status.success(), "{status}\n{}", host.stderr());

    // The saga log through the CLI (a stopped host's directory).
    let cli = |args: &[&str]| crate::support::factline_offline(&bin, "saga", &config, args);
    let listed = cli(&["list"]);
    assert!(
        listed.contains(&format!(
            "{ORDERS} instances: {} completed, {} failed",
            ORDERS - ORDERS / 4,
            ORDERS / 4
        )),
        "{listed}"
    );
    let shown = cli(&["show", "ORD-K3"]);
    assert!(shown.contains("failed step: process_payment"), "{shown}");
    assert!(
        shown.contains("reserve_inventory      compensated"),
        "{shown}"
    );
    let log = open();
    let stream = |s: &str| types(&log.read_stream(s, 1, 10_000).unwrap());
    let count = |all: &[String], t: &str| all.iter().filter(|x| *x == t).count();
    let failing = (0..ORDERS).filter(|i| i % 4 == 3).count();
    for i in 0..ORDERS {
        let order = format!("ORD-K{i}");
        let instance = crate::shop::wait_saga(&log, &order, |_| true);
        let payment = stream(&format!("payment-{}", customer(i)));
        if i % 4 == 3 {
            assert_eq!(instance.status, SagaStatus::Failed, "{instance:#?}");
            assert_eq!(instance.failed_step.as_deref(), Some("process_payment"));
            assert_eq!(payment, ["payment.limit-set"]);
        } else {
            assert_eq!(instance.status, SagaStatus::Completed, "{instance:#?}");
            assert_eq!(payment, ["payment.charged"]);
            assert_eq!(
                stream(&format!("notification-{order}")),
                ["notification.sent"]
            );
        }
    }
    let inventory = stream("inventory-main");
    assert_eq!(count(&inventory, "inventory.reserved"), ORDERS);
    assert_eq!(count(&inventory, "inventory.released"), failing);
    assert_eq!(
        count(&stream("shipping-main"), "shipping.scheduled"),
        ORDERS - failing
    );
}

/// An instance pinned to a version that a deploy replaced on disk finishes on that version
/// after a restart: the host loads it from the artifact cache (by content hash) instead of
/// leaving the instance needing attention.
#[test]
fn a_pinned_version_replaced_on_disk_is_restored_from_the_cache_after_a_restart() {
    use factline_host::DeployOrigin;
    let dir = tempfile::tempdir().unwrap();
    let saga = dir.path().join("order_placement.wasm");
    std::fs::copy(factline_tests::ORDER_PLACEMENT, &saga).unwrap();
    let mut shop = Shop::start_with(saga.to_str().unwrap());
    shop.restock("P1", 5);
    shop.send("shipping", "main", "pause", serde_json::json!({}))
        .unwrap();
    shop.place_order("ORD-5", "C5", &[("P1", 1, 700)]);
    let waiting = shop.wait_saga("ORD-5", |i| i.steps[2].sent_at.is_some());
    let v1 = waiting.plugin_version.clone();
    // v2 replaces v1 in the component file (an API deploy rewrites it).
    let v2 = std::fs::read(factline_tests::ORDER_PLACEMENT_V2).unwrap();
    let report = shop
        .rt
        .block_on(
            shop.host()
                .deploy("order-placement", v2.clone(), None, DeployOrigin::Api),
        )
        .unwrap();
    assert!(report.swapped, "{report:?}");
    assert_eq!(std::fs::read(&saga).unwrap(), v2);

    shop.restart();
    let runner = shop.host().saga("order-placement").unwrap();
    assert_eq!(
        runner.loaded_versions(),
        [report.current.content_hash.clone(), v1.clone()],
        "v2 current, v1 restored for ORD-5"
    );
    let done = shop.wait_failed("ORD-5", "schedule_shipping", "timed out");
    assert_eq!(done.plugin_version, v1, "finished on its own version");
    assert_eq!(
        types(&shop.events("payment-C5")),
        ["payment.charged", "payment.refunded"]
    );
}
