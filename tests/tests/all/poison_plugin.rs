//! The poison projector with `skip`: a trapping event is retried with backoff, parked with its
//! backtrace after the configured attempts, every other event is processed, and a DLQ retry
//! with the fixed release applies it exactly once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use factline_host::EventLog;
pub use factline_host::GroupConfig;
use factline_host::Handler;
use factline_host::{ConsumerError, ConsumerGroup, DeadLetterPolicy, RetryOutcome, RetryPolicy};
use factline_host::{ExpectedVersion, NewEvent};
use factline_host::{Limits, PluginKind, PluginRuntime};
use factline_host::{ProjectionHandler, WasmProjection, query_read_model};
use serde_json::json;

use crate::support::{load, log, msgpack, runtime};

pub const GROUP: &str = "poison";

pub fn projection(rt: &PluginRuntime, path: &str) -> Box<dyn Handler> {
    let plugin = load(rt, GROUP, PluginKind::Projector, path, Limits::default());
    ProjectionHandler::boxed(WasmProjection::new(plugin.instantiate().unwrap()).unwrap())
}

pub fn append(log: &EventLog, stream: &str, event_type: &str, poison: bool) -> u64 {
    log.append(
        stream,
        ExpectedVersion::Any,
        vec![NewEvent::new(
            event_type,
            msgpack(json!({ "poison": poison })),
        )],
    )
    .unwrap()
    .first_offset
}

pub fn count(log: &EventLog, event_type: &str) -> u64 {
    query_read_model(log, GROUP, &format!("count/{event_type}"))
        .unwrap()
        .map_or(0, |b| rmp_serde::from_slice(&b).unwrap())
}

pub fn config(on_dead_letter: DeadLetterPolicy) -> GroupConfig {
    GroupConfig {
        batch_size: 8,
        retry: RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
            max_attempts: 3,
        },
        on_dead_letter,
        ..GroupConfig::new(GROUP, vec!["item".into()])
    }
}

#[test]
fn skip_parks_the_poison_event_and_processes_every_other() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("item", 3)]);
    let rt = runtime();
    for i in 0..30 {
        let s = format!("item-{i}");
        append(&log, &s, "item.a", false);
        if i == 7 {
            append(&log, &s, "item.b", true);
        }
        append(&log, &s, "item.b", false);
    }
    let (topic, partition) = log.locate("item-7").unwrap();
    let mut group = ConsumerGroup::new(
        log.clone(),
        config(DeadLetterPolicy::Skip),
        projection(&rt, factline_tests::POISON_PLUGIN),
    )
    .unwrap();
    assert_eq!(group.run_until_idle().unwrap(), 61);
    assert_eq!((count(&log, "item.a"), count(&log, "item.b")), (30, 30));
    assert!(group.lag().unwrap().iter().all(|l| l.lag == 0));
    assert!(group.blocked().is_empty());

    let parked = group.dead_letters().unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    let d = &parked[0];
    let poison = log
        .read_stream("item-7", 2, 1)
        .unwrap()
        .pop()
        .expect("the poison event");
    assert_eq!(
        (&d.group[..], &d.topic, d.partition, d.offset),
        (GROUP, &topic.name, partition, poison.offset)
    );
    assert_eq!((d.event_id, &d.event_type[..]), (poison.event_id, "item.b"));
    assert_eq!(
        (d.failure_kind.as_str(), d.attempts, d.blocking),
        ("trap", 3, false)
    );
    assert!(d.message.contains("trap"), "{}", d.message);
    let bt = d.backtrace.as_deref().expect("a guest backtrace");
    assert!(bt.contains("poison") || bt.contains("project"), "{bt}");
    assert!(d.first_failed_at <= d.last_failed_at);
    assert_eq!(
        d.plugin_version,
        group_version(&rt, factline_tests::POISON_PLUGIN)
    );
    assert_eq!(log.dead_letter_count().unwrap(), 1);
    assert_eq!(
        group.metrics().dead_lettered_total.load(Ordering::Relaxed),
        1
    );

    // Retrying with the same (broken) version fails again and counts the attempt.
    let key = d.key();
    let err = group.retry_dead_letter(&key).unwrap_err();
    assert!(matches!(err, ConsumerError::RetryFailed { .. }), "{err}");
    assert_eq!(log.dead_letter(&key).unwrap().unwrap().attempts, 4);

    // Deploy the fixed release; the retry applies the event once, with the record's removal.
    group
        .swap_handler(projection(&rt, factline_tests::POISON_FIXED_PLUGIN))
        .unwrap();
    assert_eq!(
        group.retry_dead_letter(&key).unwrap(),
        RetryOutcome::Reprocessed
    );
    assert_eq!(count(&log, "item.b"), 31);
    assert_eq!(log.dead_letter_count().unwrap(), 0);
    let err = group.retry_dead_letter(&key).unwrap_err();
    assert!(matches!(err, ConsumerError::NoDeadLetter(_)), "{err}");
    assert_eq!(count(&log, "item.b"), 31, "a second retry applies nothing");
    assert_eq!(group.run_until_idle().unwrap(), 0);
}

#[test]
fn discarding_a_blocking_dead_letter_moves_its_partition_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("item", 1)]);
    let rt = runtime();
    append(&log, "item-1", "item.a", false);
    let poison = append(&log, "item-1", "item.a", true);
    append(&log, "item-1", "item.a", false);
    let mut group = ConsumerGroup::new(
        log.clone(),
        config(DeadLetterPolicy::Block),
        projection(&rt, factline_tests::POISON_PLUGIN),
    )
    .unwrap();
    group.run_until_idle().unwrap();
    assert_eq!(group.blocked(), vec![("item".to_owned(), 0, poison)]);
    assert_eq!(log.group_offset(GROUP, "item", 0).unwrap(), Some(poison));
    assert_eq!(count(&log, "item.a"), 1);
    drop(group);

    // A restarted group is still blocked: the record at its committed offset says so.
    let mut group = ConsumerGroup::new(
        log.clone(),
        config(DeadLetterPolicy::Block),
        projection(&rt, factline_tests::POISON_PLUGIN),
    )
    .unwrap();
    assert_eq!(group.run_until_idle().unwrap(), 0);
    let key = group.dead_letters().unwrap()[0].key();
    group.discard_dead_letter(&key).unwrap();
    assert_eq!(group.run_until_idle().unwrap(), 1);
    assert_eq!(
        count(&log, "item.a"),
        2,
        "the poison event was never applied"
    );
    assert_eq!(
        log.group_offset(GROUP, "item", 0).unwrap(),
        Some(poison + 2)
    );
    assert_eq!(log.dead_letter_count().unwrap(), 0);
}

fn group_version(rt: &PluginRuntime, path: &str) -> String {
    projection(rt, path).version()
}

/// The DLQ through the real binary: `factline run` parks the poison event, then `factline dlq`
/// lists and shows it, and retries it against a fixed plugin version.
#[test]
fn dlq_cli_lists_shows_and_retries_with_a_fixed_version() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let log = crate::support::log(&data, &[("item", 2)]);
        for i in 0..10 {
            let poison = i == 4;
            let payload = crate::support::msgpack(serde_json::json!({ "poison": poison }));
            log.append(
                &format!("item-{i}"),
                factline_host::ExpectedVersion::NoStream,
                vec![factline_host::NewEvent::new("item.a", payload)],
            )
            .unwrap();
        }
    }
    let write_config = |component: &str| {
        let text = format!(
            "data_dir = {data:?}\n[http]\naddress = \"127.0.0.1:0\"\n[[topics]]\nname = \"item\"\npartitions = 2\n\n[[plugins]]\nname = \"counts\"\nkind = \"projector\"\ncomponent = {component:?}\nsubscriptions = [\"item\"]\nretry = {{ base_ms = 1, cap_ms = 2, max_attempts = 2 }}\ndead_letter = \"skip\"\n"
        );
        let path = dir.path().join("factline.toml");
        std::fs::write(&path, text).unwrap();
        path
    };
    let bin = crate::support::factline_binary();
    let config = write_config(factline_tests::POISON_PLUGIN);
    crate::support::factline_run_until_idle(&bin, &config);

    let dlq = |args: &[&str]| crate::support::factline_offline(&bin, "dlq", &config, args);
    let listed: serde_json::Value = serde_json::from_str(&dlq(&["list", "--json"])).unwrap();
    let letters = listed.as_array().unwrap();
    assert_eq!(letters.len(), 1, "{listed:#}");
    let l = &letters[0];
    assert_eq!(
        (l["failure_kind"].as_str(), l["attempts"].as_u64()),
        (Some("trap"), Some(2))
    );
    let (topic, partition, offset) = (
        l["topic"].as_str().unwrap().to_owned(),
        l["partition"].as_u64().unwrap().to_string(),
        l["offset"].as_u64().unwrap().to_string(),
    );
    let key = [
        "counts",
        topic.as_str(),
        partition.as_str(),
        offset.as_str(),
    ];
    let shown = dlq(&[&["show"][..], &key[..]].concat());
    assert!(
        shown.contains("guest stderr") && shown.contains("poisoned item.a"),
        "the panic message is kept: {shown}"
    );
    assert!(
        shown.contains("guest backtrace")
            && shown.contains("Poison as factline_guest::projector::Projector"),
        "{shown}"
    );

    // Deploy the fixed version (config now names it) and retry: the event is counted once.
    write_config(factline_tests::POISON_FIXED_PLUGIN);
    let retried = dlq(&[&["retry"][..], &key[..]].concat());
    assert!(retried.contains("Reprocessed"), "{retried}");
    assert!(dlq(&["list"]).contains("no dead letters"));
    let log = crate::support::log(&data, &[("item", 2)]);
    let count = factline_host::query_read_model(&log, "counts", "count/item.a")
        .unwrap()
        .unwrap();
    assert_eq!(rmp_serde::from_slice::<u64>(&count).unwrap(), 10);
}

/// `factline dlq replay --with FILE`: a parked event run through a candidate build, offline.
/// The trapping build shows its failure and backtrace; the fixed build shows its effects and
/// writes nothing; `--deploy` installs the fixed build and retries every dead letter it fixes.
#[test]
fn dlq_replay_shows_a_candidates_effects_writes_nothing_and_deploy_retries_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let log = crate::support::log(&data, &[("item", 2)]);
        for i in 0..10 {
            let payload =
                crate::support::msgpack(serde_json::json!({ "poison": i == 2 || i == 6 }));
            log.append(
                &format!("item-{i}"),
                factline_host::ExpectedVersion::NoStream,
                vec![factline_host::NewEvent::new("item.a", payload)],
            )
            .unwrap();
        }
    }
    let component = dir.path().join("counts.wasm");
    std::fs::copy(factline_tests::POISON_PLUGIN, &component).unwrap();
    let config = dir.path().join("factline.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\n[http]\naddress = \"127.0.0.1:0\"\n[[topics]]\nname = \"item\"\npartitions = 2\n\n[[plugins]]\nname = \"counts\"\nkind = \"projector\"\ncomponent = {component:?}\nsubscriptions = [\"item\"]\nretry = {{ base_ms = 1, cap_ms = 2, max_attempts = 2 }}\n"
        ),
    )
    .unwrap();
    let bin = crate::support::factline_binary();
    crate::support::factline_run_until_idle(&bin, &config);
    let dlq = |args: &[&str]| crate::support::factline_offline(&bin, "dlq", &config, args);
    let state = || {
        let log = crate::support::log(&data, &[("item", 2)]);
        let count = factline_host::query_read_model(&log, "counts", "count/item.a").unwrap();
        let count = count.map(|c| rmp_serde::from_slice::<u64>(&c).unwrap());
        (log.dead_letters(Some("counts")).unwrap(), count)
    };
    let (letters, count) = state();
    assert_eq!((letters.len(), count), (2, Some(8)), "{letters:?}");
    let first = &letters[0];
    let key = [
        "counts".to_owned(),
        first.topic.clone(),
        first.partition.to_string(),
        first.offset.to_string(),
    ];
    let key: Vec<&str> = key.iter().map(String::as_str).collect();
    let replay = |with: &str, extra: &[&str]| {
        dlq(&[&["replay"][..], &key, &["--with", with], extra].concat())
    };

    let trapping = replay(factline_tests::POISON_PLUGIN, &[]);
    assert!(
        trapping.contains("fails: trap") && trapping.contains("guest backtrace"),
        "{trapping}"
    );
    let fixed = replay(factline_tests::POISON_FIXED_PLUGIN, &[]);
    assert!(fixed.contains("(nothing written)"), "{fixed}");
    assert!(
        fixed.contains("read model counts count/item.a = 9"),
        "{fixed}"
    );
    assert_eq!(
        state(),
        (letters.clone(), Some(8)),
        "a replay wrote something"
    );

    let deployed = replay(factline_tests::POISON_FIXED_PLUGIN, &["--deploy"]);
    assert!(
        deployed.contains("2 dead letter(s) retried, 0 left parked"),
        "{deployed}"
    );
    let retried: Vec<&str> = deployed
        .lines()
        .filter(|l| l.ends_with(": Reprocessed"))
        .collect();
    let order: Vec<String> = letters
        .iter()
        .map(|l| format!("{}/{}@{}", l.topic, l.partition, l.offset))
        .collect();
    assert_eq!(retried.len(), 2, "{deployed}");
    for (line, position) in retried.iter().zip(&order) {
        assert!(
            line.contains(position.as_str()),
            "{line} should be {position}: {deployed}"
        );
    }
    assert_eq!(state(), (Vec::new(), Some(10)));
    assert_eq!(
        std::fs::read(&component).unwrap(),
        std::fs::read(factline_tests::POISON_FIXED_PLUGIN).unwrap(),
        "the candidate is the plugin's component now"
    );
}
