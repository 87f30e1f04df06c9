//! `factline demo`: the order example end to end on a fresh embedded data directory.

use std::path::{Path, PathBuf};

use anyhow::Context;
use factline_guest::codec::{json_to_msgpack, msgpack_to_json};
use factline_host::{AggregateHandler, AggregateOptions, CommandError, CommandRequest};
use factline_host::{ConsumerGroup, GroupConfig};
use factline_host::{EventLog, LogOptions, TopicConfig};
use factline_host::{Limits, PluginKind, PluginRuntime, RuntimeConfig};
use factline_host::{ProjectionHandler, WasmProjection, query_read_model_prefix};
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Args {
    /// Directory holding `order.wasm` and `order_summary.wasm`.
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
}

fn plugin_file(dir: &Path, file: &str, chosen: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = chosen.unwrap_or_else(|| dir.join(file));
    anyhow::ensure!(
        path.exists(),
        "{} not found: build the example plugins first (scripts/demo does) or pass --plugins DIR",
        path.display()
    );
    Ok(path)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let temp;
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    println!("factline demo — data directory {}", data_dir.display());
    let log = EventLog::open(
        &data_dir,
        LogOptions::with_topics([TopicConfig::new("order", 4)]),
    )
    .context("opening the event log")?;
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(args.cache_dir.unwrap_or_else(|| data_dir.join("cache"))),
        ..RuntimeConfig::default()
    })?;
    let order = runtime
        .load_file(
            "order",
            PluginKind::Aggregate,
            &plugin_file(&args.plugins, "order.wasm", args.order)?,
            Limits::default(),
            None,
        )
        .context("loading the order aggregate")?;
    let summary = runtime
        .load_file(
            "order-summary",
            PluginKind::Projector,
            &plugin_file(&args.plugins, "order_summary.wasm", args.summary)?,
            Limits::default(),
            None,
        )
        .context("loading the order-summary projector")?;
    println!(
        "loaded order {} and order-summary {}\n",
        order.version, summary.version
    );

    let orders = AggregateHandler::new(log.clone(), order, AggregateOptions::new("order"))?;
    let send = |id: &str, command: &str, payload: Value| -> anyhow::Result<()> {
        let request = CommandRequest {
            id: id.into(),
            command_type: command.into(),
            payload: json_to_msgpack(&payload),
            ..Default::default()
        };
        match orders.handle(request) {
            Ok(o) => {
                let types: Vec<&str> = o.events.iter().map(|e| e.event_type.as_str()).collect();
                println!(
                    "  {id:<6} {command:<9} -> v{} {}",
                    o.version,
                    types.join(", ")
                );
                Ok(())
            }
            Err(CommandError::Rejected(r)) => {
                println!(
                    "  {id:<6} {command:<9} -> REJECTED {}: {}",
                    r.code, r.message
                );
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    };
    println!("commands:");
    send("ORD-1", "create", json!({"customer_id": "CUST-7"}))?;
    send(
        "ORD-1",
        "add-item",
        json!({"product_id": "SKU-1", "quantity": 2, "unit_price": 1000}),
    )?;
    send(
        "ORD-1",
        "add-item",
        json!({"product_id": "SKU-2", "quantity": 1, "unit_price": 2000}),
    )?;
    send("ORD-1", "confirm", json!({}))?;
    send("ORD-1", "ship", json!({}))?;
    send("ORD-2", "create", json!({"customer_id": "CUST-8"}))?;
    send("ORD-2", "cancel", json!({"reason": "changed mind"}))?;
    send("ORD-3", "create", json!({"customer_id": "CUST-9"}))?;
    send("ORD-3", "confirm", json!({}))?;
    send("ORD-1", "cancel", json!({"reason": "too late"}))?;

    let projection = WasmProjection::new(summary.instantiate()?)?;
    let mut projector = ConsumerGroup::new(
        log.clone(),
        GroupConfig::new("order-summary", vec!["order".into()]),
        ProjectionHandler::boxed(projection),
    )?;
    let n = projector.run_until_idle()?;
    println!("\norder-summary (projected {n} events):");
    println!(
        "  {:<6} {:<10} {:<10} {:>5} {:>7}",
        "order", "customer", "status", "items", "total"
    );
    for (key, bytes) in query_read_model_prefix(&log, "order-summary", "", 100)? {
        let row = msgpack_to_json(&bytes)?;
        println!(
            "  {:<6} {:<10} {:<10} {:>5} {:>7}",
            key,
            row["customer_id"].as_str().unwrap_or("?"),
            row["status"].as_str().unwrap_or("?"),
            row["item_count"].to_string(),
            row["total"].to_string()
        );
    }
    println!("\nevents of order-ORD-1:");
    for e in log.read_stream("order-ORD-1", 1, 100)? {
        let payload = msgpack_to_json(&e.payload)?;
        println!(
            "  v{} {:<17} {}/{}@{} {}",
            e.stream_version, e.event_type, e.topic, e.partition, e.offset, payload
        );
    }
    Ok(())
}
