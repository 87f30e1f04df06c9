//! The inventory aggregate as `.wasm` through the host's command handler: all items available,
//! one product missing (insufficient, partial reservation released), the same order twice.

use factline_host::AggregateHandler;
use serde_json::{Value, json};

use crate::support::{self, aggregate_handler};

fn send(h: &AggregateHandler, t: &str, payload: Value) -> Vec<(String, Value)> {
    support::send(h, "main", t, payload)
        .unwrap()
        .events
        .into_iter()
        .map(|e| (e.event_type, rmp_serde::from_slice(&e.payload).unwrap()))
        .collect()
}

fn reserve(order: &str, items: &[(&str, u32)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(p, q)| json!({"product_id": p, "quantity": q}))
        .collect();
    json!({"order_id": order, "items": items})
}

#[test]
fn reserves_all_items_or_none_and_never_twice() {
    let dir = tempfile::tempdir().unwrap();
    let h = aggregate_handler(dir.path(), "inventory", factline_tests::INVENTORY);
    send(&h, "restock", json!({"product_id": "P1", "quantity": 3}));
    send(&h, "restock", json!({"product_id": "P2", "quantity": 1}));

    // All available.
    let types = |events: &[(String, Value)]| -> Vec<String> {
        events.iter().map(|(t, _)| t.clone()).collect()
    };
    let ok = send(&h, "reserve", reserve("O1", &[("P1", 1), ("P2", 1)]));
    assert_eq!(
        types(&ok),
        [
            "inventory.item-reserved",
            "inventory.item-reserved",
            "inventory.reserved"
        ]
    );

    // One product missing: what was reserved is released, then `insufficient`.
    let short = send(&h, "reserve", reserve("O2", &[("P1", 2), ("P2", 1)]));
    assert_eq!(
        types(&short),
        [
            "inventory.item-reserved",
            "inventory.item-released",
            "inventory.insufficient"
        ]
    );
    assert_eq!(short[2].1["product_id"], "P2");
    assert_eq!(short[2].1["available"], 0);
    // The partial reservation really was given back: both remaining P1 can be reserved.
    let rest = send(&h, "reserve", reserve("O3", &[("P1", 2)]));
    assert_eq!(types(&rest).last().unwrap(), "inventory.reserved");

    // The same order again reserves nothing.
    send(&h, "restock", json!({"product_id": "P1", "quantity": 5}));
    assert!(send(&h, "reserve", reserve("O1", &[("P1", 1), ("P2", 1)])).is_empty());
    // Releasing O1 gives back exactly its one reservation, once.
    let released = send(&h, "release", json!({"order_id": "O1"}));
    assert_eq!(types(&released), ["inventory.released"]);
    assert!(send(&h, "release", json!({"order_id": "O1"})).is_empty());
    let (_, state) = h.state("main").unwrap();
    let state: Value = rmp_serde::from_slice(&state).unwrap();
    assert_eq!(state["stock"], json!({"P1": 6, "P2": 1}));
}
