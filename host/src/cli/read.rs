//! `factline read <stream> [--from N]`: a stream's events from a running host.

use super::client::{Client, Remote, cell, print_json, segment};

#[derive(clap::Args)]
pub struct Args {
    /// The stream, e.g. `order-ORD-1`.
    stream: String,
    /// First stream version to show.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Most events.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let path = format!(
        "/v1/streams/{}?from={}&limit={}",
        segment(&args.stream),
        args.from,
        args.limit
    );
    let answer = Client::new(&args.remote).get(&path)?;
    if args.remote.json {
        return print_json(&answer);
    }
    let events = answer["events"].as_array().cloned().unwrap_or_default();
    println!(
        "{} at version {}",
        cell(&answer["stream"]),
        answer["version"]
    );
    if events.is_empty() {
        println!("no events from version {}", args.from);
    } else {
        super::send::print_events(&events);
    }
    Ok(())
}
