//! The review-notification policy: its scenarios natively and as `.wasm`, then fed the real
//! events of moderated reviews from a log: this checks what the policy asks for. (That the
//! `notification` aggregate accepts it is issue 18's wiring.)

use factline_host::ScenarioRunner;
use factline_host::{Limits, PluginKind, PolicyInstance};
use serde_json::json;

use crate::support::{load, log, runtime};

#[test]
fn scenarios_pass_natively_and_as_wasm() {
    let scenarios = review_notification::scenarios::all();
    assert!(!scenarios.is_empty());
    let runner = ScenarioRunner::new().unwrap();
    for s in &scenarios {
        crate::support::native_policy::<review_notification::ReviewNotification>(s);
        runner
            .run(factline_tests::REVIEW_NOTIFICATION.as_ref(), s)
            .unwrap_or_else(|e| panic!("wasm: {e}"));
    }
}

#[test]
fn only_approvals_notify_their_authors_with_ids_derived_from_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("review", 1)]);
    let rt = runtime();
    let policy = load(
        &rt,
        "review-notification",
        PluginKind::Policy,
        factline_tests::REVIEW_NOTIFICATION,
        Limits::default(),
    );
    crate::review::moderate_reviews(&log, &rt);
    let events = log.read_partition("review", 0, 0, 100).unwrap();
    let lists = policy
        .instantiate::<PolicyInstance>()
        .unwrap()
        .react(&events)
        .unwrap();
    assert_eq!(lists.len(), events.len(), "one list per event");
    let sent: Vec<_> = events
        .iter()
        .zip(&lists)
        .filter(|(_, l)| !l.is_empty())
        .collect();
    assert_eq!(sent.len(), 2, "R-1 and R-2 were approved");
    for (event, list) in sent {
        assert_eq!(event.event_type, "review.approved");
        let [c] = list.as_slice() else {
            panic!("{list:?}")
        };
        assert_eq!(c.aggregate, "notification");
        assert_eq!(c.command_id, format!("{}/notify-author", event.event_id));
        let review = event.stream.strip_prefix("review-").unwrap();
        let payload = factline_guest::codec::msgpack_to_json(&c.payload).unwrap();
        assert_eq!(c.command_type, "record");
        assert_eq!(payload["recipient"], json!(format!("author-{review}")));
    }
}
