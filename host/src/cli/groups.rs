//! `factline groups`: the consumer groups of a running host with their lag per partition.

use super::client::{Client, Remote, cell, print_json, table};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let answer = Client::new(&args.remote).get("/v1/admin/groups")?;
    if args.remote.json {
        return print_json(&answer);
    }
    let groups = answer["groups"].as_array().cloned().unwrap_or_default();
    if groups.is_empty() {
        println!("no consumer groups");
        return Ok(());
    }
    let mut t = table(["group", "topic", "partition", "committed", "lag"]);
    for g in &groups {
        for p in g["partitions"].as_array().into_iter().flatten() {
            t.add_row([
                cell(&g["group"]),
                cell(&p["topic"]),
                cell(&p["partition"]),
                cell(&p["committed"]),
                cell(&p["lag"]),
            ]);
        }
        t.add_row([
            cell(&g["group"]),
            "all".into(),
            String::new(),
            String::new(),
            cell(&g["lag"]),
        ]);
    }
    println!("{t}");
    Ok(())
}
