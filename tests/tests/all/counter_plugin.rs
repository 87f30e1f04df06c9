//! The crash test of issue 4, for real: the `factline` binary runs the counter projector over
//! 200,000 events and is SIGKILLed at random moments, restarted each time. After every kill the
//! read model must equal the counts of exactly the events below the committed offsets (effects
//! and offset commit together, DESIGN §4 invariant 4); at the end, exactly the events per type
//! (0 lost, 0 applied twice). One stop is a SIGTERM, which must finish cleanly with status 0.

use std::path::Path;
use std::time::{Duration, Instant};

use counter_plugin::Event as Tick;
use factline_host::{Durability, EventLog, LogOptions, TopicConfig};
use factline_host::{ExpectedVersion, NewEvent};
use rand::Rng;

use crate::support::RunningHost;

const TOPIC: &str = "tick";
const PARTITIONS: u32 = 4;
const STREAMS: usize = 24;
const EVENTS: usize = 200_000;
const PER_APPEND: usize = 500;
const KILLS: usize = 20;
const GROUP: &str = "counter";
/// Small enough that catching up spans several kills (each batch is one fsynced commit).
const BATCH_SIZE: usize = 200;

/// The type index of every appended event, per partition, by offset.
type Appended = Vec<Vec<usize>>;

#[test]
fn sigkill_at_random_moments_never_loses_or_doubles_an_effect() {
    let started = Instant::now();
    let bin = crate::support::factline_binary();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let appended = append_events(&data_dir);
    let totals = counts_below(&appended, &[usize::MAX; PARTITIONS as usize]);
    let config = dir.path().join("factline.toml");
    std::fs::write(&config, config_text(&data_dir)).unwrap();
    eprintln!(
        "counter crash test: appended {EVENTS} events in {:.1?}",
        started.elapsed()
    );

    let mut rng = rand::rng();
    let mut progress = Vec::new();
    for round in 0..KILLS {
        let mut host = RunningHost::spawn(&bin, &config, &[]);
        host.wait_ready();
        std::thread::sleep(Duration::from_millis(rng.random_range(50..=400)));
        let status = host.kill();
        assert!(
            status.code().is_none(),
            "round {round}: the host exited by itself ({status}) before the kill\n{}",
            host.stderr()
        );
        let committed = check_crash_point(&data_dir, &appended, round);
        progress.push(committed);
    }

    // A graceful stop mid-stream: the in-flight batch finishes, the status is 0.
    let mut host = RunningHost::spawn(&bin, &config, &[]);
    host.wait_ready();
    std::thread::sleep(Duration::from_millis(rng.random_range(50..=200)));
    let status = host.terminate();
    assert!(status.success(), "SIGTERM: {status}\n{}", host.stderr());
    assert!(
        host.stderr().contains("factline: stopped"),
        "{}",
        host.stderr()
    );
    progress.push(check_crash_point(&data_dir, &appended, KILLS));

    // Catch up: the host exits by itself once every group has no lag.
    let mut host = RunningHost::spawn(&bin, &config, &["--exit-when-idle"]);
    host.wait_ready();
    let status = host.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "catch-up run: {status}\n{}",
        host.stderr()
    );
    assert!(
        host.stderr().contains("every consumer group caught up"),
        "{}",
        host.stderr()
    );

    let log = open(&data_dir);
    for p in 0..PARTITIONS {
        assert_eq!(
            log.group_offset(GROUP, TOPIC, p).unwrap(),
            Some(appended[p as usize].len() as u64),
            "partition {p} is not caught up"
        );
    }
    assert_eq!(read_counts(&log), totals, "final counts (per type)");
    assert!(log.dead_letters(None).unwrap().is_empty());
    drop(log);

    // Kills must have landed while there was work left, or the test proves little.
    let mid_stream = progress.iter().filter(|&&c| c < EVENTS as u64).count();
    eprintln!(
        "counter crash test: committed after each stop {progress:?}; {mid_stream} of {} stops mid-stream; {:.1?} in all",
        KILLS + 1,
        started.elapsed()
    );
    assert!(
        mid_stream >= KILLS / 2,
        "only {mid_stream} stops happened before the host caught up: slow it down (batch size)"
    );
}

/// Appends `EVENTS` events of the four types, `PER_APPEND` per append, round-robin over
/// `STREAMS` streams (so every partition gets some), then closes the log.
fn append_events(data_dir: &Path) -> Appended {
    let mut options = LogOptions::with_topics([TopicConfig::new(TOPIC, PARTITIONS)]);
    // Durability is about power loss; the host processes read these through the page cache.
    options.durability = Durability::NoSyncForTests;
    let log = EventLog::open(data_dir, options).unwrap();
    let mut rng = rand::rng();
    let mut appended: Appended = vec![Vec::new(); PARTITIONS as usize];
    for batch in 0..EVENTS / PER_APPEND {
        let stream = format!("{TOPIC}-{}", batch % STREAMS);
        // Uneven weights (1:2:3:4), so a count swapped between two types would show.
        let types: Vec<usize> = (0..PER_APPEND)
            .map(|_| match rng.random_range(0..10) {
                0 => 0,
                1..=2 => 1,
                3..=5 => 2,
                _ => 3,
            })
            .collect();
        let events = types
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let payload = rmp_serde::to_vec_named(&serde_json::json!({ "n": i })).unwrap();
                NewEvent::new(Tick::ALL[t].type_name(), payload)
            })
            .collect();
        let r = log.append(&stream, ExpectedVersion::Any, events).unwrap();
        let offsets = &mut appended[r.partition as usize];
        assert_eq!(offsets.len() as u64, r.first_offset, "offsets are dense");
        offsets.extend(types);
    }
    assert!(
        appended.iter().all(|p| !p.is_empty()),
        "a partition got no events"
    );
    appended
}

fn config_text(data_dir: &Path) -> String {
    format!(
        r#"# Written by the counter crash test.
data_dir = '{}'
workers = 2

# Any free port: tests run hosts side by side.
[http]
address = "127.0.0.1:0"

[[topics]]
name = "{TOPIC}"
partitions = {PARTITIONS}

[[plugins]]
name = "{GROUP}"
kind = "projector"
component = '{}'
subscriptions = ["{TOPIC}"]
batch_size = {BATCH_SIZE}
"#,
        data_dir.display(),
        factline_tests::COUNTER_PLUGIN
    )
}

fn open(data_dir: &Path) -> EventLog {
    EventLog::open(data_dir, LogOptions::default()).unwrap()
}

/// Counts per type of the events below `committed[p]` in each partition.
fn counts_below(appended: &Appended, committed: &[usize]) -> [u64; 4] {
    let mut counts = [0u64; 4];
    for (types, &c) in appended.iter().zip(committed) {
        for &t in &types[..c.min(types.len())] {
            counts[t] += 1;
        }
    }
    counts
}

fn read_counts(log: &EventLog) -> [u64; 4] {
    let view = log.read_models().unwrap();
    Tick::ALL.map(|t| {
        view.get(GROUP, t.type_name())
            .unwrap()
            .map_or(0, |bytes| rmp_serde::from_slice::<u64>(&bytes).unwrap())
    })
}

/// After a stop: the read model holds exactly the effects of the events below the committed
/// offsets, never more or fewer. Returns the events committed so far.
fn check_crash_point(data_dir: &Path, appended: &Appended, round: usize) -> u64 {
    let log = open(data_dir);
    let committed: Vec<usize> = (0..PARTITIONS)
        .map(|p| log.group_offset(GROUP, TOPIC, p).unwrap().unwrap_or(0) as usize)
        .collect();
    assert_eq!(
        read_counts(&log),
        counts_below(appended, &committed),
        "round {round}: read model vs committed offsets {committed:?}"
    );
    committed.iter().sum::<usize>() as u64
}
