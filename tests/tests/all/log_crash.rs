//! Invariant 1, for real: a child process appends in a loop and is SIGKILLed at random moments.
//! After every kill, each append it acknowledged is in the log, and nothing has a gap.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use factline_host::{EventLog, LogOptions, TopicConfig};
use rand::Rng;

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut rng = rand::rng();
    const KILLS: usize = 24;
    for round in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_log-appender"))
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(30..250)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        let mut this_round = 0;
        for line in &lines {
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts[0], "ack", "unexpected child output {line:?}");
            let v: u64 = parts[2].parse().unwrap();
            let e = acked.entry(parts[1].to_owned()).or_default();
            assert!(v > *e, "versions acknowledged out of order");
            *e = v;
            this_round += 1;
        }

        let log = EventLog::open(
            dir.path(),
            LogOptions::with_topics([TopicConfig::new("crash", 3)]),
        )
        .unwrap();
        for (stream, &v) in &acked {
            let stored = log.stream_version(stream).unwrap();
            assert!(
                stored >= v,
                "round {round}: {stream} acknowledged v{v} but stored v{stored}"
            );
            let versions: Vec<u64> = log
                .read_stream(stream, 1, usize::MAX)
                .unwrap()
                .iter()
                .map(|e| e.stream_version)
                .collect();
            assert_eq!(
                versions,
                (1..=stored).collect::<Vec<_>>(),
                "gap in {stream}"
            );
        }
        for p in 0..3 {
            let hwm = log.high_water_mark("crash", p).unwrap();
            let offsets: Vec<u64> = log
                .read_partition("crash", p, 0, usize::MAX)
                .unwrap()
                .iter()
                .map(|e| e.offset)
                .collect();
            assert_eq!(
                offsets,
                (0..hwm).collect::<Vec<_>>(),
                "gap in partition {p}"
            );
        }
        assert!(round > 2 || this_round > 0 || !acked.is_empty() || round == 0);
    }
    let total: u64 = acked.values().sum();
    assert!(
        total > 100,
        "the child barely appended ({total}); the test proves nothing"
    );
}
