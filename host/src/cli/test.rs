//! `factline test <plugin.wasm> <scenarios>...`: runs scenario files (docs/scenario-files.md)
//! against a component written in any language, in the real engine with the default limits.
//! Prints one line per scenario, a diff per failure, and exits non-zero if any failed.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::Context;
use factline_guest::scenario::Scenario;
use factline_host::{PluginKind, ScenarioError, ScenarioRunner};

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
        // Its message already names the cause: not again as a source in the error chain.
        .map(|path| factline_host::load_scenario_file(path).map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let runner = ScenarioRunner::with_cache(cache_dir).context("starting the engine")?;
    let chosen: Vec<&Scenario> = files
        .iter()
        .flat_map(|f| &f.scenarios)
        .filter(|s| {
            args.filter
                .as_ref()
                .is_none_or(|f| s.name().contains(f.as_str()))
        })
        .collect();
    // A component is one kind: load it once per kind the scenarios need. A kind it is not
    // (a file mixing kinds, or the wrong component) is said once, and its scenarios are
    // counted as not run rather than aborting the others.
    let mut refused: Vec<(PluginKind, String)> = Vec::new();
    let mut loaded = HashSet::new();
    for s in &chosen {
        let kind = factline_host::scenario_kind_of(s);
        if loaded.contains(&kind) || refused.iter().any(|(k, _)| *k == kind) {
            continue;
        }
        match runner.plugin(&args.plugin, kind) {
            Ok(plugin) => {
                loaded.insert(kind);
                println!(
                    "loaded {} as {kind} in {:.2?} (artifact cache: {:?})",
                    args.plugin.display(),
                    plugin.load_time,
                    plugin.cache_outcome
                );
            }
            Err(e) => {
                let count = chosen
                    .iter()
                    .filter(|s| factline_host::scenario_kind_of(s) == kind)
                    .count();
                println!("NOT RUN {count} {kind} scenario(s): {e}");
                refused.push((kind, e.to_string()));
            }
        }
    }
    let (mut passed, mut failed, mut not_run) = (0usize, 0usize, 0usize);
    for s in &chosen {
        if !loaded.contains(&factline_host::scenario_kind_of(s)) {
            not_run += 1;
            continue;
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
    if not_run > 0 {
        println!("{passed} passed, {failed} failed, {not_run} not run");
    } else {
        println!("{passed} passed, {failed} failed");
    }
    if chosen.is_empty() {
        anyhow::bail!("no scenario matched");
    }
    if failed + not_run > 0 {
        let kinds: Vec<String> = refused.iter().map(|(k, _)| k.to_string()).collect();
        let not_run = match not_run {
            0 => String::new(),
            n => format!(
                "; {n} not run: {} is not a {}",
                args.plugin.display(),
                kinds.join(" or a ")
            ),
        };
        anyhow::bail!(
            "{failed} of {} scenarios failed against {}{not_run}",
            chosen.len(),
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
