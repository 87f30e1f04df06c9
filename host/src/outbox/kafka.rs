//! [`KafkaRelay`]: publishes events to a Kafka topic (`[[outbox]]` in `factline.toml`), for
//! services that are not factline (event-carried state transfer).
//!
//! One record per event: key = stream id, value = the payload as stored (MessagePack), headers
//! `event-id`, `event-type`, `stream`, `stream-version`, `topic`, `partition`, `offset`,
//! `occurred-at`, `schema-version`, `correlation-id`, `causation-id`, `content-type`. The Kafka
//! partition is chosen explicitly: the factline partition modulo the Kafka topic's partition
//! count, so a factline partition's order is one Kafka partition's order (never librdkafka's
//! partitioner). The producer is idempotent with `acks=all`: a batch is in the broker, in order
//! and without gaps, when `publish` returns `Ok`; the group commits its offset locally after
//! that. A crash in between resends the batch, so a consumer sees every event at least once
//! and, deduplicating on `event-id`, exactly once in partition order.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::{Relay, RelayError};
use crate::event::Event;

/// How long one batch may take to reach the broker before the publish fails (and is retried
/// by the group with backoff): also the producer's `message.timeout.ms`.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Metadata and topic creation.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest record the producer sends (`message.max.bytes`): an event over it is refused by the
/// producer itself, named, and parked by the group instead of blocking the partition on a
/// broker refusal after a round trip.
pub const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024;

/// What an `[[outbox]]` entry names: where to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaRelayConfig {
    /// The relay's name (its consumer group's).
    pub name: String,
    /// `host:port,...` of the Kafka-protocol brokers.
    pub bootstrap_servers: String,
    /// The Kafka topic; created when missing with `partitions` partitions.
    pub kafka_topic: String,
    /// Partitions of a topic the relay creates (the most of its factline topics, so each
    /// factline partition gets its own Kafka partition).
    pub partitions: u32,
}

/// Delivery reports land here (librdkafka calls `delivery` from `poll`/`flush` on the
/// publishing thread).
#[derive(Default)]
struct Deliveries {
    failures: Mutex<Vec<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(e.to_string());
        }
    }
}

/// A [`Relay`] to one Kafka topic.
pub struct KafkaRelay {
    config: KafkaRelayConfig,
    producer: BaseProducer<Deliveries>,
    /// The Kafka topic's partition count, learnt (or the topic created) at the first publish,
    /// so a host starts while the broker is down and the group retries until it is back.
    kafka_partitions: Option<u32>,
}

impl std::fmt::Debug for KafkaRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaRelay")
            .field("config", &self.config)
            .field("kafka_partitions", &self.kafka_partitions)
            .finish_non_exhaustive()
    }
}

impl KafkaRelay {
    /// Builds the producer; nothing is sent and the broker need not be up yet.
    pub fn new(config: KafkaRelayConfig) -> Result<KafkaRelay, RelayError> {
        let producer = client_config(&config.bootstrap_servers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.max.bytes", MAX_RECORD_BYTES.to_string())
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            )
            .set("linger.ms", "1")
            .create_with_context(Deliveries::default())
            .map_err(|e| error(&config.name, format!("creating the Kafka producer: {e}")))?;
        Ok(KafkaRelay {
            config,
            producer,
            kafka_partitions: None,
        })
    }

    fn fail(&self, message: impl Into<String>) -> RelayError {
        error(&self.config.name, message)
    }

    /// The Kafka topic's partition count, creating the topic when it does not exist (once).
    fn kafka_partitions(&mut self) -> Result<u32, RelayError> {
        if let Some(n) = self.kafka_partitions {
            return Ok(n);
        }
        let topic = self.config.kafka_topic.as_str();
        // Created first, whether or not it exists: a broker that auto-creates topics on a
        // metadata request would otherwise create it with its default partition count.
        let admin: AdminClient<DefaultClientContext> =
            client_config(&self.config.bootstrap_servers)
                .create()
                .map_err(|e| self.fail(format!("creating the Kafka admin client: {e}")))?;
        let new = NewTopic::new(
            topic,
            self.config.partitions as i32,
            TopicReplication::Fixed(1),
        );
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = futures_executor::block_on(admin.create_topics([&new], &options))
            .map_err(|e| self.fail(format!("creating Kafka topic {topic:?}: {e}")))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(self.fail(format!("creating Kafka topic {topic:?}: {code}")));
                }
            }
        }
        let count = self.partition_count()?.ok_or_else(|| {
            self.fail(format!(
                "Kafka topic {topic:?} has no partitions after its creation"
            ))
        })?;
        tracing::info!(relay = %self.config.name, topic, partitions = count, "outbox relay connected");
        self.kafka_partitions = Some(count);
        Ok(count)
    }

    /// `None`: the broker does not know the topic.
    fn partition_count(&self) -> Result<Option<u32>, RelayError> {
        let topic = self.config.kafka_topic.as_str();
        let metadata = self
            .producer
            .client()
            .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
            .map_err(|e| {
                self.fail(format!(
                    "reading the metadata of Kafka topic {topic:?}: {e}"
                ))
            })?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        match t.error() {
            Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
                Ok(None)
            }
            Some(e) => Err(self.fail(format!(
                "Kafka topic {topic:?}: {}",
                RDKafkaErrorCode::from(e)
            ))),
            None if t.partitions().is_empty() => Ok(None),
            None => Ok(Some(t.partitions().len() as u32)),
        }
    }
}

impl Relay for KafkaRelay {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn publish(&mut self, events: &[Event]) -> Result<(), RelayError> {
        let partitions = self.kafka_partitions()?;
        self.producer
            .context()
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        for e in events {
            let size = e.payload.len() + e.stream.len() + e.event_type.len();
            if size > MAX_RECORD_BYTES {
                return Err(self.fail(format!(
                    "event {} is {size} bytes, over the {MAX_RECORD_BYTES}-byte record limit",
                    e.event_id
                )));
            }
            let headers = headers(e);
            let partition = (e.partition % partitions) as i32;
            let mut record = BaseRecord::to(&self.config.kafka_topic)
                .partition(partition)
                .key(e.stream.as_bytes())
                .payload(e.payload.as_slice())
                .headers(headers);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    // The local queue is full: serve delivery reports to make room.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        self.producer.poll(Duration::from_millis(50));
                    }
                    Err((err, _)) => {
                        return Err(self.fail(format!("sending event {}: {err}", e.event_id)));
                    }
                }
            }
        }
        // Every record of the batch acknowledged by the broker (acks=all) or failed.
        self.producer
            .flush(DELIVERY_TIMEOUT)
            .map_err(|e| self.fail(format!("waiting for the broker's acknowledgements: {e}")))?;
        let failures = std::mem::take(
            &mut *self
                .producer
                .context()
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        match failures.first() {
            None => Ok(()),
            // The idempotent producer fails the records after a failed one too, so a resend of
            // the batch keeps the order.
            Some(first) => Err(self.fail(format!(
                "{} of {} records not delivered: {first}",
                failures.len(),
                events.len()
            ))),
        }
    }
}

fn client_config(bootstrap_servers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap_servers)
        // librdkafka's own log goes to stderr otherwise; its errors reach us as results.
        .set("log_level", "3");
    c
}

fn error(relay: &str, message: impl Into<String>) -> RelayError {
    RelayError {
        relay: relay.to_owned(),
        message: message.into(),
    }
}

fn headers(e: &Event) -> OwnedHeaders {
    let text = [
        ("event-id", e.event_id.to_string()),
        ("event-type", e.event_type.clone()),
        ("stream", e.stream.clone()),
        ("stream-version", e.stream_version.to_string()),
        ("topic", e.topic.clone()),
        ("partition", e.partition.to_string()),
        ("offset", e.offset.to_string()),
        ("occurred-at", e.occurred_at.to_string()),
        ("schema-version", e.schema_version.to_string()),
        ("correlation-id", e.correlation_id.clone()),
        ("causation-id", e.causation_id.clone()),
        ("content-type", "application/msgpack".to_owned()),
    ];
    text.iter()
        .fold(OwnedHeaders::new_with_capacity(text.len()), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_str()),
            })
        })
}
