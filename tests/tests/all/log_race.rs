//! Invariant 2: of appends racing with the same expected version, exactly one wins.

use std::sync::{Arc, Barrier};

use factline_host::{AppendError, EventLog, LogOptions, TopicConfig};
use factline_host::{ExpectedVersion, NewEvent};

#[test]
fn eight_racing_appenders_one_winner_per_round() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(
        dir.path(),
        LogOptions::with_topics([TopicConfig::new("race", 2)]),
    )
    .unwrap();
    const THREADS: usize = 8;
    const ROUNDS: u64 = 150;
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (log, barrier) = (log.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut wins = Vec::new();
                for round in 0..ROUNDS {
                    barrier.wait();
                    let expected = ExpectedVersion::from_current(round);
                    let ev = NewEvent::new("race.won", rmp_serde::to_vec(&(t, round)).unwrap());
                    match log.append("race-1", expected, vec![ev]) {
                        Ok(r) => {
                            assert_eq!(r.last_version, round + 1);
                            wins.push(round);
                        }
                        Err(AppendError::WrongExpectedVersion { actual, .. }) => {
                            assert_eq!(actual, round + 1, "loser saw the winner's version")
                        }
                        Err(e) => panic!("unexpected error {e}"),
                    }
                    // Everyone must see the round's outcome before the next one starts.
                    barrier.wait();
                }
                wins
            })
        })
        .collect();
    let mut wins: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    wins.sort();
    assert_eq!(
        wins,
        (0..ROUNDS).collect::<Vec<_>>(),
        "exactly one winner each round"
    );
    let events = log.read_stream("race-1", 1, usize::MAX).unwrap();
    let versions: Vec<u64> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=ROUNDS).collect::<Vec<_>>());
}
