//! The summary's behaviour as scenarios: run natively by this crate's tests and, through [`all`],
//! against the built `order_summary.wasm` by the workspace's end-to-end tests.
//!
//! Given events occur one second apart from [`BASE_TIME_MS`] (see [`default_occurred_at`]).

use factline_guest::scenario::{BASE_TIME_MS, default_occurred_at as at};
use factline_guest::testing::{ProjectorTest, Value, json};

use crate::{Event, OrderSummary};

factline_guest::scenarios!(
    a_created_order_gets_a_row,
    items_add_to_count_and_total,
    placing_confirms_the_order,
    shipping_marks_it_shipped,
    cancelling_marks_it_cancelled,
    one_row_per_order,
    a_charge_marks_it_paid,
    a_refund_marks_it_refunded,
    shipping_a_paid_order_marks_it_shipped,
    a_payment_before_its_order_waits_for_the_row,
    a_payment_of_no_order_stays_pending,
);

/// The scenario file that every implementation of this plugin (Rust, Python, JavaScript) passes.
pub const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios.json");

#[cfg(test)]
#[test]
fn scenario_file_holds_these_scenarios() {
    factline_guest::testing::check_scenario_file(
        FILE.as_ref(),
        "The order-summary projector (DESIGN §6): one row per order with status, item count, total and timestamps. Generated from plugins/order-summary/src/scenarios.rs.",
        all(),
    );
}

const ORD_1: &str = "order-ORD-1";
const ORD_2: &str = "order-ORD-2";
/// The payment account of ORD-1's customer.
const ACCOUNT: &str = "payment-C-ORD-1";

fn created(customer_id: &str) -> Event {
    Event::Created {
        customer_id: customer_id.into(),
    }
}

fn item(quantity: u32, unit_price: u64) -> Event {
    Event::ItemAdded {
        quantity,
        unit_price,
    }
}

fn row(
    order_id: &str,
    status: &str,
    item_count: u64,
    total: u64,
    created_at: u64,
    updated_at: u64,
) -> Value {
    json!({
        "order_id": order_id, "customer_id": format!("C-{order_id}"), "status": status,
        "item_count": item_count, "total": total, "cancel_reason": null,
        "created_at": created_at, "updated_at": updated_at,
    })
}

fn charged(order_id: &str) -> Event {
    Event::Charged {
        order_id: order_id.into(),
    }
}

fn refunded(order_id: &str) -> Event {
    Event::Refunded {
        order_id: order_id.into(),
    }
}

fn placed_order() -> impl Iterator<Item = (&'static str, Event)> {
    two_items()
        .into_iter()
        .chain([(ORD_1, Event::Placed { total: 4000 })])
}

fn two_items() -> [(&'static str, Event); 3] {
    [
        (ORD_1, created("C-ORD-1")),
        (ORD_1, item(2, 1000)),
        (ORD_1, item(1, 2000)),
    ]
}

pub fn a_created_order_gets_a_row() -> ProjectorTest<OrderSummary> {
    ProjectorTest::given([(ORD_1, created("C-ORD-1"))])
        .named("a created order gets a row")
        .then_read_model(
            "ORD-1",
            row("ORD-1", "created", 0, 0, BASE_TIME_MS, BASE_TIME_MS),
        )
}

pub fn items_add_to_count_and_total() -> ProjectorTest<OrderSummary> {
    ProjectorTest::given(two_items())
        .named("items add to count and total")
        .then_read_model("ORD-1", row("ORD-1", "created", 3, 4000, at(0), at(2)))
}

pub fn placing_confirms_the_order() -> ProjectorTest<OrderSummary> {
    let events = two_items()
        .into_iter()
        .chain([(ORD_1, Event::Placed { total: 4000 })]);
    ProjectorTest::given(events)
        .named("placing confirms the order")
        .then_read_model("ORD-1", row("ORD-1", "confirmed", 3, 4000, at(0), at(3)))
}

pub fn shipping_marks_it_shipped() -> ProjectorTest<OrderSummary> {
    let events = two_items().into_iter().chain([
        (ORD_1, Event::Placed { total: 4000 }),
        (ORD_1, Event::Shipped),
    ]);
    ProjectorTest::given(events)
        .named("shipping marks it shipped")
        .then_read_model("ORD-1", row("ORD-1", "shipped", 3, 4000, at(0), at(4)))
}

pub fn cancelling_marks_it_cancelled() -> ProjectorTest<OrderSummary> {
    ProjectorTest::given([
        (ORD_1, created("C-ORD-1")),
        (ORD_1, item(1, 500)),
        (
            ORD_1,
            Event::Cancelled {
                reason: "changed mind".into(),
            },
        ),
    ])
    .named("cancelling marks it cancelled with the reason")
    .then_read_model("ORD-1", {
        let mut r = row("ORD-1", "cancelled", 1, 500, at(0), at(2));
        r["cancel_reason"] = json!("changed mind");
        r
    })
}

pub fn one_row_per_order() -> ProjectorTest<OrderSummary> {
    ProjectorTest::given([
        (ORD_1, created("C-ORD-1")),
        (ORD_2, created("C-ORD-2")),
        (ORD_2, item(5, 100)),
        (ORD_1, item(1, 700)),
    ])
    .named("one row per order")
    .then_read_model("ORD-1", row("ORD-1", "created", 1, 700, at(0), at(3)))
    .then_read_model("ORD-2", row("ORD-2", "created", 5, 500, at(1), at(2)))
    .then_absent("ORD-3")
}

pub fn a_charge_marks_it_paid() -> ProjectorTest<OrderSummary> {
    ProjectorTest::given(placed_order().chain([(ACCOUNT, charged("ORD-1"))]))
        .named("a charge marks it paid")
        .then_read_model("ORD-1", row("ORD-1", "paid", 3, 4000, at(0), at(4)))
}

pub fn a_refund_marks_it_refunded() -> ProjectorTest<OrderSummary> {
    let events = placed_order().chain([(ACCOUNT, charged("ORD-1")), (ACCOUNT, refunded("ORD-1"))]);
    ProjectorTest::given(events)
        .named("a refund marks it refunded")
        .then_read_model("ORD-1", row("ORD-1", "refunded", 3, 4000, at(0), at(5)))
}

pub fn shipping_a_paid_order_marks_it_shipped() -> ProjectorTest<OrderSummary> {
    let events = placed_order().chain([(ACCOUNT, charged("ORD-1")), (ORD_1, Event::Shipped)]);
    ProjectorTest::given(events)
        .named("shipping a paid order marks it shipped")
        .then_read_model("ORD-1", row("ORD-1", "shipped", 3, 4000, at(0), at(5)))
}

/// The payment topic's partition was read before the order's: the same row as in order.
pub fn a_payment_before_its_order_waits_for_the_row() -> ProjectorTest<OrderSummary> {
    let events = [(ACCOUNT, charged("ORD-1"))]
        .into_iter()
        .chain(placed_order());
    ProjectorTest::given(events)
        .named("a payment before its order waits for the row")
        .then_read_model("ORD-1", row("ORD-1", "paid", 3, 4000, at(1), at(4)))
        .then_absent("pending/ORD-1")
}

pub fn a_payment_of_no_order_stays_pending() -> ProjectorTest<OrderSummary> {
    ProjectorTest::given([("payment-C-1", charged("T1"))])
        .named("a payment of no order stays pending")
        .then_read_model(
            "pending/T1",
            json!({"status": "paid", "updated_at": BASE_TIME_MS}),
        )
        .then_absent("T1")
}
