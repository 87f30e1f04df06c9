//! `factline-bench reload`: hot-reload costs while events flow. A host runs the order-summary
//! projector (2 lanes) while 4 threads keep appending orders; new versions are deployed with
//! and without a cached compiled artifact. Reported: prepare (compile or cache load, off the
//! processing path), swap (request to every lane on the new version) and the pause a lane sees
//! (end of its last batch on the old version to the start of its first on the new one). Then
//! the cold start of 10 plugins with an empty and with a warm artifact cache.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use factline_host::Config;
use factline_host::ExpectedVersion;
use factline_host::Host;
use factline_host::{DeployOrigin, DeployReport};
use factline_host::{Limits, PluginKind, PluginRuntime, RuntimeConfig};

use crate::plugins::order_events;

/// `component` with a custom section appended: a distinct content hash (a new version to the
/// host and its cache) for the same code. Custom sections may follow any section.
fn variant(component: &[u8], n: u32) -> Vec<u8> {
    fn leb(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let name = b"factline-bench-variant";
    let payload = n.to_le_bytes();
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(&payload);
    let mut out = component.to_vec();
    out.push(0); // custom section id
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// A host running `summary.wasm` (order-summary) on 4 partitions of `order`, 2 lanes.
pub(crate) const SUMMARY_HOST: &str = r#"data_dir = "data"
watch_plugins = false
[[topics]]
name = "order"
partitions = 4
[[plugins]]
name = "summary"
kind = "projector"
component = "summary.wasm"
subscriptions = ["order"]
batch_size = 500
concurrency = 2
"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn run(plugins: &Path, rounds: u32) -> anyhow::Result<()> {
    let summary = std::fs::read(plugins.join("order_summary.wasm"))?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("summary.wasm"), &summary)?;
    let config = Config::parse(SUMMARY_HOST, Path::new("bench.toml"), dir.path())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (cold, cached) = runtime.block_on(async {
        let host = Arc::new(Host::start(config)?);
        let stop = Arc::new(AtomicBool::new(false));
        let appenders: Vec<_> = (0..4u64)
            .map(|t| {
                let (log, stop) = (host.log().clone(), stop.clone());
                std::thread::spawn(move || -> anyhow::Result<u64> {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let order = t * 1_000_000_000 + i;
                        log.append(
                            &format!("order-R-{order}"),
                            ExpectedVersion::NoStream,
                            order_events(order),
                        )?;
                        i += 1;
                    }
                    Ok(i * 5)
                })
            })
            .collect();
        let metrics = host.groups()[0].metrics().clone();
        // One deploy, then wait for batches on the new version to report the lane pause.
        let deploy = |bytes: Vec<u8>| {
            let (host, metrics) = (host.clone(), metrics.clone());
            async move {
                metrics.last_swap_pause_us.store(u64::MAX, Ordering::Relaxed);
                let r: DeployReport = host
                    .deploy("summary", bytes, None, DeployOrigin::Api)
                    .await?;
                let deadline = Instant::now() + Duration::from_secs(10);
                while metrics.last_swap_pause_us.load(Ordering::Relaxed) == u64::MAX {
                    anyhow::ensure!(Instant::now() < deadline, "no batch after the swap");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let pause = metrics.last_swap_pause_us.load(Ordering::Relaxed) as f64 / 1000.0;
                anyhow::Ok((r, pause))
            }
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (mut cold, mut cached) = (Vec::new(), Vec::new());
        for n in 1..=rounds {
            cold.push(deploy(variant(&summary, n)).await?);
        }
        for n in 1..=rounds {
            cached.push(deploy(variant(&summary, n)).await?);
        }
        stop.store(true, Ordering::Relaxed);
        let mut appended = 0;
        for a in appenders {
            appended += a.join().expect("appender panicked")?;
        }
        host.wait_until_idle().await?;
        // Every order has its summary row: none lost across the swaps (one handled twice
        // would show in the row's item count, which the plugin tests cover).
        let rows = factline_host::query_read_model_prefix(host.log(), "summary", "", usize::MAX)?;
        anyhow::ensure!(
            rows.len() as u64 * 5 == appended,
            "{} order summaries for {appended} events",
            rows.len()
        );
        println!(
            "hot reload of order-summary (2 lanes) while 4 threads append: {appended} events, all processed once"
        );
        anyhow::Ok((cold, cached))
    })?;

    println!(
        "{:<26} {:>12} {:>10} {:>14}",
        "deploy (median)", "prepare ms", "swap ms", "lane pause ms"
    );
    for (name, runs) in [
        ("not cached (compile)", &cold),
        ("cached artifact", &cached),
    ] {
        for (r, _) in runs.iter() {
            anyhow::ensure!(r.swapped, "a deploy did not swap");
        }
        println!(
            "{name:<26} {:>12.2} {:>10.2} {:>14.3}",
            median(runs.iter().map(|(r, _)| ms(r.prepare)).collect()),
            median(runs.iter().map(|(r, _)| ms(r.swap)).collect()),
            median(runs.iter().map(|(_, p)| *p).collect()),
        );
    }
    println!(
        "cache outcomes: {:?} then {:?}",
        cold.iter().map(|(r, _)| r.cache).collect::<Vec<_>>(),
        cached.iter().map(|(r, _)| r.cache).collect::<Vec<_>>()
    );

    // Cold start of 10 plugins (distinct versions): empty cache, then warm.
    let cache = tempfile::tempdir()?;
    let start_10 = || -> anyhow::Result<Duration> {
        let rt = PluginRuntime::new(RuntimeConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            ..RuntimeConfig::default()
        })?;
        let started = Instant::now();
        for n in 0..10 {
            rt.load(
                &format!("p{n}"),
                PluginKind::Projector,
                &variant(&summary, 1000 + n),
                Limits::default(),
                None,
            )?;
        }
        Ok(started.elapsed())
    };
    let empty = start_10()?;
    let warm = start_10()?;
    println!(
        "\n{:<26} {:>12}\n{:<26} {:>12.1}\n{:<26} {:>12.1}\nwarm/empty: {:.3}",
        "start of 10 plugins",
        "ms",
        "empty cache (compile)",
        ms(empty),
        "warm cache",
        ms(warm),
        warm.as_secs_f64() / empty.as_secs_f64()
    );
    Ok(())
}
