//! The order-summary projector (DESIGN §6): one read-model row per order, keyed by order id
//! (`ORD-1` for stream `order-ORD-1`).

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
    /// `occurred_at` (ms) of `order.created`.
    pub created_at: u64,
    /// `occurred_at` (ms) of the latest event.
    pub updated_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Confirmed,
    Shipped,
    Cancelled,
}

/// The order's events as this projector reads them: only the fields it needs.
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
    Cancelled,
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
        let order_id = meta.stream.strip_prefix("order-").unwrap_or(&meta.stream);
        if let Event::Created { customer_id } = event {
            let row = Summary {
                order_id: order_id.to_owned(),
                customer_id,
                status: Status::Created,
                item_count: 0,
                total: 0,
                created_at: meta.occurred_at,
                updated_at: meta.occurred_at,
            };
            return model.put(order_id, &row);
        }
        // A stream's events arrive in order, so a missing row means a lost `order.created`.
        let mut row: Summary = model.get(order_id)?.ok_or_else(|| {
            Failure::new(format!(
                "no summary for `{order_id}`: order.created was not seen"
            ))
        })?;
        match event {
            Event::Created { .. } => unreachable!("handled above"),
            Event::ItemAdded {
                quantity,
                unit_price,
            } => {
                row.item_count += u64::from(quantity);
                row.total = row
                    .total
                    .saturating_add(u64::from(quantity).saturating_mul(unit_price));
            }
            Event::Placed { total } => {
                row.status = Status::Confirmed;
                row.total = total;
            }
            Event::Shipped => row.status = Status::Shipped,
            Event::Cancelled => row.status = Status::Cancelled,
        }
        row.updated_at = meta.occurred_at;
        model.put(order_id, &row)
    }
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
                    "total": 0, "created_at": 1_700_000_000_000_u64, "updated_at": 1_700_000_000_000_u64,
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
