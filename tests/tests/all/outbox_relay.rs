//! The outbox relay: a consumer group publishing to another log, through publishes that fail
//! halfway. Offsets advance only after a publish succeeded and the target deduplicates by
//! event id, so every event arrives exactly once, in its stream's order.

use std::collections::BTreeMap;
use std::time::Duration;

use factline_host::{ConsumerGroup, GroupConfig, RetryPolicy};
use factline_host::{Event, ExpectedVersion, NewEvent};
use factline_host::{LogRelay, Relay, RelayError, RelayProjection};

use crate::support::{log, msgpack};

/// Publishes the first half of every third batch, then fails: a broker connection lost
/// mid-batch.
struct Flaky {
    inner: LogRelay,
    calls: u32,
}

impl Relay for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }

    fn publish(&mut self, events: &[Event]) -> Result<(), RelayError> {
        self.calls += 1;
        if self.calls.is_multiple_of(3) {
            self.inner.publish(&events[..events.len() / 2])?;
            return Err(RelayError {
                relay: "flaky".into(),
                message: "connection reset".into(),
            });
        }
        self.inner.publish(events)
    }
}

#[test]
fn relayed_events_arrive_exactly_once_in_stream_order() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = log(a_dir.path(), &[("order", 3)]);
    let target = log(b_dir.path(), &[("order", 3)]);
    for i in 0..300u64 {
        let ev = NewEvent::new("order.noted", msgpack(serde_json::json!({ "n": i })));
        source
            .append(&format!("order-{}", i % 30), ExpectedVersion::Any, vec![ev])
            .unwrap();
    }
    let mut config = GroupConfig::new("relay", vec!["order".into()]);
    config.batch_size = 16;
    config.retry = RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(2),
        max_attempts: 10,
    };
    let relay = Flaky {
        inner: LogRelay::new("to-b", target.clone()),
        calls: 0,
    };
    let mut group = ConsumerGroup::new(
        source.clone(),
        config,
        factline_host::ProjectionHandler::boxed(RelayProjection::new(relay, None)),
    )
    .unwrap();
    group.run_until_idle().unwrap();
    assert!(
        source.dead_letters(None).unwrap().is_empty(),
        "transient failures were retried, not parked"
    );

    let ids = |l: &factline_host::EventLog| {
        let mut by_stream: BTreeMap<String, Vec<uuid::Uuid>> = BTreeMap::new();
        for s in 0..30 {
            let stream = format!("order-{s}");
            by_stream.insert(
                stream.clone(),
                l.read_stream(&stream, 1, usize::MAX)
                    .unwrap()
                    .iter()
                    .map(|e| e.event_id)
                    .collect(),
            );
        }
        by_stream
    };
    let (a, b) = (ids(&source), ids(&target));
    assert_eq!(
        b.values().map(Vec::len).sum::<usize>(),
        300,
        "nothing lost or doubled"
    );
    assert_eq!(a, b, "same events, same order per stream");
}
