//! `factline-bench rebuild`: a blue/green rebuild of the order-summary projector (4 partitions,
//! 2 lanes) against the live group catching up the same events, in one run. Then a rebuild while
//! 4 threads keep appending and a reader keeps querying: how long the live group paused for the
//! switch, and the query latency during the rebuild against before it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use factline_host::Config;
use factline_host::ExpectedVersion;
use factline_host::Host;
use factline_host::{EventLog, LogOptions, TopicConfig};
use factline_host::{RebuildPhase, RebuildStatus};
use factline_host::{query_read_model, query_read_model_prefix};

use crate::plugins::order_events;
use crate::reload::SUMMARY_HOST;

/// Events per order (`order_events`).
const PER_ORDER: u64 = 5;

pub fn run(plugins: &Path, events: u64) -> anyhow::Result<()> {
    let orders = (events / PER_ORDER).max(1);
    let dir = tempfile::tempdir()?;
    std::fs::copy(
        plugins.join("order_summary.wasm"),
        dir.path().join("summary.wasm"),
    )?;
    // The events, before any projector runs.
    {
        let log = EventLog::open(
            dir.path().join("data"),
            LogOptions::with_topics([TopicConfig::new("order", 4)]),
        )?;
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || -> anyhow::Result<()> {
                    for o in (t..orders).step_by(4) {
                        log.append(
                            &format!("order-B-{o}"),
                            ExpectedVersion::NoStream,
                            order_events(o),
                        )?;
                    }
                    Ok(())
                })
            })
            .collect();
        for t in threads {
            t.join().expect("appender panicked")?;
        }
    }
    let total = orders * PER_ORDER;
    let config = Config::parse(SUMMARY_HOST, Path::new("bench.toml"), dir.path())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // The live group from offset 0: the catch-up rate to compare a rebuild with.
        let started = Instant::now();
        let host = Arc::new(Host::start(config)?);
        host.wait_until_idle().await?;
        let live = started.elapsed();
        let rows = query_read_model_prefix(host.log(), "summary", "", usize::MAX)?.len() as u64;
        anyhow::ensure!(rows == orders, "{rows} summaries for {orders} orders");

        // A rebuild of the same events, nothing else running.
        let started = Instant::now();
        host.rebuild_projector("summary").await?;
        let idle = finished(&host).await?;
        let rebuild = started.elapsed();

        // A rebuild while 4 threads append and a reader queries.
        let stop = Arc::new(AtomicBool::new(false));
        let appenders: Vec<_> = (0..4u64)
            .map(|t| {
                let (log, stop) = (host.log().clone(), stop.clone());
                std::thread::spawn(move || -> anyhow::Result<u64> {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let order = 1_000_000_000 * (t + 1) + i;
                        log.append(
                            &format!("order-L-{order}"),
                            ExpectedVersion::NoStream,
                            order_events(order),
                        )?;
                        i += 1;
                    }
                    Ok(i)
                })
            })
            .collect();
        let reading = Arc::new(AtomicBool::new(true));
        let reader = {
            let (log, reading) = (host.log().clone(), reading.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let mut latencies = Vec::new();
                let mut o = 0;
                while reading.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let row = query_read_model(&log, "summary", &format!("B-{}", o % orders))?;
                    latencies.push(t.elapsed());
                    anyhow::ensure!(row.is_some(), "a query found no row during the rebuild");
                    o += 7919;
                }
                Ok(latencies)
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before_rebuild = Instant::now();
        host.rebuild_projector("summary").await?;
        let loaded = finished(&host).await?;
        let under_load = before_rebuild.elapsed();
        reading.store(false, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        let latencies = reader.join().expect("reader panicked")?;
        let mut added = 0;
        for a in appenders {
            added += a.join().expect("appender panicked")?;
        }
        host.wait_until_idle().await?;
        let rows = query_read_model_prefix(host.log(), "summary", "", usize::MAX)?.len() as u64;
        anyhow::ensure!(
            rows == orders + added,
            "{rows} summaries for {} orders after the rebuilds",
            orders + added
        );
        let status = host.projector("summary")?.expect("configured");

        let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "order-summary (4 partitions, 2 lanes, batch 500): {total} events, {orders} orders"
        );
        println!("{:<38} {:>10} {:>12}", "", "seconds", "events/s");
        println!(
            "{:<38} {:>10.2} {:>12.0}",
            "live group catching up from 0",
            live.as_secs_f64(),
            rate(total, live)
        );
        println!(
            "{:<38} {:>10.2} {:>12.0}",
            "rebuild (replay + switch), idle log",
            rebuild.as_secs_f64(),
            rate(total, rebuild)
        );
        println!(
            "rebuild / live catch-up rate: {:.2}",
            live.as_secs_f64() / rebuild.as_secs_f64()
        );
        println!(
            "\nrebuild while 4 threads append ({} orders added) and a reader queries:",
            added
        );
        println!(
            "  replayed {} events in {:.2} s; live group paused {:.1} ms for the switch (idle log: {:.1} ms)",
            loaded.processed,
            under_load.as_secs_f64(),
            loaded.switch_pause_ms.unwrap_or_default(),
            idle.switch_pause_ms.unwrap_or_default()
        );
        let (p50, p99, max) = percentiles(latencies.clone());
        println!(
            "  {} queries answered meanwhile, none missing a row: p50 {:.1} µs, p99 {:.1} µs, max {:.1} ms",
            latencies.len(),
            p50 * 1e6,
            p99 * 1e6,
            max * 1e3
        );
        println!(
            "  live now: generation {} (scope {}), all {rows} summaries present",
            status.live.map_or(0, |g| g.generation),
            status.scope
        );
        Arc::into_inner(host)
            .expect("the bench holds the only handle")
            .shutdown()
            .await;
        anyhow::Ok(())
    })
}

/// Waits until the projector's rebuild ended; an error unless it switched.
async fn finished(host: &Host) -> anyhow::Result<RebuildStatus> {
    loop {
        let status = host
            .projector("summary")?
            .and_then(|s| s.rebuild)
            .ok_or_else(|| anyhow::anyhow!("no rebuild"))?;
        if !status.is_running() {
            anyhow::ensure!(status.phase == RebuildPhase::Done, "rebuild: {status:?}");
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// p50, p99 and max, in seconds.
fn percentiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64();
    (at(0.5), at(0.99), at(1.0))
}
