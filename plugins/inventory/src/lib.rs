//! The inventory aggregate (DESIGN §6). One stream per warehouse, e.g. `inventory-main`, so
//! reserving all items of an order or none is one decision.
//!
//! `reserve` takes the items in order; at the first product short of stock it releases what
//! it had reserved for the order and emits `inventory.insufficient`, so the stream shows the
//! partial reservation and its undoing and the stock ends where it was. A second `reserve` of
//! an order that holds a reservation reserves nothing. `release` gives an order's items back
//! (nothing to do when it holds none).

use std::collections::BTreeMap;

use factline_guest::{Aggregate, CommandContext, EventMeta, Rejection};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Available (unreserved) quantity per product.
    pub stock: BTreeMap<String, u64>,
    /// Reserved lines per order.
    pub reservations: BTreeMap<String, Vec<Line>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub product_id: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Restock { product_id: String, quantity: u32 },
    Reserve { order_id: String, items: Vec<Line> },
    Release { order_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "inventory.restocked")]
    Restocked { product_id: String, quantity: u32 },
    #[serde(rename = "inventory.item-reserved")]
    ItemReserved {
        order_id: String,
        product_id: String,
        quantity: u32,
    },
    #[serde(rename = "inventory.item-released")]
    ItemReleased {
        order_id: String,
        product_id: String,
        quantity: u32,
    },
    /// Every item of the order is reserved.
    #[serde(rename = "inventory.reserved")]
    Reserved { order_id: String, items: Vec<Line> },
    /// A product was short; nothing stays reserved for the order.
    #[serde(rename = "inventory.insufficient")]
    Insufficient {
        order_id: String,
        product_id: String,
        requested: u32,
        available: u64,
    },
    #[serde(rename = "inventory.released")]
    Released { order_id: String, items: Vec<Line> },
}

impl Aggregate for Inventory {
    type Command = Command;
    type Event = Event;

    fn decide(&self, command: Command, _ctx: &CommandContext) -> Result<Vec<Event>, Rejection> {
        match command {
            Command::Restock {
                product_id,
                quantity,
            } => {
                Rejection::ensure(quantity >= 1, "invalid-quantity", "restock at least 1")?;
                Ok(vec![Event::Restocked {
                    product_id,
                    quantity,
                }])
            }
            Command::Reserve { order_id, items } => {
                Rejection::ensure(!items.is_empty(), "order-empty", "nothing to reserve")?;
                if self.reservations.contains_key(&order_id) {
                    return Ok(Vec::new()); // already reserved: never twice
                }
                Ok(self.reserve(order_id, items))
            }
            Command::Release { order_id } => Ok(match self.reservations.get(&order_id) {
                Some(items) => vec![Event::Released {
                    order_id,
                    items: items.clone(),
                }],
                None => Vec::new(),
            }),
        }
    }

    fn evolve(&mut self, event: Event, _meta: &EventMeta) {
        match event {
            Event::Restocked {
                product_id,
                quantity,
            } => *self.stock.entry(product_id).or_default() += u64::from(quantity),
            Event::ItemReserved {
                order_id,
                product_id,
                quantity,
            } => {
                let s = self.stock.entry(product_id.clone()).or_default();
                *s = s.saturating_sub(u64::from(quantity));
                self.reservations.entry(order_id).or_default().push(Line {
                    product_id,
                    quantity,
                });
            }
            Event::ItemReleased {
                order_id,
                product_id,
                quantity,
            } => {
                *self.stock.entry(product_id.clone()).or_default() += u64::from(quantity);
                if let Some(lines) = self.reservations.get_mut(&order_id)
                    && let Some(i) = lines
                        .iter()
                        .rposition(|l| l.product_id == product_id && l.quantity == quantity)
                {
                    lines.remove(i);
                }
            }
            Event::Reserved { .. } => {}
            Event::Insufficient { order_id, .. } => {
                self.reservations.remove(&order_id);
            }
            Event::Released { order_id, items } => {
                for l in items {
                    *self.stock.entry(l.product_id).or_default() += u64::from(l.quantity);
                }
                self.reservations.remove(&order_id);
            }
        }
    }
}

impl Inventory {
    fn reserve(&self, order_id: String, items: Vec<Line>) -> Vec<Event> {
        let mut left = self.stock.clone();
        let mut events = Vec::new();
        let mut reserved: Vec<&Line> = Vec::new();
        for line in &items {
            let available = left.get(&line.product_id).copied().unwrap_or(0);
            if available < u64::from(line.quantity) {
                // Undo the partial reservation, newest first, then say why.
                events.extend(reserved.iter().rev().map(|l| Event::ItemReleased {
                    order_id: order_id.clone(),
                    product_id: l.product_id.clone(),
                    quantity: l.quantity,
                }));
                events.push(Event::Insufficient {
                    order_id,
                    product_id: line.product_id.clone(),
                    requested: line.quantity,
                    available,
                });
                return events;
            }
            left.insert(
                line.product_id.clone(),
                available - u64::from(line.quantity),
            );
            reserved.push(line);
            events.push(Event::ItemReserved {
                order_id: order_id.clone(),
                product_id: line.product_id.clone(),
                quantity: line.quantity,
            });
        }
        events.push(Event::Reserved { order_id, items });
        events
    }
}

factline_guest::aggregate!(Inventory);

#[cfg(test)]
mod tests {
    use super::*;

    fn line(p: &str, q: u32) -> Line {
        Line {
            product_id: p.into(),
            quantity: q,
        }
    }

    fn run(state: &mut Inventory, c: Command) -> Vec<Event> {
        let events = state.decide(c, &CommandContext::default()).unwrap();
        for e in events.clone() {
            state.evolve(e, &EventMeta::default());
        }
        events
    }

    fn stocked() -> Inventory {
        let mut s = Inventory::default();
        run(
            &mut s,
            Command::Restock {
                product_id: "P1".into(),
                quantity: 5,
            },
        );
        run(
            &mut s,
            Command::Restock {
                product_id: "P2".into(),
                quantity: 1,
            },
        );
        s
    }

    #[test]
    fn a_missing_product_releases_the_partial_reservation() {
        let mut s = stocked();
        let before = s.stock.clone();
        let events = run(
            &mut s,
            Command::Reserve {
                order_id: "O1".into(),
                items: vec![line("P1", 2), line("P2", 1), line("P3", 1)],
            },
        );
        let types: Vec<&str> = events
            .iter()
            .map(|e| match e {
                Event::ItemReserved { .. } => "reserved",
                Event::ItemReleased { .. } => "released",
                Event::Insufficient { .. } => "insufficient",
                _ => "other",
            })
            .collect();
        assert_eq!(
            types,
            [
                "reserved",
                "reserved",
                "released",
                "released",
                "insufficient"
            ]
        );
        assert_eq!(s.stock, before);
        assert!(s.reservations.is_empty());
    }

    #[test]
    fn the_same_order_reserves_once_and_releases_once() {
        let mut s = stocked();
        let reserve = Command::Reserve {
            order_id: "O1".into(),
            items: vec![line("P1", 2)],
        };
        assert_eq!(run(&mut s, reserve.clone()).len(), 2);
        assert!(run(&mut s, reserve).is_empty());
        assert_eq!(s.stock["P1"], 3);
        let release = Command::Release {
            order_id: "O1".into(),
        };
        assert_eq!(run(&mut s, release.clone()).len(), 1);
        assert!(run(&mut s, release).is_empty());
        assert_eq!(s.stock["P1"], 5);
    }
}
