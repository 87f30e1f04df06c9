//! `factline-bench`: factline's throughput and latency figures, each measured in one run and
//! printed as a table with the ratios its targets are stated in (absolute numbers vary on a
//! shared machine). `scripts/bench WHICH` builds the example plugins and runs it. A separate
//! binary over the host's public API: nothing in the host exists for benchmarks only.

use clap::{Parser, Subcommand};

mod accounts;
mod gate;
mod groups;
mod http;
mod kinds;
mod languages;
mod log;
mod plugins;
mod raw_redb;
mod rebuild;
mod reload;

#[derive(Parser)]
#[command(
    name = "factline-bench",
    about = "factline's benchmarks, each printed as a table"
)]
struct Cli {
    /// Directory of built example plugins.
    #[arg(
        long,
        global = true,
        env = "FACTLINE_PLUGIN_DIR",
        default_value = "target/wasm32-wasip2/release"
    )]
    plugins: std::path::PathBuf,
    #[command(subcommand)]
    which: Which,
}

#[derive(Subcommand)]
enum Which {
    /// The event log: single, concurrent and batched appends, partition reads, raw redb ceiling.
    Log {
        /// Scale the number of operations (1 = default sizes).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
    },
    /// Plugins: the order-summary projector as WASM vs the same logic native, on the full path;
    /// commands/s through the order aggregate.
    Plugins {
        /// Events to project.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
    },
    /// The order-summary projector built from several languages, through the host: events/s,
    /// memory per instance, load time cold and cached. Builds as LABEL=PATH, e.g.
    /// `--projector rust=order_summary.wasm --projector python=order_summary_py.wasm`.
    Languages {
        #[arg(long = "projector", required = true)]
        builds: Vec<crate::languages::Build>,
        /// Events to project.
        #[arg(long, default_value_t = 20_000)]
        events: u64,
    },
    /// The bank-account workload against the Python `eventsourcing` library: deposits,
    /// reconstruction with and without snapshots, loading a long stream.
    Accounts(crate::accounts::Args),
    /// Consumer groups: a projector group over 1, 2 and 4 partitions; catching up a lag.
    Groups {
        /// Events per partition-count run.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Size of the lag to catch up.
        #[arg(long, default_value_t = 1_000_000)]
        lag: u64,
    },
    /// Hot reload while events flow: prepare, swap and lane pause with and without a cached
    /// artifact; cold start of 10 plugins with an empty and a warm cache.
    Reload {
        /// Deploys per case.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
    },
    /// Blue/green projector rebuild: replay rate against the live group's catch-up, and a
    /// rebuild under load (switch pause, query latency meanwhile).
    Rebuild {
        /// Events in the log before the first rebuild.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
    },
    /// The deploy gate over the last 10,000 events of a projector (both versions) against the
    /// running version processing them live.
    Gate,
    /// Policies and sagas through the host: the inventory-release policy and the
    /// order-placement saga (happy path) catching up a backlog, events/s, commands or sagas
    /// completed/s, and the share of the time spent in plugin calls.
    Kinds(crate::kinds::Args),
    /// The host over loopback HTTP: concurrent clients sending order commands (p50/p99)
    /// against the raw append rate of the log, in one run.
    Http(crate::http::Args),
}

fn run(which: Which, plugins: &std::path::Path) -> anyhow::Result<()> {
    match which {
        Which::Log { scale } => log::run(scale),
        Which::Plugins { events } => plugins::run(plugins, events),
        Which::Languages { builds, events } => crate::languages::run(&builds, events),
        Which::Accounts(args) => crate::accounts::run(plugins, args),
        Which::Groups { events, lag } => groups::run(plugins, events, lag),
        Which::Reload { rounds } => reload::run(plugins, rounds),
        Which::Http(args) => crate::http::run(args, plugins),
        Which::Kinds(args) => crate::kinds::run(plugins, args),
        Which::Rebuild { events } => rebuild::run(plugins, events),
        Which::Gate => gate::run(plugins),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    run(cli.which, &cli.plugins)
}
