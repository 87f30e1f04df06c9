//! The review-notification policy (DESIGN §6): when a review is approved, record a notification
//! to its author. It sends a `record` command to the `notification` aggregate, one stream per
//! review, with an id derived from the approving event so a redelivery records nothing twice.

use factline_guest::{EventMeta, Failure, OutgoingCommand, Policy};
use serde::{Deserialize, Serialize};

pub mod scenarios;

/// The review events this policy reacts to, with only the fields it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "review.approved")]
    Approved {
        review_id: String,
        product_id: String,
        author: String,
    },
}

/// The command it sends to the `notification` aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationCommand {
    Record {
        recipient: String,
        topic: String,
        message: String,
    },
}

#[derive(Debug, Default)]
pub struct ReviewNotification;

impl Policy for ReviewNotification {
    type Event = Event;

    fn react(&self, event: Event, meta: &EventMeta) -> Result<Vec<OutgoingCommand>, Failure> {
        let Event::Approved {
            review_id,
            product_id,
            author,
        } = event;
        let command = NotificationCommand::Record {
            recipient: author,
            topic: "review-approved".into(),
            message: format!("Your review {review_id} of {product_id} was approved."),
        };
        Ok(vec![OutgoingCommand::new(
            "notification",
            format!("notification-review-{review_id}"),
            format!("{}/notify-author", meta.event_id),
            &command,
        )?])
    }
}

factline_guest::policy!(ReviewNotification);
