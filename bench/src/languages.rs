//! `factline-bench languages`: the same projector (order-summary) built from different
//! languages, through the host's full path (log read → plugin → read-model writes + offset
//! commit): events/s, resident memory per instance, and load time cold (compile) and cached.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use factline_host::ExpectedVersion;
use factline_host::{ConsumerGroup, GroupConfig};
use factline_host::{EventLog, LogOptions, TopicConfig};
use factline_host::{Limits, LoadedPlugin, PluginKind, PluginRuntime, RuntimeConfig};
use factline_host::{ProjectionHandler, WasmProjection};

use crate::plugins::order_events;

/// `label=path` of one projector build.
#[derive(Clone, Debug)]
pub struct Build {
    label: String,
    path: PathBuf,
}

impl std::str::FromStr for Build {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (label, path) = s
            .split_once('=')
            .ok_or_else(|| format!("expected LABEL=PATH, got {s:?}"))?;
        Ok(Build {
            label: label.into(),
            path: path.into(),
        })
    }
}

/// Instances kept alive at once to measure memory per instance.
const INSTANCES: usize = 16;

pub fn run(builds: &[Build], events: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        !builds.is_empty(),
        "name the builds to compare: --projector rust=order_summary.wasm --projector python=…"
    );
    let dir = tempfile::tempdir()?;
    let log = EventLog::open(
        dir.path().join("log"),
        LogOptions::with_topics([TopicConfig::new("order", 4)]),
    )?;
    let orders = events.div_ceil(5);
    for i in 0..orders {
        log.append(
            &format!("order-B-{i}"),
            ExpectedVersion::NoStream,
            order_events(i),
        )?;
    }
    let total = orders * 5;
    println!(
        "order-summary projector through the host: {total} events, batch 256, 4 partitions; \
         memory = resident growth per live instance after one batch ({INSTANCES} instances)"
    );
    println!(
        "{:<12} {:>10} {:>11} {:>12} {:>12} {:>11} {:>10} {:>9}",
        "build",
        "size",
        "load cold",
        "load cached",
        "mem/instance",
        "events/s",
        "µs/event",
        "vs first"
    );
    let mut first_rate = None;
    let mut first_rows = None;
    for (i, build) in builds.iter().enumerate() {
        let size = std::fs::metadata(&build.path)?.len();
        let cache = dir.path().join(format!("cache-{i}"));
        let cold = load(&build.path, &cache)?;
        let cached = load(&build.path, &cache)?;
        let memory = memory_per_instance(&cached, &log)?;
        let elapsed = project(&log, &format!("bench-{i}"), &cached)?;
        // A build that fails (or differs) is not measured: its events would be parked or wrong.
        let parked = log.dead_letters(Some(&format!("bench-{i}")))?;
        anyhow::ensure!(
            parked.is_empty(),
            "{}: {} events parked, first: {}",
            build.label,
            parked.len(),
            parked[0].message
        );
        let rows =
            factline_host::query_read_model_prefix(&log, &format!("bench-{i}"), "", 1 << 20)?;
        let first = first_rows.get_or_insert_with(|| rows.clone());
        anyhow::ensure!(
            *first == rows,
            "{}: its read model differs from the first build's",
            build.label
        );
        let rate = total as f64 / elapsed.as_secs_f64();
        let first = *first_rate.get_or_insert(rate);
        println!(
            "{:<12} {:>10} {:>11} {:>12} {:>12} {:>11.0} {:>10.2} {:>9.2}",
            build.label,
            mib(size as f64),
            format!("{:.2?}", cold.load_time),
            format!("{:.2?}", cached.load_time),
            mib(memory),
            rate,
            elapsed.as_secs_f64() * 1e6 / total as f64,
            rate / first,
        );
        anyhow::ensure!(
            format!("{:?}/{:?}", cold.cache_outcome, cached.cache_outcome) == "Miss/Hit",
            "{}: expected a compile then a cache hit, got {:?} then {:?}",
            build.label,
            cold.cache_outcome,
            cached.cache_outcome
        );
    }
    Ok(())
}

/// Loads `path` in a fresh runtime caching into `cache` (so the second load is a restart).
fn load(path: &Path, cache: &Path) -> anyhow::Result<std::sync::Arc<LoadedPlugin>> {
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(cache.to_path_buf()),
        ..RuntimeConfig::default()
    })?;
    Ok(runtime.load_file(
        "order-summary",
        PluginKind::Projector,
        path,
        Limits::default(),
        None,
    )?)
}

/// Catch-up of the whole log by one handler, as `factline run` would do it.
fn project(
    log: &EventLog,
    group: &str,
    plugin: &std::sync::Arc<LoadedPlugin>,
) -> anyhow::Result<Duration> {
    let projection = WasmProjection::new(plugin.instantiate()?)?;
    let mut handler = ConsumerGroup::new(
        log.clone(),
        GroupConfig::new(group, vec!["order".into()]),
        ProjectionHandler::boxed(projection),
    )?;
    let start = Instant::now();
    handler.run_until_idle()?;
    Ok(start.elapsed())
}

/// Resident bytes each live instance adds once it has projected a batch (so the memory it
/// touches in use is counted, not only what instantiation maps).
fn memory_per_instance(
    plugin: &std::sync::Arc<LoadedPlugin>,
    log: &EventLog,
) -> anyhow::Result<f64> {
    let before = resident_bytes()?;
    let mut live = Vec::with_capacity(INSTANCES);
    for i in 0..INSTANCES {
        let projection = WasmProjection::new(plugin.instantiate()?)?;
        let mut handler = ConsumerGroup::new(
            log.clone(),
            GroupConfig::new(format!("memory-{i}"), vec!["order".into()]),
            ProjectionHandler::boxed(projection),
        )?;
        // One batch, so the instance has run.
        handler.step()?;
        live.push(handler);
    }
    let grown = resident_bytes()?.saturating_sub(before);
    drop(live);
    Ok(grown as f64 / INSTANCES as f64)
}

fn resident_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/self/statm: {statm}"))?
        .parse()?;
    Ok(pages * 4096)
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1 << 20) as f64)
}
