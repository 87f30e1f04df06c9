//! The order aggregate end to end: the same scenarios natively and as `.wasm` in the engine,
//! then through the host's command path (load, decide, append, retry, dedupe).

use std::sync::Arc;

use factline_host::ScenarioRunner;
use factline_host::{AggregateHandler, AggregateOptions, CommandError};
use factline_host::{Limits, PluginKind};
use serde_json::json;

use crate::support::{command as cmd, load, log, msgpack, runtime};

#[test]
fn scenarios_pass_natively_and_as_wasm() {
    let scenarios = order::scenarios::all();
    assert!(scenarios.len() >= 6, "the order rules need their scenarios");
    let runner = ScenarioRunner::new().unwrap();
    for s in &scenarios {
        crate::support::native_aggregate::<order::Order>(s);
        runner
            .run(factline_tests::ORDER.as_ref(), s)
            .unwrap_or_else(|e| panic!("wasm: {e}"));
    }
}

#[test]
fn commands_through_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("order", 4)]);
    let rt = runtime();
    let plugin = load(
        &rt,
        "order",
        PluginKind::Aggregate,
        factline_tests::ORDER,
        Limits::default(),
    );
    let h =
        AggregateHandler::new(log.clone(), plugin.clone(), AggregateOptions::new("order")).unwrap();
    h.handle(cmd("ORD-1", "create", json!({"customer_id": "C-1"})))
        .unwrap();
    h.handle(cmd(
        "ORD-1",
        "add-item",
        json!({"product_id": "A", "quantity": 2, "unit_price": 1000}),
    ))
    .unwrap();
    let o = h
        .handle(cmd(
            "ORD-1",
            "add-item",
            json!({"product_id": "B", "quantity": 1, "unit_price": 2000}),
        ))
        .unwrap();
    assert_eq!(o.version, 3);
    let (v, state) = h.state("ORD-1").unwrap();
    let state = factline_guest::codec::msgpack_to_json(&state).unwrap();
    assert_eq!(
        (v, &state["total"], &state["status"]),
        (3, &json!(4000), &json!("created"))
    );

    // A rejection is a business outcome: typed, nothing appended.
    let err = h.handle(cmd("ORD-2", "confirm", json!({}))).unwrap_err();
    assert!(matches!(err, CommandError::Rejected(_)), "{err}");
    h.handle(cmd("ORD-2", "create", json!({"customer_id": "C-2"})))
        .unwrap();
    let err = h.handle(cmd("ORD-2", "confirm", json!({}))).unwrap_err();
    let CommandError::Rejected(r) = err else {
        panic!("{err}")
    };
    assert_eq!(r.code, "order-empty");
    assert_eq!(log.stream_version("order-ORD-2").unwrap(), 1);

    // A redelivered command (same id) is not decided twice.
    let id = uuid::Uuid::now_v7();
    let mut c = cmd(
        "ORD-1",
        "add-item",
        json!({"product_id": "C", "quantity": 1, "unit_price": 5}),
    );
    c.command_id = Some(id);
    let first = h.handle(c.clone()).unwrap();
    let again = h.handle(c).unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.events, first.events);
    assert_eq!(log.stream_version("order-ORD-1").unwrap(), 4);

    // State rebuilt from the events (a second handler, empty cache, replaying through the
    // .wasm) equals the state the first handler built command by command.
    let h2 = AggregateHandler::new(log.clone(), plugin, AggregateOptions::new("order")).unwrap();
    let (v2, s2) = h2.state("ORD-1").unwrap();
    let (v1, s1) = h.state("ORD-1").unwrap();
    assert_eq!((v2, v1), (4, 4));
    let json = |b: &[u8]| factline_guest::codec::msgpack_to_json(b).unwrap();
    assert_eq!(json(&s2), json(&s1));
    assert_eq!(json(&s2)["total"], json!(4005));
}

#[test]
fn concurrent_commands_on_one_stream_all_land_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("order", 2)]);
    let rt = runtime();
    let plugin = load(
        &rt,
        "order",
        PluginKind::Aggregate,
        factline_tests::ORDER,
        Limits::default(),
    );
    // Two handlers share the log but not a cache: their decisions race on the stream version.
    let mut opts = AggregateOptions::new("order");
    opts.max_attempts = 50;
    let a = Arc::new(AggregateHandler::new(log.clone(), plugin.clone(), opts.clone()).unwrap());
    let b = Arc::new(AggregateHandler::new(log.clone(), plugin, opts).unwrap());
    a.handle(cmd("ORD-9", "create", json!({"customer_id": "C"})))
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let h = if t % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                for _ in 0..25 {
                    h.handle(cmd(
                        "ORD-9",
                        "add-item",
                        json!({"product_id": "P", "quantity": 1, "unit_price": 1}),
                    ))
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(log.stream_version("order-ORD-9").unwrap(), 101);
    for h in [&a, &b] {
        let (v, s) = h.state("ORD-9").unwrap();
        let s = factline_guest::codec::msgpack_to_json(&s).unwrap();
        assert_eq!((v, &s["total"]), (101, &json!(100)));
    }
}

/// Schema evolution: an `order.placed` stored under schema 1 (no currency, no discount) reads as
/// schema 2 with currency "JPY" and discount 0, for the aggregate's own loading and for every
/// other reader of the log, while the log keeps it as written.
#[test]
fn order_placed_schema_1_is_read_as_schema_2() {
    use factline_host::Upcasters;
    use factline_host::{ExpectedVersion, NewEvent};

    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("order", 2)]);
    let rt = runtime();
    let plugin = load(
        &rt,
        "order",
        PluginKind::Aggregate,
        factline_tests::ORDER,
        Limits::default(),
    );
    let v1 = |t: &str, version: u32, body: serde_json::Value| NewEvent {
        schema_version: version,
        ..NewEvent::new(t, msgpack(body))
    };
    let item = json!({"product_id": "P-1", "quantity": 2, "unit_price": 1000});
    log.append(
        "order-ORD-1",
        ExpectedVersion::NoStream,
        vec![
            v1(
                "order.created",
                1,
                json!({"order_id": "ORD-1", "customer_id": "C-1"}),
            ),
            v1("order.item-added", 1, item.clone()),
            v1(
                "order.placed",
                1,
                json!({"order_id": "ORD-1", "customer_id": "C-1", "items": [item], "total": 2000}),
            ),
        ],
    )
    .unwrap();
    let h =
        AggregateHandler::new(log.clone(), plugin.clone(), AggregateOptions::new("order")).unwrap();

    // Without the upcaster the aggregate cannot read its own old event.
    let err = h.handle(cmd("ORD-1", "ship", json!({}))).unwrap_err();
    assert!(
        matches!(&err, CommandError::Failed { failure, .. } if failure.message.contains("order.placed")),
        "{err}"
    );

    let mut upcasters = Upcasters::default();
    assert!(upcasters.add("order", &plugin).unwrap());
    log.set_upcaster(Some(Arc::new(upcasters)));

    let placed = |events: Vec<factline_host::Event>| {
        events
            .into_iter()
            .find(|e| e.event_type == "order.placed")
            .expect("order.placed is read")
    };
    let read = placed(log.read_stream("order-ORD-1", 1, 10).unwrap());
    let body = factline_guest::codec::msgpack_to_json(&read.payload).unwrap();
    assert_eq!(read.schema_version, 2);
    assert_eq!(
        (&body["currency"], &body["discount"]),
        (&json!("JPY"), &json!(0))
    );
    assert_eq!(body["total"], 2000);
    // Consumers read partitions: same answer.
    let (_, p) = log.locate("order-ORD-1").unwrap();
    let by_partition = placed(log.read_partition("order", p, 0, 10).unwrap());
    assert_eq!(by_partition, read);
    // The log itself is immutable: the stored event is still schema 1.
    let stored = placed(log.read_stream_as_stored("order-ORD-1", 1, 10).unwrap());
    assert_eq!(stored.schema_version, 1);
    assert!(factline_guest::codec::msgpack_to_json(&stored.payload).unwrap()["currency"].is_null());

    // The aggregate loads it (status confirmed) and ships.
    let o = h.handle(cmd("ORD-1", "ship", json!({}))).unwrap();
    assert_eq!(o.version, 4);
    let (_, state) = h.state("ORD-1").unwrap();
    let state = factline_guest::codec::msgpack_to_json(&state).unwrap();
    assert_eq!(state["status"], "shipped");
}

/// The assembled host installs the order aggregate's upcaster on its log: its stream reads, its
/// commands and its projector all see the v1 event as v2.
#[test]
fn the_host_upcasts_for_its_aggregates_and_projectors() {
    use factline_host::Config;
    use factline_host::Host;
    use factline_host::{ExpectedVersion, NewEvent};

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    {
        let log = log(&data_dir, &[("order", 2)]);
        let item = json!({"product_id": "P-1", "quantity": 1, "unit_price": 700});
        let v1 = |t: &str, body: serde_json::Value| NewEvent::new(t, msgpack(body));
        log.append(
            "order-ORD-7",
            ExpectedVersion::NoStream,
            vec![
                v1(
                    "order.created",
                    json!({"order_id": "ORD-7", "customer_id": "C"}),
                ),
                v1("order.item-added", item.clone()),
                v1(
                    "order.placed",
                    json!({"order_id": "ORD-7", "customer_id": "C", "items": [item], "total": 700}),
                ),
            ],
        )
        .unwrap();
    }
    let text = format!(
        "data_dir = {:?}\n[[topics]]\nname = \"order\"\npartitions = 2\n\
         [[plugins]]\nname = \"order\"\nkind = \"aggregate\"\ncomponent = {:?}\n\
         [[plugins]]\nname = \"order-summary\"\nkind = \"projector\"\ncomponent = {:?}\nsubscriptions = [\"order\"]\n",
        data_dir.display().to_string(),
        factline_tests::ORDER,
        factline_tests::ORDER_SUMMARY,
    );
    let config = Config::parse(&text, "factline.toml".as_ref(), dir.path()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let host = Host::start(config).unwrap();
        host.wait_until_idle().await.unwrap();
        let placed = host
            .log()
            .read_stream("order-ORD-7", 3, 1)
            .unwrap()
            .remove(0);
        let body = factline_guest::codec::msgpack_to_json(&placed.payload).unwrap();
        assert_eq!(
            (placed.schema_version, &body["currency"]),
            (2, &json!("JPY"))
        );
        let row = factline_host::query_read_model(host.log(), "order-summary", "ORD-7")
            .unwrap()
            .expect("projected");
        let row = factline_guest::codec::msgpack_to_json(&row).unwrap();
        assert_eq!(row["status"], "confirmed");
        let shipped = tokio::task::block_in_place(|| {
            host.aggregate("order")
                .unwrap()
                .handle(cmd("ORD-7", "ship", json!({})))
        })
        .unwrap();
        assert_eq!(shipped.version, 4);
        host.shutdown().await;
    });
}

/// The deploy gate of an aggregate: commands are not stored, so it folds the stored history of
/// the last N streams through both versions' `evolve`. The same code under another content hash
/// passes; a component that cannot read the order events (another aggregate's) is refused with
/// the stream and its error, and nothing is deployed.
#[test]
fn the_deploy_gate_folds_the_last_streams_through_both_versions() {
    use factline_host::{Config, DeployError, GateOptions, GateVerdict, Host};
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = \"data\"\n[[topics]]\nname = \"order\"\npartitions = 2\n\
         [[plugins]]\nname = \"order\"\nkind = \"aggregate\"\ncomponent = {:?}\n",
        dir.path().join("order.wasm").display().to_string(),
    );
    std::fs::copy(factline_tests::ORDER, dir.path().join("order.wasm")).unwrap();
    let config = Config::parse(&text, "factline.toml".as_ref(), dir.path()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let host = Host::start(config).unwrap();
        for i in 0..6 {
            let id = format!("G-{i}");
            host.command("order", cmd(&id, "create", json!({"customer_id": "C"})))
                .await
                .unwrap();
            let item = json!({"product_id": "P", "quantity": 1 + i, "unit_price": 100});
            host.command("order", cmd(&id, "add-item", item))
                .await
                .unwrap();
        }
        let mut same = std::fs::read(factline_tests::ORDER).unwrap();
        // A custom section: another content hash, the same code.
        same.extend_from_slice(&[0, 5, 4, b'g', b'a', b't', b'e']);
        let report = host
            .deploy_gated(
                "order",
                same,
                None,
                GateOptions::new(Some(4), false).unwrap(),
            )
            .await
            .unwrap();
        let gate = report.gate.unwrap();
        assert_eq!(gate.verdict, GateVerdict::Passed, "{gate}");
        assert_eq!((gate.unit, gate.replayed), ("streams", 4), "{gate}");
        assert!(report.swapped);

        let running = host.plugins()[0].version.clone();
        let other = std::fs::read(factline_tests::BANK_ACCOUNT).unwrap();
        let refused = host
            .deploy_gated("order", other, None, GateOptions::new(None, false).unwrap())
            .await
            .unwrap_err();
        let DeployError::GateRefused { report, .. } = &refused else {
            panic!("expected a gate refusal, got {refused}");
        };
        // Every stream folds into another state; the newest stream comes first.
        assert_eq!(report.verdict, GateVerdict::Refused, "{report}");
        assert_eq!((report.replayed, report.counts.states), (6, 6), "{report}");
        assert_eq!(report.cases[0].at, "stream order-G-5", "{report}");
        let fields: Vec<&str> = report.cases[0]
            .fields
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert!(
            fields.contains(&"total") && fields.contains(&"balance"),
            "{report}"
        );
        assert_eq!(host.plugins()[0].version, running);
        host.shutdown().await;
    });
}
