//! The review aggregate (DESIGN §6): a review is submitted with a rating of 1 to 5 and a
//! comment, then approved by a moderator or rejected with a reason; once decided it stays so.
//!
//! Stream ids are `review-<review id>`, e.g. `review-R-1`. `review.approved` carries the product,
//! author and rating, so readers (the average-rating projector, the notification policy) need
//! no other event.

use factline_guest::{Aggregate, CommandContext, EventMeta, Rejection};
use serde::{Deserialize, Serialize};

pub mod scenarios;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub status: Status,
    pub review_id: String,
    pub product_id: String,
    pub author: String,
    pub rating: u8,
    pub comment: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not submitted: the stream does not exist.
    #[default]
    New,
    Submitted,
    Approved,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Submit {
        product_id: String,
        author: String,
        rating: u8,
        comment: String,
    },
    Approve {
        by: String,
    },
    Reject {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "review.submitted")]
    Submitted {
        review_id: String,
        product_id: String,
        author: String,
        rating: u8,
        comment: String,
    },
    #[serde(rename = "review.approved")]
    Approved {
        review_id: String,
        product_id: String,
        author: String,
        rating: u8,
        approved_by: String,
    },
    #[serde(rename = "review.rejected")]
    Rejected { review_id: String, reason: String },
}

impl Aggregate for Review {
    type Command = Command;
    type Event = Event;

    fn decide(&self, command: Command, ctx: &CommandContext) -> Result<Vec<Event>, Rejection> {
        if self.status == Status::New && !matches!(command, Command::Submit { .. }) {
            return Err(Rejection::new(
                "not-found",
                format!("review stream `{}` does not exist", ctx.stream),
            ));
        }
        match command {
            Command::Submit {
                product_id,
                author,
                rating,
                comment,
            } => {
                Rejection::ensure(
                    self.status == Status::New,
                    "already-submitted",
                    "the review was already submitted",
                )?;
                Rejection::ensure(
                    (1..=5).contains(&rating),
                    "invalid-rating",
                    format!("the rating must be 1 to 5, not {rating}"),
                )?;
                Rejection::ensure(
                    !product_id.is_empty() && !author.is_empty(),
                    "invalid-review",
                    "a review needs a product and an author",
                )?;
                let review_id = ctx
                    .stream
                    .strip_prefix("review-")
                    .unwrap_or(&ctx.stream)
                    .to_owned();
                Ok(vec![Event::Submitted {
                    review_id,
                    product_id,
                    author,
                    rating,
                    comment,
                }])
            }
            Command::Approve { by } => {
                self.pending()?;
                Rejection::ensure(
                    !by.trim().is_empty(),
                    "approver-required",
                    "say who approves",
                )?;
                Ok(vec![Event::Approved {
                    review_id: self.review_id.clone(),
                    product_id: self.product_id.clone(),
                    author: self.author.clone(),
                    rating: self.rating,
                    approved_by: by,
                }])
            }
            Command::Reject { reason } => {
                self.pending()?;
                Rejection::ensure(
                    !reason.trim().is_empty(),
                    "reason-required",
                    "a rejection needs a reason",
                )?;
                Ok(vec![Event::Rejected {
                    review_id: self.review_id.clone(),
                    reason,
                }])
            }
        }
    }

    fn evolve(&mut self, event: Event, _meta: &EventMeta) {
        match event {
            Event::Submitted {
                review_id,
                product_id,
                author,
                rating,
                comment,
            } => {
                *self = Review {
                    status: Status::Submitted,
                    review_id,
                    product_id,
                    author,
                    rating,
                    comment,
                }
            }
            Event::Approved { .. } => self.status = Status::Approved,
            Event::Rejected { .. } => self.status = Status::Rejected,
        }
    }
}

impl Review {
    /// Only a submitted review awaiting moderation can be approved or rejected.
    fn pending(&self) -> Result<(), Rejection> {
        let status = match self.status {
            Status::Submitted => return Ok(()),
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::New => "new",
        };
        Err(Rejection::new(
            "not-pending",
            format!("the review is already {status}"),
        ))
    }
}

factline_guest::aggregate!(Review);
