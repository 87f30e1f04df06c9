//! The projector's behaviour as scenarios: run natively by this crate's tests and, through
//! [`all`], against the built `review_rating.wasm` by the workspace's end-to-end tests.

use factline_guest::testing::{ProjectorTest, json};

use crate::{Event, ReviewRating};

factline_guest::scenarios!(
    two_approved_reviews_rated_4_and_5_average_4_5,
    one_row_per_product,
);

fn approved(product_id: &str, rating: u8) -> Event {
    Event::Approved {
        product_id: product_id.into(),
        rating,
    }
}

pub fn two_approved_reviews_rated_4_and_5_average_4_5() -> ProjectorTest<ReviewRating> {
    ProjectorTest::given([
        ("review-R-1", approved("P-1", 4)),
        ("review-R-2", approved("P-1", 5)),
    ])
    .named("two approved reviews rated 4 and 5 average 4.5")
    .then_read_model(
        "P-1",
        json!({"product_id": "P-1", "approved_reviews": 2, "rating_sum": 9, "average_rating": 4.5}),
    )
}

pub fn one_row_per_product() -> ProjectorTest<ReviewRating> {
    ProjectorTest::given([
        ("review-R-1", approved("P-1", 2)),
        ("review-R-2", approved("P-2", 5)),
        ("review-R-3", approved("P-1", 3)),
    ])
    .named("one row per product")
    .then_read_model(
        "P-1",
        json!({"product_id": "P-1", "approved_reviews": 2, "rating_sum": 5, "average_rating": 2.5}),
    )
    .then_read_model(
        "P-2",
        json!({"product_id": "P-2", "approved_reviews": 1, "rating_sum": 5, "average_rating": 5.0}),
    )
    .then_absent("P-3")
}
