//! Command-line interface: parse, then `match` on one command enum.

mod client;
mod cluster;
mod demo;
mod dlq;
mod export;
mod groups;
mod inspect;
mod new;
mod plugins;
mod projector;
mod query;
mod read;
mod replay;
mod run;
mod saga;
mod send;
mod state;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "factline",
    version,
    about = "An event log whose business logic runs as WebAssembly components"
)]
struct Cli {
    /// Log format on stderr (filter with RUST_LOG, default `warn`).
    #[arg(long, global = true, env = "FACTLINE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the current span's fields (command and batch ids).
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the order example end to end on a fresh embedded data directory.
    Demo(demo::Args),
    /// Dead letters: list, show, retry, discard (a running host, or a stopped one's directory).
    Dlq(dlq::Args),
    /// One dead letter's context as one file (event, state, components), for `replay`.
    Export(export::Args),
    /// Run an exported dead letter again in a temporary directory (or with `--with` a fix).
    Replay(replay::Args),
    /// Send a command to an aggregate of a running host.
    Send(send::Args),
    /// Read a stream of a running host.
    Read(read::Args),
    /// Query a read model of a running host, by key or by key prefix.
    Query(query::Args),
    /// Plugins of a running host and their versions.
    Plugins(plugins::Args),
    /// Projector read models of a running host; rebuild one blue/green.
    Projector(projector::Args),
    /// Consumer groups of a running host and their lag.
    Groups(groups::Args),
    /// A clustered host's view of the cluster (`[log] backend = "kafka"`).
    Cluster(cluster::Args),
    /// Topics, high-water marks, group offsets and dead letters of a stopped host's directory.
    Inspect(inspect::Args),
    /// Write a new plugin project (handler, scenarios, build script, host config) anywhere.
    New(new::Args),
    /// Run the host as configured until SIGTERM or Ctrl-C.
    Run(run::Args),
    /// Run scenario files (given/when/then) against a component in any language.
    Test(test::Args),
    /// An aggregate's state now, as of a stream version or a point in time (stopped host).
    State(state::Args),
    /// Saga instances of a stopped host: list, show, retry.
    Saga(saga::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Spans leave the process only for a host (`run`) whose config or environment names an
    // OTLP collector; the exporter flushes when `_spans` drops, after the command returned.
    let otlp = match &cli.command {
        Command::Run(args) => run::otlp_endpoint(args),
        _ => None,
    };
    let _spans = match init_tracing(cli.log_format, otlp.as_deref()) {
        Ok(spans) => spans,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Run(args) => run::run(args),
        Command::New(args) => new::run(args),
        Command::Dlq(args) => dlq::run(args),
        Command::Export(args) => export::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Send(args) => send::run(args),
        Command::Read(args) => read::run(args),
        Command::Query(args) => query::run(args),
        Command::Plugins(args) => plugins::run(args),
        Command::Projector(args) => projector::run(args),
        Command::Groups(args) => groups::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Test(args) => test::run(args),
        Command::State(args) => state::run(args),
        Command::Saga(args) => saga::run(args),
    }
}

/// Logs on stderr (`RUST_LOG`, default `warn`) and, with `otlp`, every span to that
/// collector (the host's spans at `info` and above, whatever `RUST_LOG` says for the lines).
fn init_tracing(
    format: LogFormat,
    otlp: Option<&str>,
) -> anyhow::Result<Option<factline_host::Tracing>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(filter)
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(fmt);
    let Some(endpoint) = otlp else {
        let _ = registry.try_init();
        return Ok(None);
    };
    let (layer, spans) = factline_host::otlp_layer(endpoint)?;
    // Only the host's own spans and events: the engine's dependencies (cranelift) log a lot
    // below `info`, and letting that through would slow every compile down.
    let ours = tracing_subscriber::filter::Targets::new()
        .with_target("factline_host", tracing::Level::INFO);
    let _ = registry.with(layer.with_filter(ours)).try_init();
    Ok(Some(spans))
}
