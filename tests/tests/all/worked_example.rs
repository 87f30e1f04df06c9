//! The whole worked example (DESIGN §6) as `factline.worked-example.toml` wires it: checked
//! statically on the plugins' own types (every command a policy or saga sends is one its target
//! accepts, every event a consumer reads is one an aggregate writes, with the fields it reads),
//! and driven over HTTP through `factline run`, checking every cross-plugin outcome.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use serde_reflection::{ContainerFormat, Format, Registry, Tracer, TracerConfig, VariantFormat};

use crate::http_api::request;
use crate::support::{RunningHost, factline_binary};

const CONFIG: &str = include_str!("../../../factline.worked-example.toml");

/// A type's variants, each with its fields and whether the field is optional.
type Variants = BTreeMap<String, BTreeMap<String, bool>>;

fn variants<'de, T: serde::Deserialize<'de>>() -> Variants {
    let mut tracer = Tracer::new(TracerConfig::default());
    let (format, _) = tracer
        .trace_simple_type::<T>()
        .unwrap_or_else(|e| panic!("{}: {e}", std::any::type_name::<T>()));
    let registry = tracer.registry().unwrap();
    let Format::TypeName(name) = format else {
        panic!("{} is not an enum", std::any::type_name::<T>());
    };
    let Some(ContainerFormat::Enum(all)) = registry.get(&name) else {
        panic!("{name} is not an enum");
    };
    all.values()
        .map(|v| (v.name.clone(), fields(&registry, &v.value)))
        .collect()
}

fn fields(registry: &Registry, variant: &VariantFormat) -> BTreeMap<String, bool> {
    let named = match variant {
        VariantFormat::Unit => return BTreeMap::new(),
        VariantFormat::Struct(named) => named,
        VariantFormat::NewType(inner) => match inner.as_ref() {
            Format::TypeName(t) => match registry.get(t) {
                Some(ContainerFormat::Struct(named)) => named,
                other => panic!("{t}: a payload that is not a struct: {other:?}"),
            },
            other => panic!("a payload that is not a struct: {other:?}"),
        },
        other => panic!("a payload that is not a struct: {other:?}"),
    };
    named
        .iter()
        .map(|f| (f.name.clone(), matches!(f.value, Format::Option(_))))
        .collect()
}

/// `sent` (a sender's view of a message) is one `accepted` takes: the same name, no field the
/// receiver does not know, and every field it requires. Empty when it is.
fn mismatches(who: &str, sent: &Variants, accepted: &Variants, strict: bool) -> Vec<String> {
    let mut wrong = Vec::new();
    for (name, fields) in sent {
        let Some(known) = accepted.get(name) else {
            wrong.push(format!(
                "{who}: `{name}` is not accepted (known: {:?})",
                accepted.keys()
            ));
            continue;
        };
        for f in fields.keys().filter(|f| !known.contains_key(*f)) {
            wrong.push(format!(
                "{who}: `{name}` has field `{f}`, which the receiver lacks"
            ));
        }
        if strict {
            for (f, _) in known
                .iter()
                .filter(|(f, optional)| !**optional && !fields.contains_key(*f))
            {
                wrong.push(format!("{who}: `{name}` lacks required field `{f}`"));
            }
        }
    }
    wrong
}

#[test]
fn every_command_sent_and_event_read_is_one_its_counterpart_accepts() {
    // Commands: each enum a policy or saga sends, against its target aggregate's commands.
    let commands: Vec<(&str, Variants, Variants)> = vec![
        (
            "inventory-release → inventory",
            variants::<inventory_release::Command>(),
            variants::<inventory::Command>(),
        ),
        (
            "order-placement → inventory",
            variants::<order_placement::InventoryCommand>(),
            variants::<inventory::Command>(),
        ),
        (
            "order-placement → payment",
            variants::<order_placement::PaymentCommand>(),
            variants::<payment::Command>(),
        ),
        (
            "order-placement → shipping",
            variants::<order_placement::ShippingCommand>(),
            variants::<shipping::Command>(),
        ),
        (
            "order-placement → notification",
            variants::<order_placement::NotificationCommand>(),
            variants::<notification::Command>(),
        ),
        (
            "review-notification → notification",
            variants::<review_notification::NotificationCommand>(),
            variants::<notification::Command>(),
        ),
        (
            "travel-booking → flight/hotel/car",
            variants::<travel_booking::BookingCommand>(),
            variants::<booking::Command>(),
        ),
        (
            "travel-booking → payment",
            variants::<travel_booking::PaymentCommand>(),
            variants::<payment::Command>(),
        ),
    ];
    // Events: what every aggregate of the example writes, by type.
    let mut written = Variants::new();
    for writer in [
        variants::<order::Event>(),
        variants::<inventory::Event>(),
        variants::<payment::Event>(),
        variants::<shipping::Event>(),
        variants::<notification::Event>(),
        variants::<review::Event>(),
        variants::<booking::Event>(),
        variants::<trip::Event>(),
        variants::<bank_account::Event>(),
    ] {
        for (name, fields) in writer {
            assert!(
                written.insert(name.clone(), fields).is_none(),
                "two aggregates write {name}"
            );
        }
    }
    let readers: Vec<(&str, Variants)> = vec![
        ("order-summary", variants::<order_summary::Event>()),
        ("notification-log", variants::<notification_log::Event>()),
        ("inventory-release", variants::<inventory_release::Event>()),
        (
            "order-placement trigger",
            variants::<order_placement::Trigger>(),
        ),
        (
            "order-placement answers",
            variants::<order_placement::Answer>(),
        ),
        ("review-rating", variants::<review_rating::Event>()),
        (
            "review-notification",
            variants::<review_notification::Event>(),
        ),
        (
            "travel-booking trigger",
            variants::<travel_booking::Trigger>(),
        ),
        (
            "travel-booking answers",
            variants::<travel_booking::Answer>(),
        ),
    ];
    let mut wrong = Vec::new();
    for (who, sent, accepted) in &commands {
        wrong.extend(mismatches(who, sent, accepted, true));
    }
    for (who, read) in &readers {
        wrong.extend(mismatches(who, read, &written, false));
    }
    assert!(
        wrong.is_empty(),
        "the worked example is miswired:\n{}",
        wrong.join("\n")
    );
    // The check itself catches the bug it exists for: a `record` sent to `notification`.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "kebab-case")]
    #[allow(dead_code)]
    enum Record {
        Record { recipient: String, text: String },
    }
    let caught = mismatches(
        "old",
        &variants::<Record>(),
        &variants::<notification::Command>(),
        true,
    );
    assert_eq!(caught.len(), 1, "{caught:?}");
}

/// The repository's configuration with the test build's components, a scratch data directory
/// and a free port.
pub(crate) fn config(dir: &Path) -> String {
    let mut text = String::new();
    for line in CONFIG.lines() {
        let line = if let Some(file) = line
            .strip_prefix("component = \".factline-plugins/")
            .and_then(|rest| rest.strip_suffix('"'))
        {
            let path = factline_tests::PLUGINS
                .iter()
                .map(|(_, path)| *path)
                .find(|path| Path::new(path).file_name().is_some_and(|f| f == file))
                .unwrap_or_else(|| panic!("no built component {file}"));
            format!("component = {path:?}")
        } else if line.starts_with("data_dir = ") {
            format!("data_dir = {:?}", dir.join("data").display().to_string())
        } else if line.starts_with("address = ") {
            "address = \"127.0.0.1:0\"".to_owned()
        } else {
            line.to_owned()
        };
        text += &line;
        text.push('\n');
    }
    text
}

pub(crate) struct Client {
    pub(crate) port: u16,
}

impl Client {
    /// A command; returns (status, body).
    pub(crate) fn send(
        &self,
        aggregate: &str,
        id: &str,
        command: &str,
        payload: Value,
    ) -> (u16, Value) {
        let body = serde_json::to_vec(&json!({"type": command, "payload": payload})).unwrap();
        let path = format!("/v1/aggregates/{aggregate}/{id}");
        request(self.port, "POST", &path, None, Some(&body))
    }

    /// A command that must be accepted.
    pub(crate) fn ok(&self, aggregate: &str, id: &str, command: &str, payload: Value) -> Value {
        let (status, body) = self.send(aggregate, id, command, payload);
        assert_eq!(status, 200, "{aggregate} {id} {command}: {body}");
        body
    }

    pub(crate) fn get(&self, path: &str) -> Option<Value> {
        let (status, body) = request(self.port, "GET", path, None, None);
        match status {
            200 => Some(body),
            404 => None,
            _ => panic!("GET {path}: {status} {body}"),
        }
    }

    /// Stock (SKU-1: 10, SKU-2: 5), CUST-9's payment limit and two shipping slots.
    pub(crate) fn open_shop(&self) {
        for (product, quantity) in [("SKU-1", 10), ("SKU-2", 5)] {
            let stock = json!({"product_id": product, "quantity": quantity});
            self.ok("inventory", "main", "restock", stock);
        }
        self.ok("payment", "CUST-9", "set-limit", json!({"limit": 1000}));
        self.ok("shipping", "main", "set-capacity", json!({"slots": 2}));
    }

    pub(crate) fn place(&self, order: &str, customer: &str, items: &[(&str, u32, u64)]) {
        self.ok("order", order, "create", json!({"customer_id": customer}));
        for (product, quantity, price) in items {
            let item = json!({"product_id": product, "quantity": quantity, "unit_price": price});
            self.ok("order", order, "add-item", item);
        }
        self.ok("order", order, "confirm", json!({}));
    }

    /// Polls `GET path` until `done` holds (30 s).
    pub(crate) fn eventually(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.get(path);
            if let Some(v) = &got
                && done(v)
            {
                return got.unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "GET {path} never got there: {got:?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// A saga instance once it has finished.
    pub(crate) fn finished(&self, saga: &str, id: &str) -> Value {
        self.eventually(&format!("/v1/admin/sagas/{saga}/{id}"), |i| {
            !matches!(i["status"].as_str(), Some("running" | "compensating"))
        })
    }

    pub(crate) fn types(&self, stream: &str) -> Vec<String> {
        let events = self
            .get(&format!("/v1/streams/{stream}"))
            .unwrap_or(Value::Null);
        events["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{stream}: {events}"))
            .iter()
            .map(|e| e["event_type"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn compensated(instance: &Value) -> Vec<String> {
    instance["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["what"].as_str().unwrap().starts_with("compensated"))
        .map(|h| h["step"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_whole_worked_example_over_http_through_factline_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("factline.toml");
    std::fs::write(&file, config(dir.path())).unwrap();
    let mut host = RunningHost::spawn(&factline_binary(), &file, &[]);
    host.wait_ready();
    let c = Client { port: host.port() };
    c.open_shop();

    // A paid, then shipped order: the saga's four steps, `paid` from the payment topic.
    c.place("ORD-1", "CUST-7", &[("SKU-1", 2, 1000), ("SKU-2", 1, 2000)]);
    let done = c.finished("order-placement", "ORD-1");
    assert_eq!(done["status"], "completed", "{done}");
    let paid = c.eventually("/v1/read-models/order-summary/ORD-1", |r| {
        r["status"] == "paid"
    });
    assert_eq!(
        (paid["total"].as_u64(), paid["item_count"].as_u64()),
        (Some(4000), Some(3))
    );
    assert_eq!(c.types("payment-CUST-7"), ["payment.charged"]);
    assert_eq!(
        c.types("shipping-main"),
        ["shipping.capacity-set", "shipping.scheduled"]
    );
    assert_eq!(c.types("notification-ORD-1"), ["notification.sent"]);
    c.ok("order", "ORD-1", "ship", json!({}));
    c.eventually("/v1/read-models/order-summary/ORD-1", |r| {
        r["status"] == "shipped"
    });
    // A shipped order cannot be cancelled: a rejection, with its code.
    let (status, body) = c.send("order", "ORD-1", "cancel", json!({"reason": "too late"}));
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("already-shipped")),
        "{body}"
    );

    // A cancelled order's stock is released by inventory-release; the reason is in the summary.
    c.place("ORD-2", "CUST-8", &[("SKU-2", 2, 1500)]);
    assert_eq!(
        c.finished("order-placement", "ORD-2")["status"],
        "completed"
    );
    c.ok(
        "order",
        "ORD-2",
        "cancel",
        json!({"reason": "changed mind"}),
    );
    let cancelled = c.eventually("/v1/read-models/order-summary/ORD-2", |r| {
        r["status"] == "cancelled"
    });
    assert_eq!(cancelled["cancel_reason"], "changed mind");
    let inventory =
        c.eventually("/v1/streams/inventory-main", |s| {
            s["events"].as_array().unwrap().iter().any(|e| {
                e["event_type"] == "inventory.released" && e["payload"]["order_id"] == "ORD-2"
            })
        });
    let released = inventory["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        released["payload"]["items"],
        json!([{"product_id": "SKU-2", "quantity": 2}])
    );

    // No shipping slot left: refund, then release, in reverse order; the summary says refunded.
    c.place("ORD-3", "CUST-7", &[("SKU-1", 1, 700)]);
    let failed = c.finished("order-placement", "ORD-3");
    assert_eq!(
        (failed["status"].as_str(), failed["failed_step"].as_str()),
        (Some("failed"), Some("schedule_shipping")),
        "{failed}"
    );
    assert!(
        failed["failure_reason"]
            .as_str()
            .unwrap()
            .contains("no-capacity"),
        "{failed}"
    );
    assert_eq!(
        compensated(&failed),
        ["process_payment", "reserve_inventory"]
    );
    assert_eq!(
        c.types("payment-CUST-7"),
        ["payment.charged", "payment.charged", "payment.refunded"]
    );
    c.eventually("/v1/read-models/order-summary/ORD-3", |r| {
        r["status"] == "refunded"
    });

    // A payment failure: over CUST-9's limit, the reservation is compensated.
    c.place("ORD-4", "CUST-9", &[("SKU-1", 1, 2500)]);
    let failed = c.finished("order-placement", "ORD-4");
    assert_eq!(failed["failed_step"], "process_payment", "{failed}");
    assert!(
        failed["failure_reason"]
            .as_str()
            .unwrap()
            .contains("over-limit"),
        "{failed}"
    );
    assert_eq!(compensated(&failed), ["reserve_inventory"]);
    assert_eq!(c.types("payment-CUST-9"), ["payment.limit-set"]);
    // Every unit reserved by a failed or cancelled order came back: 10 - 2 (ORD-1) of SKU-1
    // and 5 - 1 (ORD-1) of SKU-2 are left, which a reservation of exactly that shows.
    c.place("ORD-5", "CUST-7", &[("SKU-1", 8, 1), ("SKU-2", 4, 1)]);
    let all = c.finished("order-placement", "ORD-5");
    let reserved = all["history"].as_array().unwrap().iter().any(|h| {
        h["step"] == "reserve_inventory" && h["what"] == "completed by inventory.reserved"
    });
    assert!(reserved, "{all}");

    // Reviews: approvals notify the authors (review-notification → notification → log) and
    // the average rating of two approved reviews is 4.5.
    for (id, author, rating) in [("R-1", "ana", 4), ("R-2", "ben", 5)] {
        let review =
            json!({"product_id": "SKU-1", "author": author, "rating": rating, "comment": "good"});
        c.ok("review", id, "submit", review);
        c.ok("review", id, "approve", json!({"by": "moderator"}));
    }
    let rating = c.eventually("/v1/read-models/review-rating/SKU-1", |r| {
        r["approved_reviews"] == 2
    });
    assert_eq!(rating["average_rating"], 4.5);
    for (id, author) in [("R-1", "ana"), ("R-2", "ben")] {
        let rows = c.eventually(
            &format!("/v1/read-models/notification-log?prefix={author}/"),
            |r| r["rows"].as_array().is_some_and(|rows| !rows.is_empty()),
        );
        assert_eq!(
            rows["rows"][0]["value"]["subject"],
            format!("Review {id} approved"),
            "{rows}"
        );
    }

    // Travel: a full hotel fails the saga at reserve_hotel and cancels the flight.
    c.ok("flight", "F1", "add-units", json!({"units": 10}));
    c.ok("hotel", "H1", "add-units", json!({"units": 10}));
    c.ok("car", "A1", "add-units", json!({"units": 10}));
    for (trip, hotel) in [("T-1", "H1"), ("T-2", "H2")] {
        let request = json!({"customer_id": "CUST-7", "flight": "F1", "hotel": hotel, "car": "A1", "amount": 900});
        c.ok("trip", trip, "request", request);
    }
    assert_eq!(c.finished("travel-booking", "T-1")["status"], "completed");
    let failed = c.finished("travel-booking", "T-2");
    assert_eq!(failed["failed_step"], "reserve_hotel", "{failed}");
    assert_eq!(compensated(&failed), ["book_flight"]);
    assert_eq!(
        c.types("flight-F1"),
        [
            "booking.units-added",
            "booking.booked",
            "booking.booked",
            "booking.cancelled"
        ]
    );
    assert_eq!(c.types("car-A1"), ["booking.units-added", "booking.booked"]);
    // A trip's payment is no order: order-summary keeps it apart, not as an order row.
    assert_eq!(c.get("/v1/read-models/order-summary/T-1"), None);

    // Banking: a frozen account refuses a withdrawal.
    c.ok(
        "bank-account",
        "ACC-1",
        "open",
        json!({"owner": "ana", "initial_balance": 100}),
    );
    c.ok(
        "bank-account",
        "ACC-1",
        "freeze",
        json!({"reason": "card lost"}),
    );
    let (status, body) = c.send("bank-account", "ACC-1", "withdraw", json!({"amount": 10}));
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("account-frozen")),
        "{body}"
    );

    // Nothing was miswired on the way: no dead letter in any group, and no saga instance
    // failed on a command or event its counterpart does not know.
    let dlq = c.get("/v1/admin/dlq").unwrap();
    assert_eq!(
        dlq["dead_letters"].as_array().map(Vec::len),
        Some(0),
        "{dlq}"
    );
    let sagas = c.get("/v1/admin/sagas").unwrap();
    for i in sagas["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("{sagas}"))
    {
        let reason = i["failure_reason"].as_str().unwrap_or_default();
        assert!(!reason.contains("unknown"), "{i}");
    }
    // What docs/grafana/factline.json charts, from this flow.
    let (status, metrics) = crate::http_api::request_text(c.port, "GET", "/metrics", None, None);
    assert_eq!(status, 200);
    for series in [
        r#"commands_total{aggregate="order""#,
        r#"events_published_total{topic="payment"}"#,
        r#"events_consumed_total{group="order-summary""#,
        r#"consumer_lag{group="order-placement""#,
        r#"plugin_call_duration_seconds_bucket{plugin="order-summary""#,
        r#"command_duration_seconds_bucket{aggregate="bank-account""#,
        "storage_available 1",
    ] {
        assert!(
            metrics.contains(series),
            "{series} not in /metrics:\n{metrics}"
        );
    }
    drop(host);
}

/// The README's main job: `factline demo` prints the whole flow (a compensation, rejections,
/// the read models), then serves the HTTP API on it until Ctrl-C.
#[test]
fn the_demo_prints_the_flow_then_serves_it_until_ctrl_c() {
    let plugins = Path::new(factline_tests::ORDER).parent().unwrap();
    let args = [
        "demo",
        "--plugins",
        plugins.to_str().unwrap(),
        "--address",
        "127.0.0.1:0",
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let mut demo = RunningHost::spawn_command(&factline_binary(), &args, &[]);
    demo.wait_ready();
    let printed = demo.printed().join("\n");
    for expected in [
        "order-placement ORD-1: completed",
        "order-placement ORD-3: failed at schedule_shipping",
        "compensated process_payment then reserve_inventory",
        "-> REJECTED already-shipped",
        "-> REJECTED account-frozen",
        "review-rating SKU-1: average 4.5 over 2 approved reviews",
        "travel-booking T-2: failed at reserve_hotel",
        "(Ctrl-C stops it). Try:",
        "/v1/read-models/order-summary/ORD-1",
    ] {
        assert!(
            printed.contains(expected),
            "{expected:?} not in:\n{printed}"
        );
    }
    let row = request(
        demo.port(),
        "GET",
        "/v1/read-models/order-summary/ORD-1",
        None,
        None,
    );
    assert_eq!(
        (row.0, row.1["status"].as_str()),
        (200, Some("shipped")),
        "{row:?}"
    );
    let status = demo.interrupt();
    assert!(status.success(), "{status:?}\n{}", demo.stderr());
}
