//! The bank-account aggregate end to end: its scenarios natively and as `.wasm`, then through the
//! host with snapshots: restored state equals a full replay, at every version and point in time.

use std::num::NonZeroU64;

use factline_host::ScenarioRunner;
use factline_host::{AggregateHandler, AggregateOptions, AsOf};
use factline_host::{Limits, PluginKind};
use factline_host::{Snapshot, SnapshotBound};
use serde_json::json;

use crate::support::{command as cmd, load, log, msgpack, runtime};

#[test]
fn scenarios_pass_natively_and_as_wasm() {
    let scenarios = bank_account::scenarios::all();
    assert!(scenarios.len() >= 15, "every account rule needs a scenario");
    let runner = ScenarioRunner::new().unwrap();
    for s in &scenarios {
        crate::support::native_aggregate::<bank_account::Account>(s);
        runner
            .run(factline_tests::BANK_ACCOUNT.as_ref(), s)
            .unwrap_or_else(|e| panic!("wasm: {e}"));
    }
}

fn handler(log: &factline_host::EventLog, snapshot_every: u64) -> AggregateHandler {
    let rt = runtime();
    let plugin = load(
        &rt,
        "bank-account",
        PluginKind::Aggregate,
        factline_tests::BANK_ACCOUNT,
        Limits::default(),
    );
    let options = AggregateOptions {
        snapshot_every: NonZeroU64::new(snapshot_every),
        ..AggregateOptions::new("account")
    };
    AggregateHandler::new(log.clone(), plugin, options).unwrap()
}

fn balance(state: &[u8]) -> serde_json::Value {
    factline_guest::codec::msgpack_to_json(state).unwrap()["balance"].clone()
}

/// Open ACC-001 with 100,000, deposit 50,000, withdraw 30,000; the version after.
fn the_issues_example(h: &AggregateHandler) -> u64 {
    let steps = [
        (
            "open",
            json!({"owner": "Hanako", "initial_balance": 100_000}),
        ),
        ("deposit", json!({"amount": 50_000})),
        ("withdraw", json!({"amount": 30_000})),
    ];
    let mut version = 0;
    for (t, payload) in steps {
        version = h.handle(cmd("ACC-001", t, payload)).unwrap().version;
    }
    version
}

#[test]
fn restored_from_events_and_from_a_snapshot_alike() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("account", 2)]);
    {
        let h = handler(&log, 2);
        assert_eq!(the_issues_example(&h), 3);
        let (v, live) = h.state("ACC-001").unwrap();
        assert_eq!((v, balance(&live)), (3, json!(120_000)));
    }
    // A snapshot was written at version 2 (every 2 events), under state schema 1.
    let snap = log
        .snapshot("account-ACC-001", 1, SnapshotBound::LATEST)
        .unwrap()
        .expect("a snapshot");
    assert_eq!((snap.version, balance(&snap.state)), (2, json!(150_000)));

    // A fresh handler (cold cache) restores from the snapshot plus event 3; a replay from
    // event 1 gives the same bytes.
    let h = handler(&log, 2);
    let from_snapshot = h.state_as_of("ACC-001", AsOf::Latest).unwrap();
    let replayed = h.state_replayed("ACC-001", AsOf::Latest).unwrap();
    assert_eq!(from_snapshot, replayed);
    assert_eq!(
        (from_snapshot.0, balance(&from_snapshot.1)),
        (3, json!(120_000))
    );
    assert_eq!(h.state("ACC-001").unwrap(), replayed);

    // Snapshots are really used: one planted at version 3 under the plugin's schema wins...
    let planted = |state_schema, balance: u64| Snapshot {
        stream: "account-ACC-001".into(),
        state_schema,
        version: 3,
        occurred_at: 0,
        plugin_version: "planted".into(),
        state: msgpack(json!({
            "status": "active", "account_id": "ACC-001", "owner": "Hanako", "balance": balance,
            "withdrawal_day": 0, "withdrawn_that_day": 0,
        })),
    };
    log.put_snapshot(planted(7, 1)).unwrap();
    // ...but one under another state schema is ignored (a plugin that declares a new schema
    // does not read the old shape).
    assert_eq!(
        balance(&h.state_as_of("ACC-001", AsOf::Latest).unwrap().1),
        json!(120_000)
    );
    log.put_snapshot(planted(1, 777)).unwrap();
    assert_eq!(
        balance(&h.state_as_of("ACC-001", AsOf::Latest).unwrap().1),
        json!(777)
    );
    assert_eq!(
        balance(&h.state_replayed("ACC-001", AsOf::Latest).unwrap().1),
        json!(120_000)
    );
}

/// Any history, any snapshot interval: the state restored from the nearest snapshot equals the
/// full replay at every version and at every event's time.
#[test]
fn snapshots_agree_with_replay_at_every_version_and_time() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("account", 1)]);
    let h = handler(&log, 5);
    h.handle(cmd(
        "ACC-9",
        "open",
        json!({"owner": "Jiro", "initial_balance": 10_000}),
    ))
    .unwrap();
    for _ in 0..250 {
        let c = match rng.random_range(0..10) {
            0 => cmd("ACC-9", "freeze", json!({"reason": "check"})),
            1 => cmd("ACC-9", "unfreeze", json!({})),
            2..=5 => cmd(
                "ACC-9",
                "deposit",
                json!({"amount": rng.random_range(1..5_000)}),
            ),
            _ => cmd(
                "ACC-9",
                "withdraw",
                json!({"amount": rng.random_range(1..8_000)}),
            ),
        };
        // Rejections (frozen, insufficient balance) are part of any history.
        let _ = h.handle(c);
    }
    let version = log.stream_version("account-ACC-9").unwrap();
    assert!(version > 60, "{version}");
    let snapshots = (1..=version)
        .filter(|v| {
            log.snapshot(
                "account-ACC-9",
                1,
                SnapshotBound {
                    max_version: *v,
                    max_occurred_at: u64::MAX,
                },
            )
            .unwrap()
            .is_some_and(|s| s.version == *v)
        })
        .count();
    assert!(snapshots as u64 >= version / 5 - 1, "{snapshots} snapshots");
    for v in 0..=version {
        let restored = h.state_as_of("ACC-9", AsOf::Version(v)).unwrap();
        assert_eq!(restored.0, v);
        assert_eq!(
            restored,
            h.state_replayed("ACC-9", AsOf::Version(v)).unwrap(),
            "at version {v}"
        );
    }
    for e in log.read_stream("account-ACC-9", 1, 1000).unwrap() {
        let at = AsOf::Time(e.occurred_at);
        let restored = h.state_as_of("ACC-9", at).unwrap();
        assert_eq!(restored, h.state_replayed("ACC-9", at).unwrap());
        // Every event of that millisecond is included, none after it.
        assert!(restored.0 >= e.stream_version);
    }
    assert_eq!(h.state_as_of("ACC-9", AsOf::Time(0)).unwrap().0, 0);
    assert_eq!(
        h.state_as_of("ACC-9", AsOf::Latest).unwrap(),
        h.state("ACC-9").unwrap()
    );
}

/// `factline state`: the account as of a version, a time and now, from a stopped host's data
/// directory, through the real binary and a config with `snapshot_every`.
#[test]
fn factline_state_answers_as_of_a_version_and_a_time() {
    let bin = crate::support::factline_binary();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let times = {
        let log = log(&data_dir, &[("account", 2)]);
        the_issues_example(&handler(&log, 2));
        log.read_stream("account-ACC-001", 1, 10)
            .unwrap()
            .iter()
            .map(|e| e.occurred_at)
            .collect::<Vec<_>>()
    };
    let config = dir.path().join("factline.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[[topics]]\nname = \"account\"\npartitions = 2\n\
             [[plugins]]\nname = \"bank-account\"\nkind = \"aggregate\"\ncomponent = {:?}\n\
             topic = \"account\"\nsnapshot_every = 2\n",
            data_dir.display().to_string(),
            factline_tests::BANK_ACCOUNT
        ),
    )
    .unwrap();
    let state = |extra: &[&str]| {
        let args = [&["bank-account", "ACC-001"][..], extra].concat();
        let out = crate::support::factline_offline(&bin, "state", &config, &args);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (
            v["version"].as_u64().unwrap(),
            v["state"]["balance"].clone(),
        )
    };
    assert_eq!(state(&[]), (3, json!(120_000)));
    assert_eq!(state(&["--no-snapshots"]), (3, json!(120_000)));
    assert_eq!(state(&["--version", "2"]), (2, json!(150_000)));
    assert_eq!(state(&["--version", "1"]), (1, json!(100_000)));
    let at = times[1].to_string();
    assert!(state(&["--at", &at]).0 >= 2);
    assert_eq!(state(&["--at", "0"]), (0, json!(0)));
}
