//! Bounded fuzzing (issue 20): the decoders facing untrusted bytes — the HTTP command body, the
//! stored event envelope, and the payload check every decided payload passes — run on random and
//! mutated inputs for a fixed time in the normal test command (`FACTLINE_FUZZ_MS` per target,
//! default 1500 ms), printing executions and crashes. A crash (a panic) fails the test with the
//! input that caused it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use factline_guest::codec::{json_to_msgpack, msgpack_to_json};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

use super::parse_command_body;
use crate::event::Event;
use crate::plugin::check_msgpack;

fn budget() -> Duration {
    let ms = std::env::var("FACTLINE_FUZZ_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    Duration::from_millis(ms)
}

/// Runs `check` on values of `strategy` until the budget is spent; returns the executions.
fn fuzz<S>(name: &str, strategy: S, check: impl Fn(&S::Value)) -> u64
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::default();
    let deadline = Instant::now() + budget();
    let mut executions = 0u64;
    while Instant::now() < deadline {
        let value = strategy
            .new_tree(&mut runner)
            .expect("strategies here always generate")
            .current();
        if catch_unwind(AssertUnwindSafe(|| check(&value))).is_err() {
            panic!("fuzz {name}: crash after {executions} executions on {value:?}");
        }
        executions += 1;
    }
    eprintln!("fuzz {name}: {executions} executions, 0 crashes");
    assert!(executions > 0);
    executions
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinities", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `bytes` with a few random bytes overwritten and maybe cut short: near-valid inputs reach
/// deeper into a decoder than random ones.
fn mutated(valid: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        valid,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(mut bytes, flips, cut, truncate)| {
            if !bytes.is_empty() {
                for (at, b) in flips {
                    let i = at.index(bytes.len());
                    bytes[i] = b;
                }
                if truncate {
                    bytes.truncate(cut.index(bytes.len()));
                }
            }
            bytes
        })
}

fn command_body() -> impl Strategy<Value = Vec<u8>> {
    (
        ".{0,30}",
        json_value(),
        any::<Option<u128>>(),
        any::<bool>(),
    )
        .prop_map(|(t, payload, id, extra)| {
            let mut body = json!({ "type": t, "payload": payload });
            if let Some(id) = id {
                body["command_id"] = json!(uuid::Uuid::from_u128(id));
            }
            if extra {
                body["correlation_id"] = json!("c");
            }
            serde_json::to_vec(&body).unwrap()
        })
}

#[test]
fn fuzz_the_http_command_body() {
    let any_bytes = prop::collection::vec(any::<u8>(), 0..256);
    let strategy = prop_oneof![any_bytes, command_body(), mutated(command_body())];
    fuzz("http command body", strategy, |bytes| {
        match parse_command_body(bytes) {
            // What a parsed body becomes is stored: it must pass the payload check.
            Ok(body) => {
                let payload = json_to_msgpack(&body.payload);
                check_msgpack(&payload).expect("an encoded JSON payload passes the check");
            }
            Err(e) => {
                assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
                assert_eq!(e.body()["error"], "malformed");
            }
        }
    });
}

fn envelope() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u128>(),
        ".{0,12}",
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
        json_value(),
        prop::collection::btree_map(".{0,6}", ".{0,6}", 0..4),
    )
        .prop_map(|(id, t, version, partition, offset, payload, metadata)| {
            let e = Event {
                event_id: uuid::Uuid::from_u128(id),
                event_type: t,
                stream: "s-1".into(),
                stream_version: version,
                topic: "s".into(),
                partition,
                offset,
                occurred_at: offset,
                correlation_id: "c".into(),
                causation_id: "d".into(),
                schema_version: 1,
                payload: json_to_msgpack(&payload),
                metadata: metadata.into_iter().collect(),
            };
            rmp_serde::to_vec_named(&e).unwrap()
        })
}

#[test]
fn fuzz_the_stored_event_envelope() {
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        envelope(),
        mutated(envelope())
    ];
    fuzz("event envelope", strategy, |bytes| {
        if let Ok(event) = rmp_serde::from_slice::<Event>(bytes) {
            // Whatever decodes re-encodes to an equal envelope.
            let again = rmp_serde::to_vec_named(&event).unwrap();
            assert_eq!(rmp_serde::from_slice::<Event>(&again).unwrap(), event);
        }
    });
}

#[test]
fn fuzz_the_decided_payload_check() {
    let valid = || json_value().prop_map(|v| json_to_msgpack(&v));
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        valid(),
        mutated(valid())
    ];
    fuzz("decided payload check", strategy, |bytes| {
        if check_msgpack(bytes).is_ok() {
            // Accepted means readable: one value, strings valid UTF-8 (only floats JSON cannot
            // hold and extension types have no JSON form).
            if let Err(e) = msgpack_to_json(bytes) {
                let e = e.to_string();
                assert!(
                    e.contains("no JSON representation") || e.contains("extension type"),
                    "accepted but unreadable: {e}"
                );
            }
        }
    });
}
