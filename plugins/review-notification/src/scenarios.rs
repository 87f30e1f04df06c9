//! The policy's behaviour as scenarios: run natively by this crate's tests and, through
//! [`all`], against the built `review_notification.wasm` by the workspace's end-to-end tests.

use factline_guest::testing::PolicyTest;

use crate::{Event, NotificationCommand, ReviewNotification};

factline_guest::scenarios!(
    an_approval_records_a_notification_to_the_author,
    each_approval_notifies_its_own_author,
);

fn approved(review_id: &str, author: &str) -> Event {
    Event::Approved {
        review_id: review_id.into(),
        product_id: "P-1".into(),
        author: author.into(),
    }
}

fn notice(review_id: &str, author: &str) -> NotificationCommand {
    NotificationCommand::Send {
        recipient: author.into(),
        subject: format!("Review {review_id} approved"),
        body: format!("Your review {review_id} of P-1 was approved."),
    }
}

pub fn an_approval_records_a_notification_to_the_author() -> PolicyTest<ReviewNotification> {
    PolicyTest::given([("review-R-1", approved("R-1", "aiko"))])
        .named("an approval records a notification to the author")
        .then_command(
            "notification",
            "notification-review-R-1",
            &notice("R-1", "aiko"),
        )
}

pub fn each_approval_notifies_its_own_author() -> PolicyTest<ReviewNotification> {
    PolicyTest::given([
        ("review-R-1", approved("R-1", "aiko")),
        ("review-R-2", approved("R-2", "ben")),
    ])
    .named("each approval notifies its own author")
    .then_command(
        "notification",
        "notification-review-R-1",
        &notice("R-1", "aiko"),
    )
    .then_command(
        "notification",
        "notification-review-R-2",
        &notice("R-2", "ben"),
    )
}
