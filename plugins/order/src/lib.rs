//! The order aggregate (DESIGN §6): create, add items while created, confirm a non-empty order,
//! ship a confirmed one, cancel unless shipped or cancelled.
//!
//! Stream ids are `order-<order id>`, e.g. `order-ORD-1`.

use factline_guest::{Aggregate, CommandContext, EventMeta, Failure, Rejection, StoredEvent};
use serde::{Deserialize, Serialize};

pub mod scenarios;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub status: Status,
    pub order_id: String,
    pub customer_id: String,
    pub items: Vec<Item>,
    pub total: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No `order.created` yet: the stream does not exist.
    #[default]
    New,
    Created,
    Confirmed,
    Shipped,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub product_id: String,
    pub quantity: u32,
    /// In the smallest currency unit (JPY has no subunit).
    pub unit_price: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Create {
        customer_id: String,
    },
    AddItem {
        product_id: String,
        quantity: u32,
        unit_price: u64,
    },
    Confirm {},
    Ship {},
    Cancel {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "order.created")]
    Created {
        order_id: String,
        customer_id: String,
    },
    #[serde(rename = "order.item-added")]
    ItemAdded(Item),
    /// Emitted by `confirm`; schema 2 added `currency` and `discount`.
    #[serde(rename = "order.placed")]
    Placed {
        order_id: String,
        customer_id: String,
        items: Vec<Item>,
        total: u64,
        currency: String,
        discount: u64,
    },
    #[serde(rename = "order.shipped")]
    Shipped {},
    #[serde(rename = "order.cancelled")]
    Cancelled { reason: String },
}

impl Aggregate for Order {
    type Command = Command;
    type Event = Event;

    fn decide(&self, command: Command, ctx: &CommandContext) -> Result<Vec<Event>, Rejection> {
        if self.status == Status::New && !matches!(command, Command::Create { .. }) {
            return Err(Rejection::new(
                "not-found",
                format!("order stream `{}` does not exist", ctx.stream),
            ));
        }
        match command {
            Command::Create { customer_id } => {
                Rejection::ensure(
                    self.status == Status::New,
                    "already-exists",
                    "the order already exists",
                )?;
                let order_id = ctx
                    .stream
                    .strip_prefix("order-")
                    .unwrap_or(&ctx.stream)
                    .to_owned();
                Ok(vec![Event::Created {
                    order_id,
                    customer_id,
                }])
            }
            Command::AddItem {
                product_id,
                quantity,
                unit_price,
            } => {
                Rejection::ensure(
                    self.status == Status::Created,
                    "not-open",
                    self.not_open("add items"),
                )?;
                Rejection::ensure(
                    quantity >= 1,
                    "invalid-quantity",
                    "quantity must be at least 1",
                )?;
                let line = u64::from(quantity).checked_mul(unit_price);
                Rejection::ensure(
                    line.and_then(|line| self.total.checked_add(line)).is_some(),
                    "invalid-quantity",
                    "the order total would overflow",
                )?;
                Ok(vec![Event::ItemAdded(Item {
                    product_id,
                    quantity,
                    unit_price,
                })])
            }
            Command::Confirm {} => {
                Rejection::ensure(
                    self.status == Status::Created,
                    "not-open",
                    self.not_open("confirm it"),
                )?;
                Rejection::ensure(
                    !self.items.is_empty(),
                    "order-empty",
                    "cannot confirm an order without items",
                )?;
                Ok(vec![Event::Placed {
                    order_id: self.order_id.clone(),
                    customer_id: self.customer_id.clone(),
                    items: self.items.clone(),
                    total: self.total,
                    currency: "JPY".into(),
                    discount: 0,
                }])
            }
            Command::Ship {} => {
                Rejection::ensure(
                    self.status == Status::Confirmed,
                    "not-confirmed",
                    format!(
                        "only a confirmed order can be shipped; it is {}",
                        self.status.as_str()
                    ),
                )?;
                Ok(vec![Event::Shipped {}])
            }
            Command::Cancel { reason } => match self.status {
                Status::Shipped => Err(Rejection::new(
                    "already-shipped",
                    "a shipped order cannot be cancelled",
                )),
                Status::Cancelled => Err(Rejection::new(
                    "already-cancelled",
                    "the order is already cancelled",
                )),
                _ => Ok(vec![Event::Cancelled { reason }]),
            },
        }
    }

    fn evolve(&mut self, event: Event, _meta: &EventMeta) {
        match event {
            Event::Created {
                order_id,
                customer_id,
            } => {
                self.status = Status::Created;
                self.order_id = order_id;
                self.customer_id = customer_id;
            }
            Event::ItemAdded(item) => {
                self.total = self
                    .total
                    .saturating_add(u64::from(item.quantity).saturating_mul(item.unit_price));
                self.items.push(item);
            }
            Event::Placed { .. } => self.status = Status::Confirmed,
            Event::Shipped {} => self.status = Status::Shipped,
            Event::Cancelled { .. } => self.status = Status::Cancelled,
        }
    }

    fn schema_version(event: &Event) -> u32 {
        match event {
            Event::Placed { .. } => 2,
            _ => 1,
        }
    }

    fn upcasts() -> Vec<(&'static str, u32)> {
        vec![("order.placed", 1)]
    }

    /// `order.placed` schema 1 predates currencies and discounts: every order was in yen, full
    /// price.
    fn upcast(mut old: StoredEvent) -> Result<StoredEvent, Failure> {
        match (old.event_type.as_str(), old.schema_version) {
            ("order.placed", 1) => {
                let body = old
                    .payload
                    .as_object_mut()
                    .ok_or_else(|| Failure::new("order.placed schema 1 is not a map"))?;
                body.entry("currency").or_insert_with(|| "JPY".into());
                body.entry("discount").or_insert_with(|| 0.into());
                old.schema_version = 2;
                Ok(old)
            }
            (t, v) => Err(Failure::new(format!("no upcaster for `{t}` schema {v}"))),
        }
    }
}

impl Order {
    fn not_open(&self, action: &str) -> String {
        format!(
            "cannot {action}: the order is {}, not created",
            self.status.as_str()
        )
    }
}

impl Status {
    /// The name as stored in the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Created => "created",
            Status::Confirmed => "confirmed",
            Status::Shipped => "shipped",
            Status::Cancelled => "cancelled",
        }
    }
}

factline_guest::aggregate!(Order);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_placed_schema_1_reads_as_schema_2_in_yen_without_discount() {
        let old = StoredEvent {
            event_type: "order.placed".into(),
            schema_version: 1,
            payload: factline_guest::testing::json!({"order_id": "ORD-1", "customer_id": "C-1", "items": [], "total": 0}),
        };
        let new = Order::upcast(old).unwrap();
        assert_eq!(new.schema_version, 2);
        assert_eq!(new.payload["currency"], "JPY");
        assert_eq!(new.payload["discount"], 0);
    }

    /// Folding a stream's events from scratch gives the state the decisions were made on.
    #[test]
    fn state_rebuilt_from_events_equals_the_original() {
        let ctx = CommandContext {
            stream: "order-ORD-9".into(),
            ..Default::default()
        };
        let commands = [
            Command::Create {
                customer_id: "C-9".into(),
            },
            Command::AddItem {
                product_id: "P-1".into(),
                quantity: 2,
                unit_price: 1000,
            },
            Command::AddItem {
                product_id: "P-2".into(),
                quantity: 1,
                unit_price: 2000,
            },
            Command::Confirm {},
            Command::Ship {},
        ];
        let mut live = Order::default();
        let mut log = Vec::new();
        for command in commands {
            for event in live.decide(command, &ctx).expect("accepted") {
                live.evolve(event.clone(), &EventMeta::default());
                log.push(event);
            }
        }
        let mut rebuilt = Order::default();
        for event in log {
            rebuilt.evolve(event, &EventMeta::default());
        }
        assert_eq!(rebuilt, live);
        assert_eq!(
            (rebuilt.status, rebuilt.total, rebuilt.order_id.as_str()),
            (Status::Shipped, 4000, "ORD-9")
        );
    }
}
