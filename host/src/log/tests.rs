use super::*;
use crate::event::NewEvent;
use redb::ReadableDatabase;

fn open(dir: &Path) -> EventLog {
    let mut o =
        LogOptions::with_topics([TopicConfig::new("order", 4), TopicConfig::new("bank", 2)]);
    o.durability = Durability::NoSyncForTests;
    EventLog::open(dir, o).unwrap()
}

fn ev(t: &str) -> NewEvent {
    NewEvent::new(
        t,
        rmp_serde::to_vec_named(&serde_json::json!({"x": 1})).unwrap(),
    )
}

#[test]
fn append_then_read_stream_and_partition() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let r = log
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![ev("order.created"), ev("order.item-added")],
        )
        .unwrap();
    assert_eq!((r.first_version, r.last_version), (1, 2));
    assert_eq!(r.partition, partition_for("order-1", 4));
    let r2 = log
        .append(
            "order-1",
            ExpectedVersion::Exact(2),
            vec![ev("order.placed")],
        )
        .unwrap();
    assert_eq!((r2.first_offset, r2.last_version), (2, 3));

    let events = log.read_stream("order-1", 1, 100).unwrap();
    assert_eq!(
        events.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(events[2].event_type, "order.placed");
    assert_eq!(events[0].correlation_id, events[0].event_id.to_string());
    assert_eq!(log.read_stream("order-1", 3, 100).unwrap().len(), 1);
    assert_eq!(log.stream_version("order-1").unwrap(), 3);
    assert_eq!(log.stream_version("order-2").unwrap(), 0);
    let p = log.read_partition("order", r.partition, 0, 2).unwrap();
    assert_eq!(p.iter().map(|e| e.offset).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(log.high_water_mark("order", r.partition).unwrap(), 3);
}

#[test]
fn wrong_expected_version_names_both_versions_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append("order-1", ExpectedVersion::Any, vec![ev("a")])
        .unwrap();
    let err = log
        .append("order-1", ExpectedVersion::NoStream, vec![ev("b")])
        .unwrap_err();
    assert_eq!(
        err,
        AppendError::WrongExpectedVersion {
            stream: "order-1".into(),
            expected: ExpectedVersion::NoStream,
            actual: 1
        }
    );
    assert!(
        err.to_string()
            .contains("expected no stream, actual version 1"),
        "{err}"
    );
    let err = log
        .append("order-2", ExpectedVersion::Exact(1), vec![ev("b")])
        .unwrap_err();
    assert!(matches!(
        err,
        AppendError::WrongExpectedVersion { actual: 0, .. }
    ));
    assert_eq!(log.stream_version("order-1").unwrap(), 1);
    assert_eq!(log.stream_version("order-2").unwrap(), 0);
}

#[test]
fn idempotent_append_returns_original_positions() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let ids = [uuid::Uuid::now_v7(), uuid::Uuid::now_v7()];
    let batch = || vec![ev("a").with_id(ids[0]), ev("b").with_id(ids[1])];
    let first = log
        .append("order-1", ExpectedVersion::NoStream, batch())
        .unwrap();
    log.append("order-1", ExpectedVersion::Any, vec![ev("c")])
        .unwrap();
    let again = log
        .append("order-1", ExpectedVersion::NoStream, batch())
        .unwrap();
    assert!(again.deduplicated);
    assert_eq!(
        (again.first_version, again.first_offset),
        (first.first_version, first.first_offset)
    );
    assert_eq!(log.stream_version("order-1").unwrap(), 3);

    // A partial overlap or a different stream is not a retry.
    let err = log
        .append(
            "order-1",
            ExpectedVersion::Any,
            vec![ev("a").with_id(ids[0]), ev("z")],
        )
        .unwrap_err();
    assert!(
        matches!(err, AppendError::IdempotencyConflict { .. }),
        "{err}"
    );
    let err = log
        .append("order-9", ExpectedVersion::Any, batch())
        .unwrap_err();
    assert!(
        matches!(err, AppendError::IdempotencyConflict { .. }),
        "{err}"
    );
    let swapped = vec![ev("b").with_id(ids[1]), ev("a").with_id(ids[0])];
    assert!(
        log.append("order-1", ExpectedVersion::Any, swapped)
            .is_err()
    );
    assert_eq!(log.stream_version("order-1").unwrap(), 3);
}

#[test]
fn bad_input_is_refused_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let cases: Vec<(&str, Vec<NewEvent>)> = vec![
        ("order-1", vec![ev("")]),
        ("order-1", vec![ev("a\nb")]),
        ("no_dash", vec![ev("a")]),
        ("order-", vec![ev("a")]),
        ("shipping-1", vec![ev("a")]),
        ("order-1", vec![]),
        (
            "order-1",
            vec![NewEvent::new("a", vec![0; DEFAULT_MAX_PAYLOAD_BYTES + 1])],
        ),
        (
            "order-1",
            vec![
                ev("a").with_id(uuid::Uuid::nil()),
                ev("b").with_id(uuid::Uuid::nil()),
            ],
        ),
    ];
    for (stream, events) in cases {
        let err = log
            .append(stream, ExpectedVersion::Any, events)
            .unwrap_err();
        assert!(!err.is_transient(), "{err}");
    }
    let long = format!("order-{}", "x".repeat(300));
    assert!(matches!(
        log.append(&long, ExpectedVersion::Any, vec![ev("a")]),
        Err(AppendError::InvalidStream(_))
    ));
    assert!(matches!(
        log.append("shipping-1", ExpectedVersion::Any, vec![ev("a")]),
        Err(AppendError::UnknownTopic { .. })
    ));
    for p in 0..4 {
        assert_eq!(log.high_water_mark("order", p).unwrap(), 0);
    }
}

#[test]
fn reopen_checks_topics_and_format_version() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.append("order-1", ExpectedVersion::Any, vec![ev("a")])
            .unwrap();
        // Same directory twice in one process is refused, not corrupted.
        let again = EventLog::open(dir.path(), LogOptions::default());
        assert!(
            matches!(again, Err(OpenError::AlreadyOpen { .. })),
            "{again:?}"
        );
    }
    let changed = EventLog::open(
        dir.path(),
        LogOptions::with_topics([TopicConfig::new("order", 8)]),
    );
    assert!(matches!(
        changed,
        Err(OpenError::PartitionCountChanged {
            stored: 4,
            configured: 8,
            ..
        })
    ));
    {
        let log = open(dir.path());
        assert_eq!(log.read_stream("order-1", 1, 10).unwrap().len(), 1);
    }
    // Pretend a newer factline wrote the directory.
    {
        let db = redb::Database::create(dir.path().join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(format::META)
            .unwrap()
            .insert("format_version", 99)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = EventLog::open(dir.path(), LogOptions::default()).unwrap_err();
    assert!(matches!(err, OpenError::FormatTooNew { found: 99, .. }));
    assert!(err.to_string().contains("newer factline"));
}

#[test]
fn format_version_1_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.append("order-1", ExpectedVersion::Any, vec![ev("a")])
            .unwrap();
    }
    {
        let db = redb::Database::create(dir.path().join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(format::META)
            .unwrap()
            .insert("format_version", 1)
            .unwrap();
        txn.delete_table(format::SAGA_INSTANCES).unwrap();
        txn.delete_table(format::SAGA_TIMERS).unwrap();
        txn.commit().unwrap();
    }
    let log = open(dir.path());
    assert_eq!(log.read_stream("order-1", 1, 10).unwrap().len(), 1);
    assert!(log.saga_instances(None).unwrap().is_empty());
    assert!(log.saga_timers("s").unwrap().is_empty());
    drop(log);
    let db = redb::Database::create(dir.path().join(DB_FILE)).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(format::META).unwrap();
    assert_eq!(
        meta.get("format_version").unwrap().unwrap().value(),
        format::FORMAT_VERSION
    );
}

#[test]
fn saga_writes_are_fenced_by_revision_and_commit_with_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append("order-1", ExpectedVersion::Any, vec![ev("a")])
        .unwrap();
    let (_, partition) = log.locate("order-1").unwrap();
    let write = |rev: Option<u64>, record: &[u8], timer| SagaWrite {
        saga: "s".into(),
        instance_id: "i1".into(),
        expected_revision: rev,
        record: record.to_vec(),
        correlations: vec!["c1".into()],
        timer,
    };
    let commit = |expected_offset, w: SagaWrite, append: bool| HandlerCommit {
        group: "s".into(),
        topic: "order".into(),
        partition,
        expected_offset,
        next_offset: 1,
        appends: if append {
            vec![("order-2".into(), ExpectedVersion::NoStream, vec![ev("b")])]
        } else {
            Vec::new()
        },
        saga_writes: vec![w],
        ..Default::default()
    };
    log.commit_handler(commit(None, write(None, b"one", TimerChange::Set(5)), true))
        .unwrap();
    assert_eq!(log.saga_instance("s", "i1").unwrap().unwrap().revision, 1);
    assert_eq!(log.saga_correlated("s", "c1").unwrap(), ["i1"]);
    assert_eq!(log.saga_timers("s").unwrap(), [("i1".to_owned(), 5)]);
    assert_eq!(log.stream_version("order-2").unwrap(), 1);
    // A stale revision refuses the whole commit: no offset move, no append.
    let mut stale = commit(Some(1), write(None, b"two", TimerChange::Clear), true);
    stale.next_offset = 1;
    stale.appends[0].1 = ExpectedVersion::Exact(1);
    let err = log.commit_handler(stale).unwrap_err();
    assert!(
        matches!(
            err,
            CommitError::SagaRevision {
                actual: Some(1),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(log.stream_version("order-2").unwrap(), 1);
    assert_eq!(
        log.saga_instance("s", "i1").unwrap().unwrap().record,
        b"one"
    );
    let mut next = commit(Some(1), write(Some(1), b"two", TimerChange::Clear), false);
    next.keep_offset = true;
    log.commit_handler(next).unwrap();
    let stored = log.saga_instance("s", "i1").unwrap().unwrap();
    assert_eq!(
        (stored.revision, stored.record.as_slice()),
        (2, &b"two"[..])
    );
    assert!(log.saga_timers("s").unwrap().is_empty());
    assert_eq!(log.group_offset("s", "order", partition).unwrap(), Some(1));
}

#[test]
fn handler_commit_is_atomic_and_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append("order-1", ExpectedVersion::Any, vec![ev("a")])
        .unwrap();
    let write = |k: &str| ReadModelWrite {
        scope: "summary".into(),
        key: k.into(),
        value: Some(vec![1]),
    };
    let ok = HandlerCommit {
        group: "summary".into(),
        topic: "order".into(),
        partition: 1,
        expected_offset: None,
        next_offset: 5,
        read_model_writes: vec![write("k1")],
        appends: vec![("bank-1".into(), ExpectedVersion::NoStream, vec![ev("x")])],
        ..Default::default()
    };
    log.commit_handler(ok.clone()).unwrap();
    assert_eq!(log.group_offset("summary", "order", 1).unwrap(), Some(5));
    assert_eq!(log.stream_version("bank-1").unwrap(), 1);

    // Replaying the same batch is refused by the fence: effects are not applied twice.
    let err = log.commit_handler(ok).unwrap_err();
    assert!(
        matches!(
            err,
            CommitError::OffsetMismatch {
                actual: Some(5),
                ..
            }
        ),
        "{err}"
    );

    // A refused append refuses the whole commit: no read-model write, no offset move.
    let bad = HandlerCommit {
        group: "summary".into(),
        topic: "order".into(),
        partition: 1,
        expected_offset: Some(5),
        next_offset: 9,
        read_model_writes: vec![write("k2")],
        appends: vec![
            ("bank-2".into(), ExpectedVersion::NoStream, vec![ev("y")]),
            ("bank-1".into(), ExpectedVersion::NoStream, vec![ev("z")]),
        ],
        ..Default::default()
    };
    let err = log.commit_handler(bad).unwrap_err();
    assert!(matches!(err, CommitError::Append { index: 1, .. }), "{err}");
    let view = log.read_models().unwrap();
    assert_eq!(view.get("summary", "k1").unwrap(), Some(vec![1]));
    assert_eq!(view.get("summary", "k2").unwrap(), None);
    assert_eq!(log.stream_version("bank-2").unwrap(), 0);
    assert_eq!(log.group_offset("summary", "order", 1).unwrap(), Some(5));
}

#[test]
fn read_model_prefix_scan_pages_within_scope() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let writes = ["a:1", "a:2", "a:3", "b:1"]
        .iter()
        .map(|k| ReadModelWrite {
            scope: "s".into(),
            key: (*k).into(),
            value: Some(k.as_bytes().to_vec()),
        })
        .chain([ReadModelWrite {
            scope: "t".into(),
            key: "a:9".into(),
            value: Some(vec![]),
        }])
        .collect();
    log.commit_handler(HandlerCommit {
        group: "g".into(),
        topic: "order".into(),
        partition: 0,
        next_offset: 0,
        read_model_writes: writes,
        ..Default::default()
    })
    .unwrap();
    let view = log.read_models().unwrap();
    let keys = |v: Vec<(String, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(view.scan_prefix("s", "a:", None, 10).unwrap()),
        ["a:1", "a:2", "a:3"]
    );
    assert_eq!(
        keys(view.scan_prefix("s", "a:", Some("a:1"), 1).unwrap()),
        ["a:2"]
    );
    assert_eq!(keys(view.scan_prefix("s", "", None, 10).unwrap()).len(), 4);
    assert!(view.scan_prefix("u", "", None, 10).unwrap().is_empty());
}

fn rm_write(key: &str, value: &[u8]) -> ReadModelWrite {
    ReadModelWrite {
        scope: "s".into(),
        key: key.into(),
        value: Some(value.to_vec()),
    }
}

#[test]
fn a_commit_whose_reads_changed_since_its_snapshot_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let commit = |partition: u32, writes: Vec<ReadModelWrite>, read_checks: Vec<ReadCheck>| {
        log.commit_handler(HandlerCommit {
            group: "g".into(),
            topic: "order".into(),
            partition,
            expected_offset: log.group_offset("g", "order", partition).unwrap(),
            next_offset: log
                .group_offset("g", "order", partition)
                .unwrap()
                .unwrap_or(0)
                + 1,
            read_model_writes: writes,
            read_checks,
            ..Default::default()
        })
    };
    commit(
        0,
        vec![rm_write("count", b"1"), rm_write("a:1", b"x")],
        vec![],
    )
    .unwrap();
    // Two batches read the same snapshot: `count` = 1, the scan of `a:` = [a:1].
    let get = |seen: &[u8]| ReadCheck::Get {
        scope: "s".into(),
        key: "count".into(),
        seen: Some(ValueDigest::of(seen)),
    };
    let scan = |seen: Vec<(&str, &[u8])>| ReadCheck::Scan {
        scope: "s".into(),
        prefix: "a:".into(),
        start_after: None,
        limit: 10,
        seen: seen
            .into_iter()
            .map(|(k, v)| (k.to_owned(), ValueDigest::of(v)))
            .collect(),
    };
    let absent = ReadCheck::Get {
        scope: "s".into(),
        key: "missing".into(),
        seen: None,
    };
    // Unchanged reads commit.
    commit(
        1,
        vec![rm_write("count", b"2")],
        vec![get(b"1"), scan(vec![("a:1", b"x")]), absent.clone()],
    )
    .unwrap();
    // The second read `count` = 1 too: refused, and nothing of it is written.
    let err = commit(
        2,
        vec![rm_write("count", b"2"), rm_write("other", b"y")],
        vec![get(b"1")],
    )
    .unwrap_err();
    assert!(
        matches!(&err, CommitError::ReadConflict { group, scope, .. } if group == "g" && scope == "s"),
        "{err}"
    );
    assert!(!err.is_transient());
    let view = log.read_models().unwrap();
    assert_eq!(view.get("s", "count").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(view.get("s", "other").unwrap(), None);
    assert_eq!(log.group_offset("g", "order", 2).unwrap(), None);
    // A key that appeared, and a scan whose rows changed, conflict the same way.
    commit(
        1,
        vec![rm_write("missing", b"now"), rm_write("a:2", b"z")],
        vec![],
    )
    .unwrap();
    for check in [absent, scan(vec![("a:1", b"x")])] {
        let err = commit(2, vec![], vec![check]).unwrap_err();
        assert!(matches!(err, CommitError::ReadConflict { .. }), "{err}");
    }
    // Re-run on a fresh snapshot, the batch commits.
    commit(
        2,
        vec![rm_write("count", b"3")],
        vec![get(b"2"), scan(vec![("a:1", b"x"), ("a:2", b"z")])],
    )
    .unwrap();
    assert_eq!(log.group_offset("g", "order", 2).unwrap(), Some(1));
}

fn dead_letter(group: &str, partition: u32, offset: u64, blocking: bool) -> DeadLetter {
    DeadLetter {
        group: group.into(),
        topic: "order".into(),
        partition,
        offset,
        event_id: uuid::Uuid::nil(),
        event_type: "order.created".into(),
        stream: "order-1".into(),
        failure_kind: crate::failure::FailureKind::Trap,
        message: "trap: unreachable".into(),
        backtrace: Some("0: f".into()),
        attempts: 3,
        plugin_version: "v1".into(),
        first_failed_at: 1,
        last_failed_at: 2,
        blocking,
    }
}

#[test]
fn parking_moves_the_offset_in_the_same_commit_and_resolving_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let park = HandlerCommit {
        group: "g".into(),
        topic: "order".into(),
        partition: 2,
        expected_offset: Some(0),
        next_offset: 8,
        park: vec![dead_letter("g", 2, 7, false)],
        ..Default::default()
    };
    // The fence refuses the commit: neither the record nor the offset is written.
    let err = log.commit_handler(park.clone()).unwrap_err();
    assert!(matches!(err, CommitError::OffsetMismatch { .. }), "{err}");
    assert_eq!(log.dead_letter_count().unwrap(), 0);
    log.commit_handler(HandlerCommit {
        expected_offset: None,
        ..park
    })
    .unwrap();
    assert_eq!(log.group_offset("g", "order", 2).unwrap(), Some(8));
    let key = dead_letter("g", 2, 7, false).key();
    assert_eq!(
        log.dead_letter(&key).unwrap(),
        Some(dead_letter("g", 2, 7, false))
    );
    assert_eq!(log.dead_letters(Some("g")).unwrap().len(), 1);
    assert!(log.dead_letters(Some("h")).unwrap().is_empty());

    // A record for another partition is refused before it reaches the writer.
    let err = log
        .commit_handler(HandlerCommit {
            group: "g".into(),
            topic: "order".into(),
            partition: 1,
            keep_offset: true,
            park: vec![dead_letter("g", 2, 9, false)],
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(err, CommitError::ForeignDeadLetter(_)), "{err}");

    // Resolving with effects, offset untouched; a second resolve is refused and writes nothing.
    let resolve = HandlerCommit {
        group: "g".into(),
        topic: "order".into(),
        partition: 2,
        keep_offset: true,
        resolve: vec![7],
        read_model_writes: vec![ReadModelWrite {
            scope: "g".into(),
            key: "k".into(),
            value: Some(vec![1]),
        }],
        ..Default::default()
    };
    log.commit_handler(resolve.clone()).unwrap();
    assert_eq!(log.dead_letter(&key).unwrap(), None);
    assert_eq!(log.group_offset("g", "order", 2).unwrap(), Some(8));
    let err = log
        .commit_handler(HandlerCommit {
            read_model_writes: vec![ReadModelWrite {
                scope: "g".into(),
                key: "k".into(),
                value: Some(vec![2]),
            }],
            ..resolve
        })
        .unwrap_err();
    assert!(
        matches!(err, CommitError::DeadLetterMissing { offset: 7, .. }),
        "{err}"
    );
    assert_eq!(
        log.read_models().unwrap().get("g", "k").unwrap(),
        Some(vec![1])
    );
    assert_eq!(log.dead_letter_count().unwrap(), 0);
}

#[test]
fn snapshots_are_found_by_schema_version_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let snap = |schema, version, at| Snapshot {
        stream: "bank-1".into(),
        state_schema: schema,
        version,
        occurred_at: at,
        plugin_version: "t".into(),
        state: vec![version as u8],
    };
    for (v, at) in [(10, 100), (20, 200), (30, 300)] {
        log.put_snapshot(snap(1, v, at)).unwrap();
    }
    log.put_snapshot(snap(2, 25, 250)).unwrap();
    let find = |schema, max_version, max_occurred_at| {
        log.snapshot(
            "bank-1",
            schema,
            SnapshotBound {
                max_version,
                max_occurred_at,
            },
        )
        .unwrap()
        .map(|s| s.version)
    };
    assert_eq!(find(1, u64::MAX, u64::MAX), Some(30));
    assert_eq!(find(1, 29, u64::MAX), Some(20));
    assert_eq!(find(1, u64::MAX, 199), Some(10));
    assert_eq!(find(1, 9, u64::MAX), None);
    assert_eq!(find(2, u64::MAX, u64::MAX), Some(25));
    assert_eq!(find(3, u64::MAX, u64::MAX), None);
    assert_eq!(
        log.snapshot("bank-2", 1, SnapshotBound::LATEST).unwrap(),
        None
    );
    // Reopening keeps them (they went through the writer like every other write).
    drop(log);
    let log = open(dir.path());
    let s = log
        .snapshot("bank-1", 1, SnapshotBound::LATEST)
        .unwrap()
        .unwrap();
    assert_eq!((s.version, s.occurred_at, s.state), (30, 300, vec![30]));
}

#[test]
fn reads_go_through_the_upcaster_and_as_stored_does_not() {
    struct Rename;
    impl Upcast for Rename {
        fn upcast(
            &self,
            topic: &str,
            events: &mut [Event],
        ) -> Result<(), super::upcast::UpcastError> {
            for e in events.iter_mut().filter(|e| e.schema_version == 1) {
                if e.event_type == "order.broken" {
                    return Err(format!("cannot upcast {} in {topic}", e.event_type).into());
                }
                e.event_type = format!("{}.v2", e.event_type);
                e.schema_version = 2;
            }
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(
        "order-1",
        ExpectedVersion::NoStream,
        vec![ev("order.created")],
    )
    .unwrap();
    log.set_upcaster(Some(Arc::new(Rename)));
    let read = log.read_stream("order-1", 1, 10).unwrap();
    assert_eq!(
        (read[0].event_type.as_str(), read[0].schema_version),
        ("order.created.v2", 2)
    );
    let p = partition_for("order-1", 4);
    assert_eq!(log.read_partition("order", p, 0, 10).unwrap(), read);
    let stored = log.read_stream_as_stored("order-1", 1, 10).unwrap();
    assert_eq!(stored[0].event_type, "order.created");
    log.append(
        "order-1",
        ExpectedVersion::Exact(1),
        vec![ev("order.broken")],
    )
    .unwrap();
    let err = log.read_stream("order-1", 1, 10).unwrap_err();
    assert!(
        matches!(&err, ReadError::Upcast { topic, .. } if topic == "order"),
        "{err}"
    );
    log.set_upcaster(None);
    assert_eq!(log.read_stream("order-1", 1, 10).unwrap().len(), 2);
}

/// A batch of group `group` on order/`partition` from `from` to `next`, writing `key` in `scope`.
fn batch(
    group: &str,
    partition: u32,
    from: Option<u64>,
    next: u64,
    scope: &str,
    key: &str,
) -> HandlerCommit {
    HandlerCommit {
        group: group.into(),
        topic: "order".into(),
        partition,
        expected_offset: from,
        next_offset: next,
        read_model_writes: vec![ReadModelWrite {
            scope: scope.into(),
            key: key.into(),
            value: Some(key.as_bytes().to_vec()),
        }],
        ..Default::default()
    }
}

fn begin(projector: &str, version: u32, resume: bool) -> ProjectionChange {
    ProjectionChange::BeginRebuild {
        projector: projector.into(),
        read_model_version: version,
        plugin_version: format!("v{version}"),
        resume,
    }
}

#[test]
fn a_rebuild_switch_moves_offsets_and_dead_letters_and_drops_the_old_read_model() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let init = ProjectionChange::Init {
        projector: "p".into(),
        read_model_version: 1,
        plugin_version: "v1".into(),
    };
    assert_eq!(log.projection("p").unwrap(), None);
    let r = log.change_projection(init.clone()).unwrap();
    assert_eq!((r.active.generation, r.active.read_model_version), (0, 1));
    assert_eq!(
        log.change_projection(init).unwrap(),
        r,
        "init keeps a record"
    );
    // The live group (generation 0, scope "p") and a dead letter of it.
    log.commit_handler(batch("p", 0, None, 5, "p", "old"))
        .unwrap();
    log.commit_handler(batch("p", 1, None, 2, "p", "old-1"))
        .unwrap();
    log.commit_handler(HandlerCommit {
        group: "p".into(),
        topic: "order".into(),
        partition: 0,
        keep_offset: true,
        park: vec![dead_letter("p", 0, 3, false)],
        ..Default::default()
    })
    .unwrap();
    assert!(matches!(
        log.change_projection(ProjectionChange::Switch {
            projector: "p".into(),
            generation: 1
        }),
        Err(ProjectionError::NotRebuilding { generation: 1, .. })
    ));

    // A rebuild into generation 1: its own group and scope, parking its own dead letter.
    let r = log.change_projection(begin("p", 2, false)).unwrap();
    let next = r.rebuild.clone().unwrap();
    assert_eq!((next.generation, next.scope("p")), (1, "p@1".to_owned()));
    let g = rebuild_group("p");
    log.commit_handler(batch(&g, 0, None, 7, "p@1", "new"))
        .unwrap();
    log.commit_handler(HandlerCommit {
        group: g.clone(),
        topic: "order".into(),
        partition: 0,
        keep_offset: true,
        park: vec![dead_letter(&g, 0, 6, false)],
        ..Default::default()
    })
    .unwrap();
    let view = log.read_models().unwrap();
    assert_eq!(view.live_scope("p").unwrap(), "p", "the old one is live");
    drop(view);

    let r = log
        .change_projection(ProjectionChange::Switch {
            projector: "p".into(),
            generation: 1,
        })
        .unwrap();
    assert_eq!(r.rebuild, None);
    assert_eq!((r.active.generation, r.active.read_model_version), (1, 2));
    assert_eq!(r.retired, [0]);
    let view = log.read_models().unwrap();
    assert_eq!(view.live_scope("p").unwrap(), "p@1");
    assert_eq!(view.get("p@1", "new").unwrap(), Some(b"new".to_vec()));
    drop(view);
    // The retired rows go in bounded transactions.
    let drop_one = ProjectionChange::DropRetired {
        projector: "p".into(),
        max_rows: 1,
    };
    assert_eq!(
        log.change_projection(drop_one.clone()).unwrap().retired,
        [0]
    );
    assert_eq!(log.change_projection(drop_one).unwrap().retired, [0; 0]);
    let view = log.read_models().unwrap();
    assert!(view.scan_prefix("p", "", None, 10).unwrap().is_empty());
    assert_eq!(view.get("p@1", "new").unwrap(), Some(b"new".to_vec()));
    assert_eq!(log.group_offset("p", "order", 0).unwrap(), Some(7));
    assert_eq!(log.group_offset("p", "order", 1).unwrap(), None);
    assert_eq!(log.group_offset(&g, "order", 0).unwrap(), None);
    let letters = log.dead_letters(None).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!((letters[0].group.as_str(), letters[0].offset), ("p", 6));
    // The moved record is found under its new key (it can be retried by the live group).
    assert!(log.dead_letter(&letters[0].key()).unwrap().is_some());
}

#[test]
fn a_rebuild_resumes_only_for_the_same_version_and_an_abort_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    assert!(matches!(
        log.change_projection(begin("p", 1, false)),
        Err(ProjectionError::Unknown(_))
    ));
    log.change_projection(ProjectionChange::Init {
        projector: "p".into(),
        read_model_version: 1,
        plugin_version: "v1".into(),
    })
    .unwrap();
    log.commit_handler(batch("p", 0, None, 4, "p", "live"))
        .unwrap();
    let g = rebuild_group("p");
    let first = log
        .change_projection(begin("p", 2, true))
        .unwrap()
        .rebuild
        .unwrap();
    log.commit_handler(batch(&g, 0, None, 3, "p@1", "a"))
        .unwrap();

    // The same version resumes: same generation, offsets and rows kept.
    let resumed = log
        .change_projection(begin("p", 2, true))
        .unwrap()
        .rebuild
        .unwrap();
    assert_eq!(resumed, first);
    assert_eq!(log.group_offset(&g, "order", 0).unwrap(), Some(3));
    // Another version (or no resume) starts over in a new generation, clearing the old one.
    let other = log.change_projection(begin("p", 3, true)).unwrap();
    assert_eq!(
        (other.rebuild.unwrap().generation, other.retired),
        (2, vec![1])
    );
    assert_eq!(log.group_offset(&g, "order", 0).unwrap(), None);
    log.commit_handler(batch(&g, 0, None, 2, "p@2", "b"))
        .unwrap();

    assert!(matches!(
        log.change_projection(ProjectionChange::Abort {
            projector: "p".into(),
            generation: 1
        }),
        Err(ProjectionError::NotRebuilding { .. })
    ));
    let r = log
        .change_projection(ProjectionChange::Abort {
            projector: "p".into(),
            generation: 2,
        })
        .unwrap();
    assert_eq!(
        (r.active.generation, r.rebuild, r.retired),
        (0, None, vec![1, 2])
    );
    assert_eq!(log.group_offset(&g, "order", 0).unwrap(), None);
    // A new rebuild never reuses a retired generation.
    let next = log.change_projection(begin("p", 3, false)).unwrap();
    assert_eq!(next.rebuild.unwrap().generation, 3);
    let drop_all = ProjectionChange::DropRetired {
        projector: "p".into(),
        max_rows: 100,
    };
    assert_eq!(
        log.change_projection(drop_all.clone()).unwrap().retired,
        [2]
    );
    assert_eq!(log.change_projection(drop_all).unwrap().retired, [0; 0]);
    let view = log.read_models().unwrap();
    assert!(view.scan_prefix("p@1", "", None, 10).unwrap().is_empty());
    assert!(view.scan_prefix("p@2", "", None, 10).unwrap().is_empty());
    assert_eq!(
        view.get("p", "live").unwrap(),
        Some(b"live".to_vec()),
        "live untouched"
    );
    assert_eq!(view.live_scope("p").unwrap(), "p");
}
