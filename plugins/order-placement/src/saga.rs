// The saga's definition, included by `lib.rs` (and by test builds of other versions), which
// define `CONFIRMATION_SUBJECT`.

use factline_guest::{
    EventMeta, Failure, OutgoingCommand, Saga, SagaDefinition, Started, StepDefinition, Verdict,
};
use serde::{Deserialize, Serialize};

pub const RESERVE_INVENTORY: &str = "reserve_inventory";
pub const PROCESS_PAYMENT: &str = "process_payment";
pub const SCHEDULE_SHIPPING: &str = "schedule_shipping";
pub const SEND_CONFIRMATION: &str = "send_confirmation";

/// How long shipping may take to answer (short: a depot that only queues is noticed quickly).
pub const SHIPPING_TIMEOUT_MS: u64 = 1_500;
const STEP_TIMEOUT_MS: u64 = 30_000;

/// One instance's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlacement {
    pub order_id: String,
    pub customer_id: String,
    pub items: Vec<Line>,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub product_id: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    #[serde(rename = "order.placed")]
    Placed {
        order_id: String,
        customer_id: String,
        items: Vec<Line>,
        total: u64,
    },
}

/// The answers it judges (other event types are never its answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    #[serde(rename = "inventory.reserved")]
    Reserved { order_id: String },
    #[serde(rename = "inventory.insufficient")]
    Insufficient { order_id: String, product_id: String },
    #[serde(rename = "payment.charged")]
    Charged { order_id: String },
    #[serde(rename = "shipping.scheduled")]
    Scheduled { order_id: String },
    #[serde(rename = "notification.sent")]
    Sent { subject: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InventoryCommand {
    Reserve { order_id: String, items: Vec<Line> },
    Release { order_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PaymentCommand {
    Charge { order_id: String, amount: u64 },
    Refund { order_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShippingCommand {
    Schedule { order_id: String },
    Cancel { order_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationCommand {
    Send {
        recipient: String,
        subject: String,
        body: String,
    },
}

impl OrderPlacement {
    fn subject(&self) -> String {
        format!("{CONFIRMATION_SUBJECT}: {}", self.order_id)
    }

    fn id(&self, what: &str) -> String {
        format!("{}/{what}", self.order_id)
    }

    fn unknown(step: &str) -> Failure {
        Failure::new(format!("order-placement has no step `{step}`"))
    }
}

impl Saga for OrderPlacement {
    type Trigger = Trigger;
    type Answer = Answer;

    fn definition() -> SagaDefinition {
        SagaDefinition::new("order-placement")
            .step(StepDefinition::new(RESERVE_INVENTORY, STEP_TIMEOUT_MS).compensable())
            .step(StepDefinition::new(PROCESS_PAYMENT, STEP_TIMEOUT_MS).compensable())
            .step(StepDefinition::new(SCHEDULE_SHIPPING, SHIPPING_TIMEOUT_MS).compensable())
            .step(StepDefinition::new(SEND_CONFIRMATION, STEP_TIMEOUT_MS))
    }

    fn start(trigger: Trigger, _meta: &EventMeta) -> Result<Option<Started<Self>>, Failure> {
        let Trigger::Placed {
            order_id,
            customer_id,
            items,
            total,
        } = trigger;
        Ok(Some(Started {
            instance_id: order_id.clone(),
            data: OrderPlacement {
                order_id,
                customer_id,
                items,
                total,
            },
        }))
    }

    fn execute(&self, step: &str) -> Result<OutgoingCommand, Failure> {
        let order_id = self.order_id.clone();
        match step {
            RESERVE_INVENTORY => OutgoingCommand::new(
                "inventory",
                "inventory-main",
                self.id("reserve"),
                &InventoryCommand::Reserve {
                    order_id,
                    items: self.items.clone(),
                },
            ),
            PROCESS_PAYMENT => OutgoingCommand::new(
                "payment",
                format!("payment-{}", self.customer_id),
                self.id("charge"),
                &PaymentCommand::Charge {
                    order_id,
                    amount: self.total,
                },
            ),
            SCHEDULE_SHIPPING => OutgoingCommand::new(
                "shipping",
                "shipping-main",
                self.id("schedule"),
                &ShippingCommand::Schedule { order_id },
            ),
            SEND_CONFIRMATION => OutgoingCommand::new(
                "notification",
                format!("notification-{}", self.order_id),
                self.id("confirm"),
                &NotificationCommand::Send {
                    recipient: self.customer_id.clone(),
                    subject: self.subject(),
                    body: format!("Your order {} of {} is on its way.", order_id, self.total),
                },
            ),
            other => Err(Self::unknown(other)),
        }
    }

    fn compensate(&self, step: &str) -> Result<Option<OutgoingCommand>, Failure> {
        let order_id = self.order_id.clone();
        match step {
            // release_inventory
            RESERVE_INVENTORY => OutgoingCommand::new(
                "inventory",
                "inventory-main",
                self.id("release"),
                &InventoryCommand::Release { order_id },
            )
            .map(Some),
            // refund_payment
            PROCESS_PAYMENT => OutgoingCommand::new(
                "payment",
                format!("payment-{}", self.customer_id),
                self.id("refund"),
                &PaymentCommand::Refund { order_id },
            )
            .map(Some),
            // cancel_shipping
            SCHEDULE_SHIPPING => OutgoingCommand::new(
                "shipping",
                "shipping-main",
                self.id("cancel-shipping"),
                &ShippingCommand::Cancel { order_id },
            )
            .map(Some),
            SEND_CONFIRMATION => Ok(None),
            other => Err(Self::unknown(other)),
        }
    }

    fn judge(&self, step: &str, answer: Answer, _meta: &EventMeta) -> Result<Verdict<Self>, Failure> {
        let mine = |order_id: &str| order_id == self.order_id;
        Ok(match (step, answer) {
            (RESERVE_INVENTORY, Answer::Reserved { order_id }) if mine(&order_id) => {
                Verdict::Succeeded(self.clone())
            }
            (RESERVE_INVENTORY, Answer::Insufficient {
                order_id,
                product_id,
            }) if mine(&order_id) => Verdict::Failed(format!("insufficient stock of {product_id}")),
            (PROCESS_PAYMENT, Answer::Charged { order_id })
            | (SCHEDULE_SHIPPING, Answer::Scheduled { order_id })
                if mine(&order_id) =>
            {
                Verdict::Succeeded(self.clone())
            }
            (SEND_CONFIRMATION, Answer::Sent { subject }) if subject == self.subject() => {
                Verdict::Succeeded(self.clone())
            }
            _ => Verdict::NotMine,
        })
    }
}
