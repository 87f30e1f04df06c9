//! Version pinning and crash-resume with a saga's consumer group stepped by the test: instances
//! started on one plugin version finish on it after a new version is loaded, new ones use the
//! new one, and a store reopened mid-saga resumes each instance without sending a step twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use factline_host::Dispatcher;
use factline_host::EventLog;
use factline_host::{AggregateHandler, AggregateOptions};
use factline_host::{ConsumerGroup, GroupConfig, RetryPolicy, Step};
use factline_host::{Limits, LoadedPlugin, PluginKind, PluginRuntime};
use factline_host::{SagaHandler, SagaOptions, SagaStatus, SagaVersions};
use serde_json::json;

use crate::support::{load, log, runtime};

/// One topic per step, in reverse step order: each pass moves an instance one step on.
const TOPICS: &[&str] = &["notification", "shipping", "payment", "inventory", "order"];

struct Rig {
    log: EventLog,
    aggregates: BTreeMap<String, Arc<AggregateHandler>>,
    versions: Arc<SagaVersions>,
    group: ConsumerGroup,
}

/// The compiled plugins, loaded once per test (compiling takes longer than a step's timeout).
struct Plugins {
    aggregates: Vec<Arc<LoadedPlugin>>,
    saga: Arc<LoadedPlugin>,
}

fn plugins(rt: &PluginRuntime) -> Plugins {
    let aggregates = crate::shop::AGGREGATES
        .iter()
        .map(|(name, component)| {
            load(
                rt,
                name,
                PluginKind::Aggregate,
                component,
                Limits::default(),
            )
        })
        .collect();
    let saga = load(
        rt,
        "order-placement",
        PluginKind::Saga,
        factline_tests::ORDER_PLACEMENT,
        Limits::default(),
    );
    Plugins { aggregates, saga }
}

fn rig(dir: &std::path::Path, plugins: &Plugins) -> Rig {
    let topics: Vec<(&str, u32)> = TOPICS.iter().map(|t| (*t, 1)).collect();
    let log = log(dir, &topics);
    let mut aggregates = BTreeMap::new();
    for plugin in &plugins.aggregates {
        let name = plugin.name.clone();
        let handler =
            AggregateHandler::new(log.clone(), plugin.clone(), AggregateOptions::new(&name))
                .unwrap();
        aggregates.insert(name, Arc::new(handler));
    }
    let options = SagaOptions {
        backoff_base: std::time::Duration::from_millis(5),
        compensation_attempts: 3,
        ..SagaOptions::default()
    };
    let versions = SagaVersions::new("order-placement", plugins.saga.clone()).unwrap();
    let handler = SagaHandler::new(
        log.clone(),
        Dispatcher::new(aggregates.clone()),
        versions.clone(),
        options,
    )
    .unwrap();
    let mut config = GroupConfig::new(
        "order-placement",
        TOPICS.iter().map(|t| (*t).to_owned()).collect(),
    );
    config.retry = RetryPolicy {
        base: std::time::Duration::from_millis(1),
        cap: std::time::Duration::from_millis(2),
        max_attempts: 5,
    };
    let group = ConsumerGroup::new(log.clone(), config, Box::new(handler)).unwrap();
    Rig {
        log,
        aggregates,
        versions,
        group,
    }
}

/// A rig with its own plugins and 10 of `P1` in the warehouse.
fn stocked_rig(dir: &std::path::Path) -> Rig {
    let r = rig(dir, &plugins(&runtime()));
    r.send(
        "inventory",
        "main",
        "restock",
        json!({"product_id": "P1", "quantity": 10}),
    );
    r
}

impl Rig {
    fn send(&self, aggregate: &str, id: &str, t: &str, payload: serde_json::Value) {
        crate::support::send(&self.aggregates[aggregate], id, t, payload).unwrap();
    }

    /// Steps the group until the instance satisfies `done` (timers included; up to 10 s).
    fn until(
        &mut self,
        id: &str,
        done: impl Fn(&factline_host::SagaInstance) -> bool,
    ) -> factline_host::SagaInstance {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Ok(Some(i)) =
                factline_host::find_saga_instance(&self.log, Some("order-placement"), id)
                && done(&i)
            {
                return i;
            }
            if let Step::Idle { .. } = self.group.step().unwrap() {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{:#?}",
                factline_host::find_saga_instance(&self.log, Some("order-placement"), id)
            );
        }
    }

    /// Steps until nothing is left to do now.
    fn run_until_idle(&mut self) {
        self.group.run_until_idle().unwrap();
    }

    fn place(&self, order: &str, customer: &str) {
        self.send("order", order, "create", json!({"customer_id": customer}));
        self.send(
            "order",
            order,
            "add-item",
            json!({"product_id": "P1", "quantity": 1, "unit_price": 100}),
        );
        self.send("order", order, "confirm", json!({}));
    }

    fn instance(&self, id: &str) -> factline_host::SagaInstance {
        factline_host::find_saga_instance(&self.log, Some("order-placement"), id)
            .unwrap()
            .unwrap()
    }

    fn types(&self, stream: &str) -> Vec<String> {
        self.log
            .read_stream(stream, 1, 1000)
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    fn subject(&self, order: &str) -> String {
        let sent = &self
            .log
            .read_stream(&format!("notification-{order}"), 1, 1)
            .unwrap()[0];
        let body: serde_json::Value = rmp_serde::from_slice(&sent.payload).unwrap();
        body["subject"].as_str().unwrap().to_owned()
    }
}

fn completed(i: &factline_host::SagaInstance) -> usize {
    i.steps
        .iter()
        .filter(|s| s.status == factline_host::StepStatus::Completed)
        .count()
}

#[test]
fn in_flight_instances_finish_on_their_version_and_new_ones_use_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = stocked_rig(dir.path());
    r.place("ORD-OLD", "C1");
    let old = r.until("ORD-OLD", |i| completed(i) == 1);
    assert_eq!(
        (old.status, completed(&old)),
        (SagaStatus::Running, 1),
        "{old:#?}"
    );

    // Hot reload: a new version of the saga plugin.
    let v2 = load(
        &runtime(),
        "order-placement",
        PluginKind::Saga,
        factline_tests::ORDER_PLACEMENT_V2,
        Limits::default(),
    );
    r.versions.add_version(&v2).unwrap();
    assert_eq!(r.versions.loaded_versions().len(), 2);
    r.place("ORD-NEW", "C2");
    r.run_until_idle();

    let old = r.instance("ORD-OLD");
    let new = r.instance("ORD-NEW");
    assert_eq!(
        (old.status, new.status),
        (SagaStatus::Completed, SagaStatus::Completed)
    );
    assert_eq!(old.plugin_version, old.plugin_version.to_lowercase());
    assert_ne!(old.plugin_version, new.plugin_version);
    assert_eq!(new.plugin_version, v2.version.content_hash);
    assert_eq!(r.subject("ORD-OLD"), "Order confirmed: ORD-OLD");
    assert_eq!(r.subject("ORD-NEW"), "Order confirmed (v2): ORD-NEW");
    // Nothing in flight needs the old version any more.
    assert_eq!(
        r.versions.retire_unused_versions(&r.log).unwrap(),
        [old.plugin_version]
    );
    assert_eq!(
        r.versions.loaded_versions(),
        std::slice::from_ref(&v2.version.content_hash)
    );
}

#[test]
fn a_store_reopened_between_any_two_steps_resumes_without_resending() {
    let rt = runtime();
    let plugins = plugins(&rt);
    // Stop once step 1, 2, 3 and 4 was sent: every point between two steps.
    for passes in 1..=4 {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut r = rig(dir.path(), &plugins);
            r.send(
                "inventory",
                "main",
                "restock",
                json!({"product_id": "P1", "quantity": 10}),
            );
            r.place("ORD-1", "C1");
            let i = r.until("ORD-1", |i| i.steps[passes - 1].sent_at.is_some());
            assert_eq!(completed(&i), passes - 1, "{i:#?}");
        }
        let mut r = rig(dir.path(), &plugins);
        r.run_until_idle();
        let i = r.instance("ORD-1");
        assert_eq!(
            i.status,
            SagaStatus::Completed,
            "after {passes} passes: {i:#?}"
        );
        let sent: Vec<&str> = i
            .history
            .iter()
            .filter(|h| h.what.starts_with("sent"))
            .map(|h| h.step.as_str())
            .collect();
        assert_eq!(
            sent,
            [
                "reserve_inventory",
                "process_payment",
                "schedule_shipping",
                "send_confirmation"
            ]
        );
        assert_eq!(r.types("payment-C1"), ["payment.charged"]);
        assert_eq!(r.types("shipping-main"), ["shipping.scheduled"]);
        assert_eq!(r.types("notification-ORD-1"), ["notification.sent"]);
        assert_eq!(
            r.types("inventory-main"),
            [
                "inventory.restocked",
                "inventory.item-reserved",
                "inventory.reserved"
            ]
        );
    }
}

#[test]
fn a_compensation_that_keeps_failing_needs_attention_until_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = stocked_rig(dir.path());
    // A full depot: schedule_shipping is rejected once payment is done.
    r.send("shipping", "main", "set-capacity", json!({"slots": 0}));
    r.place("ORD-9", "C9");
    let failing = r.until("ORD-9", |i| i.status != SagaStatus::Running);
    assert_eq!(failing.status, SagaStatus::Compensating, "{failing:#?}");
    // The account freezes before refund_payment runs: that compensation is refused each time.
    r.send("payment", "C9", "freeze", json!({}));
    let stuck = r.until("ORD-9", |i| i.status == SagaStatus::NeedsAttention);
    assert_eq!(stuck.failed_step.as_deref(), Some("schedule_shipping"));
    assert!(
        stuck
            .failure_reason
            .as_ref()
            .unwrap()
            .contains("no-capacity")
    );
    let pay = &stuck.steps[1];
    assert_eq!(
        (pay.status, pay.compensation_attempts),
        (factline_host::StepStatus::Completed, 3)
    );
    assert!(
        stuck.attention.as_ref().unwrap().contains("account-frozen"),
        "{stuck:#?}"
    );
    // Reverse order holds: the inventory is not released before the refund.
    assert_eq!(stuck.steps[0].status, factline_host::StepStatus::Completed);
    assert!(
        !r.types("inventory-main")
            .contains(&"inventory.released".to_owned())
    );
    // Listable, and it stays put: no timer is left.
    assert!(r.log.saga_timers("order-placement").unwrap().is_empty());
    let listed = factline_host::saga_instances(&r.log, Some("order-placement")).unwrap();
    assert_eq!(listed[0].status, SagaStatus::NeedsAttention);

    r.send("payment", "C9", "unfreeze", json!({}));
    factline_host::retry_saga_instance(&r.log, "order-placement", "ORD-9").unwrap();
    let done = r.until("ORD-9", |i| !i.status.in_flight());
    assert_eq!(done.status, SagaStatus::Failed, "{done:#?}");
    assert!(
        done.steps[..2]
            .iter()
            .all(|s| s.status == factline_host::StepStatus::Compensated)
    );
    // Retrying an instance that does not need attention is refused.
    assert!(matches!(
        factline_host::retry_saga_instance(&r.log, "order-placement", "ORD-9"),
        Err(factline_host::SagaError::NotRetryable { .. })
    ));
    assert_eq!(
        r.types("payment-C9"),
        [
            "payment.charged",
            "payment.frozen",
            "payment.unfrozen",
            "payment.refunded"
        ]
    );
    assert_eq!(
        r.types("inventory-main").last().unwrap(),
        "inventory.released"
    );
}

#[test]
fn an_answer_the_plugin_cannot_judge_is_retried_then_parked() {
    use factline_host::{ExpectedVersion, NewEvent};

    let dir = tempfile::tempdir().unwrap();
    let mut r = stocked_rig(dir.path());
    // A paused depot keeps the instance waiting at schedule_shipping.
    r.send("shipping", "main", "pause", json!({}));
    r.place("ORD-X", "C1");
    let waiting = r.until("ORD-X", |i| i.steps[2].sent_at.is_some());
    // A malformed answer carrying the instance's correlation id.
    let mut bad = NewEvent::new(
        "shipping.scheduled",
        crate::support::msgpack(json!({"order": 7})),
    );
    bad.correlation_id = Some(waiting.correlation_id);
    r.log
        .append("shipping-main", ExpectedVersion::Any, vec![bad])
        .unwrap();
    let mut failed_calls = 0;
    while r
        .log
        .dead_letters(Some("order-placement"))
        .unwrap()
        .is_empty()
    {
        match r.group.step().unwrap() {
            Step::Failed => failed_calls += 1,
            Step::Idle {
                next_retry: Some(at),
            } => std::thread::sleep(at.saturating_duration_since(std::time::Instant::now())),
            _ => {}
        }
    }
    // Four failed attempts (and maybe one failed batch that isolated the event), then parked
    // on the fifth call.
    assert!((4..=5).contains(&failed_calls), "{failed_calls}");
    let parked = r.log.dead_letters(Some("order-placement")).unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(
        (parked[0].event_type.as_str(), parked[0].attempts),
        ("shipping.scheduled", 5)
    );
    assert!(
        parked[0].message.contains("order_id"),
        "{}",
        parked[0].message
    );
    // The saga goes on: the step still waits for a real answer (or its timeout).
    let still = r.instance("ORD-X");
    assert_eq!(still.status, SagaStatus::Running);
    assert!(r.log.saga_timers("order-placement").unwrap().len() == 1);
}
