//! `factline test <plugin.wasm> <scenarios>...`: runs scenario files (docs/scenario-files.md)
//! against a component written in any language, in the real engine with the default limits.
//! Prints one line per scenario, a diff per failure, and exits non-zero if any failed.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::Context;
use factline_host::{ScenarioError, ScenarioRunner};

#[derive(clap::Args)]
pub struct Args {
    /// The component under test (`.wasm`).
    plugin: PathBuf,
    /// Scenario files, JSON or TOML.
    #[arg(required = true)]
    scenarios: Vec<PathBuf>,
    /// Only the scenarios whose name contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Cache of compiled components [default: ~/.cache/factline/artifacts].
    #[arg(long, env = "FACTLINE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile the component every time.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cache_dir = match (args.no_cache, args.cache_dir) {
        (true, _) => None,
        (false, Some(dir)) => Some(dir),
        (false, None) => default_cache_dir(),
    };
    let files = args
        .scenarios
        .iter()
        .map(|path| factline_host::load_scenario_file(path))
        .collect::<Result<Vec<_>, _>>()?;
    let runner = ScenarioRunner::with_cache(cache_dir).context("starting the engine")?;
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut reported = HashSet::new();
    for file in &files {
        for s in &file.scenarios {
            if args
                .filter
                .as_ref()
                .is_some_and(|f| !s.name().contains(f.as_str()))
            {
                continue;
            }
            let kind = factline_host::scenario_kind_of(s);
            // A component that does not load fails every scenario alike: say it once.
            let plugin = runner.plugin(&args.plugin, kind)?;
            if reported.insert(kind) {
                println!(
                    "loaded {} as {kind} in {:.2?} (artifact cache: {:?})",
                    args.plugin.display(),
                    plugin.load_time,
                    plugin.cache_outcome
                );
            }
            match runner.run(&args.plugin, s) {
                Ok(()) => {
                    passed += 1;
                    println!("ok      {}", s.name());
                }
                Err(e) => {
                    failed += 1;
                    println!("FAILED  {}", s.name());
                    println!("{}", indent(&report(&e)));
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if passed + failed == 0 {
        anyhow::bail!("no scenario matched");
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} scenarios failed against {}",
            passed + failed,
            args.plugin.display()
        );
    }
    Ok(())
}

fn report(e: &ScenarioError) -> String {
    match e {
        ScenarioError::Mismatch(m) => m.to_string(),
        other => other.to_string(),
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("factline").join("artifacts"))
}
