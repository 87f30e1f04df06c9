//! The `json-projector` world (wit/factline.wit): a batch crosses as one JSON array of
//! envelopes with the payloads transcoded from the stored MessagePack, read-model values as JSON
//! text, and what the projector writes is stored as MessagePack. Its writes are bounded like any
//! projector's.

use std::time::Duration;

use factline_host::{
    Boundary, ConsumerGroup, DeadLetterPolicy, ExpectedVersion, FailureKind, GroupConfig, Limits,
    NewEvent, PluginKind, ProjectionHandler, RetryPolicy, WasmProjection,
};
use serde_json::{Value, json};

use crate::support::{load, log, msgpack, projector_group, runtime};

fn row(log: &factline_host::EventLog, key: &str) -> Value {
    let bytes = factline_host::query_read_model(log, "echo", key)
        .unwrap()
        .unwrap_or_else(|| panic!("no row {key}"));
    rmpv::ext::from_value(rmpv::decode::read_value(&mut bytes.as_slice()).unwrap()).unwrap()
}

#[test]
fn a_json_projector_gets_its_batch_as_one_json_array_and_its_json_is_stored_as_msgpack() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("thing", 1)]);
    let payloads = [
        msgpack(json!({"n": 7, "f": 2.5, "deep": {"list": [1, -2, "é"]}, "none": null})),
        // Binary has no JSON form of its own: it travels as the host's `$bin` escape.
        {
            let mut out = Vec::new();
            let map = rmpv::Value::Map(vec![("b".into(), rmpv::Value::Binary(vec![0, 255]))]);
            rmpv::encode::write_value(&mut out, &map).unwrap();
            out
        },
    ];
    let mut second = NewEvent::new("thing.changed", payloads[1].clone());
    second.metadata.insert("k".into(), "v\"".into());
    let appended = log
        .append(
            "thing-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("thing.happened", payloads[0].clone()), second],
        )
        .unwrap();
    let plugin = load(
        &runtime(),
        "echo",
        PluginKind::Projector,
        factline_tests::JSON_ECHO,
        Limits::default(),
    );
    assert_eq!(plugin.boundary, Boundary::Json, "the world declares JSON");
    let mut group = projector_group(&log, "echo", &["thing"], 16, &plugin);
    group.run_until_idle().unwrap();

    let events = log.read_stream("thing-1", 1, 10).unwrap();
    let (a, b) = (&events[0], &events[1]);
    let envelope = |e: &factline_host::Event, payload: &str, metadata: &str| {
        format!(
            r#"{{"event_id":"{}","event_type":"{}","stream":"thing-1","stream_version":{},"topic":"thing","partition":0,"offset":{},"occurred_at":{},"correlation_id":"{}","causation_id":"{}","schema_version":1,"payload":{payload},"metadata":{metadata}}}"#,
            e.event_id,
            e.event_type,
            e.stream_version,
            e.offset,
            e.occurred_at,
            e.correlation_id,
            e.causation_id
        )
    };
    let expected = format!(
        "[{},{}]",
        envelope(
            a,
            r#"{"deep":{"list":[1,-2,"\u00e9"]},"f":2.5,"n":7,"none":null}"#,
            "[]"
        ),
        envelope(b, r#"{"b":{"$bin":[0,255]}}"#, r#"[["k","v\""]]"#),
    );
    assert_eq!(row(&log, "batch/0"), Value::String(expected));
    for (id, stored) in appended.event_ids.iter().zip(&payloads) {
        let echo = factline_host::query_read_model(&log, "echo", &format!("echo/{id}"))
            .unwrap()
            .unwrap();
        assert_eq!(
            &echo, stored,
            "the JSON written back is the stored MessagePack"
        );
        assert_eq!(
            factline_host::query_read_model(&log, "echo", &format!("read/{id}")).unwrap(),
            Some(echo),
            "a get sees the batch's own write, as JSON"
        );
    }
}

#[test]
fn a_json_projectors_oversized_or_malformed_write_is_its_bad_output_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("thing", 1)]);
    log.append(
        "thing-1",
        ExpectedVersion::NoStream,
        vec![
            NewEvent::new("thing.happened", msgpack(json!({"big": 10}))),
            NewEvent::new("thing.happened", msgpack(json!({"big": 5000}))),
        ],
    )
    .unwrap();
    let limits = Limits {
        max_output_bytes: 1000,
        ..Limits::default()
    };
    let plugin = load(
        &runtime(),
        "echo",
        PluginKind::Projector,
        factline_tests::JSON_ECHO,
        limits,
    );
    let mut config = GroupConfig::new("echo", vec!["thing".into()]);
    config.retry = RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(1),
        max_attempts: 1,
    };
    config.on_dead_letter = DeadLetterPolicy::Skip;
    let projection = WasmProjection::new(plugin.instantiate().unwrap()).unwrap();
    let mut group =
        ConsumerGroup::new(log.clone(), config, ProjectionHandler::boxed(projection)).unwrap();
    group.run_until_idle().unwrap();
    let parked = log.dead_letters(Some("echo")).unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].offset, 1);
    assert_eq!(parked[0].failure_kind, FailureKind::BadOutput);
    assert!(
        parked[0]
            .message
            .contains("bytes of JSON, over the limit of 1000"),
        "{}",
        parked[0].message
    );
    // The first event's writes committed; the parked one wrote nothing.
    let first = log.read_stream("thing-1", 1, 1).unwrap()[0].event_id;
    assert_eq!(row(&log, &format!("big/{first}")), json!("x".repeat(10)));
}
