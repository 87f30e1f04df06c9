//! Crash-test child: appends to a few streams forever and prints every acknowledged append as
//! `ack <stream> <last version> <partition> <last offset>`, flushed, so the parent knows exactly
//! what was durable before it sent SIGKILL.

use std::io::Write;

use factline_host::{EventLog, LogOptions, TopicConfig};
use factline_host::{ExpectedVersion, NewEvent};

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: log-appender <data dir>");
    let log = EventLog::open(
        &dir,
        LogOptions::with_topics([TopicConfig::new("crash", 3)]),
    )
    .expect("open log");
    let streams: Vec<String> = (0..5).map(|i| format!("crash-{i}")).collect();
    let mut versions: Vec<u64> = streams
        .iter()
        .map(|s| log.stream_version(s).expect("version"))
        .collect();
    let stdout = std::io::stdout();
    let mut i = 0usize;
    loop {
        let s = i % streams.len();
        let n = 1 + (i % 4);
        let events = (0..n)
            .map(|k| NewEvent::new("crash.appended", rmp_serde::to_vec(&(i, k)).unwrap()))
            .collect();
        let r = log
            .append(
                &streams[s],
                ExpectedVersion::from_current(versions[s]),
                events,
            )
            .expect("append");
        versions[s] = r.last_version;
        let mut out = stdout.lock();
        writeln!(
            out,
            "ack {} {} {} {}",
            r.stream, r.last_version, r.partition, r.last_offset
        )
        .unwrap();
        out.flush().unwrap();
        i += 1;
    }
}
