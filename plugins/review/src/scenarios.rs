//! The review's rules as scenarios: run natively by this crate's tests and, through [`all`],
//! against the built `review.wasm` by the workspace's end-to-end tests.

use factline_guest::testing::{AggregateCase, AggregateTest, json};

use crate::{Command, Event, Review};

pub const STREAM: &str = "review-R-1";

factline_guest::scenarios!(
    submit_a_review,
    a_rating_of_0_is_rejected,
    a_rating_of_6_is_rejected,
    submitting_twice_is_rejected,
    approve_a_submitted_review,
    approving_needs_an_approver,
    reject_with_a_reason,
    rejecting_needs_a_reason,
    an_approved_review_cannot_be_rejected,
    a_rejected_review_cannot_be_approved,
    approving_a_missing_review_is_not_found,
);

fn given(name: &str, events: impl IntoIterator<Item = Event>) -> AggregateTest<Review> {
    AggregateTest::given(events).on_stream(STREAM).named(name)
}

fn submit(rating: u8) -> Command {
    Command::Submit {
        product_id: "P-1".into(),
        author: "aiko".into(),
        rating,
        comment: "Sturdy and quiet.".into(),
    }
}

fn submitted() -> Event {
    Event::Submitted {
        review_id: "R-1".into(),
        product_id: "P-1".into(),
        author: "aiko".into(),
        rating: 4,
        comment: "Sturdy and quiet.".into(),
    }
}

fn approved() -> Event {
    Event::Approved {
        review_id: "R-1".into(),
        product_id: "P-1".into(),
        author: "aiko".into(),
        rating: 4,
        approved_by: "moderator-1".into(),
    }
}

pub fn submit_a_review() -> AggregateCase<Review> {
    given("submit a review rated 4", [])
        .when(submit(4))
        .then_events([submitted()])
        .then_version(1)
        .then_state(json!({
            "status": "submitted", "review_id": "R-1", "product_id": "P-1", "author": "aiko",
            "rating": 4, "comment": "Sturdy and quiet.",
        }))
}

pub fn a_rating_of_0_is_rejected() -> AggregateCase<Review> {
    given("a rating of 0 is rejected", [])
        .when(submit(0))
        .then_rejected("invalid-rating")
}

pub fn a_rating_of_6_is_rejected() -> AggregateCase<Review> {
    given("a rating of 6 is rejected", [])
        .when(submit(6))
        .then_rejected("invalid-rating")
        .then_message_contains("1 to 5")
}

pub fn submitting_twice_is_rejected() -> AggregateCase<Review> {
    given("submitting twice is rejected", [submitted()])
        .when(submit(5))
        .then_rejected("already-submitted")
}

pub fn approve_a_submitted_review() -> AggregateCase<Review> {
    given("approve a submitted review", [submitted()])
        .when(Command::Approve {
            by: "moderator-1".into(),
        })
        .then_events([approved()])
        .then_version(2)
}

pub fn approving_needs_an_approver() -> AggregateCase<Review> {
    given("approving needs an approver", [submitted()])
        .when(Command::Approve { by: " ".into() })
        .then_rejected("approver-required")
}

pub fn reject_with_a_reason() -> AggregateCase<Review> {
    given("reject with a reason", [submitted()])
        .when(Command::Reject {
            reason: "off-topic".into(),
        })
        .then_events([Event::Rejected {
            review_id: "R-1".into(),
            reason: "off-topic".into(),
        }])
        .then_version(2)
}

pub fn rejecting_needs_a_reason() -> AggregateCase<Review> {
    given("rejecting needs a reason", [submitted()])
        .when(Command::Reject { reason: "".into() })
        .then_rejected("reason-required")
}

pub fn an_approved_review_cannot_be_rejected() -> AggregateCase<Review> {
    given(
        "an approved review cannot be rejected",
        [submitted(), approved()],
    )
    .when(Command::Reject {
        reason: "changed my mind".into(),
    })
    .then_rejected("not-pending")
}

pub fn a_rejected_review_cannot_be_approved() -> AggregateCase<Review> {
    given(
        "a rejected review cannot be approved",
        [
            submitted(),
            Event::Rejected {
                review_id: "R-1".into(),
                reason: "spam".into(),
            },
        ],
    )
    .when(Command::Approve {
        by: "moderator-1".into(),
    })
    .then_rejected("not-pending")
}

pub fn approving_a_missing_review_is_not_found() -> AggregateCase<Review> {
    given("approving a missing review is not found", [])
        .when(Command::Approve {
            by: "moderator-1".into(),
        })
        .then_rejected("not-found")
}
