//! The average-rating projector's scenarios natively and as `.wasm` (its host path is in
//! `review.rs`).

use factline_host::ScenarioRunner;

#[test]
fn scenarios_pass_natively_and_as_wasm() {
    let scenarios = review_rating::scenarios::all();
    assert!(!scenarios.is_empty());
    let runner = ScenarioRunner::new().unwrap();
    for s in &scenarios {
        crate::support::native_projector::<review_rating::ReviewRating>(s);
        runner
            .run(factline_tests::REVIEW_RATING.as_ref(), s)
            .unwrap_or_else(|e| panic!("wasm: {e}"));
    }
}
