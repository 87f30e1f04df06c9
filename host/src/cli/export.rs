//! `factline export GROUP TOPIC PARTITION OFFSET [-o FILE]`: one dead letter's context as one
//! file (`docs/export-format.md`), from a running host's admin API (the default: `--host`) or
//! a stopped host's directory (`--config`), for `factline replay FILE` on another machine.

use std::path::PathBuf;

use anyhow::Context;
use factline_host::{Config, LogOptions, MAX_EXPORT_BYTES};

use super::client::{Client, Remote};
use super::dlq::{Key, dead_letter_path, describe};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    key: Key,
    /// Where to write the file (default: `<group>-<topic>-<partition>-<offset>.factline-export`).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Offline: a stopped host's configuration file (components are read from its files).
    #[arg(long, env = "FACTLINE_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let key = args.key.key();
    let bytes = match &args.config {
        Some(path) => {
            let config = Config::load(path)?;
            let log = super::dlq::open(
                &config.data_dir,
                LogOptions::with_topics(config.topics.iter().cloned()),
            )?;
            factline_host::export_dead_letter(&config, &log, &key, |name, version| {
                component_file(&config, name, version)
            })?
        }
        None => Client::new(&args.remote)
            .get_bytes(&dead_letter_path(&key, "export"), MAX_EXPORT_BYTES)?,
    };
    let output = args.output.unwrap_or_else(|| {
        PathBuf::from(format!(
            "{}-{}-{}-{}.factline-export",
            key.group, key.topic, key.partition, key.offset
        ))
    });
    std::fs::write(&output, &bytes).with_context(|| format!("writing {}", output.display()))?;
    println!(
        "{}: exported to {} ({} bytes)",
        describe(&key),
        output.display(),
        bytes.len()
    );
    Ok(())
}

/// A stopped host's component file of `name`: with `version`, only if the file is that
/// version (its display ends in a prefix of the file's content hash, or is the hash).
fn component_file(
    config: &Config,
    name: &str,
    version: Option<&str>,
) -> Option<std::sync::Arc<[u8]>> {
    let bytes = std::fs::read(&config.plugin(name)?.component).ok()?;
    if let Some(v) = version {
        let hash = factline_host::content_hash(&bytes);
        let short = v.rsplit('+').next().unwrap_or(v);
        if short.is_empty() || !hash.starts_with(short) {
            return None;
        }
    }
    Some(bytes.into())
}
