//! The notification-log projector as `.wasm` over the notification aggregate's events: one row
//! per sent notification, found by recipient.

use factline_host::query_read_model_prefix;
use factline_host::{AggregateHandler, AggregateOptions, CommandRequest};
use factline_host::{Limits, PluginKind};
use serde_json::json;

use crate::support::{load, log, msgpack, runtime};

#[test]
fn records_every_sent_notification() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = log(dir.path(), &[("notification", 2)]);
    let agg = load(
        &rt,
        "notification",
        PluginKind::Aggregate,
        factline_tests::NOTIFICATION,
        Limits::default(),
    );
    let proj = load(
        &rt,
        "notification-log",
        PluginKind::Projector,
        factline_tests::NOTIFICATION_LOG,
        Limits::default(),
    );
    let h = AggregateHandler::new(log.clone(), agg, AggregateOptions::new("notification")).unwrap();
    for (order, recipient) in [("O1", "C1"), ("O2", "C1"), ("O3", "C2")] {
        h.handle(CommandRequest {
            id: order.into(),
            command_type: "send".into(),
            payload: msgpack(
                json!({"recipient": recipient, "subject": format!("about {order}"), "body": "b"}),
            ),
            ..Default::default()
        })
        .unwrap();
    }
    let mut p =
        crate::support::projector_group(&log, "notification-log", &["notification"], 10, &proj);
    assert_eq!(p.run_until_idle().unwrap(), 3);
    let c1 = query_read_model_prefix(&log, "notification-log", "C1/", 10).unwrap();
    let subjects: Vec<String> = c1
        .iter()
        .map(|(_, v)| {
            rmp_serde::from_slice::<serde_json::Value>(v).unwrap()["subject"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(subjects, ["about O1", "about O2"]);
    assert_eq!(
        query_read_model_prefix(&log, "notification-log", "C2/", 10)
            .unwrap()
            .len(),
        1
    );
}
