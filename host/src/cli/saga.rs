//! `factline saga ...`: the saga log. Against a running host through its API (list, show), or
//! with `--config` on a stopped host's data directory (list, show, and retry an instance that
//! needs attention; the running host holds the directory's lock).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use factline_host::Config;
use factline_host::SagaInstance;
use factline_host::{EventLog, LogOptions, OpenError};
use serde_json::Value;

use super::client::{Client, Remote, segment};

#[derive(clap::Args)]
pub struct Args {
    /// A stopped host's configuration file (names the data directory); without it, the
    /// running host at `--host` is asked.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Every instance with its status and, if it failed, the step and reason.
    List {
        /// Only this saga.
        #[arg(long)]
        saga: Option<String>,
    },
    /// One instance's log: every step with its status and times, and its history.
    Show {
        id: String,
        /// The saga, when instance ids repeat across sagas.
        #[arg(long)]
        saga: Option<String>,
    },
    /// Send an instance that needs attention back to compensating (the host resumes it).
    Retry {
        id: String,
        #[arg(long)]
        saga: Option<String>,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let Some(config) = &args.config else {
        return remote(&args.remote, args.action);
    };
    let json = args.remote.json;
    let config = Config::load(config)?;
    let log = match EventLog::open(
        &config.data_dir,
        LogOptions::with_topics(config.topics.iter().cloned()),
    ) {
        Err(OpenError::AlreadyOpen { path }) => {
            anyhow::bail!("{path} is in use by a running factline host; stop it first")
        }
        other => other.context("opening the data directory")?,
    };
    match args.action {
        Action::List { saga } => {
            let all = factline_host::saga_instances(&log, saga.as_deref())?;
            if json {
                let all: Vec<Value> = all.iter().map(SagaInstance::to_json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                print_list(&all);
            }
        }
        Action::Show { id, saga } => {
            let i = find(&log, saga.as_deref(), &id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&i.to_json())?);
            } else {
                print_one(&i);
            }
        }
        Action::Retry { id, saga } => {
            let i = find(&log, saga.as_deref(), &id)?;
            factline_host::retry_saga_instance(&log, &i.saga, &i.instance_id)?;
            println!(
                "{} {}: back to compensating; the host resumes it when it starts",
                i.saga, i.instance_id
            );
        }
    }
    Ok(())
}

/// The same views through a running host's API.
fn remote(remote: &Remote, action: Action) -> anyhow::Result<()> {
    let client = Client::new(remote);
    let instances = |saga: Option<&str>| -> anyhow::Result<Vec<SagaInstance>> {
        let path = match saga {
            Some(s) => format!("/v1/admin/sagas?saga={}", segment(s)),
            None => "/v1/admin/sagas".to_owned(),
        };
        let Value::Array(all) = client.get(&path)?["instances"].take() else {
            anyhow::bail!("the host answered no list of saga instances");
        };
        all.into_iter().map(from_api).collect()
    };
    match action {
        Action::List { saga } => {
            let all = instances(saga.as_deref())?;
            if remote.json {
                let all: Vec<Value> = all.iter().map(SagaInstance::to_json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                print_list(&all);
            }
        }
        Action::Show { id, saga } => {
            let i = instances(saga.as_deref())?
                .into_iter()
                .find(|i| i.instance_id == id)
                .with_context(|| format!("no saga instance {id:?}"))?;
            if remote.json {
                println!("{}", serde_json::to_string_pretty(&i.to_json())?);
            } else {
                print_one(&i);
            }
        }
        Action::Retry { .. } => anyhow::bail!(
            "retry works on a stopped host's directory: stop the host and pass --config"
        ),
    }
    Ok(())
}

/// An instance as the API shows it (`data` decoded to JSON), back as a record: the data is
/// encoded as MessagePack again.
fn from_api(mut v: Value) -> anyhow::Result<SagaInstance> {
    let data = match v["data"].take() {
        Value::Null => Vec::new(),
        d => factline_guest::codec::json_to_msgpack(&d),
    };
    v["data"] = Value::from(data);
    Ok(serde_json::from_value(v)?)
}

fn find(log: &EventLog, saga: Option<&str>, id: &str) -> anyhow::Result<SagaInstance> {
    factline_host::find_saga_instance(log, saga, id)?
        .with_context(|| format!("no saga instance {id:?}"))
}

fn print_list(all: &[SagaInstance]) {
    println!(
        "{:<20} {:<24} {:<16} {:<10} {:<20} REASON",
        "SAGA", "INSTANCE", "STATUS", "VERSION", "FAILED STEP"
    );
    for i in all {
        println!(
            "{:<20} {:<24} {:<16} {:<10} {:<20} {}",
            i.saga,
            i.instance_id,
            i.status.to_string(),
            short(&i.plugin_version),
            i.failed_step.as_deref().unwrap_or("-"),
            i.attention
                .as_deref()
                .or(i.failure_reason.as_deref())
                .unwrap_or("")
        );
    }
    let counts = factline_host::count_sagas_by_status(all);
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!("{} instances: {}", all.len(), summary.join(", "));
}

fn print_one(i: &SagaInstance) {
    println!("saga:        {}", i.saga);
    println!("instance:    {}", i.instance_id);
    println!("status:      {}", i.status);
    println!("version:     {}", i.plugin_version);
    println!("correlation: {}", i.correlation_id);
    if let Some(step) = &i.failed_step {
        println!(
            "failed step: {step}: {}",
            i.failure_reason.as_deref().unwrap_or("")
        );
    }
    if let Some(a) = &i.attention {
        println!("attention:   {a}");
    }
    println!("steps:");
    for s in &i.steps {
        println!(
            "  {:<22} {:<12} sent {:<14} updated {:<14}{}",
            s.name,
            s.status.to_string(),
            time(s.sent_at),
            time(s.updated_at),
            s.compensation_error
                .as_ref()
                .map(|e| format!(" compensation failed {}x: {e}", s.compensation_attempts))
                .unwrap_or_default()
        );
    }
    println!("history:");
    for h in &i.history {
        println!("  {:<14} {:<22} {}", h.at, h.step, h.what);
    }
}

fn short(hash: &str) -> &str {
    &hash[..12.min(hash.len())]
}

fn time(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".to_owned(), |t| t.to_string())
}
