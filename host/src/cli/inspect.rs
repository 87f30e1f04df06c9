//! `factline inspect --data-dir DIR`: a stopped host's topics, partitions, high-water marks,
//! group offsets with lag, dead-letter counts and format version, read without writing.

use std::path::PathBuf;

use factline_host::{FORMAT_VERSION, inspect};

use super::client::table;

#[derive(clap::Args)]
pub struct Args {
    /// The data directory (`data_dir` of the host's config).
    #[arg(long)]
    data_dir: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let report = inspect(&args.data_dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("data directory {}", args.data_dir.display());
    match report.format_version {
        Some(v) => println!("format version {v} (this build reads {FORMAT_VERSION})"),
        None => println!("format version: none (never initialized)"),
    }
    let mut t = table(["topic", "partition", "high-water mark"]);
    for topic in &report.topics {
        for (p, hwm) in topic.high_water_marks.iter().enumerate() {
            t.add_row([topic.name.clone(), p.to_string(), hwm.to_string()]);
        }
        let total: u64 = topic.high_water_marks.iter().sum();
        t.add_row([topic.name.clone(), "all".into(), total.to_string()]);
    }
    println!("\n{t}");
    if report.groups.is_empty() {
        println!("\nno consumer group offsets");
    } else {
        let mut t = table(["group", "topic", "partition", "committed", "lag"]);
        for g in &report.groups {
            t.add_row([
                g.group.clone(),
                g.topic.clone(),
                g.partition.to_string(),
                g.committed.to_string(),
                g.lag.to_string(),
            ]);
        }
        println!("\n{t}");
    }
    if report.dead_letters.is_empty() {
        println!("\nno dead letters");
    } else {
        let mut t = table(["group", "dead letters", "blocking"]);
        for d in &report.dead_letters {
            t.add_row([
                d.group.clone(),
                d.parked.to_string(),
                d.blocking.to_string(),
            ]);
        }
        println!("\n{t}");
    }
    if !report.read_models.is_empty() {
        let mut t = table(["read model", "rows"]);
        for (scope, rows) in &report.read_models {
            t.add_row([scope.clone(), rows.to_string()]);
        }
        println!("\n{t}");
    }
    if !report.projections.is_empty() {
        let mut t = table([
            "projector",
            "live generation",
            "read-model version",
            "plugin",
            "rebuilding",
            "retired",
        ]);
        for (name, r) in &report.projections {
            t.add_row([
                name.clone(),
                r.active.generation.to_string(),
                r.active.read_model_version.to_string(),
                r.active.plugin_version.clone(),
                r.rebuild.as_ref().map_or_else(String::new, |p| {
                    format!(
                        "generation {} (read-model version {})",
                        p.generation, p.read_model_version
                    )
                }),
                format!("{:?}", r.retired),
            ]);
        }
        println!("\n{t}");
    }
    Ok(())
}
