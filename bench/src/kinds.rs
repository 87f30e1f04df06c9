//! `factline-bench kinds`: the command-sending kinds through the host, as `factline run`
//! assembles them: the inventory-release policy (a cancelled order releases its stock) and the
//! order-placement saga's happy path (reserve → pay → ship → confirm).
//!
//! Each case first fills a fresh log through the aggregates alone (a host without the kind),
//! then starts a host with the kind over it and times it catching up that backlog: events/s
//! through the kind's group, commands or sagas completed/s, and the share of the wall time
//! spent inside plugin calls (the kind's own and the aggregates' it plans commands on), from
//! the host's own `plugin_call_duration_seconds` and `event_processing_duration_seconds`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use factline_guest::codec::json_to_msgpack;
use factline_host::{CommandRequest, Config, Host, SagaStatus};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Orders the policy releases (each: created, item added, cancelled).
    #[arg(long, default_value_t = 2_000)]
    cancellations: u64,
    /// Orders placed, each starting one order-placement saga.
    #[arg(long, default_value_t = 1_000)]
    sagas: u64,
}

const AGGREGATES: &[(&str, &str)] = &[
    ("order", "order.wasm"),
    ("inventory", "inventory.wasm"),
    ("payment", "payment.wasm"),
    ("shipping", "shipping.wasm"),
    ("notification", "notification.wasm"),
];
const TOPICS: &[&str] = &["order", "inventory", "payment", "shipping", "notification"];
/// The warehouse stream every order reserves from (the inventory plugin's).
const WAREHOUSE: &str = "main";
/// Threads sending the setup's order commands.
const CLIENTS: u64 = 4;

pub fn run(plugins: &Path, args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.cancellations > 0 && args.sagas > 0,
        "--cancellations and --sagas must be positive"
    );
    for (_, file) in AGGREGATES {
        component(plugins, file)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let policy = policy(plugins, args.cancellations, &runtime)?;
    let saga = saga(plugins, args.sagas, &runtime)?;
    println!(
        "{:<44} {:>8} {:>9} {:>10} {:>12} {:>10} {:>8} {:>8}",
        "case (catching up a backlog, 1 lane)",
        "events",
        "seconds",
        "events/s",
        "done/s",
        "group busy",
        "plugin",
        "its own"
    );
    println!("{}", "-".repeat(118));
    policy.print(&format!(
        "inventory-release policy, {} cancellations",
        args.cancellations
    ));
    saga.print(&format!(
        "order-placement saga, {} sagas, happy path",
        args.sagas
    ));
    println!(
        "\ndone/s: release commands (policy) or sagas completed (saga). group busy: the group's\n\
         batch time (process + commit) / wall time. plugin: every plugin call's time / wall time\n\
         (the kind's calls and the aggregates' the commands are decided on); its own: the kind's\n\
         plugin alone."
    );
    Ok(())
}

/// One case's figures.
struct Row {
    events: f64,
    elapsed: Duration,
    done: u64,
    busy: f64,
    plugin: f64,
    own: f64,
}

impl Row {
    fn print(&self, case: &str) {
        let s = self.elapsed.as_secs_f64();
        println!(
            "{case:<44} {:>8.0} {s:>9.2} {:>10.0} {:>12.0} {:>9.0}% {:>7.0}% {:>7.0}%",
            self.events,
            self.events / s,
            self.done as f64 / s,
            100.0 * self.busy / s,
            100.0 * self.plugin / s,
            100.0 * self.own / s,
        );
    }
}

/// The policy: orders created, given an item, reserved in the warehouse and cancelled; then
/// the policy releases every reservation.
fn policy(plugins: &Path, orders: u64, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Row> {
    let (dir, host) = stocked(plugins, orders, runtime)?;
    std::thread::scope(|s| -> anyhow::Result<()> {
        // The warehouse is one stream: its reservations go one after another.
        let reserving = s.spawn(|| {
            (0..orders).try_for_each(|o| {
                send(&host, "inventory", WAREHOUSE, "reserve", json!({"order_id": order_id(o), "items": [{"product_id": "P1", "quantity": 1}]}))
            })
        });
        clients(orders, |o| {
            let id = order_id(o);
            open_order(&host, &id, "C1")?;
            send(&host, "order", &id, "cancel", json!({"reason": "bench"}))
        })?;
        reserving.join().expect("reserving panicked")
    })?;
    let kind = ("inventory-release", "policy", "inventory_release.wasm");
    let (row, host) = catch_up(host, dir.path(), plugins, kind, &["order"], runtime)?;
    let released = host
        .log()
        .read_stream(&format!("inventory-{WAREHOUSE}"), 1, usize::MAX)?
        .iter()
        .filter(|e| e.event_type == "inventory.released")
        .count() as u64;
    runtime.block_on(host.shutdown());
    anyhow::ensure!(
        released == orders,
        "{released} releases for {orders} cancelled orders"
    );
    Ok(Row {
        done: released,
        ..row
    })
}

/// The saga: orders created, given an item and confirmed (`order.placed` starts an instance);
/// then every instance runs its four steps.
fn saga(plugins: &Path, orders: u64, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Row> {
    let (dir, host) = stocked(plugins, orders, runtime)?;
    clients(orders, |o| {
        let id = order_id(o);
        // A customer per order: each payment account is its own stream.
        open_order(&host, &id, &format!("C{o}"))?;
        send(&host, "order", &id, "confirm", json!({}))
    })?;
    let kind = ("order-placement", "saga", "order_placement.wasm");
    let (row, host) = catch_up(host, dir.path(), plugins, kind, TOPICS, runtime)?;
    let instances = factline_host::saga_instances(host.log(), Some("order-placement"))?;
    runtime.block_on(host.shutdown());
    let completed = instances
        .iter()
        .filter(|i| i.status == SagaStatus::Completed)
        .count() as u64;
    anyhow::ensure!(
        completed == orders,
        "{completed} sagas completed of {orders}: {:?}",
        factline_host::count_sagas_by_status(&instances)
    );
    Ok(Row {
        done: completed,
        ..row
    })
}

/// Stops `setup`, starts the host with the plugin `(name, kind, component file)` subscribed
/// to `topics` over the backlog in `dir` and waits until it is idle; the row without its `done`
/// count, and the host.
fn catch_up(
    setup: Host,
    dir: &Path,
    plugins: &Path,
    (name, kind, file): (&str, &str, &str),
    topics: &[&str],
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<(Row, Host)> {
    runtime.block_on(setup.shutdown());
    let plugin = format!(
        "[[plugins]]\nname = {name:?}\nkind = {kind:?}\ncomponent = {:?}\nsubscriptions = {topics:?}\n",
        component(plugins, file)?
    );
    let config = host(dir, plugins, &plugin)?;
    let before = Metrics::read()?;
    let started = Instant::now();
    let host = start(runtime, config)?;
    runtime.block_on(host.wait_until_idle())?;
    let elapsed = started.elapsed();
    let after = Metrics::read()?;
    let delta = |metric: &str, label: Option<(&str, &str)>| {
        after.sum(metric, label) - before.sum(metric, label)
    };
    let row = Row {
        events: delta("events_consumed_total", Some(("group", name))),
        elapsed,
        done: 0,
        busy: delta(
            "event_processing_duration_seconds_sum",
            Some(("group", name)),
        ),
        plugin: delta("plugin_call_duration_seconds_sum", None),
        own: delta("plugin_call_duration_seconds_sum", Some(("plugin", name))),
    };
    Ok((row, host))
}

/// A fresh directory and a host of the aggregates alone over it, with `orders` of P1 in stock.
fn stocked(
    plugins: &Path,
    orders: u64,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<(tempfile::TempDir, Host)> {
    let dir = tempfile::tempdir()?;
    let host = start(runtime, host(dir.path(), plugins, "")?)?;
    send(
        &host,
        "inventory",
        WAREHOUSE,
        "restock",
        json!({"product_id": "P1", "quantity": orders}),
    )?;
    Ok((dir, host))
}

/// The host, started on `runtime` (its groups run there).
fn start(runtime: &tokio::runtime::Runtime, config: Config) -> anyhow::Result<Host> {
    let _guard = runtime.enter();
    Ok(Host::start(config)?)
}

/// The host's configuration over `dir`: the shop's aggregates and `extra`.
fn host(dir: &Path, plugins: &Path, extra: &str) -> anyhow::Result<Config> {
    let mut text = "data_dir = \"data\"\nwatch_plugins = false\n".to_owned();
    for topic in TOPICS {
        text += &format!("[[topics]]\nname = {topic:?}\npartitions = 4\n");
    }
    for (name, file) in AGGREGATES {
        text += &format!(
            "[[plugins]]\nname = {name:?}\nkind = \"aggregate\"\ncomponent = {:?}\n",
            component(plugins, file)?
        );
    }
    text += extra;
    Ok(Config::parse(&text, Path::new("bench.toml"), dir)?)
}

/// `file` in `plugins`, absolute (a relative path in the configuration would be taken as
/// relative to its directory).
fn component(plugins: &Path, file: &str) -> anyhow::Result<PathBuf> {
    let path = plugins.join(file);
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: build the example plugins (scripts/bench does) or pass --plugins",
        path.display()
    );
    Ok(std::fs::canonicalize(path)?)
}

/// Creates order `id` of `customer` with one P1 in it.
fn open_order(host: &Host, id: &str, customer: &str) -> anyhow::Result<()> {
    send(
        host,
        "order",
        id,
        "create",
        json!({"customer_id": customer}),
    )?;
    let item = json!({"product_id": "P1", "quantity": 1, "unit_price": 100});
    send(host, "order", id, "add-item", item)
}

fn order_id(o: u64) -> String {
    format!("K-{o}")
}

/// Runs `each` for orders 0..n over [`CLIENTS`] threads.
fn clients(n: u64, each: impl Fn(u64) -> anyhow::Result<()> + Sync) -> anyhow::Result<()> {
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let each = &each;
                s.spawn(move || (c..n).step_by(CLIENTS as usize).try_for_each(each))
            })
            .collect();
        threads
            .into_iter()
            .try_for_each(|t| t.join().expect("a client panicked"))
    })
}

fn send(
    host: &Host,
    aggregate: &str,
    id: &str,
    command_type: &str,
    payload: serde_json::Value,
) -> anyhow::Result<()> {
    let handler = host
        .aggregate(aggregate)
        .ok_or_else(|| anyhow::anyhow!("no aggregate {aggregate}"))?;
    handler.handle(CommandRequest {
        id: id.into(),
        command_type: command_type.into(),
        payload: json_to_msgpack(&payload),
        ..Default::default()
    })?;
    Ok(())
}

/// The sums and counters of the process's metrics, by series (`name{labels}`); the first read
/// installs the host's recorder (handles made before it record nothing).
pub(crate) struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    pub(crate) fn read() -> anyhow::Result<Metrics> {
        let handle = factline_host::install_metrics()
            .ok_or_else(|| anyhow::anyhow!("another metrics recorder is installed"))?;
        let text = factline_host::render_metrics(handle, || {});
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Ok(Metrics(series))
    }

    /// The sum of `metric` over its series, those with `label` only if given.
    pub(crate) fn sum(&self, metric: &str, label: Option<(&str, &str)>) -> f64 {
        let label = label.map(|(k, v)| format!("{k}=\"{v}\""));
        self.0
            .iter()
            .filter(|(series, _)| {
                series.split('{').next() == Some(metric)
                    && label.as_ref().is_none_or(|l| {
                        series.split(['{', ',', '}']).any(|part| part == l.as_str())
                    })
            })
            .map(|(_, v)| v)
            .sum()
    }
}
