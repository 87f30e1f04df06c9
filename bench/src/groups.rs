//! `factline-bench groups`: a projector group (order-summary as WASM) over 1, 2 and 4
//! partitions, and the rate at which a group catches up a large lag.

use std::path::Path;
use std::time::Instant;

use factline_host::ExpectedVersion;
use factline_host::{ConsumerGroup, ConsumerPool, GroupConfig};
use factline_host::{EventLog, LogOptions, TopicConfig};
use factline_host::{Limits, LoadedPlugin, PluginKind, PluginRuntime, RuntimeConfig};
use factline_host::{ProjectionHandler, WasmProjection};

use crate::plugins::order_events;

/// Appends `orders` five-event orders (created, 2 items, placed, shipped), one append each.
fn fill(log: &EventLog, orders: u64) -> anyhow::Result<u64> {
    for i in 0..orders {
        log.append(
            &format!("order-B-{i}"),
            ExpectedVersion::NoStream,
            order_events(i),
        )?;
    }
    Ok(orders * 5)
}

/// Runs a group with one lane per partition on a pool of `lanes` workers until caught up.
fn run_group(
    log: &EventLog,
    plugin: &std::sync::Arc<LoadedPlugin>,
    name: &str,
    lanes: usize,
) -> anyhow::Result<(u64, f64)> {
    let mut config = GroupConfig::new(name, vec!["order".into()]);
    config.batch_size = 1000;
    config.concurrency = lanes;
    let projection = WasmProjection::new(plugin.instantiate()?)?;
    let group = ConsumerGroup::new(log.clone(), config, ProjectionHandler::boxed(projection))?;
    let topics = vec!["order".to_owned()];
    let lag = || -> anyhow::Result<u64> {
        Ok(factline_host::group_lag(log, name, &topics)?
            .iter()
            .map(|p| p.lag)
            .sum())
    };
    let total = lag()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    runtime.block_on(async {
        let handle = ConsumerPool::new(lanes).spawn(group);
        while lag()? > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        handle.stop().await;
        anyhow::Ok(())
    })?;
    Ok((total, total as f64 / start.elapsed().as_secs_f64()))
}

pub fn run(plugins: &Path, events: u64, lag: u64) -> anyhow::Result<()> {
    let runtime = PluginRuntime::new(RuntimeConfig::default())?;
    let summary = runtime.load_file(
        "order-summary",
        PluginKind::Projector,
        &plugins.join("order_summary.wasm"),
        Limits::default(),
        None,
    )?;
    println!(
        "projector group (order-summary, WASM, batch 1000, a lane per partition), {events} events"
    );
    println!("{:<12} {:>12}", "partitions", "events/s");
    for partitions in [1u32, 2, 4] {
        let dir = tempfile::tempdir()?;
        let log = EventLog::open(
            dir.path(),
            LogOptions::with_topics([TopicConfig::new("order", partitions)]),
        )?;
        fill(&log, events.div_ceil(5))?;
        let (_, rate) = run_group(&log, &summary, "summary", partitions as usize)?;
        println!("{partitions:<12} {rate:>12.0}");
    }
    let dir = tempfile::tempdir()?;
    let log = EventLog::open(
        dir.path(),
        LogOptions::with_topics([TopicConfig::new("order", 4)]),
    )?;
    let start = Instant::now();
    let total = fill(&log, lag.div_ceil(5))?;
    let fill_rate = total as f64 / start.elapsed().as_secs_f64();
    let (n, rate) = run_group(&log, &summary, "catch-up", 4)?;
    anyhow::ensure!(n == total, "caught up {n} of {total}");
    println!(
        "\ncatch-up of a {total}-event lag: {rate:.0} events/s ({:.1} s); the lag was appended at {fill_rate:.0} events/s",
        total as f64 / rate
    );
    Ok(())
}
