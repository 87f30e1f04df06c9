//! The worked example's shop, assembled through a real `Host` from a configuration with every
//! plugin as `.wasm`: order, inventory, payment, shipping, notification (aggregates), the
//! notification log (projector), the inventory-release policy and the order-placement saga.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use factline_host::Config;
use factline_host::Event;
use factline_host::EventLog;
use factline_host::Host;
use factline_host::{CommandError, CommandOutcome};
use factline_host::{SagaInstance, SagaStatus};
use serde_json::{Value, json};

pub const TOPICS: &[&str] = &["order", "inventory", "payment", "shipping", "notification"];

/// The shop's aggregates: `(name = topic, component)`.
pub const AGGREGATES: &[(&str, &str)] = &[
    ("order", factline_tests::ORDER),
    ("inventory", factline_tests::INVENTORY),
    ("payment", factline_tests::PAYMENT),
    ("shipping", factline_tests::SHIPPING),
    ("notification", factline_tests::NOTIFICATION),
];

/// The configuration text for `data_dir`, with `saga` as the order-placement component.
pub fn config_text(data_dir: &Path, saga: &str) -> String {
    let mut t = format!("data_dir = {:?}\n", data_dir.display().to_string());
    for topic in TOPICS {
        t += &format!("[[topics]]\nname = {topic:?}\npartitions = 2\n");
    }
    for (name, component) in AGGREGATES {
        t += &format!(
            "[[plugins]]\nname = {name:?}\nkind = \"aggregate\"\ncomponent = {component:?}\n"
        );
    }
    t += &format!(
        "[[plugins]]\nname = \"notification-log\"\nkind = \"projector\"\ncomponent = {:?}\nsubscriptions = [\"notification\"]\n",
        factline_tests::NOTIFICATION_LOG
    );
    t += &format!(
        "[[plugins]]\nname = \"inventory-release\"\nkind = \"policy\"\ncomponent = {:?}\nsubscriptions = [\"order\"]\n",
        factline_tests::INVENTORY_RELEASE
    );
    t += &format!(
        "[[plugins]]\nname = \"order-placement\"\nkind = \"saga\"\ncomponent = {saga:?}\nsubscriptions = {TOPICS:?}\n"
    );
    t
}

/// A running host over a scratch directory, restartable.
pub struct Shop {
    pub rt: tokio::runtime::Runtime,
    host: Option<Host>,
    pub dir: tempfile::TempDir,
    saga: String,
}

impl Shop {
    pub fn start() -> Shop {
        Self::start_with(factline_tests::ORDER_PLACEMENT)
    }

    pub fn start_with(saga: &str) -> Shop {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut shop = Shop {
            rt,
            host: None,
            dir,
            saga: saga.to_owned(),
        };
        shop.open();
        shop
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config(&self) -> Config {
        let text = config_text(&self.data_dir(), &self.saga);
        Config::parse(&text, Path::new("shop.toml"), self.dir.path()).unwrap()
    }

    fn open(&mut self) {
        let config = self.config();
        let _guard = self.rt.enter();
        self.host = Some(Host::start(config).unwrap());
    }

    pub fn host(&self) -> &Host {
        self.host.as_ref().expect("running")
    }

    pub fn log(&self) -> &EventLog {
        self.host().log()
    }

    /// Shuts the host down and starts it again on the same directory.
    pub fn restart(&mut self) {
        self.stop();
        self.open();
    }

    pub fn stop(&mut self) {
        if let Some(host) = self.host.take() {
            self.rt.block_on(host.shutdown());
        }
    }

    pub fn send(
        &self,
        aggregate: &str,
        id: &str,
        command_type: &str,
        payload: Value,
    ) -> Result<CommandOutcome, CommandError> {
        let handler = self.host().aggregate(aggregate);
        crate::support::send(
            handler.unwrap_or_else(|| panic!("no aggregate {aggregate}")),
            id,
            command_type,
            payload,
        )
    }

    pub fn restock(&self, product: &str, quantity: u32) {
        self.send(
            "inventory",
            "main",
            "restock",
            json!({"product_id": product, "quantity": quantity}),
        )
        .unwrap();
    }

    /// Creates, fills and confirms an order (`order.placed` starts the saga); returns the
    /// correlation id of `order.placed`.
    pub fn place_order(&self, order: &str, customer: &str, items: &[(&str, u32, u64)]) -> String {
        self.send("order", order, "create", json!({"customer_id": customer}))
            .unwrap();
        for (product, quantity, price) in items {
            self.send(
                "order",
                order,
                "add-item",
                json!({"product_id": product, "quantity": quantity, "unit_price": price}),
            )
            .unwrap();
        }
        let placed = self.send("order", order, "confirm", json!({})).unwrap();
        placed.events[0].correlation_id.clone()
    }

    /// Waits (up to 30 s) until the instance satisfies `done`.
    pub fn wait_saga(&self, id: &str, done: impl Fn(&SagaInstance) -> bool) -> SagaInstance {
        wait_saga(self.log(), id, done)
    }

    pub fn wait_terminal(&self, id: &str) -> SagaInstance {
        self.wait_saga(id, |i| !i.status.in_flight())
    }

    /// Waits for the instance to end `failed` at `step` with a reason containing `why`.
    pub fn wait_failed(&self, id: &str, step: &str, why: &str) -> SagaInstance {
        let failed = self.wait_terminal(id);
        assert_eq!(failed.status, SagaStatus::Failed, "{failed:#?}");
        assert_eq!(failed.failed_step.as_deref(), Some(step), "{failed:#?}");
        let reason = failed.failure_reason.as_deref().unwrap_or_default();
        assert!(reason.contains(why), "{reason}");
        failed
    }

    pub fn events(&self, stream: &str) -> Vec<Event> {
        self.log().read_stream(stream, 1, 10_000).unwrap()
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn types(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.event_type.clone()).collect()
}

/// Waits (up to 30 s) until the instance of order-placement satisfies `done`.
pub fn wait_saga(log: &EventLog, id: &str, done: impl Fn(&SagaInstance) -> bool) -> SagaInstance {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = factline_host::find_saga_instance(log, Some("order-placement"), id).unwrap();
        if let Some(i) = &found
            && done(i)
        {
            return found.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "saga instance {id} did not get there in time: {found:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `(step name, status)` of every step.
pub fn steps(i: &SagaInstance) -> Vec<(String, String)> {
    i.steps
        .iter()
        .map(|s| (s.name.clone(), s.status.to_string()))
        .collect()
}

pub fn expect_steps(i: &SagaInstance, expected: &[(&str, &str)]) {
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    assert_eq!(steps(i), expected, "{i:#?}");
}

pub fn is(status: SagaStatus) -> impl Fn(&SagaInstance) -> bool {
    move |i| i.status == status
}

/// Polls `f` (up to 30 s) until it gives something.
pub fn eventually<T>(f: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting");
        std::thread::sleep(Duration::from_millis(20));
    }
}
