//! `factline replay FILE [--with CANDIDATE.wasm]`: an exported dead letter (`factline export`)
//! run again in a temporary data directory, on any machine: through the exported version (the
//! recorded failure again, with its guest backtrace) or a candidate build (its effects).
//! Nothing is written outside the temporary directory, which is removed afterwards.

use std::path::PathBuf;

use anyhow::Context;
use factline_host::Replay;

use super::dlq::{describe, print_one, print_outcome, replay_json};

#[derive(clap::Args)]
pub struct Args {
    /// The export file.
    file: PathBuf,
    /// A candidate build of the group's plugin to run instead of the exported version.
    #[arg(long = "with", value_name = "CANDIDATE")]
    candidate: Option<PathBuf>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let export = factline_host::read_export(&args.file)?;
    let candidate = match &args.candidate {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    let letter = export.dead_letter.clone();
    let key = letter.key();
    let workdir = tempfile::tempdir().context("creating the replay's temporary directory")?;
    let replayed = factline_host::replay_export(export, candidate, workdir.path())?;
    let with = match &args.candidate {
        Some(path) => format!("candidate {}", path.display()),
        None => format!("the exported version {}", letter.plugin_version),
    };
    if args.json {
        let mut answer = replay_json(&key, &replayed.outcome);
        answer["reproduced"] = replayed.reproduced.into();
        answer["content_hash"] = replayed.content_hash.clone().into();
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    println!("recorded dead letter:");
    print_one(&letter);
    println!();
    println!(
        "{} replayed with {with} (a temporary data directory, nothing kept):",
        describe(&key)
    );
    print_outcome(&replayed.outcome);
    match &replayed.outcome {
        Replay::Failed(_) if replayed.reproduced => {
            println!("reproduces the recorded failure")
        }
        Replay::Failed(_) => println!("fails differently from the recorded failure"),
        Replay::Effects(_) => {}
    }
    Ok(())
}
