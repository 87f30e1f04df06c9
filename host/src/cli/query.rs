//! `factline query <projector> [<key> | --prefix P [--after KEY]]`: a read model of a running
//! host, a page at a time.

use serde_json::Value;

use super::client::{Client, Remote, cell, print_json, segment, table};

#[derive(clap::Args)]
pub struct Args {
    /// The projector (its read-model scope).
    projector: String,
    /// One row's key.
    #[arg(conflicts_with = "prefix")]
    key: Option<String>,
    /// Rows whose key starts with this (all rows when neither a key nor a prefix is given).
    #[arg(long)]
    prefix: Option<String>,
    /// Rows after this key (the `next` a page before printed).
    #[arg(long, conflicts_with = "key")]
    after: Option<String>,
    /// Most rows (1 to 10000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let client = Client::new(&args.remote);
    let projector = segment(&args.projector);
    let mut footer = None;
    let rows: Vec<(String, Value)> = match &args.key {
        Some(key) => {
            let row = client.get(&format!("/v1/read-models/{projector}/{}", segment(key)))?;
            if args.remote.json {
                return print_json(&row);
            }
            vec![(key.clone(), row)]
        }
        None => {
            let prefix = args.prefix.as_deref().unwrap_or_default();
            let after = args
                .after
                .as_deref()
                .map(|a| format!("&after={}", segment(a)))
                .unwrap_or_default();
            let answer = client.get(&format!(
                "/v1/read-models/{projector}?prefix={}&limit={}{after}",
                segment(prefix),
                args.limit
            ))?;
            if args.remote.json {
                return print_json(&answer);
            }
            let more = if answer["count_exact"] == true {
                ""
            } else {
                "+"
            };
            footer = Some(match answer["next"].as_str() {
                Some(next) => format!(
                    "{}{more} rows match; next page: --after {next}",
                    cell(&answer["count"])
                ),
                None => format!("{}{more} rows match; last page", cell(&answer["count"])),
            });
            answer["rows"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| (cell(&r["key"]), r["value"].clone()))
                .collect()
        }
    };
    if rows.is_empty() {
        println!("no rows");
        return Ok(());
    }
    let mut t = table(["key", "value"]);
    for (key, value) in rows {
        t.add_row([key, cell(&value)]);
    }
    println!("{t}");
    if let Some(footer) = footer {
        println!("{footer}");
    }
    Ok(())
}
