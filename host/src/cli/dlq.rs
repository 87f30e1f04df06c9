//! `factline dlq ...`: the dead-letter queue of a running host through its admin API (the
//! default: `--host`), or of a stopped host's data directory (`--config`; `--data-dir` for
//! list and show, which need no plugin). The running host holds the directory's lock, so the
//! offline mode refuses while it runs.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use factline_host::Config;
use factline_host::ConsumerGroup;
use factline_host::{DeadLetter, DeadLetterKey, EventLog, LogOptions, OpenError, Replay};
use serde_json::Value;

use super::client::{Client, Remote, segment};

#[derive(clap::Args)]
pub struct Args {
    /// Offline: a stopped host's configuration file (names the data directory and plugins).
    #[arg(long, global = true, env = "FACTLINE_CONFIG")]
    config: Option<PathBuf>,
    /// Offline: a stopped host's data directory (list and show only).
    #[arg(long, global = true, conflicts_with = "config")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Parked events, oldest first.
    List {
        /// Only this consumer group.
        #[arg(long)]
        group: Option<String>,
    },
    /// One parked event with its failure and guest backtrace.
    Show(Key),
    /// Redeliver the event to the configured plugin version (`skip`: run it now and commit
    /// its effects; `block`: unblock the partition so the host resumes at it).
    Retry(Key),
    /// Drop the event (a `block`ed partition moves past it).
    Discard(Key),
    /// Run the parked event through a candidate build of the group's plugin and show its
    /// effects or its failure, writing nothing (offline: needs --config). `--deploy` installs
    /// the candidate as the plugin's component and retries, in offset order, every dead letter
    /// of the group that it fixes.
    Replay {
        #[command(flatten)]
        key: Key,
        /// The candidate component.
        #[arg(long = "with", value_name = "FILE")]
        candidate: PathBuf,
        #[arg(long)]
        deploy: bool,
    },
}

#[derive(clap::Args)]
pub(super) struct Key {
    group: String,
    topic: String,
    partition: u32,
    offset: u64,
}

impl Key {
    pub(super) fn key(&self) -> DeadLetterKey {
        DeadLetterKey {
            group: self.group.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let json = args.remote.json;
    let (config, log) = match (&args.config, &args.data_dir) {
        (Some(path), _) => {
            let config = Config::load(path)?;
            let log = open(
                &config.data_dir,
                LogOptions::with_topics(config.topics.iter().cloned()),
            )?;
            (Some(config), log)
        }
        (None, Some(dir)) => {
            if matches!(
                args.action,
                Action::Retry(_) | Action::Discard(_) | Action::Replay { .. }
            ) {
                anyhow::bail!(
                    "retry, discard and replay run the group's plugin: give the host's --config instead of --data-dir"
                );
            }
            (None, open(dir, LogOptions::default())?)
        }
        (None, None) => return remote(&args.remote, args.action),
    };
    match args.action {
        Action::List { group } => {
            let letters = log.dead_letters(group.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else {
                print_table(&letters);
            }
        }
        Action::Show(k) => {
            let letter = log
                .dead_letter(&k.key())?
                .with_context(|| format!("no dead letter at {}", describe(&k.key())))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&letter)?);
            } else {
                print_one(&letter);
            }
        }
        Action::Retry(k) => {
            let config = config.expect("retry is refused without a config above");
            let mut group = open_group(&config, &log, &k.group)?;
            let outcome = group.retry_dead_letter(&k.key())?;
            println!("{}: {outcome:?}", describe(&k.key()));
        }
        Action::Discard(k) => {
            let config = config.expect("discard is refused without a config above");
            let mut group = open_group(&config, &log, &k.group)?;
            group.discard_dead_letter(&k.key())?;
            println!("{}: discarded", describe(&k.key()));
        }
        Action::Replay {
            key,
            candidate,
            deploy,
        } => {
            let config = config.expect("replay is refused without a config above");
            replay(&config, &log, &key.key(), &candidate, deploy, json)?;
        }
    }
    Ok(())
}

/// `dlq replay`: the group as the host would run it, but with the candidate's component.
fn replay(
    config: &Config,
    log: &EventLog,
    key: &DeadLetterKey,
    candidate: &std::path::Path,
    deploy: bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut with_candidate = config.clone();
    let plugin = with_candidate
        .plugins
        .iter_mut()
        .find(|p| p.name == key.group)
        .with_context(|| format!("no plugin {} in the configuration", key.group))?;
    let installed = std::mem::replace(&mut plugin.component, candidate.to_path_buf());
    let mut group = open_group(&with_candidate, log, &key.group)?;
    let replayed = group.replay_dead_letter(key)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&replay_json(key, &replayed))?
        );
    } else {
        print_replay(key, candidate, &replayed);
    }
    if !deploy {
        return Ok(());
    }
    // The candidate becomes the plugin's component first (a restart runs it), then every dead
    // letter of the group it fixes is retried with it, oldest position first.
    let tmp = installed.with_extension("wasm.deploying");
    std::fs::copy(candidate, &tmp)
        .and_then(|_| std::fs::rename(&tmp, &installed))
        .with_context(|| {
            format!(
                "installing {} as {}",
                candidate.display(),
                installed.display()
            )
        })?;
    println!(
        "deployed {} as {}",
        candidate.display(),
        installed.display()
    );
    let mut letters = group.dead_letters()?;
    letters
        .sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    let (mut fixed, mut left) = (0, 0);
    for letter in letters {
        let key = letter.key();
        match group.replay_dead_letter(&key)? {
            Replay::Effects(e) if e.refused.is_empty() => {
                let outcome = group.retry_dead_letter(&key)?;
                println!("{}: {outcome:?}", describe(&key));
                fixed += 1;
            }
            Replay::Effects(e) => {
                let r = &e.refused[0];
                println!(
                    "{}: still refused ({}: {})",
                    describe(&key),
                    r.kind,
                    r.message
                );
                left += 1;
            }
            Replay::Failed(f) => {
                println!(
                    "{}: still fails ({}: {})",
                    describe(&key),
                    f.kind,
                    f.message
                );
                left += 1;
            }
        }
    }
    println!("{fixed} dead letter(s) retried, {left} left parked");
    Ok(())
}

fn print_replay(key: &DeadLetterKey, candidate: &std::path::Path, replayed: &Replay) {
    println!(
        "{} with {} (nothing written):",
        describe(key),
        candidate.display()
    );
    print_outcome(replayed);
}

/// A replay's failure (with the guest backtrace) or its effects, indented under its title.
pub(super) fn print_outcome(replayed: &Replay) {
    match replayed {
        Replay::Failed(f) => {
            println!("  fails: {}: {}", f.kind, f.message);
            if let Some(bt) = &f.backtrace {
                println!("  guest backtrace:\n{bt}");
            }
        }
        Replay::Effects(e) if e.is_empty() => println!("  succeeds, with no effects"),
        Replay::Effects(e) => {
            println!("  succeeds, with these effects:");
            for line in effect_lines(e) {
                println!("    {line}");
            }
        }
    }
}

/// One line per effect: read-model writes, appended events, saga moves, refusals.
fn effect_lines(e: &factline_host::Effects) -> Vec<String> {
    let mut lines = Vec::new();
    for w in &e.read_model_writes {
        lines.push(match &w.value {
            Some(v) => format!("read model {} {} = {}", w.scope, w.key, value_json(v)),
            None => format!("read model {} {} deleted", w.scope, w.key),
        });
    }
    for (stream, _, events) in &e.appends {
        for event in events {
            lines.push(format!(
                "append {stream} {} {}",
                event.event_type,
                value_json(&event.payload)
            ));
        }
    }
    for w in &e.saga_writes {
        let status = rmp_serde::from_slice::<factline_host::SagaInstance>(&w.record)
            .map_or_else(|_| "?".to_owned(), |i| i.status.to_string());
        lines.push(format!("saga {} {} -> {status}", w.saga, w.instance_id));
    }
    for r in &e.refused {
        lines.push(format!("refused {}: {}", r.kind, r.message));
    }
    lines
}

fn value_json(bytes: &[u8]) -> Value {
    factline_guest::codec::msgpack_to_json(bytes)
        .unwrap_or_else(|_| Value::String(format!("<{} bytes>", bytes.len())))
}

pub(super) fn replay_json(key: &DeadLetterKey, replayed: &Replay) -> Value {
    match replayed {
        Replay::Failed(f) => serde_json::json!({
            "dead_letter": key, "outcome": "failed", "kind": f.kind, "message": f.message,
            "backtrace": f.backtrace,
        }),
        Replay::Effects(e) => serde_json::json!({
            "dead_letter": key, "outcome": if e.refused.is_empty() { "succeeded" } else { "refused" },
            "effects": effect_lines(e),
        }),
    }
}

/// Opens a stopped host's data directory; refuses a missing one (instead of creating it) and
/// one a running host holds.
pub(super) fn open(dir: &std::path::Path, options: LogOptions) -> anyhow::Result<EventLog> {
    let db = dir.join(factline_host::DB_FILE);
    anyhow::ensure!(db.is_file(), "{} holds no factline data", dir.display());
    match EventLog::open(dir, options) {
        Err(OpenError::AlreadyOpen { path }) => anyhow::bail!(
            "{path} is in use by a running factline host; stop it first, or manage its dead letters through its admin API (--host)"
        ),
        other => other.context("opening the data directory"),
    }
}

/// The same actions through a running host's admin API.
fn remote(remote: &Remote, action: Action) -> anyhow::Result<()> {
    let client = Client::new(remote);
    let list = || -> anyhow::Result<Vec<DeadLetter>> {
        let answer = client.get("/v1/admin/dlq")?;
        serde_json::from_value(answer["dead_letters"].clone())
            .context("the host's dead-letter list")
    };
    match action {
        Action::List { group } => {
            let letters: Vec<DeadLetter> = list()?
                .into_iter()
                .filter(|l| group.as_ref().is_none_or(|g| &l.group == g))
                .collect();
            if remote.json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else {
                print_table(&letters);
            }
        }
        Action::Show(k) => {
            let key = k.key();
            let letter = list()?
                .into_iter()
                .find(|l| l.key() == key)
                .with_context(|| format!("no dead letter at {}", describe(&key)))?;
            if remote.json {
                println!("{}", serde_json::to_string_pretty(&letter)?);
            } else {
                print_one(&letter);
            }
        }
        Action::Retry(k) => {
            let answer = client.post(&action_path(&k, "retry"), None)?;
            report(
                remote,
                &k,
                &answer,
                answer["retried"].as_str().unwrap_or("retried"),
            )?;
        }
        Action::Discard(k) => {
            let answer = client.post(&action_path(&k, "discard"), None)?;
            report(remote, &k, &answer, "discarded")?;
        }
        Action::Replay { .. } => anyhow::bail!(
            "replay runs the candidate against a stopped host's directory: give its --config"
        ),
    }
    Ok(())
}

fn action_path(k: &Key, action: &str) -> String {
    dead_letter_path(&k.key(), action)
}

/// The admin API's path of `action` on one dead letter.
pub(super) fn dead_letter_path(k: &DeadLetterKey, action: &str) -> String {
    format!(
        "/v1/admin/dlq/{}/{}/{}/{}/{action}",
        segment(&k.group),
        segment(&k.topic),
        k.partition,
        k.offset
    )
}

fn report(remote: &Remote, k: &Key, answer: &Value, what: &str) -> anyhow::Result<()> {
    if remote.json {
        return super::client::print_json(answer);
    }
    println!("{}: {what}", describe(&k.key()));
    Ok(())
}

/// The group as the host would run it, with the configured (current) plugin version.
fn open_group(config: &Config, log: &EventLog, name: &str) -> anyhow::Result<ConsumerGroup> {
    Ok(factline_host::open_group(config, log, name)?)
}

pub(super) fn describe(k: &DeadLetterKey) -> String {
    format!("{} {}/{}@{}", k.group, k.topic, k.partition, k.offset)
}

fn print_table(letters: &[DeadLetter]) {
    if letters.is_empty() {
        println!("no dead letters");
        return;
    }
    println!(
        "{:<20} {:<24} {:<22} {:<13} {:>8} {:<6} message",
        "group", "position", "event type", "failure", "attempts", "block"
    );
    for l in letters {
        let position = format!("{}/{}@{}", l.topic, l.partition, l.offset);
        let message: String = l.message.chars().take(60).collect();
        println!(
            "{:<20} {:<24} {:<22} {:<13} {:>8} {:<6} {message}",
            l.group, position, l.event_type, l.failure_kind, l.attempts, l.blocking
        );
    }
}

pub(super) fn print_one(l: &DeadLetter) {
    println!("group          {}", l.group);
    println!("position       {}/{}@{}", l.topic, l.partition, l.offset);
    println!(
        "event          {} {} (stream {})",
        l.event_type, l.event_id, l.stream
    );
    println!("failure        {}: {}", l.failure_kind, l.message);
    println!("attempts       {}", l.attempts);
    println!("plugin version {}", l.plugin_version);
    println!("first failure  {} ms", l.first_failed_at);
    println!("last failure   {} ms", l.last_failed_at);
    println!(
        "policy         {}",
        if l.blocking {
            "block (partition waits)"
        } else {
            "skip (partition went on)"
        }
    );
    if let Some(bt) = &l.backtrace {
        println!("guest backtrace:\n{bt}");
    }
}
