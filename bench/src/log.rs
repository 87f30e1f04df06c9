//! `factline-bench log`: appends single, concurrent and batched, partition reads, and the raw
//! redb ceiling they are measured against, in one run.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use factline_host::{EventLog, LogOptions, TopicConfig};
use factline_host::{ExpectedVersion, NewEvent};

struct Row {
    name: &'static str,
    ops: u64,
    unit: &'static str,
    elapsed: Duration,
}

impl Row {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

const STREAMS: usize = 64;

fn payload(i: u64) -> Vec<u8> {
    // ~200 bytes, the size of a typical small domain event.
    rmp_serde::to_vec_named(&serde_json::json!({
        "order_id": format!("ORD-{i}"),
        "product_id": "SKU-0001",
        "quantity": i % 7,
        "unit_price": 1000,
        "note": "x".repeat(120),
    }))
    .expect("encode")
}

fn fresh_log(dir: &std::path::Path) -> anyhow::Result<EventLog> {
    Ok(EventLog::open(
        dir,
        LogOptions::with_topics([TopicConfig::new("bench", 8)]),
    )?)
}

pub fn run(scale: f64) -> anyhow::Result<()> {
    let n = |base: u64| ((base as f64 * scale) as u64).max(1);
    let mut rows = Vec::new();

    // Raw redb: one row per Immediate transaction (= one fsync per append) and 1,000 per one.
    let raw_single = raw_redb(n(1000), 1)?;
    rows.push(Row {
        name: "raw redb, 1 row per Immediate txn",
        ops: n(1000),
        unit: "rows",
        elapsed: raw_single,
    });
    let raw_batch = raw_redb(n(100), 1000)?;
    rows.push(Row {
        name: "raw redb, 1,000 rows per Immediate txn (ceiling)",
        ops: n(100) * 1000,
        unit: "rows",
        elapsed: raw_batch,
    });
    // What redb itself does when a transaction can hold at most 64 rows: the most 64
    // appenders, each waiting for its acknowledgement, can ever put in one group commit.
    let raw_64 = raw_redb(n(400), 64)?;
    rows.push(Row {
        name: "raw redb, 64 rows per Immediate txn",
        ops: n(400) * 64,
        unit: "rows",
        elapsed: raw_64,
    });

    let dir = tempfile::tempdir()?;
    let log = fresh_log(dir.path())?;
    let count = n(1000);
    let start = Instant::now();
    for i in 0..count {
        log.append(
            &format!("bench-seq{}", i % 16),
            ExpectedVersion::Any,
            vec![NewEvent::new("bench.appended", payload(i))],
        )?;
    }
    rows.push(Row {
        name: "sequential single-event appends",
        ops: count,
        unit: "appends",
        elapsed: start.elapsed(),
    });

    let per_thread = n(400);
    let threads = 64;
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (log, barrier) = (log.clone(), barrier.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                barrier.wait();
                let stream = format!("bench-c{}", t % STREAMS);
                let body = payload(t as u64);
                for _ in 0..per_thread {
                    let v = log.append(
                        &stream,
                        ExpectedVersion::Any,
                        vec![NewEvent::new("bench.appended", body.clone())],
                    )?;
                    debug_assert!(v.last_version > 0);
                }
                Ok(())
            })
        })
        .collect();
    let stats = log.writer_stats();
    let (t0, r0) = (
        stats.transactions.load(Relaxed),
        stats.requests.load(Relaxed),
    );
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("appender panicked"))??;
    }
    rows.push(Row {
        name: "64 concurrent single-event appenders (threads)",
        ops: per_thread * threads as u64,
        unit: "appends",
        elapsed: start.elapsed(),
    });
    let (t1, r1) = (
        stats.transactions.load(Relaxed),
        stats.requests.load(Relaxed),
    );
    let group = (r1 - r0) as f64 / (t1 - t0).max(1) as f64;

    // The same as 64 async tasks on a 2-thread tokio runtime: how the HTTP host calls append.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    // Then enough appenders to fill a transaction of the raw ceiling's size.
    let mut groups = Vec::new();
    for (name, prefix, tasks, per_task) in [
        (
            "64 concurrent single-event appenders (tasks)",
            "bench-t",
            threads,
            per_thread,
        ),
        (
            "1,024 concurrent single-event appenders (tasks)",
            "bench-m",
            1024,
            n(40),
        ),
    ] {
        let (elapsed, group) = appender_tasks(&runtime, &log, prefix, tasks, per_task)?;
        groups.push(group);
        rows.push(Row {
            name,
            ops: per_task * tasks as u64,
            unit: "appends",
            elapsed,
        });
    }
    let (task_group, many_group) = (groups[0], groups[1]);

    let batches = n(300);
    let start = Instant::now();
    for b in 0..batches {
        let events = (0..100)
            .map(|i| NewEvent::new("bench.appended", payload(b * 100 + i)))
            .collect();
        log.append(&format!("bench-b{}", b % 16), ExpectedVersion::Any, events)?;
    }
    rows.push(Row {
        name: "batches of 100 events per append",
        ops: batches * 100,
        unit: "events",
        elapsed: start.elapsed(),
    });

    // Sequential read of the largest partition, in pages like a consumer.
    let (p, hwm) = (0..8)
        .map(|p| (p, log.high_water_mark("bench", p).unwrap_or(0)))
        .max_by_key(|(_, h)| *h)
        .unwrap_or((0, 0));
    let start = Instant::now();
    let mut offset = 0;
    while offset < hwm {
        let page = log.read_partition("bench", p, offset, 1000)?;
        offset += page.len() as u64;
    }
    rows.push(Row {
        name: "sequential read of a partition",
        ops: hwm,
        unit: "events",
        elapsed: start.elapsed(),
    });

    print_table(&rows);
    let txns = stats.transactions.load(Relaxed).max(1);
    println!(
        "writer, per transaction: {:.0} µs applying, {:.0} µs committing (pages + fsync), {:.1} requests",
        stats.apply_nanos.load(Relaxed) as f64 / txns as f64 / 1e3,
        stats.commit_nanos.load(Relaxed) as f64 / txns as f64 / 1e3,
        stats.requests.load(Relaxed) as f64 / txns as f64
    );
    let rate = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .map(Row::rate)
            .unwrap_or(0.0)
    };
    let ceiling = rate("raw redb, 1,000 rows per Immediate txn (ceiling)");
    let fsync = rate("raw redb, 1 row per Immediate txn");
    let conc_threads = rate("64 concurrent single-event appenders (threads)")
        / rate("raw redb, 64 rows per Immediate txn");
    let per_64 = rate("64 concurrent single-event appenders (tasks)")
        / rate("raw redb, 64 rows per Immediate txn");
    let per_1024 = rate("1,024 concurrent single-event appenders (tasks)") / ceiling;
    let seq = rate("sequential single-event appends") / fsync;
    println!();
    println!(
        "appends per transaction (group commit): {group:.1} with 64 threads, {task_group:.1} with 64 tasks, {many_group:.1} with 1,024 tasks"
    );
    println!("64 concurrent appenders (threads) / raw redb at 64 rows per txn: {conc_threads:.2}");
    println!("one run each, as in the table (the disk's fsync time drifts between rows):");
    println!("  64 concurrent appenders (tasks) / raw redb at 64 rows per txn: {per_64:.2}");
    println!("  1,024 concurrent appenders (tasks) / raw ceiling: {per_1024:.2}");
    println!("  sequential single appends / one fsync per append: {seq:.2}");

    // The targets, each measured in pairs: raw redb right before the log, median of the rounds.
    println!("paired, raw redb right before the log, median of {PAIRS} rounds:");
    for (label, target, prefix, tasks, per_task, raw_txns, raw_rows) in [
        (
            "64 concurrent appenders (tasks) / raw redb at 64 rows per txn",
            0.7,
            "bench-p",
            threads,
            n(100),
            n(100),
            64,
        ),
        (
            "1,024 concurrent appenders (tasks) / raw ceiling",
            0.6,
            "bench-q",
            1024,
            n(20),
            n(20),
            1000,
        ),
    ] {
        let ratio = paired(
            || raw_rate(raw_txns, raw_rows),
            || {
                let (d, _) = appender_tasks(&runtime, &log, prefix, tasks, per_task)?;
                Ok((tasks as u64 * per_task) as f64 / d.as_secs_f64())
            },
        )?;
        println!(
            "  {label}: {ratio:.2} (target >= {target:.2}) {}",
            verdict(ratio >= target)
        );
    }
    let seq = paired(
        || raw_rate(n(200), 1),
        || {
            let start = Instant::now();
            for i in 0..n(200) {
                let event = NewEvent::new("bench.appended", payload(i));
                log.append("bench-pseq", ExpectedVersion::Any, vec![event])?;
            }
            Ok(n(200) as f64 / start.elapsed().as_secs_f64())
        },
    )?;
    println!(
        "  sequential single appends / one fsync per append: {seq:.2} (target >= 0.80) {}",
        verdict(seq >= 0.8)
    );
    Ok(())
}

/// Rounds of each paired measurement.
const PAIRS: usize = 3;

/// The median over [`PAIRS`] rounds of `ours / raw` (rates), each round measuring `raw` right
/// before `ours`: on a shared disk the fsync time drifts several-fold within one run, and the
/// two sides of a pair see the same disk.
fn paired(
    mut raw: impl FnMut() -> anyhow::Result<f64>,
    mut ours: impl FnMut() -> anyhow::Result<f64>,
) -> anyhow::Result<f64> {
    let mut ratios = Vec::with_capacity(PAIRS);
    for _ in 0..PAIRS {
        let r = raw()?;
        ratios.push(ours()? / r);
    }
    ratios.sort_by(f64::total_cmp);
    Ok(ratios[PAIRS / 2])
}

/// Rows/s of [`raw_redb`].
fn raw_rate(txns: u64, per_txn: u64) -> anyhow::Result<f64> {
    Ok((txns * per_txn) as f64 / raw_redb(txns, per_txn)?.as_secs_f64())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<50} {:>10} {:>10} {:>14}",
        "case", "count", "seconds", "per second"
    );
    println!("{}", "-".repeat(87));
    for r in rows {
        println!(
            "{:<50} {:>10} {:>10.3} {:>10.0} {}",
            r.name,
            r.ops,
            r.elapsed.as_secs_f64(),
            r.rate(),
            r.unit
        );
    }
}

/// Appends/s of `tasks` concurrent single-event appenders (async tasks on a 2-thread runtime),
/// `per_task` each, to streams of `topic` on `log`: the log's rate other benchmarks compare with
/// in the same run.
pub fn append_rate(
    log: &EventLog,
    topic: &str,
    tasks: usize,
    per_task: u64,
) -> anyhow::Result<f64> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    let prefix = format!("{topic}-appender");
    let (elapsed, _) = appender_tasks(&runtime, log, &prefix, tasks, per_task)?;
    Ok((tasks as u64 * per_task) as f64 / elapsed.as_secs_f64())
}

/// `tasks` async appenders on `runtime`, each appending `per_task` single events to its own
/// stream (`prefix` + its number) one after another: the time taken and the appends per
/// transaction meanwhile.
fn appender_tasks(
    runtime: &tokio::runtime::Runtime,
    log: &EventLog,
    prefix: &str,
    tasks: usize,
    per_task: u64,
) -> anyhow::Result<(Duration, f64)> {
    let stats = log.writer_stats();
    let (t0, r0) = (
        stats.transactions.load(Relaxed),
        stats.requests.load(Relaxed),
    );
    let start = Instant::now();
    runtime.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for t in 0..tasks {
            let log = log.clone();
            let stream = format!("{prefix}{t}");
            set.spawn(async move {
                let body = payload(t as u64);
                for _ in 0..per_task {
                    let event = NewEvent::new("bench.appended", body.clone());
                    log.append_async(&stream, ExpectedVersion::Any, vec![event])
                        .await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        anyhow::Ok(())
    })?;
    let elapsed = start.elapsed();
    let (t1, r1) = (
        stats.transactions.load(Relaxed),
        stats.requests.load(Relaxed),
    );
    Ok((elapsed, (r1 - r0) as f64 / (t1 - t0).max(1) as f64))
}

/// redb alone, rows of the same size as the log's events, `per_txn` rows per Immediate commit.
fn raw_redb(txns: u64, per_txn: u64) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    // Pad to the size of a stored envelope around the same payload.
    let mut row = payload(0);
    row.resize(row.len() + 180, 0);
    Ok(crate::raw_redb::raw_redb_insert_bench(
        dir.path(),
        txns,
        per_txn,
        &row,
    )?)
}
