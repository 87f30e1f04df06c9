//! The review example end to end: the aggregate's scenarios natively and as `.wasm`, then
//! reviews through the host's command path into the average-rating read model.

use factline_host::EventLog;
use factline_host::ScenarioRunner;
use factline_host::query_read_model;
use factline_host::{AggregateHandler, AggregateOptions, CommandError};
use factline_host::{Limits, PluginKind, PluginRuntime};
use serde_json::json;

use crate::support::{command, load, log, runtime};

#[test]
fn scenarios_pass_natively_and_as_wasm() {
    let scenarios = review::scenarios::all();
    assert!(scenarios.len() >= 10, "every review rule needs a scenario");
    let runner = ScenarioRunner::new().unwrap();
    for s in &scenarios {
        crate::support::native_aggregate::<review::Review>(s);
        runner
            .run(factline_tests::REVIEW.as_ref(), s)
            .unwrap_or_else(|e| panic!("wasm: {e}"));
    }
}

pub fn send(
    h: &AggregateHandler,
    id: &str,
    t: &str,
    v: serde_json::Value,
) -> Result<u64, CommandError> {
    h.handle(command(id, t, v)).map(|o| o.version)
}

/// Through the review aggregate: three reviews of P-1 (4 and 5 approved, 1 rejected) and one of
/// P-2 (pending), so P-1 averages 4.5.
pub fn moderate_reviews(log: &EventLog, rt: &PluginRuntime) {
    let aggregate = load(
        rt,
        "review",
        PluginKind::Aggregate,
        factline_tests::REVIEW,
        Limits::default(),
    );
    let handler = AggregateHandler::new(log.clone(), aggregate, AggregateOptions::new("review"));
    let h = &handler.unwrap();
    for (id, product, rating) in [
        ("R-1", "P-1", 4),
        ("R-2", "P-1", 5),
        ("R-3", "P-1", 1),
        ("R-4", "P-2", 3),
    ] {
        let submit = json!({"product_id": product, "author": format!("author-{id}"), "rating": rating, "comment": "ok"});
        send(h, id, "submit", submit).unwrap();
    }
    send(h, "R-1", "approve", json!({"by": "mod"})).unwrap();
    send(h, "R-2", "approve", json!({"by": "mod"})).unwrap();
    send(h, "R-3", "reject", json!({"reason": "abusive"})).unwrap();
    // Decided reviews stay decided.
    let err = send(h, "R-3", "approve", json!({"by": "mod"})).unwrap_err();
    assert!(
        matches!(&err, CommandError::Rejected(r) if r.code == "not-pending"),
        "{err}"
    );
}

#[test]
fn approved_reviews_average_per_product_through_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("review", 4)]);
    let rt = runtime();
    let rating = load(
        &rt,
        "review-rating",
        PluginKind::Projector,
        factline_tests::REVIEW_RATING,
        Limits::default(),
    );
    moderate_reviews(&log, &rt);
    let mut p = crate::support::projector_group(&log, "review-rating", &["review"], 3, &rating);
    p.run_until_idle().unwrap();
    let row = |product: &str| {
        query_read_model(&log, "review-rating", product)
            .unwrap()
            .map(|v| factline_guest::codec::msgpack_to_json(&v).unwrap())
    };
    let p1 = row("P-1").expect("P-1 has approved reviews");
    assert_eq!(
        (&p1["approved_reviews"], &p1["average_rating"]),
        (&json!(2), &json!(4.5))
    );
    assert_eq!(row("P-2"), None, "R-4 is still pending");
}
