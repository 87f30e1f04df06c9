//! `factline-bench gate`: the deploy gate over the last 10,000 events of the order-summary
//! projector (4 partitions, 2 lanes, batch 500) against the time the running version needed to
//! process the same events live, in one run: per round, the live group is paused, 10,000
//! events are appended, and it is timed from its resumption to idle; then a gated deploy of
//! another build of the same projector replays those events through both versions. Target:
//! gate ≤ 2× live (median of 5 rounds).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use factline_host::{Config, ExpectedVersion, GateOptions, GateVerdict, Host};

use crate::plugins::order_events;
use crate::reload::SUMMARY_HOST;

/// Events replayed per round (and processed live before it).
const EVENTS: u64 = 10_000;
const ROUNDS: u32 = 5;

pub fn run(plugins: &Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let component = std::fs::read(plugins.join("order_summary.wasm"))?;
    std::fs::write(dir.path().join("summary.wasm"), &component)?;
    let config = Config::parse(SUMMARY_HOST, Path::new("bench.toml"), dir.path())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let host = Arc::new(Host::start(config)?);
        let group = host
            .groups()
            .iter()
            .find(|g| g.name() == "summary")
            .expect("the summary projector's group")
            .clone();
        println!(
            "order-summary (4 partitions, 2 lanes, batch 500): gate of the last {EVENTS} events (both versions) against the running version processing them live"
        );
        println!(
            "{:<8} {:>10} {:>10} {:>14} {:>12}",
            "round", "live ms", "gate ms", "gated deploy", "gate / live"
        );
        let mut ratios = Vec::new();
        for round in 0..ROUNDS {
            let paused = group.pause().await;
            let log = host.log().clone();
            tokio::task::spawn_blocking(move || append_orders(&log, round))
                .await
                .expect("appending panicked")?;
            let started = Instant::now();
            drop(paused);
            host.wait_until_idle().await?;
            let live = started.elapsed().as_secs_f64() * 1000.0;

            let started = Instant::now();
            let report = host
                .deploy_gated(
                    "summary",
                    other_build(&component, round),
                    None,
                    GateOptions::new(Some(EVENTS as usize), false)?,
                )
                .await?;
            let deploy = started.elapsed().as_secs_f64() * 1000.0;
            let gate = report.gate.expect("a gated deploy reports its gate");
            anyhow::ensure!(
                gate.verdict == GateVerdict::Passed && gate.replayed == EVENTS,
                "the same projector must pass: {gate}"
            );
            let ratio = gate.elapsed_ms / live;
            ratios.push(ratio);
            println!(
                "{:<8} {:>10.1} {:>10.1} {:>14.1} {:>12.2}",
                round + 1,
                live,
                gate.elapsed_ms,
                deploy,
                ratio
            );
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "gate / live (median of {ROUNDS}): {:.2} (target <= 2.00); the gated deploy adds the candidate's compile and the swap",
            ratios[ratios.len() / 2]
        );
        Arc::into_inner(host)
            .expect("the bench holds the only handle")
            .shutdown()
            .await;
        anyhow::Ok(())
    })
}

/// [`EVENTS`] events of new orders (5 each), from 4 threads.
fn append_orders(log: &factline_host::EventLog, round: u32) -> anyhow::Result<()> {
    let orders = EVENTS / 5;
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                for o in (t..orders).step_by(4) {
                    let order = u64::from(round) * orders + o;
                    log.append(
                        &format!("order-G-{order}"),
                        ExpectedVersion::NoStream,
                        order_events(order),
                    )?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().expect("appender panicked")?;
    }
    Ok(())
}

/// The component with a custom section naming `round`: another version (content hash) with
/// the same code, so every round gates a real swap.
fn other_build(component: &[u8], round: u32) -> Vec<u8> {
    let section = format!("bench-round-{round}");
    let mut bytes = component.to_vec();
    bytes.extend_from_slice(&[0, section.len() as u8 + 1, section.len() as u8]);
    bytes.extend_from_slice(section.as_bytes());
    bytes
}
