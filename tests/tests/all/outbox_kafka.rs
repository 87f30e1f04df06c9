//! The Kafka outbox relay (`[[outbox]]`) against a real broker (tansu): `factline run` is
//! SIGKILLed mid-relay and restarted; a consumer that deduplicates on the `event-id` header
//! sees every event exactly once, each factline partition in offset order, each stream's
//! versions contiguous, and nothing the relay's `event_types` leave out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use factline_host::{Durability, EventLog, ExpectedVersion, LogOptions, NewEvent, TopicConfig};
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Offset, TopicPartitionList};

use crate::broker::Broker;
use crate::support::RunningHost;

const TOPIC: &str = "order";
const PARTITIONS: u32 = 3;
const STREAMS: usize = 60;
const EVENTS: usize = 12_000;
const KAFKA_TOPIC: &str = "orders-out";
const OUTBOX: &str = "orders-to-kafka";
/// Relayed; `order.noted` is not.
const RELAYED: &str = "order.placed";

/// One record as a consumer outside factline sees it.
struct Seen {
    event_id: String,
    stream: String,
    version: u64,
    partition: u32,
    offset: u64,
    kafka_partition: i32,
}

#[test]
fn sigkill_mid_relay_then_every_event_exactly_once_in_partition_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let data_dir = dir.path().join("data");
    let expected = append_events(&data_dir);
    let config = dir.path().join("factline.toml");
    std::fs::write(&config, config_text(&data_dir, &broker.bootstrap())).unwrap();
    let bin = crate::support::factline_binary();

    let mut host = RunningHost::spawn(&bin, &config, &[]);
    host.wait_ready();
    let consumer = consumer(&broker.bootstrap());
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // SIGKILL once a fifth is out: the relay is mid-way, some batch published but not committed.
    while distinct(&seen) < expected.len() / 5 {
        assert!(
            Instant::now() < deadline,
            "the relay published {} of {} events in 60 s\n{}",
            distinct(&seen),
            expected.len(),
            host.stderr()
        );
        poll(&consumer, &mut seen);
    }
    host.kill();
    let committed = committed(&data_dir);
    assert!(
        committed < EVENTS as u64,
        "the kill came after the relay had committed everything ({committed} events): not mid-relay"
    );

    // The restart resends from the committed offsets and exits once every group caught up.
    crate::support::factline_run_until_idle(&bin, &config);
    let deadline = Instant::now() + Duration::from_secs(60);
    while distinct(&seen) < expected.len() && Instant::now() < deadline {
        poll(&consumer, &mut seen);
    }
    // Anything still in flight would be a duplicate or a stray: read until the topic is quiet.
    let quiet = Instant::now() + Duration::from_secs(1);
    while Instant::now() < quiet {
        poll(&consumer, &mut seen);
    }

    let mut ids = HashSet::new();
    let mut by_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut by_stream: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for s in &seen {
        if !ids.insert(s.event_id.clone()) {
            continue; // a resend after the crash: the consumer deduplicates on the id
        }
        let Some((stream, version)) = expected.get(&s.event_id) else {
            panic!(
                "record {} is no relayed event of the log ({}, v{})",
                s.event_id, s.stream, s.version
            );
        };
        assert_eq!((stream.as_str(), *version), (s.stream.as_str(), s.version));
        assert_eq!(
            s.kafka_partition,
            (s.partition % PARTITIONS) as i32,
            "a factline partition maps to one Kafka partition"
        );
        by_partition.entry(s.partition).or_default().push(s.offset);
        by_stream
            .entry(s.stream.clone())
            .or_default()
            .push(s.version);
    }
    let missing: Vec<_> = expected.keys().filter(|id| !ids.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events never reached Kafka, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(3)]
    );
    for (p, offsets) in &by_partition {
        assert!(
            offsets.is_sorted(),
            "partition {p}: first deliveries out of offset order"
        );
    }
    for (stream, versions) in &by_stream {
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "stream {stream}: versions out of order {versions:?}"
        );
    }
    eprintln!(
        "kafka outbox: {} events relayed, {} records read ({} resent after the kill at {committed} committed)",
        expected.len(),
        seen.len(),
        seen.len() - expected.len()
    );
}

/// The log before the host starts: every fourth event is an `order.noted` the relay skips.
/// Returns the relayed events: id -> (stream, version).
fn append_events(data_dir: &Path) -> HashMap<String, (String, u64)> {
    let mut options = LogOptions::with_topics([TopicConfig::new(TOPIC, PARTITIONS)]);
    options.durability = Durability::NoSyncForTests;
    let log = EventLog::open(data_dir, options).unwrap();
    let mut relayed = HashMap::new();
    for chunk in 0..EVENTS / 20 {
        let stream = format!("{TOPIC}-{}", chunk % STREAMS);
        let events: Vec<NewEvent> = (0..20)
            .map(|i| {
                let kind = if i % 4 == 3 { "order.noted" } else { RELAYED };
                let payload = rmp_serde::to_vec_named(&serde_json::json!({ "i": i })).unwrap();
                NewEvent::new(kind, payload)
            })
            .collect();
        let r = log.append(&stream, ExpectedVersion::Any, events).unwrap();
        for e in log.read_stream(&stream, r.first_version, 20).unwrap() {
            if e.event_type == RELAYED {
                relayed.insert(e.event_id.to_string(), (e.stream, e.stream_version));
            }
        }
    }
    relayed
}

/// Events the outbox group committed (of every type), read from the stopped host's log.
fn committed(data_dir: &Path) -> u64 {
    let log = EventLog::open(
        data_dir,
        LogOptions::with_topics([TopicConfig::new(TOPIC, PARTITIONS)]),
    )
    .unwrap();
    (0..PARTITIONS)
        .map(|p| log.group_offset(OUTBOX, TOPIC, p).unwrap().unwrap_or(0))
        .sum()
}

fn config_text(data_dir: &Path, bootstrap: &str) -> String {
    format!(
        r#"data_dir = '{}'
workers = 2

[http]
address = "127.0.0.1:0"

[[topics]]
name = "{TOPIC}"
partitions = {PARTITIONS}

[[outbox]]
name = "{OUTBOX}"
topics = ["{TOPIC}"]
event_types = ["{RELAYED}"]
bootstrap_servers = "{bootstrap}"
kafka_topic = "{KAFKA_TOPIC}"
# Small batches: the kill lands between a publish and its commit more often.
batch_size = 50
"#,
        data_dir.display(),
    )
}

/// Reads every partition of the relay's topic from the start, without a consumer group.
fn consumer(bootstrap: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "outside-service")
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .unwrap();
    // The relay creates the topic at its first publish.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = consumer
            .fetch_metadata(Some(KAFKA_TOPIC), Duration::from_secs(5))
            .unwrap();
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == KAFKA_TOPIC && t.error().is_none())
            .map_or(0, |t| t.partitions().len());
        if partitions > 0 {
            assert_eq!(
                partitions, PARTITIONS as usize,
                "the relay creates its topic with the source's partition count"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay did not create {KAFKA_TOPIC}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        assignment
            .add_partition_offset(KAFKA_TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    consumer
}

fn poll(consumer: &BaseConsumer, seen: &mut Vec<Seen>) {
    let Some(message) = consumer.poll(Duration::from_millis(100)) else {
        return;
    };
    let m = message.expect("consuming the relay's topic");
    let headers: HashMap<&str, String> = m
        .headers()
        .expect("relayed records carry headers")
        .iter()
        .map(|h| {
            (
                h.key,
                String::from_utf8(h.value.unwrap_or_default().to_vec()).unwrap(),
            )
        })
        .collect();
    let header = |k: &str| {
        headers
            .get(k)
            .unwrap_or_else(|| panic!("header {k} missing"))
            .clone()
    };
    assert_eq!(
        m.key(),
        Some(header("stream").as_bytes()),
        "the key is the stream"
    );
    seen.push(Seen {
        event_id: header("event-id"),
        stream: header("stream"),
        version: header("stream-version").parse().unwrap(),
        partition: header("partition").parse().unwrap(),
        offset: header("offset").parse().unwrap(),
        kafka_partition: m.partition(),
    });
}

fn distinct(seen: &[Seen]) -> usize {
    seen.iter()
        .map(|s| &s.event_id)
        .collect::<HashSet<_>>()
        .len()
}
