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
        assert_eq!(c.command_type, "send");
        assert_eq!(payload["recipient"], json!(format!("author-{review}")));
    }
}

/// Wired through the host: an approval's notification is accepted by the `notification`
/// aggregate and sent once, and nothing is parked. (It was parked as `rejected
/// (unknown-command)` while the policy sent a `record` command the aggregate does not know.)
#[test]
fn an_approval_reaches_the_notification_aggregate_through_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = {:?}\n\
         [[topics]]\nname = \"review\"\npartitions = 2\n\
         [[topics]]\nname = \"notification\"\npartitions = 2\n\n\
         [[plugins]]\nname = \"review\"\nkind = \"aggregate\"\ncomponent = {:?}\n\n\
         [[plugins]]\nname = \"notification\"\nkind = \"aggregate\"\ncomponent = {:?}\n\n\
         [[plugins]]\nname = \"review-notification\"\nkind = \"policy\"\ncomponent = {:?}\n\
         subscriptions = [\"review\"]\n",
        dir.path().join("data"),
        factline_tests::REVIEW,
        factline_tests::NOTIFICATION,
        factline_tests::REVIEW_NOTIFICATION,
    );
    let config =
        factline_host::Config::parse(&text, std::path::Path::new("reviews.toml"), dir.path())
            .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let host = {
        let _guard = rt.enter();
        factline_host::Host::start(config).unwrap()
    };
    let review = host.aggregate("review").unwrap();
    let submit = json!({"product_id": "P-1", "author": "aiko", "rating": 5, "comment": "good"});
    crate::support::send(review, "R-1", "submit", submit).unwrap();
    crate::support::send(review, "R-1", "approve", json!({"by": "mod-1"})).unwrap();
    rt.block_on(host.wait_until_idle()).unwrap();
    let log = host.log();
    assert_eq!(log.dead_letters(None).unwrap(), [], "nothing parked");
    let sent = log.read_stream("notification-review-R-1", 1, 10).unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].event_type, "notification.sent");
    let body = factline_guest::codec::msgpack_to_json(&sent[0].payload).unwrap();
    assert_eq!(body["recipient"], "aiko");
    rt.block_on(host.shutdown());
}
