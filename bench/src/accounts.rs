//! `factline-bench accounts`: the bank-account workload against a peer, the Python
//! `eventsourcing` library on SQLite (`bench/eventsourcing/`), measured in one run.
//!
//! 1. N deposits on one account, one command each (load, decide, append; fsync per commit on
//!    both sides), snapshotting every S events.
//! 2. Reconstructing that account cold: replaying every event, then from the newest snapshot.
//! 3. Loading a 10,000-event stream (appended at once) without and with a snapshot at its end.
//!
//! Times are the best of `repeat` runs; the ratio column is the peer's time over factline's.

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use factline_host::{AggregateHandler, AggregateOptions, AsOf, CommandRequest};
use factline_host::{EventLog, LogOptions, TopicConfig};
use factline_host::{ExpectedVersion, NewEvent};
use factline_host::{Limits, LoadedPlugin, PluginKind, PluginRuntime, RuntimeConfig};
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Args {
    /// Deposits on one account, one command each.
    #[arg(long, default_value_t = 20_000)]
    deposits: u64,
    /// Snapshot every this many events while depositing.
    #[arg(long, default_value_t = 100)]
    snapshot_every: u64,
    /// Events of the stream that is loaded with and without a snapshot.
    #[arg(long, default_value_t = 10_000)]
    stream: u64,
    /// Runs of each load; the best counts.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// The peer's runner script (prints one JSON object); `none` skips the peer.
    #[arg(long, default_value = "bench/eventsourcing/run.sh")]
    peer: String,
}

fn msgpack(v: &Value) -> anyhow::Result<Vec<u8>> {
    Ok(rmp_serde::to_vec_named(v)?)
}

fn handler(
    log: &EventLog,
    plugin: &Arc<LoadedPlugin>,
    every: u64,
) -> anyhow::Result<AggregateHandler> {
    let options = AggregateOptions {
        snapshot_every: NonZeroU64::new(every),
        ..AggregateOptions::new("account")
    };
    Ok(AggregateHandler::new(log.clone(), plugin.clone(), options)?)
}

fn best<T>(repeat: u32, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<Duration> {
    let mut fastest = Duration::MAX;
    for _ in 0..repeat.max(1) {
        let start = Instant::now();
        f()?;
        fastest = fastest.min(start.elapsed());
    }
    Ok(fastest)
}

fn balance(state: &[u8]) -> anyhow::Result<Value> {
    let v: Value = rmp_serde::from_slice(state)?;
    Ok(v["balance"].clone())
}

/// factline's figures, in the peer's JSON shape.
fn factline_side(plugins: &Path, a: &Args, dir: &Path) -> anyhow::Result<Value> {
    let log = EventLog::open(
        dir,
        LogOptions::with_topics([TopicConfig::new("account", 1)]),
    )?;
    let runtime = PluginRuntime::new(RuntimeConfig::default())?;
    let wasm = plugins.join("bank_account.wasm");
    let plugin = runtime
        .load_file(
            "bank-account",
            PluginKind::Aggregate,
            &wasm,
            Limits::default(),
            None,
        )
        .with_context(|| format!("loading {} (build the plugins first)", wasm.display()))?;

    // 1. Deposits, one command each.
    let h = handler(&log, &plugin, a.snapshot_every)?;
    let send = |t: &str, v: Value| -> anyhow::Result<()> {
        h.handle(CommandRequest {
            id: "ACC-1".into(),
            command_type: t.into(),
            payload: msgpack(&v)?,
            ..Default::default()
        })?;
        Ok(())
    };
    send(
        "open",
        json!({"owner": "Hanako", "initial_balance": 100_000}),
    )?;
    let start = Instant::now();
    for _ in 0..a.deposits {
        send("deposit", json!({"amount": 1}))?;
    }
    let deposits_s = start.elapsed().as_secs_f64();
    let expected = json!(100_000 + a.deposits);

    // 2. Reconstruct: a fresh handler (cold cache), every event vs the newest snapshot.
    let cold = handler(&log, &plugin, a.snapshot_every)?;
    let check = |(version, state): (u64, Vec<u8>)| -> anyhow::Result<u64> {
        anyhow::ensure!(balance(&state)? == expected, "wrong balance at {version}");
        Ok(version)
    };
    let replay = best(a.repeat, || {
        check(cold.state_replayed("ACC-1", AsOf::Latest)?)
    })?;
    let snapshot = best(a.repeat, || check(cold.state_as_of("ACC-1", AsOf::Latest)?))?;

    // 3. A stream appended at once; loaded without, then with, a snapshot at its end.
    let mut events = vec![NewEvent::new(
        "account.opened",
        msgpack(&json!({"account_id": "ACC-2", "owner": "Jiro", "initial_balance": 0}))?,
    )];
    let deposit = msgpack(&json!({"amount": 1}))?;
    events.extend((1..a.stream).map(|_| NewEvent::new("account.deposited", deposit.clone())));
    log.append("account-ACC-2", ExpectedVersion::NoStream, events)?;
    let s = handler(&log, &plugin, a.stream)?;
    s.state("ACC-2")?; // folds the whole stream and writes the snapshot at its end
    let stream_balance = json!(a.stream - 1);
    let load = |r: (u64, Vec<u8>)| -> anyhow::Result<()> {
        anyhow::ensure!(
            r.0 == a.stream && balance(&r.1)? == stream_balance,
            "wrong stream state"
        );
        Ok(())
    };
    let load_replay = best(a.repeat, || load(s.state_replayed("ACC-2", AsOf::Latest)?))?;
    let load_snapshot = best(a.repeat, || load(s.state_as_of("ACC-2", AsOf::Latest)?))?;
    Ok(json!({
        "deposits": a.deposits,
        "deposits_s": deposits_s,
        "reconstruct_replay_s": replay.as_secs_f64(),
        "reconstruct_snapshot_s": snapshot.as_secs_f64(),
        "stream_events": a.stream,
        "load_replay_s": load_replay.as_secs_f64(),
        "load_snapshot_s": load_snapshot.as_secs_f64(),
    }))
}

fn peer_side(a: &Args, dir: &Path) -> anyhow::Result<Value> {
    let script = PathBuf::from(&a.peer);
    let out = Command::new(&script)
        .args(["--deposits", &a.deposits.to_string()])
        .args(["--snapshot-every", &a.snapshot_every.to_string()])
        .args(["--stream", &a.stream.to_string()])
        .args(["--repeat", &a.repeat.to_string()])
        .arg("--dir")
        .arg(dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        out.status
    );
    let line = String::from_utf8(out.stdout)?;
    serde_json::from_str(line.trim()).with_context(|| format!("peer output {line:?}"))
}

pub fn run(plugins: &Path, a: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ours = factline_side(plugins, &a, &dir.path().join("factline"))?;
    let peer = if a.peer == "none" {
        None
    } else {
        Some(peer_side(&a, &dir.path().join("peer"))?)
    };
    let secs = |v: &Value, key: &str| v[key].as_f64().unwrap_or(f64::NAN);
    println!(
        "bank account: {} deposits (snapshot every {}), a {}-event stream; best of {} loads",
        a.deposits, a.snapshot_every, a.stream, a.repeat
    );
    if let Some(p) = &peer {
        println!(
            "peer: {} on SQLite {} ({} journal, a file)",
            p["library"].as_str().unwrap_or("?"),
            p["sqlite"].as_str().unwrap_or("?"),
            p["journal_mode"].as_str().unwrap_or("?")
        );
    }
    println!(
        "{:<44} {:>14} {:>14} {:>9}",
        "measure", "factline", "eventsourcing", "ratio"
    );
    let rows: [(&str, &str, bool); 5] = [
        ("deposits (commands/s)", "deposits_s", true),
        (
            "reconstruct the account, replay (ms)",
            "reconstruct_replay_s",
            false,
        ),
        (
            "reconstruct the account, snapshot (ms)",
            "reconstruct_snapshot_s",
            false,
        ),
        ("load the stream, replay (ms)", "load_replay_s", false),
        ("load the stream, snapshot (ms)", "load_snapshot_s", false),
    ];
    for (name, key, is_rate) in rows {
        let show = |v: &Value| {
            let s = secs(v, key);
            if is_rate {
                a.deposits as f64 / s
            } else {
                s * 1e3
            }
        };
        let (peer_shown, ratio) = match &peer {
            Some(p) => (
                format!("{:.3}", show(p)),
                // How many times faster factline is (peer time / factline time).
                format!("{:.2}x", secs(p, key) / secs(&ours, key)),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{name:<44} {:>14.3} {peer_shown:>14} {ratio:>9}",
            show(&ours)
        );
    }
    Ok(())
}
