//! `factline projector`: a running host's projector read models; rebuild one blue/green.

use std::time::Duration;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::client::{Client, Remote, cell, print_json, segment};

/// How often `rebuild` polls the host for progress.
const POLL: Duration = Duration::from_millis(200);

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// The live read model (generation, read-model version, plugin version) and the running or
    /// last rebuild.
    Show { name: String },
    /// Replay every event from offset 0 into a fresh read model beside the live one, which keeps
    /// answering queries; once it has caught up, queries switch to it and the old one is
    /// dropped. Shows a progress bar until the switch (Ctrl-C stops watching, not the rebuild).
    Rebuild {
        name: String,
        /// Start it and return at once.
        #[arg(long)]
        no_wait: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let client = Client::new(&args.remote);
    match args.action {
        Action::Show { name } => {
            let status = client.get(&format!("/v1/admin/projectors/{}", segment(&name)))?;
            if args.remote.json {
                return print_json(&status);
            }
            print_status(&status);
            Ok(())
        }
        Action::Rebuild { name, no_wait } => {
            let path = format!("/v1/admin/projectors/{}/rebuild", segment(&name));
            let started = client.post(&path, None)?;
            if no_wait {
                if args.remote.json {
                    return print_json(&started);
                }
                println!(
                    "{name}: rebuild started (watch it with `factline projector show {name}`)"
                );
                return Ok(());
            }
            let done = watch(&client, &name, &started, !args.remote.json)?;
            if args.remote.json {
                print_json(&done)?;
            }
            match done["phase"].as_str() {
                Some("done") => {
                    if !args.remote.json {
                        println!(
                            "{name}: generation {} live ({} events replayed; processing paused {:.1} ms for the switch)",
                            cell(&done["generation"]),
                            cell(&done["processed"]),
                            done["switch_pause_ms"].as_f64().unwrap_or_default()
                        );
                    }
                    Ok(())
                }
                _ => anyhow::bail!(
                    "{name}: rebuild {}: {}; the old read model stays live",
                    cell(&done["phase"]),
                    done["error"].as_str().unwrap_or("no reason given")
                ),
            }
        }
    }
}

/// Polls the projector until the rebuild that started at `started` ends; its last status. On a
/// terminal a progress bar; otherwise (logs, CI) a line per phase and at most one a second.
fn watch(client: &Client, name: &str, started: &Value, show: bool) -> anyhow::Result<Value> {
    use std::io::IsTerminal;
    let path = format!("/v1/admin/projectors/{}", segment(name));
    let terminal = show && std::io::stderr().is_terminal();
    let bar = if terminal {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:40.cyan/blue}] {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let mut last_line: Option<(String, std::time::Instant)> = None;
    // The rebuild's first status (its answer to the start) is the first line: it already
    // knows the target.
    let mut rebuild = started.clone();
    loop {
        if rebuild["started_at_ms"] != started["started_at_ms"] {
            anyhow::bail!("{name}: another rebuild replaced this one");
        }
        let phase = rebuild["phase"].as_str().unwrap_or("").to_owned();
        let (processed, target) = (
            rebuild["processed"].as_u64().unwrap_or(0),
            rebuild["target"].as_u64().unwrap_or(0),
        );
        bar.set_length(target);
        bar.set_position(processed);
        bar.set_message(phase.clone());
        let due = last_line
            .as_ref()
            .is_none_or(|(p, at)| *p != phase || at.elapsed() >= Duration::from_secs(1));
        if show && !terminal && due {
            eprintln!("{name}: {phase} {processed}/{target} events");
            last_line = Some((phase.clone(), std::time::Instant::now()));
        }
        if !matches!(phase.as_str(), "replaying" | "switching") {
            bar.finish();
            return Ok(rebuild);
        }
        std::thread::sleep(POLL);
        rebuild = client.get(&path)?["rebuild"].take();
    }
}

fn print_status(status: &Value) {
    let live = &status["live"];
    println!(
        "{}: generation {} live (scope {}, read-model version {}, plugin {}){}",
        cell(&status["projector"]),
        cell(&live["generation"]),
        cell(&status["scope"]),
        cell(&live["read_model_version"]),
        cell(&live["plugin_version"]),
        if status["processing"] == true {
            ""
        } else {
            "; not processing until its rebuild switches"
        }
    );
    let r = &status["rebuild"];
    if !r.is_null() {
        println!(
            "last rebuild: {} ({}), generation {}, read-model version {}, {}/{} events{}",
            cell(&r["phase"]),
            cell(&r["reason"]),
            cell(&r["generation"]),
            cell(&r["read_model_version"]),
            cell(&r["processed"]),
            cell(&r["target"]),
            r["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
}
