//! The Kafka client side of a clustered log: topic checks, the producer, the replicator (every
//! partition into the local redb log), the ownership group and its claims, and the owner's
//! append path with read-back.
//!
//! Threads, none of them on the plugin-call path: the replicator (one consumer, manual
//! assignment of every partition, no group), the ownership consumer (group
//! `{prefix}.owners`, used only for its assignment, its partitions paused) and the claimer (writes
//! claims for what the group assigned, refreshes the replication-lag gauge).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use super::record::{Claim, Record};
use super::{CLAIM_SCOPE, ClusterError, ClusterStatus, PartitionStatus, REPLICA_GROUP, Route};
use crate::aggregate::AppendPath;
use crate::config::KafkaConfig;
use crate::consumer::CommitPath;
use crate::event::{ExpectedVersion, NewEvent, now_millis};
use crate::log::{
    AppendError, AppendResult, CommitError, EventLog, HandlerCommit, ReadModelWrite, TopicInfo,
};
use crate::telemetry;

/// The largest record a host produces (and the `max.message.bytes` topics must allow): one
/// append of the default 1 MiB payload limit and its envelope, with room to spare.
pub const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;
/// How long an owner waits for its record to be read back before telling the client to retry.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(15);
/// Records the replicator takes per poll round (then commits them, per partition).
const MAX_POLL_BATCH: usize = 2000;
/// Outcomes kept for appends nobody waits for any more (timed-out owners).
const MAX_OUTCOMES: usize = 65_536;
/// Claim attempts after an assignment when another host's claim wins the race.
const MAX_CLAIM_RACES: u32 = 5;

/// How a replicated append record ended, for the owner waiting on it.
#[derive(Clone, Debug)]
enum Outcome {
    Applied(AppendResult),
    /// Its (term, host) was not the partition's current claim.
    Fenced {
        owner: Option<String>,
    },
    /// The log refused it (expected version, overlapping ids, ...): what the owner answers.
    Refused(AppendError),
    /// A consumer commit record was applied.
    Committed,
    /// A consumer commit record's own fences refused it on the replica.
    CommitRefused(CommitError),
}

struct PartitionState {
    topic: TopicInfo,
    partition: u32,
    kafka_topic: String,
    claim: Option<Claim>,
    /// Next Kafka offset to apply, and whether it is stored yet (the commit's fence).
    next: u64,
    stored: bool,
    high_water_mark: Option<u64>,
    /// The ownership group assigned it to this host.
    assigned: bool,
    /// The term of the claim this host wrote since its last assignment.
    my_term: Option<u64>,
    /// Claiming is still under way for the last assignment.
    claiming: bool,
}

impl PartitionState {
    fn term(&self) -> u64 {
        self.claim.as_ref().map_or(0, |c| c.term)
    }

    fn owned_by(&self, host_id: &str) -> bool {
        self.assigned
            && self
                .claim
                .as_ref()
                .is_some_and(|c| c.host_id == host_id && Some(c.term) == self.my_term)
    }
}

struct State {
    parts: Vec<PartitionState>,
    /// Outcomes of this host's append records, by (partition index, Kafka offset).
    outcomes: BTreeMap<(usize, i64), Outcome>,
    /// This host's records the cluster acknowledged, not applied yet: by (partition index,
    /// Kafka offset). One whose offset is the next one the replica expects is applied at once
    /// (`Shared::write_through`) instead of waiting for the replicator's fetch to bring it back.
    acked: BTreeMap<(usize, i64), Vec<u8>>,
}

struct Shared {
    config: KafkaConfig,
    log: EventLog,
    /// (factline topic, partition) -> index into `State::parts`.
    index: HashMap<(String, u32), usize>,
    /// Kafka topic -> factline topic.
    kafka_topics: HashMap<String, String>,
    state: Mutex<State>,
    /// Notified after every replicated commit and every ownership change.
    changed: Condvar,
    stop: AtomicBool,
    producer: FutureProducer,
    runtime: tokio::runtime::Handle,
    /// One per partition: held while records of it are applied (by the replicator or by a
    /// write-through), so each record is applied once, in offset order.
    applying: Vec<Mutex<()>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn partition_index(&self, kafka_topic: &str, partition: i32) -> Option<usize> {
        let topic = self.kafka_topics.get(kafka_topic)?;
        self.index
            .get(&(topic.clone(), u32::try_from(partition).ok()?))
            .copied()
    }

    /// Produces one record to partition `pi` and returns its Kafka offset once the cluster
    /// acknowledged it (`acks=all`).
    fn produce(&self, pi: usize, key: &str, payload: &[u8]) -> Result<i64, String> {
        let (topic, partition) = {
            let s = self.lock();
            let p = &s.parts[pi];
            (p.kafka_topic.clone(), p.partition as i32)
        };
        let record = FutureRecord::to(&topic)
            .partition(partition)
            .key(key)
            .payload(payload);
        let sent = self
            .runtime
            .block_on(self.producer.send(record, Duration::from_secs(10)));
        match sent {
            Ok(delivery) => Ok(delivery.offset),
            Err((e, _)) => Err(format!("producing to {topic}/{partition}: {e}")),
        }
    }
}

/// A host's connection to the cluster: replica, ownership and the owner's append path.
pub struct Cluster {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("host_id", &self.shared.config.host_id)
            .finish_non_exhaustive()
    }
}

fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers)
        .set("client.id", format!("factline-{}", config.host_id));
    // librdkafka's own debug contexts (e.g. `cgrp,protocol`), for diagnosing a broker.
    if let Ok(debug) = std::env::var("FACTLINE_KAFKA_DEBUG") {
        c.set("debug", debug);
    }
    c
}

fn kafka_topic(config: &KafkaConfig, topic: &str) -> String {
    format!("{}.{topic}", config.topic_prefix)
}

impl Cluster {
    /// Checks (or creates) the cluster's topics, loads the replica's positions and claims, and
    /// starts replicating and taking part in ownership. Blocks; call it outside async code
    /// (`runtime` drives the client's futures).
    pub fn start(
        config: &KafkaConfig,
        log: &EventLog,
        runtime: tokio::runtime::Handle,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let producer: FutureProducer = client_config(config)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "10000")
            .set("message.max.bytes", (MAX_RECORD_BYTES + 65_536).to_string())
            .create()
            .map_err(|e| ClusterError::Client(e.to_string()))?;
        check_topics(config, log, &producer, &runtime)?;

        let mut parts = Vec::new();
        let mut index = HashMap::new();
        let mut kafka_topics = HashMap::new();
        let view = log
            .read_models()
            .map_err(|e| ClusterError::Replica(e.to_string()))?;
        for topic in log.topics() {
            let kt = kafka_topic(config, &topic.name);
            kafka_topics.insert(kt.clone(), topic.name.clone());
            for p in 0..topic.partitions {
                let stored = log
                    .group_offset(REPLICA_GROUP, &topic.name, p)
                    .map_err(|e| ClusterError::Replica(e.to_string()))?;
                let claim = view
                    .get(CLAIM_SCOPE, &claim_key(&topic.name, p))
                    .map_err(|e| ClusterError::Replica(e.to_string()))?
                    .and_then(|b| Claim::decode(&b));
                index.insert((topic.name.clone(), p), parts.len());
                parts.push(PartitionState {
                    topic: topic.clone(),
                    partition: p,
                    kafka_topic: kt.clone(),
                    claim,
                    next: stored.unwrap_or(0),
                    stored: stored.is_some(),
                    high_water_mark: None,
                    assigned: false,
                    my_term: None,
                    claiming: false,
                });
            }
        }
        drop(view);
        let shared = Arc::new(Shared {
            config: config.clone(),
            log: log.clone(),
            index,
            kafka_topics,
            applying: parts.iter().map(|_| Mutex::new(())).collect(),
            state: Mutex::new(State {
                parts,
                outcomes: BTreeMap::new(),
                acked: BTreeMap::new(),
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            producer,
            runtime,
        });

        let replica = replica_consumer(&shared)?;
        let (assign_tx, assign_rx) = mpsc::channel();
        let owners = owners_consumer(&shared, assign_tx)?;
        let mut threads = Vec::new();
        let s = shared.clone();
        threads.push(spawn("factline-replica", move || replicate(&s, replica)));
        let s = shared.clone();
        threads.push(spawn("factline-owners", move || {
            while !s.stopping() {
                if let Some(Err(e)) = owners.poll(Duration::from_millis(200)) {
                    tracing::warn!(error = %e, "ownership group");
                }
            }
            // Static membership: closing does not hand the partitions over at once; the
            // group does after the session timeout, as for a crash.
            drop(owners);
        }));
        let s = shared.clone();
        threads.push(spawn("factline-claims", move || claim_loop(&s, assign_rx)));
        tracing::info!(host_id = %config.host_id, servers = %config.bootstrap_servers, prefix = %config.topic_prefix, "joined the cluster");
        Ok(Arc::new(Cluster {
            shared,
            threads: Mutex::new(threads),
        }))
    }

    /// Where a command on `stream` is decided now.
    pub fn route(&self, stream: &str) -> Result<Route, AppendError> {
        let pi = self.partition_of(stream)?;
        let s = self.shared.lock();
        let p = &s.parts[pi];
        let me = &self.shared.config.host_id;
        if p.owned_by(me) {
            return Ok(Route::Local);
        }
        Ok(match &p.claim {
            Some(c) if &c.host_id != me => Route::Forward {
                host_id: c.host_id.clone(),
                url: c.url.clone(),
            },
            _ => Route::NoOwner {
                partition: format!("{}/{}", p.topic.name, p.partition),
            },
        })
    }

    fn partition_of(&self, stream: &str) -> Result<usize, AppendError> {
        let (topic, partition) = self.shared.log.locate(stream)?;
        Ok(self.shared.index[&(topic.name, partition)])
    }

    /// This host and every partition as its replica sees it.
    pub fn status(&self) -> ClusterStatus {
        let s = self.shared.lock();
        let me = &self.shared.config.host_id;
        ClusterStatus {
            host_id: me.clone(),
            bootstrap_servers: self.shared.config.bootstrap_servers.clone(),
            partitions: s
                .parts
                .iter()
                .map(|p| PartitionStatus {
                    topic: p.topic.name.clone(),
                    partition: p.partition,
                    owner: p.claim.as_ref().map(|c| c.host_id.clone()),
                    term: p.term(),
                    replicated_offset: p.next,
                    kafka_high_water_mark: p.high_water_mark,
                    owned: p.owned_by(me),
                })
                .collect(),
        }
    }

    /// Stops replicating and taking part in ownership; returns when the threads ended.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.changed.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    /// The term of this host's claim on partition `pi`, if this host owns it now.
    fn owned_term(&self, pi: usize) -> Result<u64, String> {
        let me = &self.config.host_id;
        let s = self.lock();
        let p = &s.parts[pi];
        if !p.owned_by(me) {
            return Err(format!(
                "host {me} does not own partition {}/{} (now: {})",
                p.topic.name,
                p.partition,
                p.claim.as_ref().map_or("no owner", |c| c.host_id.as_str())
            ));
        }
        Ok(p.term())
    }

    /// Produces `record` to partition `pi` and waits until this host's replica applied (or
    /// refused, or fenced) it at its position.
    fn produce_and_read_back(
        &self,
        pi: usize,
        key: &str,
        record: &[u8],
    ) -> Result<Outcome, String> {
        let offset = self.produce(pi, key, record)?;
        self.lock().acked.insert((pi, offset), record.to_vec());
        self.write_through(pi);
        let deadline = Instant::now() + READ_BACK_TIMEOUT;
        let mut s = self.lock();
        loop {
            if let Some(outcome) = s.outcomes.remove(&(pi, offset)) {
                return Ok(outcome);
            }
            let now = Instant::now();
            if now >= deadline || self.stopping() {
                return Err(format!(
                    "the record was sent (offset {offset}) but not read back within {} s",
                    READ_BACK_TIMEOUT.as_secs()
                ));
            }
            s = self
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Applies this host's acknowledged records of partition `pi` that are next in line. A record
    /// is applied from its Kafka offset and bytes alone, so applying it here, when nothing
    /// unapplied precedes it, is exactly what the replicator would do on fetching it; a record
    /// with a gap before it (another host's claim, say) waits for the replicator, which applies
    /// the gap first. Either path skips what the other applied.
    fn write_through(&self, pi: usize) {
        let _applying = self.applying[pi].lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let next = {
                let mut s = self.lock();
                let next = s.parts[pi].next as i64;
                // Applied by the replicator meanwhile.
                let stale: Vec<_> = s
                    .acked
                    .range((pi, i64::MIN)..(pi, next))
                    .map(|(k, _)| *k)
                    .collect();
                for k in stale {
                    s.acked.remove(&k);
                }
                s.acked.remove(&(pi, next)).map(|r| (next, r))
            };
            let Some((offset, record)) = next else {
                return;
            };
            if !apply_records(self, pi, vec![(offset, Some(record))]) {
                return;
            }
        }
    }

    fn fenced_message(&self, pi: usize, owner: Option<String>) -> String {
        let s = self.lock();
        format!(
            "fenced: partition {}/{} was claimed by {} before this host's record",
            s.parts[pi].topic.name,
            s.parts[pi].partition,
            owner.as_deref().unwrap_or("another host")
        )
    }
}

impl AppendPath for Cluster {
    /// The owner's append: one record with this host's claim, answered once the replica
    /// applied (or refused) it at its position in the partition.
    fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        let pi = self.partition_of(stream)?;
        let term = self
            .shared
            .owned_term(pi)
            .map_err(AppendError::Unavailable)?;
        // Every replica must store the same ids: the log would otherwise make its own.
        for e in &mut events {
            e.event_id.get_or_insert_with(uuid::Uuid::now_v7);
        }
        let record = Record::Append {
            term,
            host_id: self.shared.config.host_id.clone(),
            stream: stream.to_owned(),
            expected,
            occurred_at: now_millis(),
            events,
        }
        .encode();
        if record.len() > MAX_RECORD_BYTES {
            return Err(AppendError::PayloadTooLarge {
                index: 0,
                size: record.len(),
                limit: MAX_RECORD_BYTES,
            });
        }
        let outcome = self
            .shared
            .produce_and_read_back(pi, stream, &record)
            .map_err(|e| {
                AppendError::Unavailable(format!("{e}; retry with the same command id"))
            })?;
        match outcome {
            Outcome::Applied(r) => Ok(r),
            Outcome::Refused(e) => Err(e),
            Outcome::Fenced { owner } => Err(AppendError::Unavailable(
                self.shared.fenced_message(pi, owner),
            )),
            Outcome::Committed | Outcome::CommitRefused(_) => Err(AppendError::Unavailable(
                "an append was answered as a commit".into(),
            )),
        }
    }
}

/// A consumer group's commits as records of the partitions it consumes (or of one home
/// partition for all of them): see [`Cluster::commit_path`].
struct ClusterCommits {
    shared: Arc<Shared>,
    home: Option<usize>,
}

impl std::fmt::Debug for ClusterCommits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCommits")
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

impl CommitPath for ClusterCommits {
    fn commit(&self, commit: HandlerCommit) -> Result<Vec<AppendResult>, CommitError> {
        if !commit.appends.is_empty() {
            // Their commands go through their owners (`dispatch`), never in a commit.
            return Err(CommitError::Unavailable(
                "a consumer commit on the Kafka backend cannot carry appends".into(),
            ));
        }
        let pi = match self.home {
            Some(pi) => pi,
            None => *self
                .shared
                .index
                .get(&(commit.topic.clone(), commit.partition))
                .ok_or_else(|| CommitError::UnknownTopic(commit.topic.clone()))?,
        };
        let term = self
            .shared
            .owned_term(pi)
            .map_err(CommitError::Unavailable)?;
        let key = commit.group.clone();
        let record = Record::Commit {
            term,
            host_id: self.shared.config.host_id.clone(),
            commit: Box::new(commit),
        }
        .encode();
        if record.len() > MAX_RECORD_BYTES {
            return Err(CommitError::Invalid(AppendError::PayloadTooLarge {
                index: 0,
                size: record.len(),
                limit: MAX_RECORD_BYTES,
            }));
        }
        match self
            .shared
            .produce_and_read_back(pi, &key, &record)
            .map_err(CommitError::Unavailable)?
        {
            Outcome::Committed => Ok(Vec::new()),
            Outcome::CommitRefused(e) => Err(e),
            Outcome::Fenced { owner } => Err(CommitError::Unavailable(
                self.shared.fenced_message(pi, owner),
            )),
            Outcome::Applied(_) | Outcome::Refused(_) => Err(CommitError::Unavailable(
                "a commit was answered as an append".into(),
            )),
        }
    }
}

impl Cluster {
    /// The commit path of a consumer group that runs only where its partitions are owned
    /// (policies, sagas, relays): each commit is a record, fenced by the claim of the partition
    /// it goes to, that every replica applies in order. `home: None`: a commit goes to the
    /// partition it commits (a policy's or relay's: its state is per partition). `Some`:
    /// every commit of the group goes to that one partition (a saga's: its instances span
    /// partitions, so their writes need one order that every replica sees alike).
    pub fn commit_path(&self, home: Option<(&str, u32)>) -> Arc<dyn CommitPath> {
        let home = home.map(|(t, p)| self.shared.index[&(t.to_owned(), p)]);
        Arc::new(ClusterCommits {
            shared: self.shared.clone(),
            home,
        })
    }

    /// The partitions this host owns now: `(topic, partition)`.
    pub fn owned(&self) -> Vec<(String, u32)> {
        let s = self.shared.lock();
        let me = &self.shared.config.host_id;
        s.parts
            .iter()
            .filter(|p| p.owned_by(me))
            .map(|p| (p.topic.name.clone(), p.partition))
            .collect()
    }

    /// This host's id in the cluster.
    pub fn host_id(&self) -> &str {
        &self.shared.config.host_id
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .expect("spawning a cluster thread")
}

fn claim_key(topic: &str, partition: u32) -> String {
    format!("{topic}/{partition}")
}

/// Creates missing topics with settings that keep the log, and refuses existing ones whose
/// settings would lose it (a partition count other than configured, finite retention,
/// compaction, records smaller than an append).
fn check_topics(
    config: &KafkaConfig,
    log: &EventLog,
    producer: &FutureProducer,
    runtime: &tokio::runtime::Handle,
) -> Result<(), ClusterError> {
    let unreachable = |detail: String| ClusterError::Unreachable {
        servers: config.bootstrap_servers.clone(),
        detail,
    };
    let admin: AdminClient<DefaultClientContext> = client_config(config)
        .create()
        .map_err(|e| ClusterError::Client(e.to_string()))?;
    let partitions_of = || -> Result<HashMap<String, usize>, ClusterError> {
        let md = producer
            .client()
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_owned(), t.partitions().len()))
            .collect())
    };
    let existing = partitions_of()?;
    let record_limit = MAX_RECORD_BYTES.to_string();
    let missing: Vec<(String, i32)> = log
        .topics()
        .iter()
        .map(|t| (kafka_topic(config, &t.name), t.partitions as i32))
        .filter(|(name, _)| !existing.contains_key(name))
        .collect();
    if !missing.is_empty() {
        let new: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|(name, partitions)| {
                NewTopic::new(name, *partitions, TopicReplication::Fixed(1))
                    .set("retention.ms", "-1")
                    .set("retention.bytes", "-1")
                    .set("cleanup.policy", "delete")
                    .set("max.message.bytes", &record_limit)
            })
            .collect();
        let results = runtime
            .block_on(admin.create_topics(&new, &AdminOptions::new()))
            .map_err(|e| unreachable(e.to_string()))?;
        for r in results {
            match r {
                Ok(name) => tracing::info!(topic = %name, "Kafka topic created"),
                Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                    tracing::info!(topic = %name, "Kafka topic created by another host")
                }
                Err((name, code)) => {
                    return Err(ClusterError::UnsafeTopic {
                        topic: name,
                        detail: format!("cannot create it: {code}"),
                    });
                }
            }
        }
    }
    // Metadata lags creation a little.
    let deadline = Instant::now() + Duration::from_secs(15);
    let existing = loop {
        let existing = partitions_of()?;
        let all = log
            .topics()
            .iter()
            .all(|t| existing.contains_key(&kafka_topic(config, &t.name)));
        if all || Instant::now() > deadline {
            break existing;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for t in log.topics() {
        let name = kafka_topic(config, &t.name);
        match existing.get(&name) {
            None => {
                return Err(ClusterError::UnsafeTopic {
                    topic: name,
                    detail: "missing after creation".into(),
                });
            }
            Some(&n) if n != t.partitions as usize => {
                return Err(ClusterError::UnsafeTopic {
                    topic: name,
                    detail: format!(
                        "has {n} partitions, the configuration {} (topic {:?}); partition counts cannot change",
                        t.partitions, t.name
                    ),
                });
            }
            Some(_) => {}
        }
    }
    let specs: Vec<String> = log
        .topics()
        .iter()
        .map(|t| kafka_topic(config, &t.name))
        .collect();
    let resources: Vec<ResourceSpecifier<'_>> =
        specs.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
    let described = runtime.block_on(admin.describe_configs(&resources, &AdminOptions::new()));
    let described = match described {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "the broker does not describe topic configs: retention, compaction and record size are not checked");
            return Ok(());
        }
    };
    for (name, result) in specs.iter().zip(described) {
        let entries = match result {
            Ok(r) if !r.entries.is_empty() => r.entries,
            _ => {
                tracing::warn!(topic = %name, "the broker reports no configs for the topic: retention, compaction and record size are not checked");
                continue;
            }
        };
        let value = |key: &str| {
            entries
                .iter()
                .find(|e| e.name == key)
                .and_then(|e| e.value.clone())
        };
        if let Some(problem) = unsafe_setting(&value) {
            return Err(ClusterError::UnsafeTopic {
                topic: name.clone(),
                detail: problem,
            });
        }
    }
    Ok(())
}

/// The first topic setting that would lose the log or refuse an append, if any.
fn unsafe_setting(value: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    for key in ["retention.ms", "retention.bytes"] {
        if let Some(v) = value(key)
            && v.trim() != "-1"
        {
            return Some(format!(
                "`{key}` is {v}: events would be deleted; set it to -1 (keep forever)"
            ));
        }
    }
    if let Some(v) = value("cleanup.policy")
        && v.contains("compact")
    {
        return Some(format!(
            "`cleanup.policy` is {v:?}: compaction keeps one record per key and would drop events; use \"delete\" with infinite retention"
        ));
    }
    if let Some(v) = value("max.message.bytes")
        && v.trim()
            .parse::<usize>()
            .is_ok_and(|n| n < MAX_RECORD_BYTES)
    {
        return Some(format!(
            "`max.message.bytes` is {v}, below the largest append record ({MAX_RECORD_BYTES} bytes)"
        ));
    }
    None
}

fn replica_consumer(shared: &Shared) -> Result<BaseConsumer, ClusterError> {
    let config = &shared.config;
    let consumer: BaseConsumer = client_config(config)
        // Manual assignment: the group id is never joined, offsets live in the replica.
        .set(
            "group.id",
            format!("{}.replica.{}", config.topic_prefix, config.host_id),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "20")
        .set(
            "fetch.message.max.bytes",
            (MAX_RECORD_BYTES + 65_536).to_string(),
        )
        .create()
        .map_err(|e| ClusterError::Client(e.to_string()))?;
    let mut tpl = TopicPartitionList::new();
    for p in &shared.lock().parts {
        tpl.add_partition_offset(
            &p.kafka_topic,
            p.partition as i32,
            if p.stored {
                Offset::Offset(p.next as i64)
            } else {
                Offset::Beginning
            },
        )
        .map_err(|e| ClusterError::Client(e.to_string()))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| ClusterError::Client(e.to_string()))?;
    Ok(consumer)
}

/// A record as polled: its Kafka offset and payload.
type Polled = (i64, Option<Vec<u8>>);

/// The replicator: every record of every partition, in order, into the local log.
fn replicate(shared: &Shared, consumer: BaseConsumer) {
    let mut last_error = Instant::now() - Duration::from_secs(60);
    while !shared.stopping() {
        let mut by_partition: BTreeMap<usize, Vec<Polled>> = BTreeMap::new();
        let mut taken = 0;
        let mut timeout = Duration::from_millis(100);
        while taken < MAX_POLL_BATCH {
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => {
                    if let Some(pi) = shared.partition_index(m.topic(), m.partition()) {
                        by_partition
                            .entry(pi)
                            .or_default()
                            .push((m.offset(), m.payload().map(<[u8]>::to_vec)));
                        taken += 1;
                    }
                }
                Some(Err(e)) => {
                    if last_error.elapsed() > Duration::from_secs(5) {
                        tracing::warn!(error = %e, "replicating from the cluster");
                        last_error = Instant::now();
                    }
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
        for (pi, records) in by_partition {
            if !apply_partition(shared, pi, records) {
                // Records were taken from Kafka but not applied: going on would leave a gap.
                tracing::error!(
                    "replication stopped; restart the host to resume from its stored positions"
                );
                return;
            }
        }
    }
}

/// What one run of records of a partition changes, committed in one local transaction.
#[derive(Default)]
struct Batch {
    claim: Option<Claim>,
    /// (Kafka offset, producing host, stream, expected, occurred_at, events)
    appends: Vec<(i64, String, String, ExpectedVersion, u64, Vec<NewEvent>)>,
    ids: HashSet<uuid::Uuid>,
    fenced: Vec<(i64, String)>,
    next: Option<u64>,
}

/// Applies records of partition `pi` in order: claims with a higher term replace the current
/// one; appends count only under the current claim. Every replica decides the same. False when
/// the local log refused the commit for good (nothing of it applied).
fn apply_partition(shared: &Shared, pi: usize, records: Vec<Polled>) -> bool {
    let _applying = shared.applying[pi]
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    apply_records(shared, pi, records)
}

/// [`apply_partition`] with the partition's apply lock held.
fn apply_records(shared: &Shared, pi: usize, records: Vec<Polled>) -> bool {
    let (mut claim, expected_next) = {
        let s = shared.lock();
        (s.parts[pi].claim.clone(), s.parts[pi].next)
    };
    let mut batch = Batch::default();
    for (offset, payload) in records {
        if offset < expected_next as i64 {
            // Redelivered after a reconnect: already applied.
            continue;
        }
        match payload.as_deref().map(Record::decode) {
            Some(Ok(Record::Claim(c))) if c.term > claim.as_ref().map_or(0, |k| k.term) => {
                claim = Some(c.clone());
                batch.claim = Some(c);
            }
            // A claim of a term not above the current one changes nothing.
            Some(Ok(Record::Claim(_))) => {}
            Some(Ok(Record::Append {
                term,
                host_id,
                stream,
                expected,
                occurred_at,
                events,
            })) => {
                if !is_current(claim.as_ref(), term, &host_id) {
                    batch.fenced.push((offset, host_id));
                } else {
                    let first = events.first().and_then(|e| e.event_id);
                    if first.is_some_and(|id| batch.ids.contains(&id)) {
                        // A second record of one command in this run: the first must be stored
                        // before the log can see this one as its retry.
                        let full = std::mem::take(&mut batch);
                        if !commit_batch(shared, pi, full) {
                            return false;
                        }
                    }
                    batch.ids.extend(first);
                    batch
                        .appends
                        .push((offset, host_id, stream, expected, occurred_at, events));
                }
            }
            Some(Ok(Record::Commit {
                term,
                host_id,
                commit,
            })) => {
                if !is_current(claim.as_ref(), term, &host_id) {
                    batch.fenced.push((offset, host_id));
                } else {
                    // What came before it is stored first, with this record as the next to
                    // apply: a crash right after the commit applies it again, and its own
                    // fences (offset, revisions, dead letters) refuse it then.
                    batch.next = Some(offset as u64);
                    let before = std::mem::take(&mut batch);
                    if !commit_batch(shared, pi, before) {
                        return false;
                    }
                    let Some(outcome) = apply_commit(shared, *commit) else {
                        return false;
                    };
                    if host_id == shared.config.host_id {
                        shared.lock().outcomes.insert((pi, offset), outcome);
                        shared.changed.notify_all();
                    }
                }
            }
            Some(Err(e)) => {
                tracing::warn!(partition = pi, offset, error = %e, "skipping a record that is not a factline record");
            }
            None => {}
        }
        batch.next = Some(offset as u64 + 1);
    }
    commit_batch(shared, pi, batch)
}

/// Whether a record of `(term, host_id)` was written under the partition's current claim.
fn is_current(claim: Option<&Claim>, term: u64, host_id: &str) -> bool {
    claim.is_some_and(|c| c.term == term && c.host_id == host_id)
}

/// Applies a consumer commit record to the local log, as its owner made it. `None` when the
/// host stops before storage takes it (it is read again after a restart).
fn apply_commit(shared: &Shared, commit: HandlerCommit) -> Option<Outcome> {
    loop {
        match shared.log.commit_handler(commit.clone()) {
            Ok(_) => return Some(Outcome::Committed),
            Err(e) if e.is_transient() => {
                if shared.stopping() {
                    return None;
                }
                tracing::warn!(error = %e, "replica commit failed; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            // Deterministic: every replica refuses it alike.
            Err(e) => return Some(Outcome::CommitRefused(e)),
        }
    }
}

/// Commits a batch; false when the local log refused it for good.
fn commit_batch(shared: &Shared, pi: usize, mut batch: Batch) -> bool {
    let Some(next) = batch.next else {
        return true;
    };
    let me = &shared.config.host_id;
    let (topic, partition, stored, from) = {
        let s = shared.lock();
        let p = &s.parts[pi];
        (p.topic.name.clone(), p.partition, p.stored, p.next)
    };
    let mut refused: Vec<(i64, String, AppendError)> = Vec::new();
    let results = loop {
        let commit = HandlerCommit {
            group: REPLICA_GROUP.to_owned(),
            topic: topic.clone(),
            partition,
            expected_offset: stored.then_some(from),
            next_offset: next,
            read_model_writes: batch
                .claim
                .iter()
                .map(|c| ReadModelWrite {
                    scope: CLAIM_SCOPE.to_owned(),
                    key: claim_key(&topic, partition),
                    value: Some(c.encode()),
                })
                .collect(),
            appends: batch
                .appends
                .iter()
                .map(|(_, _, stream, expected, _, events)| {
                    (stream.clone(), *expected, events.clone())
                })
                .collect(),
            ..HandlerCommit::default()
        };
        let times: Vec<u64> = batch.appends.iter().map(|a| a.4).collect();
        match shared.log.commit_replica(commit, &times) {
            Ok(results) => break results,
            Err(CommitError::Append { index, source }) => {
                // Deterministic: every replica refuses this record at this position.
                let (offset, host, ..) = batch.appends.remove(index);
                refused.push((offset, host, source));
            }
            Err(e) if e.is_transient() && !shared.stopping() => {
                tracing::warn!(error = %e, "replica commit failed; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                // Nothing was applied; the records are read again after a restart.
                tracing::error!(error = %e, %topic, partition, "replica commit refused");
                return false;
            }
        }
    };
    let mut s = shared.lock();
    let owner = batch.claim.clone().or_else(|| s.parts[pi].claim.clone());
    let p = &mut s.parts[pi];
    p.next = next;
    p.stored = true;
    if let Some(c) = batch.claim.take() {
        tracing::info!(%topic, partition, term = c.term, owner = %c.host_id, "partition claimed");
        p.claim = Some(c);
    }
    let mut outcomes = Vec::new();
    for ((offset, host, ..), r) in batch.appends.iter().zip(results) {
        if host == me {
            outcomes.push((*offset, Outcome::Applied(r)));
        }
    }
    for (offset, host, e) in refused {
        if &host == me {
            outcomes.push((offset, Outcome::Refused(e)));
        }
    }
    for (offset, host) in &batch.fenced {
        telemetry::cluster_fenced(&topic, partition);
        tracing::warn!(%topic, partition, offset, host = %host, "fenced record skipped: not the partition's current claim");
        if host == me {
            outcomes.push((
                *offset,
                Outcome::Fenced {
                    owner: owner.as_ref().map(|c| c.host_id.clone()),
                },
            ));
        }
    }
    for (offset, o) in outcomes {
        s.outcomes.insert((pi, offset), o);
    }
    while s.outcomes.len() > MAX_OUTCOMES {
        s.outcomes.pop_first();
    }
    drop(s);
    shared.changed.notify_all();
    true
}

/// The ownership group's callbacks: a revoke stops this host deciding before the group moves
/// the partition; an assignment is handed to the claimer.
struct OwnersContext {
    shared: Arc<Shared>,
    assigned: Mutex<mpsc::Sender<Vec<usize>>>,
}

impl ClientContext for OwnersContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", fac, "{message}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", fac, "{message}"),
            L::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }
}

impl ConsumerContext for OwnersContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut s = self.shared.lock();
            for e in tpl.elements() {
                if let Some(pi) = self.shared.partition_index(e.topic(), e.partition()) {
                    let p = &mut s.parts[pi];
                    p.assigned = false;
                    p.claiming = false;
                    tracing::info!(topic = %p.topic.name, partition = p.partition, "partition revoked");
                }
            }
            drop(s);
            self.shared.changed.notify_all();
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // Only the assignment matters: its records are read by the replicator.
            if let Err(e) = consumer.pause(tpl) {
                tracing::debug!(error = %e, "pausing the ownership group's partitions");
            }
            let assigned: Vec<usize> = tpl
                .elements()
                .iter()
                .filter_map(|e| self.shared.partition_index(e.topic(), e.partition()))
                .collect();
            {
                let mut s = self.shared.lock();
                for &pi in &assigned {
                    let p = &mut s.parts[pi];
                    p.assigned = true;
                    p.my_term = None;
                    p.claiming = true;
                }
            }
            let _ = self
                .assigned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(assigned);
        }
    }
}

fn owners_consumer(
    shared: &Arc<Shared>,
    assigned: mpsc::Sender<Vec<usize>>,
) -> Result<BaseConsumer<OwnersContext>, ClusterError> {
    let config = &shared.config;
    let consumer: BaseConsumer<OwnersContext> = client_config(config)
        .set("group.id", format!("{}.owners", config.topic_prefix))
        // No static membership (`group.instance.id`): with it tansu 0.6 kept a rejoining
        // member's stale id as the group leader and every SyncGroup failed with "rebalance in
        // progress", so no partition was ever assigned. Eager round-robin for the same reason:
        // with cooperative-sticky the second phase of a rebalance never assigned the revoked
        // partitions there.
        .set("partition.assignment.strategy", "roundrobin")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .create_with_context(OwnersContext {
            shared: shared.clone(),
            assigned: Mutex::new(assigned),
        })
        .map_err(|e| ClusterError::Client(e.to_string()))?;
    let topics: Vec<&str> = shared.kafka_topics.keys().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| ClusterError::Client(e.to_string()))?;
    Ok(consumer)
}

/// Writes a claim for every partition the group assigned until this host's claim is the
/// current one (or the partition is revoked again), and refreshes the lag gauges.
fn claim_loop(shared: &Shared, assigned: mpsc::Receiver<Vec<usize>>) {
    let mut pending: BTreeSet<usize> = BTreeSet::new();
    let mut races: HashMap<usize, u32> = HashMap::new();
    let mut last_lag = Instant::now() - Duration::from_secs(60);
    while !shared.stopping() {
        match assigned.recv_timeout(Duration::from_millis(500)) {
            Ok(parts) => {
                for pi in parts {
                    pending.insert(pi);
                    races.insert(pi, 0);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let todo: Vec<usize> = pending.iter().copied().collect();
        for pi in todo {
            if shared.stopping() {
                return;
            }
            match claim_once(shared, pi) {
                ClaimResult::Owned | ClaimResult::NotAssigned => {
                    pending.remove(&pi);
                }
                ClaimResult::Lost => {
                    let n = races.entry(pi).or_default();
                    *n += 1;
                    if *n >= MAX_CLAIM_RACES {
                        // Another host keeps claiming it: the group will settle who owns it.
                        tracing::warn!(partition = pi, "claim kept losing; waiting for the group");
                        shared.lock().parts[pi].claiming = false;
                        pending.remove(&pi);
                    }
                }
                ClaimResult::Failed => {}
            }
        }
        if last_lag.elapsed() > Duration::from_secs(2) {
            refresh_lag(shared);
            last_lag = Instant::now();
        }
    }
}

enum ClaimResult {
    Owned,
    NotAssigned,
    /// Another host's claim is current.
    Lost,
    /// The claim was not written or not read back: try again.
    Failed,
}

fn claim_once(shared: &Shared, pi: usize) -> ClaimResult {
    let me = shared.config.host_id.clone();
    let term = {
        let mut s = shared.lock();
        let p = &mut s.parts[pi];
        if !p.assigned {
            return ClaimResult::NotAssigned;
        }
        if p.owned_by(&me) {
            p.claiming = false;
            return ClaimResult::Owned;
        }
        let term = p.term().max(p.my_term.unwrap_or(0)) + 1;
        p.my_term = Some(term);
        term
    };
    let claim = Record::Claim(Claim {
        term,
        host_id: me.clone(),
        url: shared.config.advertise_url.clone(),
    });
    let offset = match shared.produce(pi, "", &claim.encode()) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "claim not written; retrying");
            return ClaimResult::Failed;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = shared.lock();
    loop {
        let p = &mut s.parts[pi];
        if p.next > offset as u64 {
            if p.owned_by(&me) {
                p.claiming = false;
                tracing::info!(topic = %p.topic.name, partition = p.partition, term, "partition owned");
                drop(s);
                shared.changed.notify_all();
                return ClaimResult::Owned;
            }
            return if p.assigned {
                ClaimResult::Lost
            } else {
                ClaimResult::NotAssigned
            };
        }
        let now = Instant::now();
        if now >= deadline || shared.stopping() {
            return ClaimResult::Failed;
        }
        s = shared
            .changed
            .wait_timeout(s, deadline - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

fn refresh_lag(shared: &Shared) {
    let parts: Vec<(usize, String, i32)> = shared
        .lock()
        .parts
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p.kafka_topic.clone(), p.partition as i32))
        .collect();
    for (pi, topic, partition) in parts {
        let Ok((_, high)) =
            shared
                .producer
                .client()
                .fetch_watermarks(&topic, partition, Duration::from_secs(1))
        else {
            continue;
        };
        let mut s = shared.lock();
        let p = &mut s.parts[pi];
        p.high_water_mark = Some(high.max(0) as u64);
        telemetry::cluster_replication_lag(
            &p.topic.name,
            p.partition,
            (high.max(0) as u64).saturating_sub(p.next),
        );
    }
    let owned = shared
        .lock()
        .parts
        .iter()
        .filter(|p| p.owned_by(&shared.config.host_id))
        .count();
    telemetry::cluster_owned_partitions(owned);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_topic_settings_are_named() {
        let settings = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            unsafe_setting(&settings(&[
                ("retention.ms", "-1"),
                ("retention.bytes", "-1"),
                ("cleanup.policy", "delete"),
                ("max.message.bytes", "8388608"),
            ])),
            None
        );
        let seven_days = unsafe_setting(&settings(&[("retention.ms", "604800000")])).unwrap();
        assert!(seven_days.contains("retention.ms"), "{seven_days}");
        let compact = unsafe_setting(&settings(&[("cleanup.policy", "compact,delete")])).unwrap();
        assert!(compact.contains("compaction"), "{compact}");
        let small = unsafe_setting(&settings(&[("max.message.bytes", "1048588")])).unwrap();
        assert!(small.contains("max.message.bytes"), "{small}");
    }
}
