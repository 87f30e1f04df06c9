//! The order's behaviour as scenarios: run natively by this crate's tests and, through [`all`],
//! against the built `order.wasm` by the workspace's end-to-end tests.

use factline_guest::testing::{AggregateCase, AggregateTest, json};

use crate::{Command, Event, Item, Order};

pub const STREAM: &str = "order-ORD-1";

factline_guest::scenarios!(
    create_gives_status_created_at_version_1,
    creating_twice_is_rejected,
    two_items_total_4000_at_version_3,
    zero_quantity_is_rejected,
    adding_to_a_confirmed_order_is_rejected,
    confirm_places_the_order,
    confirming_an_empty_order_is_rejected,
    confirming_twice_is_rejected,
    ship_a_confirmed_order,
    an_order_placed_under_schema_1_is_upcast_and_ships,
    shipping_an_unconfirmed_order_is_rejected,
    cancel_a_created_order,
    cancel_a_confirmed_order,
    a_shipped_order_cannot_be_cancelled,
    cancelling_twice_is_rejected,
    commands_on_a_missing_order_are_not_found,
);

/// The scenario file that every implementation of this plugin (Rust, Python, JavaScript) passes.
pub const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios.json");

#[cfg(test)]
#[test]
fn scenario_file_holds_these_scenarios() {
    factline_guest::testing::check_scenario_file(
        FILE.as_ref(),
        "The order aggregate (DESIGN §6): create, add items while created, confirm a non-empty order, ship a confirmed one, cancel unless shipped or cancelled. Generated from plugins/order/src/scenarios.rs.",
        all(),
    );
}

fn given(name: &str, events: impl IntoIterator<Item = Event>) -> AggregateTest<Order> {
    AggregateTest::given(events).on_stream(STREAM).named(name)
}

fn created() -> Event {
    Event::Created {
        order_id: "ORD-1".into(),
        customer_id: "C-1".into(),
    }
}

fn item(product_id: &str, quantity: u32, unit_price: u64) -> Item {
    Item {
        product_id: product_id.into(),
        quantity,
        unit_price,
    }
}

fn two_items() -> [Event; 3] {
    [
        created(),
        Event::ItemAdded(item("P-1", 2, 1000)),
        Event::ItemAdded(item("P-2", 1, 2000)),
    ]
}

fn placed() -> Event {
    Event::Placed {
        order_id: "ORD-1".into(),
        customer_id: "C-1".into(),
        items: vec![item("P-1", 2, 1000), item("P-2", 1, 2000)],
        total: 4000,
        currency: "JPY".into(),
        discount: 0,
    }
}

fn with(events: impl IntoIterator<Item = Event>, more: Event) -> Vec<Event> {
    events.into_iter().chain([more]).collect()
}

pub fn create_gives_status_created_at_version_1() -> AggregateCase<Order> {
    given("create gives status created at version 1", [])
        .when(Command::Create {
            customer_id: "C-1".into(),
        })
        .then_events([created()])
        .then_version(1)
        .then_state(json!({
            "status": "created", "order_id": "ORD-1", "customer_id": "C-1", "items": [], "total": 0
        }))
}

pub fn creating_twice_is_rejected() -> AggregateCase<Order> {
    given("creating twice is rejected", [created()])
        .when(Command::Create {
            customer_id: "C-2".into(),
        })
        .then_rejected("already-exists")
}

pub fn two_items_total_4000_at_version_3() -> AggregateCase<Order> {
    given(
        "two items (2 x 1000, 1 x 2000) total 4000 at version 3",
        [created(), Event::ItemAdded(item("P-1", 2, 1000))],
    )
    .when(Command::AddItem {
        product_id: "P-2".into(),
        quantity: 1,
        unit_price: 2000,
    })
    .then_events([Event::ItemAdded(item("P-2", 1, 2000))])
    .then_version(3)
    .then_state(json!({
        "status": "created", "order_id": "ORD-1", "customer_id": "C-1", "total": 4000,
        "items": [
            {"product_id": "P-1", "quantity": 2, "unit_price": 1000},
            {"product_id": "P-2", "quantity": 1, "unit_price": 2000},
        ],
    }))
}

pub fn zero_quantity_is_rejected() -> AggregateCase<Order> {
    given("zero quantity is rejected", [created()])
        .when(Command::AddItem {
            product_id: "P-1".into(),
            quantity: 0,
            unit_price: 1000,
        })
        .then_rejected("invalid-quantity")
}

pub fn adding_to_a_confirmed_order_is_rejected() -> AggregateCase<Order> {
    given(
        "adding to a confirmed order is rejected",
        with(two_items(), placed()),
    )
    .when(Command::AddItem {
        product_id: "P-3".into(),
        quantity: 1,
        unit_price: 500,
    })
    .then_rejected("not-open")
}

pub fn confirm_places_the_order() -> AggregateCase<Order> {
    given("confirm places the order", two_items())
        .when(Command::Confirm {})
        .then_events([placed()])
        .then_version(4)
}

pub fn confirming_an_empty_order_is_rejected() -> AggregateCase<Order> {
    given("confirming an empty order is rejected", [created()])
        .when(Command::Confirm {})
        .then_rejected("order-empty")
        .then_message_contains("without items")
}

pub fn confirming_twice_is_rejected() -> AggregateCase<Order> {
    given("confirming twice is rejected", with(two_items(), placed()))
        .when(Command::Confirm {})
        .then_rejected("not-open")
}

pub fn ship_a_confirmed_order() -> AggregateCase<Order> {
    given("ship a confirmed order", with(two_items(), placed()))
        .when(Command::Ship {})
        .then_events([Event::Shipped {}])
        .then_version(5)
}

/// `order.placed` schema 1 had no currency and discount; stored that way, it still confirms.
pub fn an_order_placed_under_schema_1_is_upcast_and_ships() -> AggregateCase<Order> {
    given(
        "an order placed under schema 1 is upcast and ships",
        two_items(),
    )
    .and_stored(
        "order.placed",
        1,
        json!({
            "order_id": "ORD-1",
            "customer_id": "C-1",
            "items": [
                {"product_id": "P-1", "quantity": 2, "unit_price": 1000},
                {"product_id": "P-2", "quantity": 1, "unit_price": 2000},
            ],
            "total": 4000,
        }),
    )
    .when(Command::Ship {})
    .then_events([Event::Shipped {}])
    .then_version(5)
}

pub fn shipping_an_unconfirmed_order_is_rejected() -> AggregateCase<Order> {
    given("shipping an unconfirmed order is rejected", two_items())
        .when(Command::Ship {})
        .then_rejected("not-confirmed")
}

pub fn cancel_a_created_order() -> AggregateCase<Order> {
    given("cancel a created order", [created()])
        .when(Command::Cancel {
            reason: "changed my mind".into(),
        })
        .then_events([Event::Cancelled {
            reason: "changed my mind".into(),
        }])
}

pub fn cancel_a_confirmed_order() -> AggregateCase<Order> {
    given("cancel a confirmed order", with(two_items(), placed()))
        .when(Command::Cancel {
            reason: "out of stock".into(),
        })
        .then_events([Event::Cancelled {
            reason: "out of stock".into(),
        }])
}

pub fn a_shipped_order_cannot_be_cancelled() -> AggregateCase<Order> {
    let shipped = with(with(two_items(), placed()), Event::Shipped {});
    given("a shipped order cannot be cancelled", shipped)
        .when(Command::Cancel {
            reason: "too late".into(),
        })
        .then_rejected("already-shipped")
}

pub fn cancelling_twice_is_rejected() -> AggregateCase<Order> {
    given(
        "cancelling twice is rejected",
        [
            created(),
            Event::Cancelled {
                reason: "first".into(),
            },
        ],
    )
    .when(Command::Cancel {
        reason: "second".into(),
    })
    .then_rejected("already-cancelled")
}

pub fn commands_on_a_missing_order_are_not_found() -> AggregateCase<Order> {
    given("commands on a missing order are not found", [])
        .when(Command::AddItem {
            product_id: "P-1".into(),
            quantity: 1,
            unit_price: 100,
        })
        .then_rejected("not-found")
}
