//! The poison policy's fixed release: a component of the policy world that reacts to a poisoned
//! event like to any other (the dead-letter test deploys it; see `poison_policy.rs`).

use factline_host::Dispatcher;
use factline_host::PolicyHandler;
use factline_host::{ConsumerGroup, GroupConfig};
use factline_host::{ExpectedVersion, NewEvent};
use factline_host::{Limits, PluginKind};
use serde_json::json;

use crate::support::{load, log, msgpack, runtime};

#[test]
fn the_fixed_release_sends_a_command_for_a_poisoned_event() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("item", 1), ("notification", 1)]);
    let rt = runtime();
    let notification = load(
        &rt,
        "notification",
        PluginKind::Aggregate,
        factline_tests::NOTIFICATION,
        Limits::default(),
    );
    let aggregates = [(
        "notification".to_owned(),
        std::sync::Arc::new(
            factline_host::AggregateHandler::new(
                log.clone(),
                notification,
                factline_host::AggregateOptions::new("notification"),
            )
            .unwrap(),
        ),
    )];
    let fixed = load(
        &rt,
        "poison-policy",
        PluginKind::Policy,
        factline_tests::POISON_POLICY_FIXED,
        Limits::default(),
    );
    let handler =
        PolicyHandler::new("poison-policy", Dispatcher::new(aggregates.into()), &fixed).unwrap();
    let mut group = ConsumerGroup::new(
        log.clone(),
        GroupConfig::new("poison-policy", vec!["item".into()]),
        Box::new(handler),
    )
    .unwrap();
    log.append(
        "item-1",
        ExpectedVersion::NoStream,
        vec![NewEvent::new("item.a", msgpack(json!({ "poison": true })))],
    )
    .unwrap();
    assert_eq!(group.run_until_idle().unwrap(), 1);
    assert!(group.dead_letters().unwrap().is_empty());
    let sent = log.read_stream("notification-item-1", 1, 10).unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].event_type, "notification.sent");
}
