use std::path::Path;
use std::time::Duration;

use super::*;
use crate::consumer::{DeadLetterPolicy, StartFrom};

const EXAMPLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../factline.example.toml"
));

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("factline.toml"), Path::new("/srv/app"))
}

fn refused(text: &str) -> (String, Option<Location>) {
    let e = parse(text).expect_err("the config should be refused");
    (e.to_string(), e.location().cloned())
}

/// The line (1-based) of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the text"))
        + 1
}

const MINIMAL: &str = r#"
data_dir = "data"

[[topics]]
name = "tick"
partitions = 2

[[plugins]]
name = "counter"
kind = "projector"
component = "counter.wasm"
subscriptions = ["tick"]
"#;

#[test]
fn the_example_parses() {
    let c = Config::parse(
        EXAMPLE,
        Path::new("factline.example.toml"),
        Path::new("/repo"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.data_dir, Path::new("/repo/.factline-data"));
    assert_eq!(c.cache_dir, Path::new("/repo/.factline-data/cache"));
    assert_eq!(c.http.address.to_string(), "127.0.0.1:7070");
    assert!(c.admin_token.is_none());
    assert_eq!(c.topics, vec![TopicConfig::new("order", 4)]);
    let order = c.plugin("order").unwrap();
    assert_eq!(order.kind(), PluginKind::Aggregate);
    assert_eq!(
        order.component,
        Path::new("/repo/.factline-plugins/order.wasm")
    );
    assert_eq!(order.label.as_deref(), Some("1.0.0"));
    assert_eq!(order.limits, Limits::default());
    assert!(matches!(&order.role, Role::Aggregate { topic, .. } if topic == "order"));
    let summary = c.plugin("order-summary").unwrap();
    assert_eq!(summary.kind(), PluginKind::Projector);
    let Role::Projector(g) = &summary.role else {
        panic!("order-summary is a consumer group")
    };
    assert_eq!(g.name, "order-summary");
    assert_eq!(g.topics, vec!["order".to_owned()]);
    assert_eq!(g.batch_size, 256);
    assert_eq!(g.concurrency, 1);
    assert_eq!(g.start, StartFrom::Earliest);
    assert_eq!(g.on_dead_letter, DeadLetterPolicy::Skip);
    assert_eq!(g.retry, crate::consumer::RetryPolicy::default());
}

#[test]
fn the_worked_example_parses_with_every_example_plugin() {
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../factline.worked-example.toml"
    ));
    let c = Config::parse(text, Path::new("w.toml"), Path::new("/repo"))
        .unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<(&str, PluginKind)> = c
        .plugins
        .iter()
        .map(|p| (p.name.as_str(), p.kind()))
        .collect();
    assert_eq!(kinds.len(), 18, "{kinds:?}");
    let summary = c
        .plugin("order-summary")
        .and_then(|p| p.role.group())
        .unwrap();
    assert_eq!(summary.topics, ["order", "payment"]);
}

#[test]
fn a_cache_dir_is_relative_to_the_file() {
    let c = parse(&format!("cache_dir = \"../shared-cache\"\n{MINIMAL}")).unwrap();
    assert_eq!(c.cache_dir, Path::new("/srv/app/../shared-cache"));
}

#[test]
fn defaults_and_every_form_of_the_consumer_keys() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.http.address.to_string(), DEFAULT_HTTP_ADDRESS);
    assert!(c.workers >= 1);
    let text = format!(
        "{MINIMAL}version = \"2\"\nstart = {{ offset = 42 }}\ndead_letter = \"block\"\nbatch_size = 200\nconcurrency = 4\nretry = {{ base_ms = 5, max_attempts = 2 }}\nlimits = {{ call_timeout_ms = 250 }}\n"
    );
    let c = parse(&text).unwrap();
    let p = c.plugin("counter").unwrap();
    assert_eq!(p.component, Path::new("/srv/app/counter.wasm"));
    assert_eq!(p.limits.call_timeout, Duration::from_millis(250));
    assert_eq!(p.limits.fuel, None);
    assert_eq!(p.capabilities, crate::plugin::Capabilities::default());
    assert!(c.watch_plugins);
    let Role::Projector(g) = &p.role else {
        panic!()
    };
    assert_eq!(g.start, StartFrom::Offset(42));
    assert_eq!(g.on_dead_letter, DeadLetterPolicy::Block);
    assert_eq!(g.batch_size, 200);
    assert_eq!(g.concurrency, 4);
    assert_eq!(g.retry.base, Duration::from_millis(5));
    assert_eq!(g.retry.max_attempts, 2);
    assert_eq!(g.retry.cap, crate::consumer::RetryPolicy::default().cap);
    let latest = parse(&format!("{MINIMAL}start = \"latest\"\n")).unwrap();
    let Role::Projector(g) = &latest.plugins[0].role else {
        panic!()
    };
    assert_eq!(g.start, StartFrom::Latest);
}

#[test]
fn a_typo_key_is_refused_naming_the_key_and_its_line() {
    let text = MINIMAL.replace("subscriptions", "subscriptons");
    let (message, at) = refused(&text);
    assert!(message.contains("subscriptons"), "{message}");
    assert_eq!(
        at.unwrap().line,
        line_of(&text, "subscriptons"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "factline.toml:{}:",
            line_of(&text, "subscriptons")
        )),
        "{message}"
    );

    let text = MINIMAL.replace("data_dir", "dat_dir");
    let (message, at) = refused(&text);
    assert!(message.contains("dat_dir"), "{message}");
    assert_eq!(at.unwrap().line, line_of(&text, "dat_dir"), "{message}");

    // Nested tables too: `Limits` refuses unknown keys.
    let text = format!("{MINIMAL}limits = {{ memory_byte = 1 }}\n");
    let (message, at) = refused(&text);
    assert!(message.contains("memory_byte"), "{message}");
    assert_eq!(at.unwrap().line, line_of(&text, "memory_byte"), "{message}");

    let text = format!("{MINIMAL}[http]\nadress = \"0.0.0.0:80\"\n");
    let (message, at) = refused(&text);
    assert!(message.contains("adress"), "{message}");
    assert_eq!(at.unwrap().line, line_of(&text, "adress"), "{message}");
}

#[test]
fn a_missing_component_is_refused() {
    let text = MINIMAL.replace("component = \"counter.wasm\"\n", "");
    let (message, at) = refused(&text);
    assert!(message.contains("missing field `component`"), "{message}");
    // toml points at the plugin's table; its first key is on the next line.
    let line = at.unwrap().line;
    assert!(
        (line_of(&text, "[[plugins]]")..=line_of(&text, "subscriptions")).contains(&line),
        "{message}"
    );
}

#[test]
fn a_component_file_that_does_not_exist_is_refused_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("factline.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let e = Config::load(&path).unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("`component` of plugin \"counter\"") && message.contains("no such file"),
        "{message}"
    );
    assert_eq!(e.location().unwrap().line, line_of(MINIMAL, "component"));

    std::fs::write(dir.path().join("counter.wasm"), b"").unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.plugins[0].component, dir.path().join("counter.wasm"));
    assert_eq!(c.data_dir, dir.path().join("data"));
    assert!(matches!(
        Config::load(&dir.path().join("absent.toml")),
        Err(ConfigError::Read { .. })
    ));
}

#[test]
fn bad_values_are_refused_with_their_line() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "partitions = 2",
            "partitions = 0",
            "`partitions` must be at least 1",
        ),
        ("partitions = 2", "partitions = \"two\"", "invalid type"),
        (
            "kind = \"projector\"",
            "kind = \"reactor\"",
            "unknown variant `reactor`",
        ),
        (
            "subscriptions = [\"tick\"]",
            "subscriptions = [\"tock\"]",
            "topic \"tock\" is not declared",
        ),
        (
            "subscriptions = [\"tick\"]",
            "subscriptions = []",
            "is empty",
        ),
        (
            "subscriptions = [\"tick\"]",
            "subscriptions = [\"tick\"]\ndead_letter = \"park\"",
            "unknown variant `park`",
        ),
        (
            "subscriptions = [\"tick\"]",
            "subscriptions = [\"tick\"]\nretry = { base_ms = 10, cap_ms = 5 }",
            "base_ms (10 ms) is above cap_ms (5 ms)",
        ),
        (
            "subscriptions = [\"tick\"]",
            "subscriptions = [\"tick\"]\nbatch_size = 0",
            "`batch_size` of plugin \"counter\" must be at least 1",
        ),
        (
            "subscriptions = [\"tick\"]",
            "subscriptions = [\"tick\"]\nconcurrency = 0",
            "`concurrency` of plugin \"counter\" must be at least 1",
        ),
        (
            "subscriptions = [\"tick\"]",
            "subscriptions = [\"tick\"]\ntopic = \"tick\"",
            "reads topics through `subscriptions`",
        ),
        (
            "data_dir = \"data\"",
            "data_dir = \"data\"\n[http]\naddress = \"localhost\"",
            "invalid socket address",
        ),
    ];
    for (from, to, expected) in cases {
        let text = MINIMAL.replace(from, to);
        let (message, at) = refused(&text);
        assert!(message.contains(expected), "{to:?}: {message}");
        let changed = to.lines().last().unwrap();
        assert_eq!(
            at.as_ref().map(|a| a.line),
            Some(line_of(&text, changed)),
            "{to:?}: {message}"
        );
    }
}

#[test]
fn aggregates_take_a_declared_topic_and_no_consumer_keys() {
    let aggregate = r#"
data_dir = "data"
[[topics]]
name = "order"
partitions = 1
[[plugins]]
name = "order"
kind = "aggregate"
component = "order.wasm"
"#;
    let c = parse(aggregate).unwrap();
    assert!(matches!(&c.plugins[0].role, Role::Aggregate { topic, .. } if topic == "order"));

    let text = aggregate.replace("name = \"order\"\nkind", "name = \"orders\"\nkind");
    let (message, at) = refused(&text);
    assert!(
        message.contains("topic \"orders\" is not declared"),
        "{message}"
    );
    assert_eq!(at.unwrap().line, line_of(&text, "\"orders\""));

    let text = format!("{aggregate}batch_size = 10\n");
    let (message, at) = refused(&text);
    assert!(
        message.contains("`batch_size` of plugin \"order\": aggregates"),
        "{message}"
    );
    assert_eq!(at.unwrap().line, line_of(&text, "batch_size"));

    let c = parse(&format!("{aggregate}snapshot_every = 100\n")).unwrap();
    assert!(matches!(
        &c.plugins[0].role,
        Role::Aggregate { snapshot_every: Some(n), .. } if n.get() == 100
    ));
    let text = format!("{aggregate}snapshot_every = 0\n");
    let (message, at) = refused(&text);
    assert!(message.contains("`snapshot_every`"), "{message}");
    assert_eq!(at.unwrap().line, line_of(&text, "snapshot_every"));
}

#[test]
fn duplicates_and_an_empty_token_are_refused() {
    let text = format!("{MINIMAL}\n[[topics]]\nname = \"tick\"\npartitions = 1\n");
    let (message, at) = refused(&text);
    assert!(message.contains("declared twice"), "{message}");
    assert_eq!(at.unwrap().line, text.lines().count() - 1);

    let text = format!("admin_token = \"\"\n{MINIMAL}");
    let (message, _) = refused(&text);
    assert!(message.contains("`admin_token` is empty"), "{message}");

    let c = parse(&format!("admin_token = \"s3cret\"\n{MINIMAL}")).unwrap();
    assert!(!format!("{c:?}").contains("s3cret"));
    assert_eq!(c.admin_token.unwrap().0, "s3cret");
}

#[test]
fn capabilities_fuel_and_the_watcher_switch_parse_and_typos_are_refused() {
    let text = format!(
        "watch_plugins = false\n{MINIMAL}limits = {{ fuel = 1000000 }}\ncapabilities = {{ real_clock = true }}\n"
    );
    let c = parse(&text).unwrap();
    assert!(!c.watch_plugins);
    let p = c.plugin("counter").unwrap();
    assert_eq!(p.limits.fuel, Some(1_000_000));
    assert!(p.capabilities.real_clock && !p.capabilities.real_random);
    assert_eq!(p.load_spec().capabilities, p.capabilities);

    let typo = format!("{MINIMAL}capabilities = {{ real_clok = true }}\n");
    let (msg, _) = refused(&typo);
    assert!(msg.contains("real_clok"), "{msg}");
}

#[test]
fn the_otlp_endpoint_is_an_http_url_and_the_shareable_text_has_no_token() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.telemetry.otlp_endpoint, None);
    let text = format!("{MINIMAL}\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\n");
    let c = parse(&text).unwrap();
    assert_eq!(
        c.telemetry.otlp_endpoint.as_deref(),
        Some("http://127.0.0.1:4318")
    );
    let text = format!("{MINIMAL}\n[telemetry]\notlp_endpoint = \"https://collector:4318\"\n");
    let (message, at) = refused(&text);
    assert!(message.contains("must be an http:// URL"), "{message}");
    assert_eq!(at.unwrap().line, line_of(&text, "otlp_endpoint"));

    let text = format!("admin_token = \"s3cret\"\n{MINIMAL}");
    let c = parse(&text).unwrap();
    assert!(!c.shareable_text.contains("s3cret"));
    assert!(c.shareable_text.contains("admin_token = \"redacted\""));
    // The redacted text still configures the same plugins.
    let again = parse(&c.shareable_text).unwrap();
    assert_eq!(format!("{:?}", again.plugins), format!("{:?}", c.plugins));
}

const OUTBOX: &str = r#"
[[outbox]]
name = "ticks-out"
topics = ["tick"]
bootstrap_servers = "127.0.0.1:19092"
kafka_topic = "ticks"
"#;

#[cfg(feature = "kafka")]
#[test]
fn an_outbox_is_a_blocking_group_publishing_to_kafka() {
    let text = format!("{MINIMAL}{OUTBOX}event_types = [\"tick.counted\"]\nbatch_size = 10\n");
    let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let [o] = c.outboxes.as_slice() else {
        panic!("one outbox: {:?}", c.outboxes)
    };
    assert_eq!(o.group.name, "ticks-out");
    assert_eq!(o.group.topics, ["tick"]);
    assert_eq!(o.group.batch_size, 10);
    assert_eq!(o.group.on_dead_letter, DeadLetterPolicy::Block);
    assert_eq!(
        o.event_types.as_deref(),
        Some(&["tick.counted".to_owned()][..])
    );
    assert_eq!(
        (
            o.bootstrap_servers.as_str(),
            o.kafka_topic.as_str(),
            o.kafka_partitions
        ),
        ("127.0.0.1:19092", "ticks", 2)
    );
}

#[cfg(feature = "kafka")]
#[test]
fn outbox_mistakes_are_refused_on_their_line() {
    for (edit, needle, message) in [
        (
            ("topics = [\"tick\"]", "topics = [\"tock\"]"),
            "topics",
            "not declared in [[topics]]",
        ),
        (
            ("name = \"ticks-out\"", "name = \"counter\""),
            "name = \"counter\"\n",
            "has the name of a plugin",
        ),
        (
            ("kafka_topic = \"ticks\"", "kafka_topic = \"ti cks\""),
            "kafka_topic",
            "Kafka topic name",
        ),
        (
            ("topics = [\"tick\"]", "topics = []"),
            "topics = []",
            "is empty",
        ),
        (
            (
                "bootstrap_servers = \"127.0.0.1:19092\"",
                "bootstrap_servers = \" \"",
            ),
            "bootstrap_servers",
            "1 to 1024 characters",
        ),
    ] {
        let outbox = OUTBOX.replace(edit.0, edit.1);
        let text = format!("{MINIMAL}{outbox}");
        let (error, at) = refused(&text);
        assert!(error.contains(message), "{edit:?}: {error}");
        let line = text
            .rfind(needle)
            .map(|i| text[..i].matches('\n').count() + 1);
        assert_eq!(at.map(|a| a.line), line, "{edit:?}: {error}");
    }
}

#[cfg(not(feature = "kafka"))]
#[test]
fn an_outbox_needs_the_kafka_feature() {
    let (error, _) = refused(&format!("{MINIMAL}{OUTBOX}"));
    assert!(error.contains("without the `kafka` feature"), "{error}");
}

#[test]
fn the_log_is_embedded_unless_kafka_is_configured() {
    assert_eq!(parse(MINIMAL).unwrap().log, LogBackend::Redb);
    let kafka = MINIMAL.replace(
        "data_dir = \"data\"\n",
        "data_dir = \"data\"\n[http]\naddress = \"127.0.0.1:7071\"\n[log]\nbackend = \"kafka\"\nbootstrap_servers = \"127.0.0.1:19092\"\nhost_id = \"h1\"\n",
    );
    assert_eq!(
        parse(&kafka).unwrap().log,
        LogBackend::Kafka(KafkaConfig {
            bootstrap_servers: "127.0.0.1:19092".into(),
            host_id: "h1".into(),
            advertise_url: "http://127.0.0.1:7071".into(),
            topic_prefix: "factline".into(),
        })
    );
    let explicit = kafka.replace(
        "host_id = \"h1\"\n",
        "host_id = \"h1\"\nadvertise_url = \"http://10.0.0.1:7071/\"\ntopic_prefix = \"shop\"\n",
    );
    let LogBackend::Kafka(k) = parse(&explicit).unwrap().log else {
        panic!("kafka expected");
    };
    assert_eq!(
        (k.advertise_url.as_str(), k.topic_prefix.as_str()),
        ("http://10.0.0.1:7071", "shop")
    );
}

#[test]
fn kafka_settings_are_checked_with_their_line() {
    let base = "data_dir = \"data\"\n[log]\n";
    for (body, needle, message) in [
        ("backend = \"nats\"\n", "backend", "expected \"redb\""),
        (
            "backend = \"kafka\"\nhost_id = \"h1\"\n",
            "[log]",
            "needs `bootstrap_servers`",
        ),
        (
            "backend = \"kafka\"\nbootstrap_servers = \"b:9092\"\n",
            "[log]",
            "needs `host_id`",
        ),
        (
            "backend = \"kafka\"\nbootstrap_servers = \"b:9092\"\nhost_id = \"h 1\"\n",
            "host_id",
            "`host_id` must be",
        ),
        (
            "backend = \"kafka\"\nbootstrap_servers = \"b:9092\"\nhost_id = \"h1\"\nadvertise_url = \"https://x\"\n",
            "advertise_url",
            "must be an http:// URL",
        ),
        (
            "backend = \"kafka\"\nbootstrap_servers = \"b:9092\"\nhost_id = \"h1\"\ntopic_prefix = \"a/b\"\n",
            "topic_prefix",
            "`topic_prefix` must be",
        ),
        (
            "bootstrap_servers = \"b:9092\"\n",
            "bootstrap_servers",
            "belongs to `[log] backend = \"kafka\"`",
        ),
        (
            "backend = \"kafka\"\nbrokers = \"b\"\n",
            "brokers",
            "unknown field",
        ),
    ] {
        let text = format!("{base}{body}");
        let (e, at) = refused(&text);
        assert!(e.contains(message), "{body}: {e}");
        assert_eq!(
            at.map(|a| a.line),
            Some(line_of(&text, needle)),
            "{body}: {e}"
        );
    }
}
