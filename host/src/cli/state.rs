//! `factline state ...`: an aggregate's state now, as of a stream version, or as of a point in
//! time, from a stopped host's data directory (snapshot + newer events, upcast as the host
//! reads them). Prints JSON.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use factline_host::Config;
use factline_host::Upcasters;
use factline_host::{AggregateHandler, AsOf};
use factline_host::{EventLog, LogOptions, OpenError};
use factline_host::{PluginRuntime, RuntimeConfig};

#[derive(clap::Args)]
pub struct Args {
    /// The host's configuration file (names the data directory and the plugins).
    #[arg(long, env = "FACTLINE_CONFIG")]
    config: PathBuf,
    /// The aggregate plugin, e.g. `bank-account`.
    aggregate: String,
    /// The aggregate's id within its topic, e.g. `ACC-001` for stream `account-ACC-001`.
    id: String,
    /// The state after this stream version.
    #[arg(long, conflicts_with = "at")]
    version: Option<u64>,
    /// The state after every event that occurred at or before this time (ms since the epoch).
    #[arg(long)]
    at: Option<u64>,
    /// Replay every event instead of starting from a snapshot.
    #[arg(long)]
    no_snapshots: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let log = match EventLog::open(
        &config.data_dir,
        LogOptions::with_topics(config.topics.iter().cloned()),
    ) {
        Err(OpenError::AlreadyOpen { path }) => {
            anyhow::bail!("{path} is in use by a running factline host; stop it first")
        }
        other => other.context("opening the data directory")?,
    };
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(config.cache_dir.clone()),
        ..RuntimeConfig::default()
    })?;
    // Every aggregate upcasts its own topic, as in the running host.
    let mut upcasters = Upcasters::default();
    let mut handler = None;
    for p in &config.plugins {
        let Some(options) = p.role.aggregate_options() else {
            continue;
        };
        let loaded = runtime.load_file(
            &p.name,
            p.kind(),
            &p.component,
            p.limits.clone(),
            p.label.clone(),
        )?;
        upcasters.add(&options.topic, &loaded)?;
        if p.name == args.aggregate {
            handler = Some(AggregateHandler::new(log.clone(), loaded, options)?);
        }
    }
    let handler = handler.with_context(|| {
        format!(
            "no aggregate named {:?} in the configuration",
            args.aggregate
        )
    })?;
    if !upcasters.is_empty() {
        log.set_upcaster(Some(Arc::new(upcasters)));
    }
    let at = match (args.version, args.at) {
        (Some(v), _) => AsOf::Version(v),
        (None, Some(t)) => AsOf::Time(t),
        (None, None) => AsOf::Latest,
    };
    let (version, state) = if args.no_snapshots {
        handler.state_replayed(&args.id, at)?
    } else {
        handler.state_as_of(&args.id, at)?
    };
    let state: serde_json::Value =
        rmp_serde::from_slice(&state).context("the state is not MessagePack")?;
    let out = serde_json::json!({
        "stream": handler.stream_of(&args.id),
        "as_of": at,
        "version": version,
        "state": state,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
