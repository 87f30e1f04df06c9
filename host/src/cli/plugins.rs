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
        /// Before the swap, replay recent history through the running version and this one
        /// (nothing written) and refuse the deploy when their effects differ or it fails.
        #[arg(long)]
        gate: bool,
        /// Events the gate replays (streams, for an aggregate); default 1000.
        #[arg(long, requires = "gate")]
        last: Option<usize>,
        /// Deploy even when the gate finds different effects (never when the candidate fails).
        #[arg(long, requires = "gate")]
        accept_changes: bool,
    },
    /// A plugin's running version, the versions before it and its gated deploys' verdicts.
    History { name: String },
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
            gate,
            last,
            accept_changes,
        } => {
            let bytes = std::fs::read(&component)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", component.display()))?;
            let mut query = Vec::new();
            if let Some(l) = label {
                query.push(format!("version={}", segment(&l)));
            }
            if gate {
                query.push("gate=true".to_owned());
            }
            if let Some(n) = last {
                query.push(format!("last={n}"));
            }
            if accept_changes {
                query.push("accept_changes=true".to_owned());
            }
            let mut path = format!("/v1/admin/plugins/{}/deploy", segment(&name));
            if !query.is_empty() {
                path.push_str(&format!("?{}", query.join("&")));
            }
            let report = Client::new(&args.remote).post_bytes(&path, bytes)?;
            print_report(&args.remote, &report)
        }
        Action::History { name } => history(&args.remote, &name),
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
    if let Some(gate) = report.get("gate").filter(|g| !g.is_null()) {
        println!(
            "gate {}: {} {} replayed, {} differing ({:.1} ms)",
            cell(&gate["verdict"]),
            cell(&gate["replayed"]),
            cell(&gate["unit"]),
            cell(&gate["differing"]),
            gate["elapsed_ms"].as_f64().unwrap_or_default()
        );
        for case in gate["cases"].as_array().into_iter().flatten() {
            println!("  {}", case_line(case));
        }
    }
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

/// One differing case of a gate: where, what, and the fields (or values) that differ.
fn case_line(case: &serde_json::Value) -> String {
    let fields: Vec<String> = case["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            format!(
                "{}: {} -> {}",
                cell(&f["path"]),
                f["running"],
                f["candidate"]
            )
        })
        .collect();
    let change = if fields.is_empty() {
        format!("{} -> {}", case["running"], case["candidate"])
    } else {
        fields.join("; ")
    };
    format!(
        "{} at {} {}: {change}",
        cell(&case["effect"]),
        cell(&case["at"]),
        cell(&case["key"])
    )
}

fn history(remote: &Remote, name: &str) -> anyhow::Result<()> {
    let answer = Client::new(remote).get(&format!("/v1/admin/plugins/{}", segment(name)))?;
    if remote.json {
        return print_json(&answer);
    }
    let version = |v: &serde_json::Value| match v["label"].as_str() {
        Some(l) => format!("{l}+{}", cell(&v["content_hash"])),
        None => cell(&v["content_hash"]),
    };
    let mut t = table(["", "version", "deployed at (ms)"]);
    t.add_row([
        "current".to_owned(),
        version(&answer["current"]["version"]),
        cell(&answer["current"]["deployed_at_ms"]),
    ]);
    for p in answer["previous"].as_array().into_iter().flatten().rev() {
        t.add_row([
            "previous".to_owned(),
            version(&p["version"]),
            cell(&p["deployed_at_ms"]),
        ]);
    }
    println!("{t}");
    let gates = answer["gates"].as_array().cloned().unwrap_or_default();
    if !gates.is_empty() {
        let mut t = table([
            "gated candidate",
            "verdict",
            "replayed",
            "differing",
            "at (ms)",
        ]);
        for g in gates.iter().rev() {
            t.add_row([
                version(&g["candidate"]),
                cell(&g["verdict"]),
                format!("{} {}", cell(&g["replayed"]), cell(&g["unit"])),
                cell(&g["differing"]),
                cell(&g["at_ms"]),
            ]);
        }
        println!("{t}");
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
