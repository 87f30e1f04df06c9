//! `factline cluster status`: a clustered host's view of the cluster (owner, term and the
//! replica's position per partition).

use super::client::{Client, Remote, cell, print_json, table};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand)]
enum ClusterCommand {
    /// Per partition: owner, term, replicated Kafka offset and lag, whether this host owns it.
    Status {
        #[command(flatten)]
        remote: Remote,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let ClusterCommand::Status { remote } = args.command;
    let answer = Client::new(&remote).get("/v1/cluster")?;
    if remote.json {
        return print_json(&answer);
    }
    println!(
        "host {} (cluster {})",
        cell(&answer["host_id"]),
        cell(&answer["bootstrap_servers"])
    );
    let mut t = table([
        "topic",
        "partition",
        "owner",
        "term",
        "replicated",
        "lag",
        "here",
    ]);
    for p in answer["partitions"].as_array().into_iter().flatten() {
        let lag = match (
            p["kafka_high_water_mark"].as_u64(),
            p["replicated_offset"].as_u64(),
        ) {
            (Some(h), Some(r)) => h.saturating_sub(r).to_string(),
            _ => "?".into(),
        };
        t.add_row([
            cell(&p["topic"]),
            cell(&p["partition"]),
            cell(&p["owner"]),
            cell(&p["term"]),
            cell(&p["replicated_offset"]),
            lag,
            if p["owned"].as_bool() == Some(true) {
                "owner".into()
            } else {
                String::new()
            },
        ]);
    }
    println!("{t}");
    Ok(())
}
