//! The average-rating projector (DESIGN §6): one read-model row per product, over its approved
//! reviews only, keyed by product id.

use factline_guest::{EventMeta, Failure, Projector, ReadModel};
use serde::{Deserialize, Serialize};

pub mod scenarios;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductRating {
    pub product_id: String,
    pub approved_reviews: u64,
    pub rating_sum: u64,
    /// `rating_sum / approved_reviews`.
    pub average_rating: f64,
}

/// The review events this projector reads, with only the fields it needs. Submitted and
/// rejected reviews do not count, so they are not delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "review.approved")]
    Approved { product_id: String, rating: u8 },
}

#[derive(Debug, Default)]
pub struct ReviewRating;

impl Projector for ReviewRating {
    type Event = Event;

    fn project(
        &mut self,
        Event::Approved { product_id, rating }: Event,
        _meta: &EventMeta,
        model: &mut ReadModel<'_>,
    ) -> Result<(), Failure> {
        let mut row = model
            .get::<ProductRating>(&product_id)?
            .unwrap_or(ProductRating {
                product_id: product_id.clone(),
                approved_reviews: 0,
                rating_sum: 0,
                average_rating: 0.0,
            });
        row.approved_reviews += 1;
        row.rating_sum += u64::from(rating);
        row.average_rating = row.rating_sum as f64 / row.approved_reviews as f64;
        model.put(&product_id, &row)
    }
}

factline_guest::projector!(ReviewRating);
