//! `factline send <aggregate> <id> <command-type> [<json>] [--expected-version N]`: one command
//! through a running host.

use anyhow::Context;
use serde_json::{Value, json};

use super::client::{Client, Remote, cell, print_json, segment, table};

#[derive(clap::Args)]
pub struct Args {
    /// The aggregate plugin's name.
    aggregate: String,
    /// The aggregate instance (its stream is `<topic>-<id>`).
    id: String,
    /// The command type, e.g. `create`.
    command_type: String,
    /// The command's payload as JSON (default `{}`).
    payload: Option<String>,
    /// Makes a resend safe: the same id returns the first outcome instead of deciding again.
    #[arg(long)]
    command_id: Option<uuid::Uuid>,
    #[arg(long)]
    correlation_id: Option<String>,
    #[arg(long)]
    causation_id: Option<String>,
    /// Handle the command only if the stream is at this version (0: it must not exist yet);
    /// otherwise the host refuses it with both versions.
    #[arg(long)]
    expected_version: Option<u64>,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let payload: Value = match &args.payload {
        Some(text) => serde_json::from_str(text).context("the payload is not valid JSON")?,
        None => json!({}),
    };
    let mut body = json!({ "type": args.command_type, "payload": payload });
    for (field, value) in [
        ("command_id", args.command_id.map(|u| u.to_string())),
        ("correlation_id", args.correlation_id),
        ("causation_id", args.causation_id),
    ] {
        if let Some(v) = value {
            body[field] = Value::String(v);
        }
    }
    if let Some(v) = args.expected_version {
        body["expected_version"] = json!(v);
    }
    let path = format!(
        "/v1/aggregates/{}/{}",
        segment(&args.aggregate),
        segment(&args.id)
    );
    let answer = Client::new(&args.remote).post(&path, Some(&body))?;
    if args.remote.json {
        return print_json(&answer);
    }
    let events = answer["events"].as_array().cloned().unwrap_or_default();
    println!(
        "{} at version {}{}",
        cell(&answer["stream"]),
        answer["version"],
        if answer["deduplicated"] == true {
            " (already handled: the stored outcome)"
        } else {
            ""
        }
    );
    if events.is_empty() {
        println!("no events");
        return Ok(());
    }
    print_events(&events);
    Ok(())
}

/// Events as a table: version, position, type, payload.
pub fn print_events(events: &[Value]) {
    let mut t = table(["version", "position", "type", "payload"]);
    for e in events {
        t.add_row([
            cell(&e["stream_version"]),
            format!("{}/{}@{}", cell(&e["topic"]), e["partition"], e["offset"]),
            cell(&e["event_type"]),
            cell(&e["payload"]),
        ]);
    }
    println!("{t}");
}
