//! Metrics: names, labels and cached handles, rendered in the Prometheus text format.
//!
//! The `metrics` facade records; `metrics-exporter-prometheus` keeps the values and renders them
//! from `GET /metrics` (the exporter serves nothing itself). Instrumented code holds handles
//! ([`metrics::Counter`], [`metrics::Histogram`]) made once per label set, so the hot path is an
//! atomic add per batch or per call, never a label built per event.
//!
//! Handles made before [`install`] stay no-ops: the host installs the recorder before it opens
//! the log, and every cache here is filled lazily, on first use.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `events_published_total` | counter | topic |
//! | `events_consumed_total` | counter | group, topic, plugin_version |
//! | `event_processing_duration_seconds` | histogram (per batch) | group, topic, plugin_version |
//! | `dlq_messages_total` | counter (events parked) | group, topic, plugin_version |
//! | `dlq_messages` | gauge (parked now, at scrape) | group |
//! | `consumer_lag` | gauge (at scrape) | group, topic, partition |
//! | `commands_total` | counter | aggregate, plugin_version, outcome |
//! | `command_duration_seconds` | histogram | aggregate, plugin_version |
//! | `plugin_call_duration_seconds` | histogram | plugin, version, function |
//! | `plugin_call_failures_total` | counter | plugin, version, kind |
//! | `factline_cluster_fenced_appends_total` | counter (Kafka backend) | topic, partition |
//! | `factline_cluster_forwarded_commands_total` | counter (Kafka backend) | |
//! | `factline_cluster_replication_lag` | gauge (Kafka backend) | topic, partition |
//! | `factline_cluster_owned_partitions` | gauge (Kafka backend) | |

mod trace;

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::failure::FailureKind;

pub use trace::{TraceError, Tracing, otlp_endpoint, otlp_layer};
pub(crate) use trace::{adopt as adopt_causes, appended};

pub const EVENTS_PUBLISHED: &str = "events_published_total";
pub const EVENTS_CONSUMED: &str = "events_consumed_total";
pub const EVENT_PROCESSING: &str = "event_processing_duration_seconds";
pub const DLQ_TOTAL: &str = "dlq_messages_total";
pub const DLQ_PARKED: &str = "dlq_messages";
pub const CONSUMER_LAG: &str = "consumer_lag";
pub const COMMANDS: &str = "commands_total";
pub const COMMAND_DURATION: &str = "command_duration_seconds";
pub const PLUGIN_CALL: &str = "plugin_call_duration_seconds";
pub const PLUGIN_FAILURES: &str = "plugin_call_failures_total";
pub const PLUGIN_LOG_DROPPED: &str = "plugin_log_lines_dropped_total";
pub const STORAGE_FAILURES: &str = "storage_write_failures_total";
pub const STORAGE_REOPENS: &str = "storage_reopens_total";
pub const STORAGE_AVAILABLE: &str = "storage_available";
/// The clustered log (`[log] backend = "kafka"`; names fixed in the cluster contract).
pub const CLUSTER_FENCED: &str = "factline_cluster_fenced_appends_total";
pub const CLUSTER_FORWARDED: &str = "factline_cluster_forwarded_commands_total";
pub const CLUSTER_LAG: &str = "factline_cluster_replication_lag";
pub const CLUSTER_OWNED: &str = "factline_cluster_owned_partitions";

/// Histogram buckets in seconds: 50 µs (a cached plugin call) to 10 s (a call deadline).
const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's metrics recorder, once; later calls return
/// the same handle. `None` when another recorder was installed first (metrics then go there).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    // Exported from the start, so a dashboard or alert sees 0, not "no data".
                    metrics::counter!(STORAGE_FAILURES).absolute(0);
                    metrics::counter!(STORAGE_REOPENS).absolute(0);
                    metrics::gauge!(STORAGE_AVAILABLE).set(1.0);
                    Some(handle)
                }
                Err(_) => {
                    tracing::warn!("another metrics recorder is installed; /metrics is disabled");
                    None
                }
            }
        })
        .as_ref()
}

/// The installed handle, if [`install`] succeeded.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE.get().and_then(Option::as_ref)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        EVENTS_PUBLISHED,
        "Events appended to the log (commands and handlers)"
    );
    describe_counter!(EVENTS_CONSUMED, "Events a consumer group committed past");
    describe_histogram!(
        EVENT_PROCESSING,
        Unit::Seconds,
        "Time to process and commit one batch"
    );
    describe_counter!(DLQ_TOTAL, "Events parked in the dead-letter queue");
    describe_gauge!(DLQ_PARKED, "Events parked now (read at scrape time)");
    describe_gauge!(
        CONSUMER_LAG,
        "High-water mark minus committed offset (read at scrape time)"
    );
    describe_counter!(COMMANDS, "Commands handled, by outcome");
    describe_histogram!(COMMAND_DURATION, Unit::Seconds, "Time to handle a command");
    describe_histogram!(PLUGIN_CALL, Unit::Seconds, "Time of one plugin call");
    describe_counter!(
        PLUGIN_FAILURES,
        "Failed plugin calls by kind (memory-limit and deadline are limit breaches)"
    );
    describe_counter!(
        PLUGIN_LOG_DROPPED,
        "Plugin log lines dropped for going over log_lines_per_second"
    );
    describe_counter!(
        STORAGE_FAILURES,
        "Write transactions the store failed (disk full, I/O error)"
    );
    describe_counter!(
        STORAGE_REOPENS,
        "Times the log reopened its database after a failed write"
    );
    describe_gauge!(
        STORAGE_AVAILABLE,
        "1 while the log accepts writes, 0 while it waits to reopen its database"
    );
    describe_counter!(
        CLUSTER_FENCED,
        "Append records skipped because their owner had been fenced by a newer claim"
    );
    describe_counter!(
        CLUSTER_FORWARDED,
        "Commands this host forwarded to their partition's owner"
    );
    describe_gauge!(
        CLUSTER_LAG,
        "Kafka records of a partition not yet applied to this host's replica"
    );
    describe_gauge!(CLUSTER_OWNED, "Partitions this host owns now");
}

/// A fenced append record skipped by this host's replica.
#[cfg(feature = "kafka")]
pub fn cluster_fenced(topic: &str, partition: u32) {
    metrics::counter!(CLUSTER_FENCED, "topic" => topic.to_owned(), "partition" => partition.to_string())
        .increment(1);
}

/// A command forwarded to its owner.
pub fn cluster_forwarded() {
    metrics::counter!(CLUSTER_FORWARDED).increment(1);
}

#[cfg(feature = "kafka")]
pub fn cluster_replication_lag(topic: &str, partition: u32, lag: u64) {
    metrics::gauge!(CLUSTER_LAG, "topic" => topic.to_owned(), "partition" => partition.to_string())
        .set(lag as f64);
}

#[cfg(feature = "kafka")]
pub fn cluster_owned_partitions(n: usize) {
    metrics::gauge!(CLUSTER_OWNED).set(n as f64);
}

/// A plugin log line dropped by its rate limit (rare once dropping: only past the budget).
pub fn log_lines_dropped(plugin: &str) {
    metrics::counter!(PLUGIN_LOG_DROPPED, "plugin" => plugin.to_owned()).increment(1);
}

/// A write transaction failed in the store; the log is unavailable until it reopens.
pub fn storage_failed() {
    metrics::counter!(STORAGE_FAILURES).increment(1);
    metrics::gauge!(STORAGE_AVAILABLE).set(0.0);
}

/// The log reopened its database and accepts writes again.
pub fn storage_reopened() {
    metrics::counter!(STORAGE_REOPENS).increment(1);
    metrics::gauge!(STORAGE_AVAILABLE).set(1.0);
}

/// Renders every metric, after `refresh` set the gauges read at scrape time.
pub fn render(handle: &PrometheusHandle, refresh: impl FnOnce()) -> String {
    refresh();
    handle.run_upkeep();
    handle.render()
}

/// Sets the scrape-time gauge of one partition's lag.
pub fn set_lag(group: &str, topic: &str, partition: u32, lag: u64) {
    metrics::gauge!(CONSUMER_LAG, "group" => group.to_owned(), "topic" => topic.to_owned(), "partition" => partition.to_string())
        .set(lag as f64);
}

/// Sets the scrape-time gauge of a group's parked events.
pub fn set_parked(group: &str, parked: u64) {
    metrics::gauge!(DLQ_PARKED, "group" => group.to_owned()).set(parked as f64);
}

/// One counter per topic for the log writer, made on first use.
#[derive(Debug, Default)]
pub struct Published {
    topics: Vec<(String, Counter)>,
}

impl Published {
    pub fn add(&mut self, topic: &str, events: u64) {
        if events == 0 {
            return;
        }
        let counter = match self.topics.iter().position(|(t, _)| t == topic) {
            Some(i) => &self.topics[i].1,
            None => {
                let c = metrics::counter!(EVENTS_PUBLISHED, "topic" => topic.to_owned());
                self.topics.push((topic.to_owned(), c));
                &self.topics.last().expect("just pushed").1
            }
        };
        counter.increment(events);
    }
}

/// The handles of one consumer-group partition (labels: group, topic, plugin version).
#[derive(Clone, Debug)]
pub struct BatchInstruments {
    consumed: Counter,
    duration: Histogram,
    parked: Counter,
}

impl BatchInstruments {
    pub fn new(group: &str, topic: &str, plugin_version: String) -> Self {
        let labels = [
            ("group", group.to_owned()),
            ("topic", topic.to_owned()),
            ("plugin_version", plugin_version),
        ];
        BatchInstruments {
            consumed: metrics::counter!(EVENTS_CONSUMED, &labels),
            duration: metrics::histogram!(EVENT_PROCESSING, &labels),
            parked: metrics::counter!(DLQ_TOTAL, &labels),
        }
    }

    /// A committed batch of `events` offsets.
    pub fn batch(&self, events: usize, took: Duration) {
        self.consumed.increment(events as u64);
        self.duration.record(took);
    }

    /// An event parked in the dead-letter queue (its offset counts as consumed with `skip`).
    pub fn parked(&self) {
        self.parked.increment(1);
    }
}

/// How a command ended, for `commands_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandOutcome {
    Accepted,
    Deduplicated,
    Rejected,
    Conflict,
    Failed,
    Refused,
}

impl CommandOutcome {
    const ALL: [CommandOutcome; 6] = [
        CommandOutcome::Accepted,
        CommandOutcome::Deduplicated,
        CommandOutcome::Rejected,
        CommandOutcome::Conflict,
        CommandOutcome::Failed,
        CommandOutcome::Refused,
    ];

    fn label(self) -> &'static str {
        match self {
            CommandOutcome::Accepted => "accepted",
            CommandOutcome::Deduplicated => "deduplicated",
            CommandOutcome::Rejected => "rejected",
            CommandOutcome::Conflict => "conflict",
            CommandOutcome::Failed => "failed",
            CommandOutcome::Refused => "refused",
        }
    }
}

/// The handles of one aggregate (labels: aggregate, plugin version).
#[derive(Debug)]
pub struct CommandInstruments {
    outcomes: [Counter; 6],
    duration: Histogram,
}

impl CommandInstruments {
    pub fn new(aggregate: &str, plugin_version: String) -> Self {
        let outcomes = CommandOutcome::ALL.map(|o| {
            metrics::counter!(COMMANDS, "aggregate" => aggregate.to_owned(), "plugin_version" => plugin_version.clone(), "outcome" => o.label())
        });
        CommandInstruments {
            outcomes,
            duration: metrics::histogram!(COMMAND_DURATION, "aggregate" => aggregate.to_owned(), "plugin_version" => plugin_version),
        }
    }

    pub fn record(&self, outcome: CommandOutcome, took: Duration) {
        self.outcomes[outcome as usize].increment(1);
        self.duration.record(took);
    }
}

/// Per-function call-time histograms of one plugin instance, made on first call.
#[derive(Debug)]
pub struct PluginCalls {
    plugin: String,
    version: String,
    functions: Vec<(&'static str, Histogram)>,
}

impl PluginCalls {
    pub fn new(plugin: &str, version: String) -> Self {
        PluginCalls {
            plugin: plugin.to_owned(),
            version,
            functions: Vec::new(),
        }
    }

    pub fn record(&mut self, function: &'static str, took: Duration) {
        let h = match self.functions.iter().position(|(f, _)| *f == function) {
            Some(i) => &self.functions[i].1,
            None => {
                let h = metrics::histogram!(PLUGIN_CALL, "plugin" => self.plugin.clone(), "version" => self.version.clone(), "function" => function);
                self.functions.push((function, h));
                &self.functions.last().expect("just pushed").1
            }
        };
        h.record(took);
    }

    /// A failed call (rare: the label set is built each time).
    pub fn failed(&self, kind: FailureKind) {
        metrics::counter!(PLUGIN_FAILURES, "plugin" => self.plugin.clone(), "version" => self.version.clone(), "kind" => kind.as_str())
            .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_made_after_install_show_in_the_rendering() {
        let handle = install().expect("no other recorder in this test binary");
        let mut published = Published::default();
        published.add("tele-topic", 3);
        published.add("tele-topic", 2);
        let batch = BatchInstruments::new("tele-group", "tele-topic", "1.0.0@abc".into());
        batch.batch(4, Duration::from_millis(3));
        batch.parked();
        let cmd = CommandInstruments::new("tele-agg", "v1".into());
        cmd.record(CommandOutcome::Rejected, Duration::from_micros(40));
        let mut calls = PluginCalls::new("tele-plugin", "v1".into());
        calls.record("decide", Duration::from_micros(80));
        calls.failed(FailureKind::Deadline);
        log_lines_dropped("tele-plugin");
        let text = render(handle, || {
            set_lag("tele-group", "tele-topic", 2, 7);
            set_parked("tele-group", 1);
        });
        for name in dashboard_metrics() {
            let exported = text.lines().any(|l| {
                l.strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            });
            assert!(
                exported,
                "docs/grafana/factline.json queries {name}, which is not exported:\n{text}"
            );
        }
        for line in [
            r#"events_published_total{topic="tele-topic"} 5"#,
            r#"events_consumed_total{group="tele-group",topic="tele-topic",plugin_version="1.0.0@abc"} 4"#,
            r#"dlq_messages_total{group="tele-group",topic="tele-topic",plugin_version="1.0.0@abc"} 1"#,
            r#"event_processing_duration_seconds_count{group="tele-group",topic="tele-topic",plugin_version="1.0.0@abc"} 1"#,
            r#"commands_total{aggregate="tele-agg",plugin_version="v1",outcome="rejected"} 1"#,
            r#"commands_total{aggregate="tele-agg",plugin_version="v1",outcome="accepted"} 0"#,
            r#"plugin_call_duration_seconds_count{plugin="tele-plugin",version="v1",function="decide"} 1"#,
            r#"plugin_call_failures_total{plugin="tele-plugin",version="v1",kind="deadline"} 1"#,
            r#"consumer_lag{group="tele-group",topic="tele-topic",partition="2"} 7"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(
            text.contains("# TYPE event_processing_duration_seconds histogram"),
            "{text}"
        );
    }

    /// The metric names the dashboard's queries use: every identifier of its PromQL that is
    /// not a function, an aggregation keyword, a label (`by (...)`, `{...}`) or a range.
    fn dashboard_metrics() -> std::collections::BTreeSet<String> {
        const DASHBOARD: &str = include_str!("../../../docs/grafana/factline.json");
        const PROMQL: &[&str] = &[
            "sum",
            "min",
            "max",
            "avg",
            "rate",
            "irate",
            "increase",
            "histogram_quantile",
            "by",
            "without",
        ];
        let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
        let mut names = std::collections::BTreeSet::new();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let mut expr = target["expr"].as_str().unwrap().to_owned();
                // Drop label matchers, ranges and grouping labels.
                for (open, close) in [('{', '}'), ('[', ']')] {
                    while let Some(start) = expr.find(open) {
                        let end = start + expr[start..].find(close).unwrap();
                        expr.replace_range(start..=end, " ");
                    }
                }
                for keyword in ["by (", "without ("] {
                    while let Some(start) = expr.find(keyword) {
                        let end = start + expr[start..].find(')').unwrap();
                        expr.replace_range(start..=end, " ");
                    }
                }
                let words = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
                names.extend(
                    words
                        .filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic()))
                        .filter(|w| !PROMQL.contains(w))
                        .map(str::to_owned),
                );
            }
        }
        assert!(names.len() >= 10, "{names:?}");
        names
    }
}
