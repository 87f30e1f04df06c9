//! The order-summary projector (DESIGN §6): one read-model row per order, keyed by order id
//! (`ORD-1` for stream `order-ORD-1`), from the `order` and `payment` topics: status created →
//! confirmed → paid (→ refunded) → shipped, or cancelled with its reason.
//!
//! The two topics' partitions are read independently, so a payment can be projected before its
//! order's `order.created` (a catch-up or a rebuild reads one partition ahead of another). The
//! row is therefore built to be order-independent across topics: the status only moves up
//! [`Status`]'s ranking, `updated_at` is the latest `occurred_at`, and a payment for an order
//! without a row waits under `pending/<order_id>` until `order.created` takes it in. (Payments
//! of other flows, a trip's for instance, stay there: they are not orders.)

use factline_guest::{EventMeta, Failure, Projector, ReadModel};
use serde::{Deserialize, Serialize};

pub mod scenarios;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub order_id: String,
    pub customer_id: String,
    pub status: Status,
    /// Sum of the quantities of all items.
    pub item_count: u64,
    pub total: u64,
    /// Why the order was cancelled; `null` unless it was.
    pub cancel_reason: Option<String>,
    /// `occurred_at` (ms) of `order.created`.
    pub created_at: u64,
    /// `occurred_at` (ms) of the latest event.
    pub updated_at: u64,
}

/// In the order of the ranking the status only climbs: a later event never lowers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Confirmed,
    Paid,
    /// Paid, then refunded (the order-placement saga compensating a later step).
    Refunded,
    Shipped,
    Cancelled,
}

/// A payment seen before its order's row, kept under [`pending_key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub status: Status,
    pub updated_at: u64,
}

/// Where a payment waits for its order's row.
pub fn pending_key(order_id: &str) -> String {
    format!("pending/{order_id}")
}

/// The events as this projector reads them: only the fields it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "order.created")]
    Created { customer_id: String },
    #[serde(rename = "order.item-added")]
    ItemAdded { quantity: u32, unit_price: u64 },
    #[serde(rename = "order.placed")]
    Placed { total: u64 },
    #[serde(rename = "order.shipped")]
    Shipped,
    #[serde(rename = "order.cancelled")]
    Cancelled { reason: String },
    #[serde(rename = "payment.charged")]
    Charged { order_id: String },
    #[serde(rename = "payment.refunded")]
    Refunded { order_id: String },
}

#[derive(Debug, Default)]
pub struct OrderSummary;

impl Projector for OrderSummary {
    type Event = Event;

    fn project(
        &mut self,
        event: Event,
        meta: &EventMeta,
        model: &mut ReadModel<'_>,
    ) -> Result<(), Failure> {
        let at = meta.occurred_at;
        let order_id = meta.stream.strip_prefix("order-").unwrap_or(&meta.stream);
        match event {
            Event::Charged { order_id } => payment(model, &order_id, Status::Paid, at),
            Event::Refunded { order_id } => payment(model, &order_id, Status::Refunded, at),
            Event::Created { customer_id } => created(model, order_id, customer_id, at),
            Event::ItemAdded {
                quantity,
                unit_price,
            } => update(model, order_id, at, |row| {
                row.item_count += u64::from(quantity);
                row.total = row
                    .total
                    .saturating_add(u64::from(quantity).saturating_mul(unit_price));
            }),
            Event::Placed { total } => update(model, order_id, at, |row| {
                row.status = row.status.max(Status::Confirmed);
                row.total = total;
            }),
            Event::Shipped => update(model, order_id, at, |row| {
                row.status = row.status.max(Status::Shipped);
            }),
            Event::Cancelled { reason } => update(model, order_id, at, |row| {
                row.status = Status::Cancelled;
                row.cancel_reason = Some(reason);
            }),
        }
    }
}

/// `order.created`: a new row, taking in a payment that arrived before it.
fn created(
    model: &mut ReadModel<'_>,
    order_id: &str,
    customer_id: String,
    at: u64,
) -> Result<(), Failure> {
    let mut row = Summary {
        order_id: order_id.to_owned(),
        customer_id,
        status: Status::Created,
        item_count: 0,
        total: 0,
        cancel_reason: None,
        created_at: at,
        updated_at: at,
    };
    let key = pending_key(order_id);
    if let Some(pending) = model.get::<Pending>(&key)? {
        row.status = pending.status;
        row.updated_at = row.updated_at.max(pending.updated_at);
        model.delete(&key);
    }
    model.put(order_id, &row)
}

/// An event of the order's own stream after `order.created`.
fn update(
    model: &mut ReadModel<'_>,
    order_id: &str,
    at: u64,
    change: impl FnOnce(&mut Summary),
) -> Result<(), Failure> {
    // A stream's events arrive in order, so a missing row means a lost `order.created`.
    let mut row: Summary = model.get(order_id)?.ok_or_else(|| {
        Failure::new(format!(
            "no summary for `{order_id}`: order.created was not seen"
        ))
    })?;
    change(&mut row);
    row.updated_at = row.updated_at.max(at);
    model.put(order_id, &row)
}

/// A payment event: on the order's row, or pending until the row exists.
fn payment(
    model: &mut ReadModel<'_>,
    order_id: &str,
    status: Status,
    at: u64,
) -> Result<(), Failure> {
    if let Some(mut row) = model.get::<Summary>(order_id)? {
        row.status = row.status.max(status);
        row.updated_at = row.updated_at.max(at);
        return model.put(order_id, &row);
    }
    let key = pending_key(order_id);
    let pending = match model.get::<Pending>(&key)? {
        Some(p) => Pending {
            status: p.status.max(status),
            updated_at: p.updated_at.max(at),
        },
        None => Pending {
            status,
            updated_at: at,
        },
    };
    model.put(&key, &pending)
}

factline_guest::projector!(OrderSummary);

#[cfg(test)]
mod tests {
    use factline_guest::scenario::{ExpectedRow, GivenEvent, ProjectorOutcome, ProjectorScenario};
    use factline_guest::testing::{Value, json, run_projector};

    use super::*;

    fn given(event_type: &str, payload: Value) -> GivenEvent {
        GivenEvent {
            event_type: event_type.into(),
            stream: Some("order-ORD-1".into()),
            schema_version: 1,
            payload,
            occurred_at: None,
        }
    }

    #[test]
    fn unknown_event_types_are_skipped() {
        let scenario = ProjectorScenario {
            name: "unknown types are skipped".into(),
            given: vec![
                given(
                    "order.created",
                    json!({"order_id": "ORD-1", "customer_id": "C-1"}),
                ),
                given("order.discounted", json!({"percent": 10})),
            ],
            then: vec![ExpectedRow {
                key: "ORD-1".into(),
                value: Some(json!({
                    "order_id": "ORD-1", "customer_id": "C-1", "status": "created", "item_count": 0,
                    "total": 0, "cancel_reason": null, "created_at": 1_700_000_000_000_u64, "updated_at": 1_700_000_000_000_u64,
                })),
            }],
            dead_letters: vec![],
        };
        scenario
            .verify(&run_projector::<OrderSummary>(&scenario))
            .unwrap();
    }

    #[test]
    fn a_malformed_payload_fails_naming_the_type_and_the_event() {
        let scenario = ProjectorScenario {
            name: "malformed".into(),
            given: vec![
                given("order.created", json!({"customer_id": "C-1"})),
                given(
                    "order.item-added",
                    json!({"quantity": "two", "unit_price": 1000}),
                ),
            ],
            then: vec![],
            dead_letters: vec![],
        };
        // The host parks the event, as the harness reports.
        let ProjectorOutcome::Rows { dead_letters, .. } = run_projector::<OrderSummary>(&scenario)
        else {
            panic!("expected rows and a dead letter");
        };
        assert_eq!(dead_letters.len(), 1, "{dead_letters:?}");
        assert_eq!(dead_letters[0].event, 1);
        assert!(
            dead_letters[0]
                .message
                .starts_with("invalid payload for `order.item-added`"),
            "{dead_letters:?}"
        );
    }

    #[test]
    fn an_event_before_order_created_fails() {
        let scenario = ProjectorScenario {
            name: "no created".into(),
            given: vec![given("order.shipped", json!({}))],
            then: vec![],
            dead_letters: vec![],
        };
        let outcome = run_projector::<OrderSummary>(&scenario);
        assert!(
            matches!(&outcome, ProjectorOutcome::Rows { dead_letters, .. }
                if dead_letters.len() == 1 && dead_letters[0].message.contains("order.created was not seen")),
            "{outcome:?}"
        );
    }
}
