//! The review-notification policy (DESIGN §6): when a review is approved, notify its author. It
//! sends the `notification` aggregate's `send` command, one stream per review, with an id
//! derived from the approving event so a redelivery sends nothing twice.

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

/// The command it sends: the `notification` aggregate's `send`, with the same fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationCommand {
    Send {
        recipient: String,
        subject: String,
        body: String,
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
        let command = NotificationCommand::Send {
            recipient: author,
            subject: format!("Review {review_id} approved"),
            body: format!("Your review {review_id} of {product_id} was approved."),
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
