//! Dead letters of every consuming kind on the one engine, through the real binary: a
//! projector, a policy and a saga each park the same poison events with the configured retry
//! budget; after a hot deploy of each plugin's fixed release, `retry` and `discard` through the
//! admin API and `retry` through `factline dlq` on the stopped host re-run or drop them, and
//! the failure kind reads `trap` on disk, in the API, in the CLI and in the metrics.

use std::time::{Duration, Instant};

use factline_host::FailureKind;
use factline_host::{ExpectedVersion, NewEvent};
use serde_json::{Value, json};

use crate::http_api::{request, request_text};
use crate::support::{RunningHost, factline_binary, msgpack};

pub(crate) const TOKEN: &str = "dlq-token";
pub(crate) const ITEMS: usize = 12;
/// The poisoned items: retried through the API, discarded, retried through the CLI.
pub(crate) const API_RETRY: &str = "item-2";
pub(crate) const DISCARD: &str = "item-5";
pub(crate) const CLI_RETRY: &str = "item-8";

/// `(group = plugin name, kind, poisoned build, fixed build)`.
pub(crate) const KINDS: [(&str, &str, &str, &str); 3] = [
    (
        "counts",
        "projector",
        factline_tests::POISON_PLUGIN,
        factline_tests::POISON_FIXED_PLUGIN,
    ),
    (
        "poison-policy",
        "policy",
        factline_tests::POISON_POLICY,
        factline_tests::POISON_POLICY_FIXED,
    ),
    (
        "poison-saga",
        "saga",
        factline_tests::POISON_SAGA,
        factline_tests::POISON_SAGA_FIXED,
    ),
];

pub(crate) fn config_text(dir: &std::path::Path) -> String {
    let mut text = format!(
        "data_dir = {:?}\nadmin_token = {TOKEN:?}\n[http]\naddress = \"127.0.0.1:0\"\n\n\
         [[topics]]\nname = \"item\"\npartitions = 2\n\n\
         [[topics]]\nname = \"notification\"\npartitions = 2\n\n\
         [[plugins]]\nname = \"notification\"\nkind = \"aggregate\"\ncomponent = {:?}\n",
        dir.join("data"),
        factline_tests::NOTIFICATION
    );
    for (name, kind, _, _) in KINDS {
        let subscriptions = if kind == "saga" {
            "[\"item\", \"notification\"]"
        } else {
            "[\"item\"]"
        };
        text.push_str(&format!(
            "\n[[plugins]]\nname = {name:?}\nkind = {kind:?}\ncomponent = {:?}\n\
             subscriptions = {subscriptions}\nretry = {{ base_ms = 1, cap_ms = 2, max_attempts = 2 }}\n\
             dead_letter = \"skip\"\n",
            dir.join(format!("{name}.wasm"))
        ));
    }
    text
}

pub(crate) fn letters(port: u16) -> Vec<Value> {
    let (status, body) = request(port, "GET", "/v1/admin/dlq", Some(TOKEN), None);
    assert_eq!(status, 200, "{body}");
    body["dead_letters"].as_array().unwrap().clone()
}

fn letter<'a>(letters: &'a [Value], group: &str, stream: &str) -> &'a Value {
    letters
        .iter()
        .find(|l| l["group"] == group && l["stream"] == stream)
        .unwrap_or_else(|| panic!("no dead letter of {group} for {stream}: {letters:#?}"))
}

/// `group topic partition offset` of a dead letter as listed.
pub(crate) fn key(l: &Value) -> [String; 4] {
    [
        l["group"].as_str().unwrap().to_owned(),
        l["topic"].as_str().unwrap().to_owned(),
        l["partition"].to_string(),
        l["offset"].to_string(),
    ]
}

/// `factline run` over `dir` with every kind's poisoned build (copies: a deploy rewrites them),
/// `ITEMS` items of which the streams `poisoned` are poison, until each group parked those.
pub(crate) fn start_poisoned(
    dir: &std::path::Path,
    poisoned: &[&str],
) -> (RunningHost, Vec<Value>) {
    for (name, _, build, _) in KINDS {
        std::fs::copy(build, dir.join(format!("{name}.wasm"))).unwrap();
    }
    {
        let log = crate::support::log(&dir.join("data"), &[("item", 2), ("notification", 2)]);
        for i in 0..ITEMS {
            let stream = format!("item-{i}");
            let payload = msgpack(json!({ "poison": poisoned.contains(&stream.as_str()) }));
            log.append(
                &stream,
                ExpectedVersion::NoStream,
                vec![NewEvent::new("item.a", payload)],
            )
            .unwrap();
        }
    }
    let config = dir.join("factline.toml");
    std::fs::write(&config, config_text(dir)).unwrap();
    let mut host = RunningHost::spawn(&factline_binary(), &config, &[]);
    host.wait_ready();
    // Each group parks the poison events after its two attempts.
    let deadline = Instant::now() + Duration::from_secs(60);
    let parked = loop {
        let l = letters(host.port());
        if l.len() == poisoned.len() * KINDS.len() {
            break l;
        }
        assert!(Instant::now() < deadline, "{l:#?}\n{}", host.stderr());
        std::thread::sleep(Duration::from_millis(50));
    };
    (host, parked)
}

#[test]
fn every_kind_parks_retries_and_discards_its_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (mut host, parked) = start_poisoned(dir.path(), &[API_RETRY, DISCARD, CLI_RETRY]);
    let port = host.port();
    let config = dir.path().join("factline.toml");
    let bin = factline_binary();
    for l in &parked {
        assert_eq!(
            (l["failure_kind"].as_str(), l["attempts"].as_u64()),
            (Some("trap"), Some(2)),
            "{l:#}"
        );
        assert!(l["message"].as_str().unwrap().contains("poison"), "{l:#}");
    }
    let (_, metrics) = request_text(port, "GET", "/metrics", Some(TOKEN), None);
    for (name, _, _, _) in KINDS {
        let parked_line = metrics
            .lines()
            .find(|l| {
                l.starts_with("dlq_messages_total{")
                    && l.contains(&format!("group=\"{name}\""))
                    && l.contains("topic=\"item\"")
            })
            .unwrap_or_else(|| panic!("no dlq_messages_total of {name}:\n{metrics}"));
        assert!(parked_line.ends_with(" 3"), "{parked_line}");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("plugin_call_failures_total{")
                    && l.contains(&format!("plugin=\"{name}\""))
                    && l.contains("kind=\"trap\"")),
            "no trap failures counted for {name}:\n{metrics}"
        );
    }

    // The fixed releases, deployed while the host runs; then one dead letter of each group
    // retried and one discarded through the API.
    for (name, _, _, fixed) in KINDS {
        let bytes = std::fs::read(fixed).unwrap();
        let (status, body) = request(
            port,
            "POST",
            &format!("/v1/admin/plugins/{name}/deploy?version=fixed"),
            Some(TOKEN),
            Some(&bytes),
        );
        assert_eq!(status, 200, "deploy {name}: {body}");
    }
    for (name, _, _, _) in KINDS {
        let [g, t, p, o] = key(letter(&parked, name, API_RETRY));
        let path = format!("/v1/admin/dlq/{g}/{t}/{p}/{o}");
        let (status, body) = request(port, "POST", &format!("{path}/retry"), Some(TOKEN), None);
        assert_eq!(status, 200, "retry {name}: {body}");
        let [g, t, p, o] = key(letter(&parked, name, DISCARD));
        let path = format!("/v1/admin/dlq/{g}/{t}/{p}/{o}");
        let (status, body) = request(port, "POST", &format!("{path}/discard"), Some(TOKEN), None);
        assert_eq!(status, 200, "discard {name}: {body}");
    }
    let left = letters(port);
    assert_eq!(left.len(), KINDS.len(), "{left:#?}");
    assert!(left.iter().all(|l| l["stream"] == CLI_RETRY), "{left:#?}");
    assert!(host.terminate().success(), "{}", host.stderr());

    // The stopped host: the CLI lists the same, and retries on the deployed (fixed) version.
    let dlq = |args: &[&str]| crate::support::factline_offline(&bin, "dlq", &config, args);
    let listed: Value = serde_json::from_str(&dlq(&["list", "--json"])).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), KINDS.len());
    assert!(
        listed.iter().all(|l| l["failure_kind"] == "trap"),
        "{listed:#?}"
    );
    assert!(
        dlq(&["list"]).contains(" trap "),
        "the table spells the kind the same"
    );
    {
        let log = crate::support::log(
            &dir.path().join("data"),
            &[("item", 2), ("notification", 2)],
        );
        let on_disk = log.dead_letters(None).unwrap();
        assert!(on_disk.iter().all(|d| d.failure_kind == FailureKind::Trap));
        assert_eq!(on_disk.len(), KINDS.len());
    }
    for l in listed {
        let key = key(l);
        let args: Vec<&str> = std::iter::once("retry")
            .chain(key.iter().map(String::as_str))
            .collect();
        let retried = dlq(&args);
        assert!(retried.contains("Reprocessed"), "{retried}");
    }
    assert!(dlq(&["list"]).contains("no dead letters"));

    // The saga's instances answer once the host runs again; then every effect is there once,
    // except the discarded event's.
    crate::support::factline_run_until_idle(&bin, &config);
    let log = crate::support::log(
        &dir.path().join("data"),
        &[("item", 2), ("notification", 2)],
    );
    let count = factline_host::query_read_model(&log, "counts", "count/item.a")
        .unwrap()
        .unwrap();
    assert_eq!(
        rmp_serde::from_slice::<u64>(&count).unwrap(),
        ITEMS as u64 - 1
    );
    let instances = factline_host::saga_instances(&log, Some("poison-saga")).unwrap();
    assert_eq!(instances.len(), ITEMS - 1, "{instances:#?}");
    for i in 0..ITEMS {
        let item = format!("item-{i}");
        let expected = usize::from(item != DISCARD);
        for stream in [
            format!("notification-{item}"),
            format!("notification-saga-{item}"),
        ] {
            let events = log.read_stream(&stream, 1, 10).unwrap();
            assert_eq!(events.len(), expected, "{stream}");
        }
        if item != DISCARD {
            let inst = instances.iter().find(|s| s.instance_id == item).unwrap();
            assert_eq!(
                inst.status,
                factline_host::SagaStatus::Completed,
                "{inst:#?}"
            );
        }
    }
    assert!(log.dead_letters(None).unwrap().is_empty());
}

/// The consumer keys of `factline.example.toml` on a policy and a saga, as on a projector:
/// `start = "latest"` skips what was there before the first start, `concurrency` runs lanes,
/// `batch_size` bounds a batch, `retry` and `dead_letter` decide the attempts and what a dead
/// letter does to its partition.
#[test]
fn policies_and_sagas_honour_the_consumer_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let topics = [("item", 4), ("notification", 2)];
    {
        let log = crate::support::log(&data, &topics);
        for i in 0..3 {
            let payload = msgpack(json!({ "poison": false }));
            log.append(
                &format!("item-old-{i}"),
                ExpectedVersion::NoStream,
                vec![NewEvent::new("item.a", payload)],
            )
            .unwrap();
        }
    }
    let mut text = format!(
        "data_dir = {data:?}\n[[topics]]\nname = \"item\"\npartitions = 4\n\
         [[topics]]\nname = \"notification\"\npartitions = 2\n\n\
         [[plugins]]\nname = \"notification\"\nkind = \"aggregate\"\ncomponent = {:?}\n",
        factline_tests::NOTIFICATION
    );
    for (name, kind, component, subscriptions) in [
        (
            "poison-policy",
            "policy",
            factline_tests::POISON_POLICY,
            "[\"item\"]",
        ),
        (
            "poison-saga",
            "saga",
            factline_tests::POISON_SAGA,
            "[\"item\", \"notification\"]",
        ),
    ] {
        text.push_str(&format!(
            "\n[[plugins]]\nname = {name:?}\nkind = {kind:?}\ncomponent = {component:?}\n\
             subscriptions = {subscriptions}\nstart = \"latest\"\nconcurrency = 2\nbatch_size = 1\n\
             retry = {{ base_ms = 1, cap_ms = 2, max_attempts = 2 }}\n"
        ));
    }
    // The same policy once more, whose dead letters block their partition.
    text.push_str(&format!(
        "\n[[plugins]]\nname = \"blocking-policy\"\nkind = \"policy\"\ncomponent = {:?}\n\
         subscriptions = [\"item\"]\nstart = \"latest\"\ndead_letter = \"block\"\n\
         retry = {{ base_ms = 1, cap_ms = 2, max_attempts = 1 }}\n",
        factline_tests::POISON_POLICY
    ));
    let config =
        factline_host::Config::parse(&text, std::path::Path::new("keys.toml"), dir.path()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let host = {
        let _guard = rt.enter();
        factline_host::Host::start(config).unwrap()
    };
    let new = [
        "item-new-0",
        "item-new-1",
        "item-new-2",
        "item-new-3",
        "item-new-4",
        "item-new-5",
    ];
    rt.block_on(async {
        tokio::task::block_in_place(|| {
            for stream in new {
                let payload = msgpack(json!({ "poison": false }));
                host.log()
                    .append(
                        stream,
                        ExpectedVersion::NoStream,
                        vec![NewEvent::new("item.a", payload)],
                    )
                    .unwrap();
            }
        });
        for name in ["poison-policy", "poison-saga"] {
            let g = host.groups().iter().find(|g| g.name() == name).unwrap();
            assert_eq!(g.lanes().await, 2, "{name} runs two lanes");
        }
        host.wait_until_idle().await.unwrap();
        // A poison event, then one more on its stream: `skip` parks it and goes on, `block`
        // parks it and its partition waits.
        tokio::task::block_in_place(|| {
            for poison in [true, false] {
                let payload = msgpack(json!({ "poison": poison }));
                host.log()
                    .append(
                        "item-poisoned",
                        ExpectedVersion::Any,
                        vec![NewEvent::new("item.a", payload)],
                    )
                    .unwrap();
            }
        });
        host.wait_until_idle().await.unwrap();
    });
    let parked = |group: &str| host.log().dead_letters(Some(group)).unwrap();
    let [blocked] = parked("blocking-policy").try_into().unwrap();
    let [skipped] = parked("poison-policy").try_into().unwrap();
    assert_eq!((blocked.blocking, skipped.blocking), (true, false));
    assert_eq!(
        (blocked.attempts, skipped.attempts),
        (1, 2),
        "each group's retry.max_attempts"
    );
    let (_, partition) = host.log().locate("item-poisoned").unwrap();
    let lag = factline_host::group_lag(host.log(), "blocking-policy", &["item".into()]).unwrap();
    let waiting = lag.iter().find(|l| l.partition == partition).unwrap();
    assert_eq!(
        (waiting.committed, waiting.lag),
        (blocked.offset, 2),
        "block: the partition waits"
    );
    let lag = factline_host::group_lag(host.log(), "poison-policy", &["item".into()]).unwrap();
    assert!(
        lag.iter().all(|l| l.lag == 0),
        "skip: the partition went on"
    );
    assert_eq!(parked("poison-saga").len(), 1);
    let log = host.log();
    for i in 0..3 {
        for stream in [
            format!("notification-item-old-{i}"),
            format!("notification-saga-item-old-{i}"),
        ] {
            assert!(
                log.read_stream(&stream, 1, 10).unwrap().is_empty(),
                "{stream}"
            );
        }
    }
    for item in new {
        for stream in [
            format!("notification-{item}"),
            format!("notification-saga-{item}"),
        ] {
            assert_eq!(
                log.read_stream(&stream, 1, 10).unwrap().len(),
                1,
                "{stream}"
            );
        }
    }
    // One per new item, and one for the healthy event after the poisoned one on its stream.
    let instances = factline_host::saga_instances(log, Some("poison-saga")).unwrap();
    assert_eq!(instances.len(), new.len() + 1);
    let policy = host
        .groups()
        .iter()
        .find(|g| g.name() == "poison-policy")
        .unwrap();
    let m = policy.metrics();
    // The six new events and the one after the poison event (which was parked, not processed).
    assert_eq!(
        m.events_processed
            .load(std::sync::atomic::Ordering::Relaxed),
        7
    );
    assert_eq!(
        m.batches_committed
            .load(std::sync::atomic::Ordering::Relaxed),
        7,
        "batch_size = 1: a batch per event"
    );
    rt.block_on(host.shutdown());
}
