//! The shipping aggregate (DESIGN §6). One stream per depot, e.g. `shipping-main`.
//! `set-capacity` bounds how many orders the depot has scheduled at once: scheduling beyond it
//! is rejected (`no-capacity`). While the depot is paused a schedule request is only queued
//! (`shipping.queued`): the order is not scheduled until someone acts on the queue. `cancel`
//! frees an order's slot (nothing to do for an order it does not hold).

use std::collections::BTreeSet;

use factline_guest::{Aggregate, CommandContext, EventMeta, Rejection};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Depot {
    /// Orders scheduled at once; `None`: unbounded.
    pub capacity: Option<u32>,
    pub paused: bool,
    pub scheduled: BTreeSet<String>,
    pub queued: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    SetCapacity { slots: u32 },
    Pause {},
    Resume {},
    Schedule { order_id: String },
    Cancel { order_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "shipping.capacity-set")]
    CapacitySet { slots: u32 },
    #[serde(rename = "shipping.paused")]
    Paused {},
    #[serde(rename = "shipping.resumed")]
    Resumed {},
    #[serde(rename = "shipping.scheduled")]
    Scheduled { order_id: String },
    #[serde(rename = "shipping.queued")]
    Queued { order_id: String },
    #[serde(rename = "shipping.cancelled")]
    Cancelled { order_id: String },
}

impl Aggregate for Depot {
    type Command = Command;
    type Event = Event;

    fn decide(&self, command: Command, _ctx: &CommandContext) -> Result<Vec<Event>, Rejection> {
        Ok(match command {
            Command::SetCapacity { slots } => vec![Event::CapacitySet { slots }],
            Command::Pause {} => vec![Event::Paused {}],
            Command::Resume {} => vec![Event::Resumed {}],
            Command::Schedule { order_id } => {
                if self.scheduled.contains(&order_id) || self.queued.contains(&order_id) {
                    return Ok(Vec::new());
                }
                if self.paused {
                    return Ok(vec![Event::Queued { order_id }]);
                }
                if let Some(slots) = self.capacity {
                    Rejection::ensure(
                        (self.scheduled.len() as u64) < u64::from(slots),
                        "no-capacity",
                        format!("the depot has all {slots} slots taken"),
                    )?;
                }
                vec![Event::Scheduled { order_id }]
            }
            Command::Cancel { order_id } => {
                if self.scheduled.contains(&order_id) || self.queued.contains(&order_id) {
                    vec![Event::Cancelled { order_id }]
                } else {
                    Vec::new()
                }
            }
        })
    }

    fn evolve(&mut self, event: Event, _meta: &EventMeta) {
        match event {
            Event::CapacitySet { slots } => self.capacity = Some(slots),
            Event::Paused {} => self.paused = true,
            Event::Resumed {} => self.paused = false,
            Event::Scheduled { order_id } => {
                self.scheduled.insert(order_id);
            }
            Event::Queued { order_id } => {
                self.queued.insert(order_id);
            }
            Event::Cancelled { order_id } => {
                self.scheduled.remove(&order_id);
                self.queued.remove(&order_id);
            }
        }
    }
}

factline_guest::aggregate!(Depot);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_rejects_and_pause_queues() {
        let ctx = CommandContext::default();
        let mut d = Depot::default();
        let apply = |d: &mut Depot, c| {
            for e in d.decide(c, &ctx).unwrap() {
                d.evolve(e, &EventMeta::default());
            }
        };
        apply(&mut d, Command::SetCapacity { slots: 1 });
        apply(
            &mut d,
            Command::Schedule {
                order_id: "O1".into(),
            },
        );
        let second = Command::Schedule {
            order_id: "O2".into(),
        };
        assert_eq!(
            d.decide(second.clone(), &ctx).unwrap_err().code,
            "no-capacity"
        );
        apply(
            &mut d,
            Command::Cancel {
                order_id: "O1".into(),
            },
        );
        apply(&mut d, Command::Pause {});
        assert_eq!(
            d.decide(second, &ctx).unwrap(),
            [Event::Queued {
                order_id: "O2".into()
            }]
        );
    }
}
