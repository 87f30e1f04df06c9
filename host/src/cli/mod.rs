//! Command-line interface: parse, then `match` on one command enum.

mod bench;
mod bench_groups;
mod bench_plugins;
mod demo;
mod dlq;
mod run;
mod saga;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "factline",
    version,
    about = "An event log whose business logic runs as WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the order example end to end on a fresh embedded data directory.
    Demo(demo::Args),
    /// Dead letters of a stopped host: list, show, retry, discard.
    Dlq(dlq::Args),
    /// Run the host as configured until SIGTERM or Ctrl-C.
    Run(run::Args),
    /// Saga instances of a stopped host: list, show, retry.
    Saga(saga::Args),
    /// Measure throughput and print a table.
    Bench {
        /// Directory of built example plugins (for `bench plugins`).
        #[arg(
            long,
            global = true,
            env = "FACTLINE_PLUGIN_DIR",
            default_value = "target/wasm32-wasip2/release"
        )]
        plugins: std::path::PathBuf,
        #[command(subcommand)]
        which: bench::Which,
    },
}

pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
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
        Command::Dlq(args) => dlq::run(args),
        Command::Saga(args) => saga::run(args),
        Command::Bench { plugins, which } => bench::run(which, &plugins),
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
