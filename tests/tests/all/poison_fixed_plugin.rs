//! The poison projector with `block`, run by the async consumer pool: the poison event's
//! partition stops at it while the other partitions go on (also with new appends); deploying the
//! fixed release and retrying the dead letter drains the partition.

use std::time::{Duration, Instant};

use factline_host::EventLog;
use factline_host::{
    ConsumerGroup, ConsumerPool, DeadLetterPolicy, GroupHandle, RetryOutcome, StartFrom,
};

use crate::poison_plugin::{GROUP, append, config, count, projection};
use crate::support::{log, runtime};

/// Waits (without busy-spinning the group; it sleeps on the commit watch) until `done`.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The log's blocking `append` must not run on a runtime worker as is.
fn append_now(log: &EventLog, stream: &str, event_type: &str, poison: bool) -> u64 {
    tokio::task::block_in_place(|| append(log, stream, event_type, poison))
}

fn lag_of(log: &EventLog, partition: u32) -> u64 {
    factline_host::group_lag(log, GROUP, &["item".into()]).unwrap()[partition as usize].lag
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_stops_one_partition_until_the_fixed_release_retries_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("item", 3)]);
    let rt = runtime();
    let streams: Vec<String> = (0..12).map(|i| format!("item-{i}")).collect();
    let (_, blocked) = log.locate("item-5").unwrap();
    for s in &streams {
        append_now(&log, s, "item.a", false);
    }
    let poison = append_now(&log, "item-5", "item.b", true);
    for s in &streams {
        append_now(&log, s, "item.b", false);
    }

    let pool = ConsumerPool::new(2);
    let group = ConsumerGroup::new(
        log.clone(),
        config(DeadLetterPolicy::Block),
        projection(&rt, factline_tests::POISON_PLUGIN),
    )
    .unwrap();
    let handle: GroupHandle = pool.spawn(group);
    let others: Vec<u32> = (0..3).filter(|p| *p != blocked).collect();
    until("the poison event to be parked", || {
        log.dead_letter_count().unwrap() == 1 && others.iter().all(|p| lag_of(&log, *p) == 0)
    })
    .await;
    assert_eq!(
        log.group_offset(GROUP, "item", blocked).unwrap(),
        Some(poison)
    );
    let d = log.dead_letters(Some(GROUP)).unwrap().remove(0);
    assert!(d.blocking && d.attempts == 3, "{d:?}");

    // New events: the other partitions keep going, the blocked one does not move.
    for s in &streams {
        append_now(&log, s, "item.a", false);
    }
    until("the other partitions to catch up", || {
        others.iter().all(|p| lag_of(&log, *p) == 0)
    })
    .await;
    assert_eq!(
        log.group_offset(GROUP, "item", blocked).unwrap(),
        Some(poison)
    );
    assert!(lag_of(&log, blocked) > 0);

    handle
        .swap_handler(projection(&rt, factline_tests::POISON_FIXED_PLUGIN))
        .await
        .unwrap();
    assert_eq!(
        handle.retry_dead_letter(d.key()).await.unwrap(),
        RetryOutcome::Unblocked
    );
    until("the blocked partition to drain", || {
        lag_of(&log, blocked) == 0
    })
    .await;
    let group = handle.stop().await.expect("the group was running");
    assert!(group.blocked().is_empty());
    assert_eq!(log.dead_letter_count().unwrap(), 0);
    assert_eq!((count(&log, "item.a"), count(&log, "item.b")), (24, 13));
}

#[test]
fn a_new_group_starts_where_configured_and_keeps_that_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("item", 1)]);
    let rt = runtime();
    for _ in 0..5 {
        append(&log, "item-1", "item.a", false);
    }
    let latest = |start| crate::poison_plugin::GroupConfig {
        start,
        ..config(DeadLetterPolicy::Skip)
    };
    let mut g = ConsumerGroup::new(
        log.clone(),
        latest(StartFrom::Latest),
        projection(&rt, factline_tests::POISON_FIXED_PLUGIN),
    )
    .unwrap();
    assert_eq!(g.run_until_idle().unwrap(), 0, "latest: nothing old");
    append(&log, "item-1", "item.a", false);
    drop(g);
    // Restarted with another start: the committed offset wins; only the new event is counted.
    let mut g = ConsumerGroup::new(
        log.clone(),
        latest(StartFrom::Offset(2)),
        projection(&rt, factline_tests::POISON_FIXED_PLUGIN),
    )
    .unwrap();
    assert_eq!(g.run_until_idle().unwrap(), 1);
    assert_eq!(count(&log, "item.a"), 1);
    let lag = g.lag().unwrap();
    assert_eq!(
        (lag[0].committed, lag[0].high_water_mark, lag[0].lag),
        (6, 6, 0)
    );
}
