//! `factline plugins`: the plugins of a running host and their versions; deploy a new version,
//! roll back to the previous one.

use clap::Subcommand;

use super::client::{Client, Remote, cell, print_json, segment, table};

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
    /// Deploy a component file as the new version of a running plugin (compiled and validated
    /// off the processing path, swapped between batches; refused = the old version stays).
    Deploy {
        name: String,
        component: std::path::PathBuf,
        /// A version label recorded with the content hash.
        #[arg(long = "version")]
        label: Option<String>,
    },
    /// Return a plugin to the version that ran before the current one.
    Rollback { name: String },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action.unwrap_or(Action::List) {
        Action::List => list(&args.remote),
        Action::Deploy {
            name,
            component,
            label,
        } => {
            let bytes = std::fs::read(&component)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", component.display()))?;
            let mut path = format!("/v1/admin/plugins/{}/deploy", segment(&name));
            if let Some(l) = label {
                path.push_str(&format!("?version={}", segment(&l)));
            }
            let report = Client::new(&args.remote).post_bytes(&path, bytes)?;
            print_report(&args.remote, &report)
        }
        Action::Rollback { name } => {
            let path = format!("/v1/admin/plugins/{}/rollback", segment(&name));
            let report = Client::new(&args.remote).post(&path, None)?;
            print_report(&args.remote, &report)
        }
    }
}

fn print_report(remote: &Remote, report: &serde_json::Value) -> anyhow::Result<()> {
    if remote.json {
        return print_json(report);
    }
    let version = |v: &serde_json::Value| {
        let hash = v["content_hash"].as_str().unwrap_or_default();
        let short = &hash[..12.min(hash.len())];
        match v["label"].as_str() {
            Some(l) => format!("{l}+{short}"),
            None => short.to_owned(),
        }
    };
    if !report["rebuild"].is_null() {
        println!(
            "{}: {} declares another read-model version: rebuilding it beside the live one; {} stays current until it switches (watch it with `factline projector show {}`)",
            cell(&report["plugin"]),
            version(&report["current"]),
            version(&report["previous"]),
            cell(&report["plugin"]),
        );
    } else if report["swapped"] == true {
        println!(
            "{}: {} -> {} (cache {}, prepare {:.1} ms, swap {:.1} ms)",
            cell(&report["plugin"]),
            version(&report["previous"]),
            version(&report["current"]),
            cell(&report["cache"]),
            report["prepare"].as_f64().unwrap_or_default(),
            report["swap"].as_f64().unwrap_or_default()
        );
    } else {
        println!(
            "{}: already running {}",
            cell(&report["plugin"]),
            version(&report["current"])
        );
    }
    if let Some(e) = report["persist_error"].as_str() {
        eprintln!(
            "warning: the component file was not rewritten ({e}); a restart loads the old one"
        );
    }
    Ok(())
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
