//! `factline plugins`: the plugins of a running host and their versions.

use clap::Subcommand;

use super::client::{Client, Remote, cell, print_json, table};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    remote: Remote,
    /// Without one: `list`.
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(Subcommand)]
enum Action {
    /// Loaded plugins: kind, version (label and content hash), compile-cache outcome.
    List,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action.unwrap_or(Action::List) {
        Action::List => list(&args.remote),
    }
}

fn list(remote: &Remote) -> anyhow::Result<()> {
    let answer = Client::new(remote).get("/v1/admin/plugins")?;
    if remote.json {
        return print_json(&answer);
    }
    let mut t = table(["name", "kind", "version", "content hash", "cache"]);
    for p in answer["plugins"].as_array().into_iter().flatten() {
        t.add_row([
            cell(&p["name"]),
            cell(&p["kind"]),
            cell(&p["version"]),
            cell(&p["content_hash"]),
            cell(&p["cache"]),
        ]);
    }
    println!("{t}");
    Ok(())
}
