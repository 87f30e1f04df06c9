//! `factline demo`: the whole worked example (DESIGN §6) in one host, as `factline run` runs it
//! with `factline.worked-example.toml`, on a fresh embedded data directory. It sends the flow's
//! commands, prints what every plugin made of them (the sagas' steps and compensations, the
//! rejections, the read models), then keeps serving the HTTP API until Ctrl-C (`--once` exits
//! instead).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use factline_guest::codec::{json_to_msgpack, msgpack_to_json};
use factline_host::{CommandError, CommandRequest, Config, Host, SagaInstance};
use factline_host::{find_saga_instance, query_read_model, query_read_model_prefix};
use serde_json::{Value, json};

use super::run::{StopSignals, bind, serve_host};

/// The configuration the demo runs: the repository's, so the two cannot drift.
const CONFIG: &str = include_str!("../../../factline.worked-example.toml");

#[derive(clap::Args)]
pub struct Args {
    /// Directory holding the example plugins' components (`order.wasm`, `order_summary.wasm`,
    /// ...): each plugin's component is the file of the same name here.
    #[arg(
        long,
        env = "FACTLINE_PLUGIN_DIR",
        default_value = "target/wasm32-wasip2/release"
    )]
    plugins: PathBuf,
    /// The order aggregate's component, in any language (default: `order.wasm` in --plugins).
    #[arg(long)]
    order: Option<PathBuf>,
    /// The order-summary projector's component (default: `order_summary.wasm` in --plugins).
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Cache of compiled components (default: `cache/` in the data directory). Sharing one
    /// across runs spares recompiling a Python or JavaScript component each time.
    #[arg(long, env = "FACTLINE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Data directory (default: a fresh temporary one, removed afterwards).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where the HTTP API listens once the flow has run.
    #[arg(long, default_value = "127.0.0.1:7070")]
    address: std::net::SocketAddr,
    /// Exit once the flow has run instead of serving the HTTP API (CI, scripts).
    #[arg(long)]
    once: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let temp;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let config = config(&args, &data_dir)?;
    println!("factline demo — data directory {}", data_dir.display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("factline")
        .build()
        .context("starting the async runtime")?;
    let _entered = runtime.enter();
    // Bound (and signals installed) before anything runs: a taken port fails the start.
    let serving = if args.once {
        None
    } else {
        Some((
            StopSignals::install()?,
            runtime.block_on(bind(args.address))?,
        ))
    };
    let host = Host::start(config)?;
    let mut loaded: Vec<String> = host
        .plugins()
        .iter()
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    loaded.sort();
    println!("loaded {} plugins: {}", loaded.len(), loaded.join(", "));
    let flow = Flow {
        host: &host,
        runtime: &runtime,
    };
    flow.run()?;
    match serving {
        None => {
            runtime.block_on(host.shutdown());
            Ok(())
        }
        Some((stop, listener)) => runtime.block_on(serve_host(
            Arc::new(host),
            listener,
            stop,
            false,
            |url| {
                let host = url.trim_start_matches("http://");
                println!("\nThe host keeps running with its HTTP API on {url} (Ctrl-C stops it). Try:");
                println!("  curl -s {host}/v1/read-models/order-summary/ORD-1");
                println!(
                    "  curl -s -XPOST {host}/v1/aggregates/order/ORD-9 -H 'Content-Type: application/json' \\\n      -d '{{\"type\":\"create\",\"payload\":{{\"customer_id\":\"CUST-1\"}}}}'"
                );
                println!("  curl -s {host}/v1/admin/sagas");
            },
        )),
    }
}

/// The worked example's configuration with every component taken from `--plugins`.
fn config(args: &Args, data_dir: &Path) -> anyhow::Result<Config> {
    let origin = Path::new("factline.worked-example.toml");
    let mut config = Config::parse(CONFIG, origin, Path::new("."))?;
    config.cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("cache"));
    config.data_dir = data_dir.to_path_buf();
    config.http.address = args.address;
    // A one-shot run has nothing to hot reload.
    config.watch_plugins = !args.once;
    for p in &mut config.plugins {
        let chosen = match p.name.as_str() {
            "order" => args.order.clone(),
            "order-summary" => args.summary.clone(),
            _ => None,
        };
        let file = p
            .component
            .file_name()
            .context("a component path without a file name")?;
        p.component = chosen.unwrap_or_else(|| args.plugins.join(file));
        anyhow::ensure!(
            p.component.exists(),
            "{} not found: build the example plugins first (scripts/demo does) or pass --plugins DIR",
            p.component.display()
        );
    }
    Ok(config)
}

struct Flow<'a> {
    host: &'a Host,
    runtime: &'a tokio::runtime::Runtime,
}

impl Flow<'_> {
    fn run(&self) -> anyhow::Result<()> {
        println!("\nThe shop: stock, a payment limit and two shipping slots.");
        self.send(
            "inventory",
            "main",
            "restock",
            json!({"product_id": "SKU-1", "quantity": 10}),
        )?;
        self.send(
            "inventory",
            "main",
            "restock",
            json!({"product_id": "SKU-2", "quantity": 5}),
        )?;
        self.send("payment", "CUST-9", "set-limit", json!({"limit": 1000}))?;
        self.send("shipping", "main", "set-capacity", json!({"slots": 2}))?;

        println!("\nORD-1 is placed; the order-placement saga reserves, charges, ships, confirms.");
        self.place("ORD-1", "CUST-7", &[("SKU-1", 2, 1000), ("SKU-2", 1, 2000)])?;
        self.saga("order-placement", "ORD-1")?;
        self.send("order", "ORD-1", "ship", json!({}))?;
        println!(
            "\nORD-2 takes the last shipping slot, then is cancelled: inventory-release frees its stock."
        );
        self.place("ORD-2", "CUST-8", &[("SKU-2", 2, 1500)])?;
        self.saga("order-placement", "ORD-2")?;
        self.send(
            "order",
            "ORD-2",
            "cancel",
            json!({"reason": "changed mind"}),
        )?;
        self.settle()?;
        self.events("inventory-main", 3)?;
        println!(
            "\nORD-3 finds no shipping slot: the saga refunds, then releases, in reverse order."
        );
        self.place("ORD-3", "CUST-7", &[("SKU-1", 1, 700)])?;
        self.saga("order-placement", "ORD-3")?;
        println!("\nORD-4 is over CUST-9's payment limit: the saga releases the reservation.");
        self.place("ORD-4", "CUST-9", &[("SKU-1", 1, 2500)])?;
        self.saga("order-placement", "ORD-4")?;
        println!("\nA shipped order cannot be cancelled: the order aggregate rejects it.");
        self.send("order", "ORD-1", "cancel", json!({"reason": "too late"}))?;
        self.settle()?;
        self.summaries()?;

        println!(
            "\nReviews: two approved reviews of SKU-1; review-notification tells each author."
        );
        for (id, author, rating) in [("R-1", "ana", 4), ("R-2", "ben", 5)] {
            let review = json!({"product_id": "SKU-1", "author": author, "rating": rating, "comment": "good"});
            self.send("review", id, "submit", review)?;
            self.send("review", id, "approve", json!({"by": "moderator"}))?;
        }
        self.settle()?;
        let rating = self.row("review-rating", "SKU-1")?;
        println!(
            "  review-rating SKU-1: average {} over {} approved reviews",
            rating["average_rating"], rating["approved_reviews"]
        );
        for author in ["ana", "ben"] {
            for (_, row) in self.rows("notification-log", &format!("{author}/"))? {
                println!("  notification-log {author}: {}", row["subject"]);
            }
        }

        println!(
            "\nTravel: the travel-booking saga books flight, hotel, car, then charges; H2 is full."
        );
        self.send("flight", "F1", "add-units", json!({"units": 10}))?;
        self.send("hotel", "H1", "add-units", json!({"units": 10}))?;
        self.send("car", "A1", "add-units", json!({"units": 10}))?;
        for (trip, hotel) in [("T-1", "H1"), ("T-2", "H2")] {
            let request = json!({"customer_id": "CUST-7", "flight": "F1", "hotel": hotel, "car": "A1", "amount": 900});
            self.send("trip", trip, "request", request)?;
            self.saga("travel-booking", trip)?;
        }
        self.events("flight-F1", 3)?;

        println!("\nBanking: a frozen account refuses a withdrawal.");
        self.send(
            "bank-account",
            "ACC-1",
            "open",
            json!({"owner": "ana", "initial_balance": 100}),
        )?;
        self.send("bank-account", "ACC-1", "deposit", json!({"amount": 50}))?;
        self.send(
            "bank-account",
            "ACC-1",
            "freeze",
            json!({"reason": "card lost"}),
        )?;
        self.send("bank-account", "ACC-1", "withdraw", json!({"amount": 10}))?;
        Ok(())
    }

    /// Sends one command and prints its outcome; a rejection is an outcome, not an error.
    fn send(&self, aggregate: &str, id: &str, command: &str, payload: Value) -> anyhow::Result<()> {
        let handler = self
            .host
            .aggregate(aggregate)
            .with_context(|| format!("no aggregate {aggregate} in the configuration"))?;
        let request = CommandRequest {
            id: id.into(),
            command_type: command.into(),
            payload: json_to_msgpack(&payload),
            ..Default::default()
        };
        let target = format!("{aggregate} {id}");
        match handler.handle(request) {
            Ok(o) => {
                let types: Vec<&str> = o.events.iter().map(|e| e.event_type.as_str()).collect();
                println!(
                    "  {target:<18} {command:<12} -> v{} {}",
                    o.version,
                    types.join(", ")
                );
                Ok(())
            }
            Err(CommandError::Rejected(r)) => {
                println!(
                    "  {target:<18} {command:<12} -> REJECTED {}: {}",
                    r.code, r.message
                );
                Ok(())
            }
            Err(e) => Err(e).with_context(|| format!("{target} {command}")),
        }
    }

    fn place(&self, order: &str, customer: &str, items: &[(&str, u32, u64)]) -> anyhow::Result<()> {
        self.send("order", order, "create", json!({"customer_id": customer}))?;
        for (product, quantity, price) in items {
            let item = json!({"product_id": product, "quantity": quantity, "unit_price": price});
            self.send("order", order, "add-item", item)?;
        }
        self.send("order", order, "confirm", json!({}))
    }

    /// Waits until every consumer group has caught up: the policies and sagas have reacted.
    fn settle(&self) -> anyhow::Result<()> {
        Ok(self.runtime.block_on(self.host.wait_until_idle())?)
    }

    /// Prints a saga instance once it has finished (or waits for something it cannot get).
    fn saga(&self, saga: &str, id: &str) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let instance = loop {
            self.settle()?;
            let found = find_saga_instance(self.host.log(), Some(saga), id)?;
            match found {
                Some(i) if !i.status.in_flight() => break i,
                found if std::time::Instant::now() > deadline => {
                    anyhow::bail!("saga {saga} {id} did not finish in 30 s: {found:#?}")
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        println!("  {}", describe(&instance));
        Ok(())
    }

    fn events(&self, stream: &str, last: usize) -> anyhow::Result<()> {
        let events = self.host.log().read_stream(stream, 1, 10_000)?;
        for e in &events[events.len().saturating_sub(last)..] {
            println!(
                "  {stream} v{} {} {}",
                e.stream_version,
                e.event_type,
                msgpack_to_json(&e.payload)?
            );
        }
        Ok(())
    }

    fn row(&self, projector: &str, key: &str) -> anyhow::Result<Value> {
        let bytes = query_read_model(self.host.log(), projector, key)?
            .with_context(|| format!("{projector} has no row {key}"))?;
        Ok(msgpack_to_json(&bytes)?)
    }

    fn rows(&self, projector: &str, prefix: &str) -> anyhow::Result<Vec<(String, Value)>> {
        query_read_model_prefix(self.host.log(), projector, prefix, 100)?
            .into_iter()
            .map(|(k, v)| Ok((k, msgpack_to_json(&v)?)))
            .collect()
    }

    fn summaries(&self) -> anyhow::Result<()> {
        println!("\norder-summary (from the order and payment topics):");
        println!(
            "  {:<6} {:<8} {:<10} {:>5} {:>6}  cancel reason",
            "order", "customer", "status", "items", "total"
        );
        for (key, row) in self.rows("order-summary", "ORD-")? {
            println!(
                "  {:<6} {:<8} {:<10} {:>5} {:>6}  {}",
                key,
                row["customer_id"].as_str().unwrap_or("?"),
                row["status"].as_str().unwrap_or("?"),
                row["item_count"].to_string(),
                row["total"].to_string(),
                row["cancel_reason"].as_str().unwrap_or("")
            );
        }
        Ok(())
    }
}

/// One line: the saga's end, its failed step and why, and its compensations in the order run.
fn describe(i: &SagaInstance) -> String {
    let mut line = format!("{} {}: {}", i.saga, i.instance_id, i.status);
    if let Some(step) = &i.failed_step {
        line += &format!(
            " at {step} ({})",
            i.failure_reason.as_deref().unwrap_or("no reason")
        );
    }
    let compensated: Vec<&str> = i
        .history
        .iter()
        .filter(|h| h.what.starts_with("compensated"))
        .map(|h| h.step.as_str())
        .collect();
    if compensated.is_empty() {
        let steps: Vec<&str> = i.steps.iter().map(|s| s.name.as_str()).collect();
        line += &format!(", steps {}", steps.join(" → "));
    } else {
        line += &format!(", compensated {}", compensated.join(" then "));
    }
    line
}
