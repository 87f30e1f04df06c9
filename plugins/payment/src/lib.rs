//! The payment aggregate (DESIGN §6). One stream per customer account, e.g. `payment-C-1`.
//! `set-limit` configures the account's largest single charge; a charge over it is rejected
//! (`over-limit`). An order is charged at most once and refunded at most once. A frozen account
//! moves no money (`account-frozen`) until it is unfrozen.

use std::collections::{BTreeMap, BTreeSet};

use factline_guest::{Aggregate, CommandContext, EventMeta, Rejection};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Largest single charge; `None`: no limit configured.
    pub limit: Option<u64>,
    pub frozen: bool,
    /// Charged amount per order.
    pub charges: BTreeMap<String, u64>,
    pub refunded: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    SetLimit { limit: u64 },
    Freeze {},
    Unfreeze {},
    Charge { order_id: String, amount: u64 },
    Refund { order_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "payment.limit-set")]
    LimitSet { limit: u64 },
    #[serde(rename = "payment.frozen")]
    Frozen {},
    #[serde(rename = "payment.unfrozen")]
    Unfrozen {},
    #[serde(rename = "payment.charged")]
    Charged { order_id: String, amount: u64 },
    #[serde(rename = "payment.refunded")]
    Refunded { order_id: String, amount: u64 },
}

impl Aggregate for Account {
    type Command = Command;
    type Event = Event;

    fn decide(&self, command: Command, _ctx: &CommandContext) -> Result<Vec<Event>, Rejection> {
        if matches!(command, Command::Charge { .. } | Command::Refund { .. }) {
            Rejection::ensure(!self.frozen, "account-frozen", "the account is frozen")?;
        }
        match command {
            Command::SetLimit { limit } => Ok(vec![Event::LimitSet { limit }]),
            Command::Freeze {} => Ok(vec![Event::Frozen {}]),
            Command::Unfreeze {} => Ok(vec![Event::Unfrozen {}]),
            Command::Charge { order_id, amount } => {
                if self.charges.contains_key(&order_id) {
                    return Ok(Vec::new()); // charged already: never twice
                }
                if let Some(limit) = self.limit {
                    Rejection::ensure(
                        amount <= limit,
                        "over-limit",
                        format!("a charge of {amount} is over the account's limit of {limit}"),
                    )?;
                }
                Ok(vec![Event::Charged { order_id, amount }])
            }
            Command::Refund { order_id } => Ok(match self.charges.get(&order_id) {
                Some(&amount) if !self.refunded.contains(&order_id) => {
                    vec![Event::Refunded { order_id, amount }]
                }
                _ => Vec::new(),
            }),
        }
    }

    fn evolve(&mut self, event: Event, _meta: &EventMeta) {
        match event {
            Event::LimitSet { limit } => self.limit = Some(limit),
            Event::Frozen {} => self.frozen = true,
            Event::Unfrozen {} => self.frozen = false,
            Event::Charged { order_id, amount } => {
                self.charges.insert(order_id, amount);
            }
            Event::Refunded { order_id, .. } => {
                self.refunded.insert(order_id);
            }
        }
    }
}

factline_guest::aggregate!(Account);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_within_the_limit_once_and_refunds_once() {
        let ctx = CommandContext::default();
        let mut a = Account::default();
        for e in a.decide(Command::SetLimit { limit: 100 }, &ctx).unwrap() {
            a.evolve(e, &EventMeta::default());
        }
        let over = Command::Charge {
            order_id: "O1".into(),
            amount: 101,
        };
        assert_eq!(a.decide(over, &ctx).unwrap_err().code, "over-limit");
        let charge = Command::Charge {
            order_id: "O1".into(),
            amount: 100,
        };
        for e in a.decide(charge.clone(), &ctx).unwrap() {
            a.evolve(e, &EventMeta::default());
        }
        assert!(a.decide(charge, &ctx).unwrap().is_empty());
        let refund = Command::Refund {
            order_id: "O1".into(),
        };
        let events = a.decide(refund.clone(), &ctx).unwrap();
        assert_eq!(
            events,
            [Event::Refunded {
                order_id: "O1".into(),
                amount: 100
            }]
        );
        for e in events {
            a.evolve(e, &EventMeta::default());
        }
        assert!(a.decide(refund, &ctx).unwrap().is_empty());
    }
}
