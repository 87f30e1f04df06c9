//! The file as written (serde), and its validation into [`Config`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    AdminToken, Config, ConfigError, DEFAULT_HTTP_ADDRESS, HttpConfig, KafkaConfig, Location,
    LogBackend, OutboxConfig, PluginConfig, Role, TelemetryConfig,
};
use crate::consumer::{DeadLetterPolicy, GroupConfig, RetryPolicy, StartFrom};
use crate::log::TopicConfig;
use crate::plugin::{Capabilities, Limits, PluginKind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Spanned<PathBuf>,
    cache_dir: Option<PathBuf>,
    #[serde(default)]
    http: RawHttp,
    admin_token: Option<Spanned<String>>,
    workers: Option<Spanned<usize>>,
    watch_plugins: Option<bool>,
    #[serde(default)]
    topics: Vec<RawTopic>,
    #[serde(default)]
    plugins: Vec<RawPlugin>,
    #[serde(default)]
    outbox: Vec<RawOutbox>,
    #[serde(default)]
    telemetry: RawTelemetry,
    log: Option<Spanned<RawLog>>,
}

/// `[log]`: which log the host writes (`docs/cluster.md`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    backend: Option<Spanned<String>>,
    bootstrap_servers: Option<Spanned<String>>,
    host_id: Option<Spanned<String>>,
    advertise_url: Option<Spanned<String>>,
    topic_prefix: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbox {
    name: Spanned<String>,
    topics: Spanned<Vec<Spanned<String>>>,
    event_types: Option<Spanned<Vec<String>>>,
    bootstrap_servers: Spanned<String>,
    kafka_topic: Spanned<String>,
    batch_size: Option<Spanned<usize>>,
    retry: Option<Spanned<RawRetry>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    otlp_endpoint: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default = "default_address")]
    address: SocketAddr,
    #[serde(default)]
    protect_metrics: bool,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            address: default_address(),
            protect_metrics: false,
        }
    }
}

fn default_address() -> SocketAddr {
    DEFAULT_HTTP_ADDRESS
        .parse()
        .expect("a valid default address")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    name: Spanned<String>,
    partitions: Spanned<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    name: Spanned<String>,
    kind: PluginKind,
    component: Spanned<PathBuf>,
    version: Option<String>,
    topic: Option<Spanned<String>>,
    subscriptions: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    capabilities: Capabilities,
    retry: Option<Spanned<RawRetry>>,
    dead_letter: Option<Spanned<RawDeadLetter>>,
    start: Option<Spanned<RawStart>>,
    batch_size: Option<Spanned<usize>>,
    max_events_in_memory: Option<Spanned<usize>>,
    concurrency: Option<Spanned<usize>>,
    /// Aggregates only: write a snapshot every this many events of a stream.
    snapshot_every: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    base_ms: Option<u64>,
    cap_ms: Option<u64>,
    max_attempts: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawDeadLetter {
    Skip,
    Block,
}

/// `"earliest"`, `"latest"` or `{ offset = N }` (toml's enum forms).
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawStart {
    Earliest,
    Latest,
    Offset(u64),
}

/// Collects the first problem with its span.
struct Checker<'a> {
    text: &'a str,
    origin: &'a Path,
}

impl Checker<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            at: Some(Location::of(self.text, &span)),
            message: message.into(),
        }
    }
}

pub(super) fn parse(
    text: &str,
    origin: &Path,
    base: &Path,
    check_files: bool,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid {
        origin: origin.to_owned(),
        at: e.span().map(|s| Location::of(text, &s)),
        message: e.message().trim_end().to_owned(),
    })?;
    let c = Checker { text, origin };

    let mut topics = Vec::new();
    let mut topic_names = HashSet::new();
    for t in &raw.topics {
        if t.name.get_ref().is_empty() {
            return Err(c.error(t.name.span(), "`name`: a topic needs a name"));
        }
        if !topic_names.insert(t.name.get_ref().as_str()) {
            return Err(c.error(
                t.name.span(),
                format!("`name`: topic {:?} is declared twice", t.name.get_ref()),
            ));
        }
        if *t.partitions.get_ref() == 0 {
            return Err(c.error(t.partitions.span(), "`partitions` must be at least 1"));
        }
        topics.push(TopicConfig::new(t.name.get_ref(), *t.partitions.get_ref()));
    }

    let mut plugins = Vec::new();
    let mut plugin_names = HashSet::new();
    for p in raw.plugins {
        let name = p.name.get_ref().clone();
        if name.is_empty() {
            return Err(c.error(p.name.span(), "`name`: a plugin needs a name"));
        }
        if name.contains('@') {
            return Err(c.error(
                p.name.span(),
                format!(
                    "`name`: plugin {name:?} contains '@', which marks read-model generations and rebuild groups"
                ),
            ));
        }
        if !plugin_names.insert(name.clone()) {
            return Err(c.error(
                p.name.span(),
                format!("`name`: plugin {name:?} is declared twice"),
            ));
        }
        let component = base.join(p.component.get_ref());
        if check_files && !component.is_file() {
            return Err(c.error(
                p.component.span(),
                format!(
                    "`component` of plugin {name:?}: no such file {}",
                    component.display()
                ),
            ));
        }
        let known_topic = |t: &Spanned<String>, key: &str| {
            if topic_names.contains(t.get_ref().as_str()) {
                Ok(t.get_ref().clone())
            } else {
                Err(c.error(
                    t.span(),
                    format!(
                        "`{key}` of plugin {name:?}: topic {:?} is not declared in [[topics]]",
                        t.get_ref()
                    ),
                ))
            }
        };
        let role = match p.kind {
            PluginKind::Aggregate => {
                // Consumer settings on an aggregate are a mistake worth naming, not ignoring.
                let consumer_keys = [
                    ("subscriptions", p.subscriptions.as_ref().map(|s| s.span())),
                    ("retry", p.retry.as_ref().map(|s| s.span())),
                    ("dead_letter", p.dead_letter.as_ref().map(|s| s.span())),
                    ("start", p.start.as_ref().map(|s| s.span())),
                    ("batch_size", p.batch_size.as_ref().map(|s| s.span())),
                    (
                        "max_events_in_memory",
                        p.max_events_in_memory.as_ref().map(|s| s.span()),
                    ),
                    ("concurrency", p.concurrency.as_ref().map(|s| s.span())),
                ];
                if let Some((key, Some(span))) =
                    consumer_keys.into_iter().find(|(_, s)| s.is_some())
                {
                    return Err(c.error(
                        span,
                        format!(
                            "`{key}` of plugin {name:?}: aggregates handle commands and consume no topic; `{key}` is for projectors, policies and sagas"
                        ),
                    ));
                }
                let topic = match &p.topic {
                    Some(t) => known_topic(t, "topic")?,
                    // The default stream category is the plugin's name.
                    None => known_topic(&Spanned::new(p.name.span(), name.clone()), "name")?,
                };
                let snapshot_every = match &p.snapshot_every {
                    Some(n) => Some(
                        std::num::NonZeroU64::new(
                            positive(&c, n, "snapshot_every", Some(&name))? as u64
                        )
                        .expect("positive"),
                    ),
                    None => None,
                };
                Role::Aggregate {
                    topic,
                    snapshot_every,
                }
            }
            PluginKind::Projector | PluginKind::Policy | PluginKind::Saga => {
                if let Some(n) = &p.snapshot_every {
                    return Err(c.error(
                        n.span(),
                        format!(
                            "`snapshot_every` of plugin {name:?}: only aggregates have snapshots, not a {}",
                            p.kind
                        ),
                    ));
                }
                if let Some(t) = &p.topic {
                    return Err(c.error(
                        t.span(),
                        format!(
                            "`topic` of plugin {name:?}: a {} reads topics through `subscriptions`",
                            p.kind
                        ),
                    ));
                }
                let Some(subs) = &p.subscriptions else {
                    return Err(c.error(
                        p.name.span(),
                        format!(
                            "plugin {name:?}: a {} needs `subscriptions` (the topics it reads)",
                            p.kind
                        ),
                    ));
                };
                if subs.get_ref().is_empty() {
                    return Err(c.error(
                        subs.span(),
                        format!("`subscriptions` of plugin {name:?} is empty"),
                    ));
                }
                let mut subscribed = Vec::new();
                for t in subs.get_ref() {
                    let t = known_topic(t, "subscriptions")?;
                    if !subscribed.contains(&t) {
                        subscribed.push(t);
                    }
                }
                let mut group = GroupConfig::new(name.clone(), subscribed);
                if let Some(r) = &p.retry {
                    group.retry = retry_policy(&c, r, &name)?;
                }
                if let Some(d) = &p.dead_letter {
                    group.on_dead_letter = match d.get_ref() {
                        RawDeadLetter::Skip => DeadLetterPolicy::Skip,
                        RawDeadLetter::Block => DeadLetterPolicy::Block,
                    };
                }
                if let Some(s) = &p.start {
                    group.start = match s.get_ref() {
                        RawStart::Earliest => StartFrom::Earliest,
                        RawStart::Latest => StartFrom::Latest,
                        RawStart::Offset(o) => StartFrom::Offset(*o),
                    };
                }
                if let Some(b) = &p.batch_size {
                    group.batch_size = positive(&c, b, "batch_size", Some(&name))?;
                }
                if let Some(m) = &p.max_events_in_memory {
                    group.max_events_in_memory =
                        positive(&c, m, "max_events_in_memory", Some(&name))?;
                }
                if let Some(n) = &p.concurrency {
                    group.concurrency = positive(&c, n, "concurrency", Some(&name))?;
                }
                match p.kind {
                    PluginKind::Projector => Role::Projector(group),
                    PluginKind::Policy => Role::Policy(group),
                    _ => Role::Saga(group),
                }
            }
        };
        plugins.push(PluginConfig {
            name,
            component,
            label: p.version,
            limits: p.limits,
            capabilities: p.capabilities,
            role,
        });
    }

    let outboxes = raw
        .outbox
        .iter()
        .map(|o| outbox(&c, o, &topics, &plugin_names))
        .collect::<Result<Vec<_>, _>>()?;

    let workers = match &raw.workers {
        Some(w) => positive(&c, w, "workers", None)?,
        None => std::thread::available_parallelism().map_or(4, |n| n.get()),
    };
    // A dead-letter export carries the text (to configure its replay alike), never the token.
    let shareable_text = match &raw.admin_token {
        Some(t) => {
            let span = t.span();
            format!("{}\"redacted\"{}", &text[..span.start], &text[span.end..])
        }
        None => text.to_owned(),
    };
    let admin_token = match raw.admin_token {
        Some(t) if t.get_ref().is_empty() => {
            return Err(c.error(
                t.span(),
                "`admin_token` is empty; remove the key to leave the admin API open",
            ));
        }
        t => t.map(|t| AdminToken(t.into_inner())),
    };
    let otlp_endpoint = match raw.telemetry.otlp_endpoint {
        Some(e) if !e.get_ref().starts_with("http://") => {
            return Err(c.error(
                e.span(),
                "`telemetry.otlp_endpoint` must be an http:// URL (the collector's OTLP/HTTP base, e.g. http://127.0.0.1:4318); no TLS client is built in",
            ));
        }
        e => e.map(Spanned::into_inner),
    };
    let log = match raw.log {
        Some(l) => log_backend(&c, l, raw.http.address)?,
        None => LogBackend::Redb,
    };
    let data_dir = base.join(raw.data_dir.get_ref());
    Ok(Config {
        cache_dir: raw
            .cache_dir
            .map_or_else(|| data_dir.join("cache"), |d| base.join(d)),
        data_dir,
        http: HttpConfig {
            address: raw.http.address,
            protect_metrics: raw.http.protect_metrics,
        },
        admin_token,
        workers,
        watch_plugins: raw.watch_plugins.unwrap_or(true),
        topics,
        plugins,
        outboxes,
        telemetry: TelemetryConfig { otlp_endpoint },
        log,
        shareable_text,
    })
}

/// Longest a relay keeps retrying a publish (a broker outage) before it blocks its partition:
/// 100 ms doubling to 10 s, 120 attempts, about 19 minutes.
const OUTBOX_RETRY: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(100),
    cap: Duration::from_secs(10),
    max_attempts: 120,
};

fn outbox(
    c: &Checker<'_>,
    o: &RawOutbox,
    topics: &[TopicConfig],
    plugin_names: &HashSet<String>,
) -> Result<OutboxConfig, ConfigError> {
    let name = o.name.get_ref();
    if name.is_empty() || name.contains('@') {
        return Err(c.error(
            o.name.span(),
            "`name` of an [[outbox]]: needs a name without '@' (it names the relay's consumer group)",
        ));
    }
    if plugin_names.contains(name) {
        return Err(c.error(
            o.name.span(),
            format!("`name`: outbox {name:?} has the name of a plugin; their consumer groups would share offsets"),
        ));
    }
    if !cfg!(feature = "kafka") {
        return Err(c.error(
            o.name.span(),
            format!("outbox {name:?}: this factline was built without the `kafka` feature (cargo build --features kafka)"),
        ));
    }
    if o.topics.get_ref().is_empty() {
        return Err(c.error(
            o.topics.span(),
            format!("`topics` of outbox {name:?} is empty"),
        ));
    }
    let mut subscribed: Vec<String> = Vec::new();
    let mut partitions = 1;
    for t in o.topics.get_ref() {
        let Some(topic) = topics.iter().find(|d| d.name == *t.get_ref()) else {
            return Err(c.error(
                t.span(),
                format!(
                    "`topics` of outbox {name:?}: topic {:?} is not declared in [[topics]]",
                    t.get_ref()
                ),
            ));
        };
        partitions = partitions.max(topic.partitions);
        if !subscribed.contains(t.get_ref()) {
            subscribed.push(t.get_ref().clone());
        }
    }
    for (key, value) in [
        ("bootstrap_servers", &o.bootstrap_servers),
        ("kafka_topic", &o.kafka_topic),
    ] {
        // Bounded: both end up in librdkafka's C strings and in every log line of the relay.
        if value.get_ref().trim().is_empty()
            || value.get_ref().len() > 1024
            || value.get_ref().contains('\0')
        {
            return Err(c.error(
                value.span(),
                format!("`{key}` of outbox {name:?} must be 1 to 1024 characters, without NUL"),
            ));
        }
    }
    let kafka_topic = o.kafka_topic.get_ref();
    // Kafka's own rule for topic names.
    if kafka_topic.len() > 249
        || !kafka_topic
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
    {
        return Err(c.error(
            o.kafka_topic.span(),
            format!("`kafka_topic` of outbox {name:?}: a Kafka topic name has at most 249 of [a-zA-Z0-9._-]"),
        ));
    }
    let event_types = match &o.event_types {
        Some(t) if t.get_ref().is_empty() => {
            return Err(c.error(
                t.span(),
                format!(
                    "`event_types` of outbox {name:?} is empty; remove it to relay every event type"
                ),
            ));
        }
        t => t.as_ref().map(|t| t.get_ref().clone()),
    };
    let mut group = GroupConfig::new(name.clone(), subscribed);
    group.on_dead_letter = DeadLetterPolicy::Block;
    group.retry = match &o.retry {
        Some(r) => retry_policy(c, r, name)?,
        None => OUTBOX_RETRY,
    };
    if let Some(b) = &o.batch_size {
        group.batch_size = positive(c, b, "batch_size", Some(name))?;
    }
    Ok(OutboxConfig {
        group,
        event_types,
        bootstrap_servers: o.bootstrap_servers.get_ref().clone(),
        kafka_topic: kafka_topic.clone(),
        kafka_partitions: partitions,
    })
}

/// `[log]`: the embedded redb log (default) or a Kafka-protocol cluster with its keys.
fn log_backend(
    c: &Checker<'_>,
    raw: Spanned<RawLog>,
    http: SocketAddr,
) -> Result<LogBackend, ConfigError> {
    let span = raw.span();
    let l = raw.into_inner();
    let backend = l.backend.as_ref().map(|b| b.get_ref().as_str());
    match backend {
        None | Some("redb") => {
            let extra = [
                &l.bootstrap_servers,
                &l.host_id,
                &l.advertise_url,
                &l.topic_prefix,
            ]
            .into_iter()
            .flatten()
            .next();
            if let Some(k) = extra {
                return Err(c.error(
                    k.span(),
                    "this key belongs to `[log] backend = \"kafka\"`; the embedded log takes none",
                ));
            }
            Ok(LogBackend::Redb)
        }
        Some("kafka") => {
            let bootstrap_servers = l.bootstrap_servers.ok_or_else(|| {
                c.error(
                    span.clone(),
                    "`[log] backend = \"kafka\"` needs `bootstrap_servers` (e.g. \"127.0.0.1:19092\")",
                )
            })?;
            if bootstrap_servers.get_ref().trim().is_empty() {
                return Err(c.error(bootstrap_servers.span(), "`bootstrap_servers` is empty"));
            }
            let host_id = l.host_id.ok_or_else(|| {
                c.error(
                    span.clone(),
                    "`[log] backend = \"kafka\"` needs `host_id`, unique per host of the cluster",
                )
            })?;
            let valid_name = |s: &str| {
                !s.is_empty()
                    && s.len() <= 64
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            };
            if !valid_name(host_id.get_ref()) {
                return Err(c.error(
                    host_id.span(),
                    "`host_id` must be 1..=64 characters of A-Z, a-z, 0-9, `.`, `_` and `-`",
                ));
            }
            let advertise_url = match l.advertise_url {
                Some(u) if !u.get_ref().starts_with("http://") => {
                    return Err(c.error(
                        u.span(),
                        "`advertise_url` must be an http:// URL where the other hosts reach this one's API",
                    ));
                }
                Some(u) => u.into_inner().trim_end_matches('/').to_owned(),
                None => format!("http://{http}"),
            };
            let topic_prefix = match l.topic_prefix {
                Some(p) if !valid_name(p.get_ref()) => {
                    return Err(c.error(
                        p.span(),
                        "`topic_prefix` must be 1..=64 characters of A-Z, a-z, 0-9, `.`, `_` and `-` (a Kafka topic name part)",
                    ));
                }
                Some(p) => p.into_inner(),
                None => "factline".to_owned(),
            };
            Ok(LogBackend::Kafka(KafkaConfig {
                bootstrap_servers: bootstrap_servers.into_inner(),
                host_id: host_id.into_inner(),
                advertise_url,
                topic_prefix,
            }))
        }
        Some(other) => Err(c.error(
            l.backend.as_ref().map_or(span, |b| b.span()),
            format!("`[log] backend` is {other:?}; expected \"redb\" (the default) or \"kafka\""),
        )),
    }
}

fn positive(
    c: &Checker<'_>,
    value: &Spanned<usize>,
    key: &str,
    plugin: Option<&str>,
) -> Result<usize, ConfigError> {
    let owner = plugin
        .map(|p| format!(" of plugin {p:?}"))
        .unwrap_or_default();
    match *value.get_ref() {
        0 => Err(c.error(value.span(), format!("`{key}`{owner} must be at least 1"))),
        n => Ok(n),
    }
}

fn retry_policy(
    c: &Checker<'_>,
    raw: &Spanned<RawRetry>,
    plugin: &str,
) -> Result<RetryPolicy, ConfigError> {
    let default = RetryPolicy::default();
    let r = raw.get_ref();
    let policy = RetryPolicy {
        base: r.base_ms.map_or(default.base, Duration::from_millis),
        cap: r.cap_ms.map_or(default.cap, Duration::from_millis),
        max_attempts: r.max_attempts.unwrap_or(default.max_attempts),
    };
    if policy.max_attempts == 0 {
        return Err(c.error(
            raw.span(),
            format!("`retry.max_attempts` of plugin {plugin:?} must be at least 1 (the first call counts)"),
        ));
    }
    if policy.base > policy.cap {
        return Err(c.error(
            raw.span(),
            format!(
                "`retry` of plugin {plugin:?}: base_ms ({} ms) is above cap_ms ({} ms)",
                policy.base.as_millis(),
                policy.cap.as_millis()
            ),
        ));
    }
    Ok(policy)
}
