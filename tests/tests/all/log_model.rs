//! Property test: random appends (random streams, topics, expected versions, reopens) against a
//! simple in-memory model. Afterwards the log equals the model: stream versions contiguous,
//! partition offsets dense, every stream in exactly one partition.

use std::collections::BTreeMap;

use factline_host::{AppendError, EventLog, LogOptions, TopicConfig, partition_for};
use factline_host::{ExpectedVersion, NewEvent};
use proptest::prelude::*;

const TOPICS: [(&str, u32); 2] = [("alpha", 3), ("beta", 1)];

#[derive(Debug, Clone)]
enum Op {
    Append {
        stream: usize,
        expected: Exp,
        n: usize,
    },
    Reopen,
}

#[derive(Debug, Clone)]
enum Exp {
    Any,
    NoStream,
    /// current version + delta (may be wrong on purpose)
    Near(i64),
}

fn streams() -> Vec<String> {
    (0..6)
        .map(|i| format!("{}-s{i}", TOPICS[i % TOPICS.len()].0))
        .collect()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0..6usize, prop_oneof![Just(Exp::Any), Just(Exp::NoStream), (-2i64..=1).prop_map(Exp::Near)], 1..4usize)
            .prop_map(|(stream, expected, n)| Op::Append { stream, expected, n }),
        1 => Just(Op::Reopen),
    ]
}

fn open(dir: &std::path::Path) -> EventLog {
    EventLog::open(
        dir,
        LogOptions::with_topics(TOPICS.iter().map(|(n, p)| TopicConfig::new(*n, *p))),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let names = streams();
        // model: stream -> payload tags; (topic, partition) -> (stream, version) in offset order
        let mut model_streams: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut model_parts: BTreeMap<(String, u32), Vec<(String, u64)>> = BTreeMap::new();
        let mut tag = 0u64;
        for op in ops {
            match op {
                Op::Reopen => {
                    drop(log);
                    log = open(dir.path());
                }
                Op::Append { stream, expected, n } => {
                    let name = &names[stream];
                    let current = model_streams.get(name).map_or(0, |v| v.len() as u64);
                    let expected = match expected {
                        Exp::Any => ExpectedVersion::Any,
                        Exp::NoStream => ExpectedVersion::NoStream,
                        Exp::Near(d) => ExpectedVersion::Exact((current as i64 + d).max(1) as u64),
                    };
                    let should_win = match expected {
                        ExpectedVersion::Any => true,
                        ExpectedVersion::NoStream => current == 0,
                        ExpectedVersion::Exact(v) => v == current,
                    };
                    let tags: Vec<u64> = (0..n as u64).map(|k| tag + k).collect();
                    tag += n as u64;
                    let events = tags.iter().map(|t| NewEvent::new("model.ev", rmp_serde::to_vec(t).unwrap())).collect();
                    match log.append(name, expected, events) {
                        Ok(r) => {
                            prop_assert!(should_win, "append won against {expected} at {current}");
                            prop_assert_eq!(r.first_version, current + 1);
                            let topic = name.split('-').next().unwrap().to_owned();
                            let parts = TOPICS.iter().find(|t| t.0 == topic).unwrap().1;
                            prop_assert_eq!(r.partition, partition_for(name, parts));
                            let p = model_parts.entry((topic, r.partition)).or_default();
                            prop_assert_eq!(r.first_offset, p.len() as u64);
                            let s = model_streams.entry(name.clone()).or_default();
                            for t in tags {
                                s.push(t);
                                p.push((name.clone(), s.len() as u64));
                            }
                        }
                        Err(AppendError::WrongExpectedVersion { actual, .. }) => {
                            prop_assert!(!should_win, "append lost against {expected} at {current}");
                            prop_assert_eq!(actual, current);
                        }
                        Err(e) => prop_assert!(false, "unexpected error {e}"),
                    }
                }
            }
        }
        // The log equals the model.
        for name in &names {
            let events = log.read_stream(name, 1, usize::MAX).unwrap();
            let expected = model_streams.get(name).cloned().unwrap_or_default();
            let got: Vec<u64> = events.iter().map(|e| rmp_serde::from_slice(&e.payload).unwrap()).collect();
            prop_assert_eq!(&got, &expected);
            let versions: Vec<u64> = events.iter().map(|e| e.stream_version).collect();
            prop_assert_eq!(versions, (1..=expected.len() as u64).collect::<Vec<_>>());
            // One partition per stream.
            let mut parts: Vec<u32> = events.iter().map(|e| e.partition).collect();
            parts.dedup();
            prop_assert!(parts.len() <= 1);
        }
        for (topic, partitions) in TOPICS {
            for p in 0..partitions {
                let events = log.read_partition(topic, p, 0, usize::MAX).unwrap();
                let offsets: Vec<u64> = events.iter().map(|e| e.offset).collect();
                prop_assert_eq!(offsets, (0..events.len() as u64).collect::<Vec<_>>());
                prop_assert_eq!(log.high_water_mark(topic, p).unwrap(), events.len() as u64);
                let got: Vec<(String, u64)> = events.iter().map(|e| (e.stream.clone(), e.stream_version)).collect();
                let want = model_parts.get(&(topic.to_owned(), p)).cloned().unwrap_or_default();
                prop_assert_eq!(got, want);
            }
        }
    }
}
