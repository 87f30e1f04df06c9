//! Command-line interface: parse, then `match` on one command enum.

mod client;
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
    init_tracing(cli.log_format);
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
        Command::Inspect(args) => inspect::run(args),
        Command::Test(args) => test::run(args),
        Command::State(args) => state::run(args),
        Command::Saga(args) => saga::run(args),
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}
