//! `factline new KIND NAME [--lang rust|python|js] [--dir DIR]`: writes a ready plugin project
//! anywhere: the handler, a scenario file, a `build` script, a host configuration and a README.
//! The SDKs come from the factline clone the binary was built from (`--repo` names another):
//! Rust through a path dependency (the crate is its own workspace), Python and JavaScript
//! through the clone's `scripts/componentize`, which resolves the SDK imports itself.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

#[derive(clap::Args)]
pub struct Args {
    /// What to write.
    kind: Kind,
    /// The plugin's name: lowercase letters, digits and dashes, starting with a letter.
    name: String,
    /// The language of the handler.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// Where to write the project (created; must be empty) [default: ./NAME].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The factline clone whose SDKs and tools the project uses [default: the one this binary
    /// was built from].
    #[arg(long, env = "FACTLINE_REPO")]
    repo: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    Aggregate,
    Projector,
    Policy,
    Saga,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Lang {
    Rust,
    Python,
    #[value(alias = "javascript")]
    Js,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Aggregate => "aggregate",
            Kind::Projector => "projector",
            Kind::Policy => "policy",
            Kind::Saga => "saga",
        }
    }
}

/// The clone this binary was built from (`host/..`).
const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const MAX_NAME: usize = 64;

mod templates {
    pub const CARGO_TOML: &str = include_str!("new/templates/rust/Cargo.toml");
    pub const RUST_BUILD: &str = include_str!("new/templates/rust/build");
    pub const GUEST_BUILD: &str = include_str!("new/templates/guest-build");
    pub const FACTLINE_TOML: &str = include_str!("new/templates/factline.toml");
    pub const README: &str = include_str!("new/templates/README.md");
}

fn source(kind: Kind, lang: Lang) -> (&'static str, &'static str) {
    match (lang, kind) {
        (Lang::Rust, Kind::Aggregate) => (
            "src/lib.rs",
            include_str!("new/templates/rust/aggregate.rs"),
        ),
        (Lang::Rust, Kind::Projector) => (
            "src/lib.rs",
            include_str!("new/templates/rust/projector.rs"),
        ),
        (Lang::Rust, Kind::Policy) => ("src/lib.rs", include_str!("new/templates/rust/policy.rs")),
        (Lang::Rust, Kind::Saga) => ("src/lib.rs", include_str!("new/templates/rust/saga.rs")),
        (Lang::Python, Kind::Aggregate) => {
            ("app.py", include_str!("new/templates/python/aggregate.py"))
        }
        (Lang::Python, Kind::Projector) => {
            ("app.py", include_str!("new/templates/python/projector.py"))
        }
        (Lang::Python, Kind::Policy) => ("app.py", include_str!("new/templates/python/policy.py")),
        (Lang::Python, Kind::Saga) => ("app.py", include_str!("new/templates/python/saga.py")),
        (Lang::Js, Kind::Aggregate) => ("index.js", include_str!("new/templates/js/aggregate.js")),
        (Lang::Js, Kind::Projector) => ("index.js", include_str!("new/templates/js/projector.js")),
        (Lang::Js, Kind::Policy) => ("index.js", include_str!("new/templates/js/policy.js")),
        (Lang::Js, Kind::Saga) => ("index.js", include_str!("new/templates/js/saga.js")),
    }
}

fn scenarios(kind: Kind) -> &'static str {
    match kind {
        Kind::Aggregate => include_str!("new/templates/scenarios/aggregate.toml"),
        Kind::Projector => include_str!("new/templates/scenarios/projector.toml"),
        Kind::Policy => include_str!("new/templates/scenarios/policy.toml"),
        Kind::Saga => include_str!("new/templates/scenarios/saga.toml"),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    check_name(&args.name)?;
    let (source_path, source_text) = source(args.kind, args.lang);
    let repo = repo(args.repo.as_deref())?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    refuse_inside_plugins(&repo, &dir)?;
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} exists and is not empty; pick another --dir",
            dir.display()
        );
    }
    let lib = args.name.replace('-', "_");
    let topic = lib.clone();
    let wasm = format!("{lib}.wasm");
    let sdk = repo.join("guest-sdk");
    let vars: Vec<(&str, String)> = vec![
        ("name", args.name.clone()),
        ("lib", lib.clone()),
        ("topic", topic.clone()),
        ("wasm", wasm.clone()),
        ("kind", args.kind.as_str().into()),
        ("repo", repo.display().to_string()),
        ("sdk", sdk.display().to_string()),
        ("source", source_path.into()),
        (
            "language",
            match args.lang {
                Lang::Python => "python",
                _ => "javascript",
            }
            .into(),
        ),
        ("language_name", lang_name(args.lang).into()),
        (
            "build_note",
            match args.lang {
                Lang::Rust => "cargo build --release --target wasm32-wasip2, then a copy",
                Lang::Python => "componentize-py, from the factline clone's .venv",
                Lang::Js => "rolldown + componentize-qjs, from the factline clone's node_modules",
            }
            .into(),
        ),
        (
            "sdk_note",
            match args.lang {
                Lang::Rust => format!(" (`factline-guest` is the path dependency `{}`)", sdk.display()),
                Lang::Python => " (`build` runs its `scripts/componentize`, which bundles `guest-sdk/python/factline.py`)".into(),
                Lang::Js => " (`build` runs its `scripts/componentize`, which resolves `factline-guest/*` to `guest-sdk/js`)".into(),
            },
        ),
        ("topics", topics(args.kind, &topic)),
        ("plugin_keys", plugin_keys(args.kind, &topic)),
        ("try_it", try_it(args.kind, &args.name, &topic)),
    ];
    let fill = |template: &str| fill(template, &vars);

    let mut files: Vec<(String, String, bool)> = vec![
        (source_path.into(), fill(source_text), false),
        ("scenarios.toml".into(), fill(scenarios(args.kind)), false),
        (
            "factline.toml".into(),
            fill(templates::FACTLINE_TOML),
            false,
        ),
        ("README.md".into(), fill(templates::README), false),
        (
            ".gitignore".into(),
            "/target\n/*.wasm\n/*.wasm.tmp\n/.factline-data\n__pycache__/\n".into(),
            false,
        ),
    ];
    match args.lang {
        Lang::Rust => {
            files.push(("Cargo.toml".into(), fill(templates::CARGO_TOML), false));
            files.push(("build".into(), fill(templates::RUST_BUILD), true));
            // The clone's toolchain file (and lock file, so the project builds with the
            // dependency versions the SDK is tested with, from the local registry cache).
            for copied in ["rust-toolchain.toml", "Cargo.lock"] {
                let text = std::fs::read_to_string(repo.join(copied))
                    .with_context(|| format!("reading {}", repo.join(copied).display()))?;
                files.push((copied.into(), text, false));
            }
        }
        Lang::Python | Lang::Js => files.push(("build".into(), fill(templates::GUEST_BUILD), true)),
    }
    for (path, text, executable) in &files {
        write(&dir.join(path), text, *executable)?;
    }
    println!(
        "wrote the {} {} ({}) in {}",
        args.kind.as_str(),
        args.name,
        lang_name(args.lang),
        dir.display()
    );
    println!("next:");
    println!("  cd {}", dir.display());
    println!("  ./build");
    println!("  factline test {wasm} scenarios.toml");
    println!("  factline run --config factline.toml");
    Ok(())
}

fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
        Lang::Js => "JavaScript",
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "invalid plugin name {name:?}: use lowercase letters, digits and dashes, starting with a \
             letter, at most {MAX_NAME} characters (e.g. `counter`, `order-summary`)"
        );
    }
    Ok(())
}

/// The factline clone: `--repo`, or the one this binary was built from; it must hold the SDKs.
fn repo(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let repo = given.unwrap_or(Path::new(BUILT_FROM));
    let sdk = repo.join("guest-sdk").join("Cargo.toml");
    if !sdk.is_file() {
        bail!(
            "{} is not a factline clone (no guest-sdk/Cargo.toml); pass --repo PATH (or set \
             FACTLINE_REPO) to the clone whose SDKs the plugin should use",
            repo.display()
        );
    }
    std::fs::canonicalize(repo).with_context(|| format!("resolving {}", repo.display()))
}

/// A directory under the clone's `plugins/` is a workspace member of the clone (the glob
/// `plugins/*`), with rules of its own; say them instead of writing a project that breaks the
/// clone's build.
fn refuse_inside_plugins(repo: &Path, dir: &Path) -> anyhow::Result<()> {
    let absolute = std::path::absolute(dir)?;
    let parent = absolute
        .parent()
        .map(|p| std::fs::canonicalize(p).unwrap_or(p.to_path_buf()));
    let inside = ["plugins", "tests/plugins"]
        .iter()
        .any(|p| parent.as_deref() == Some(repo.join(p).as_path()));
    if inside {
        bail!(
            "{} is inside the factline clone's plugin directories, whose crates are members of \
             its workspace; `factline new` writes stand-alone projects (write it elsewhere, e.g. \
             --dir ../{}). To add an example plugin to the clone, see \"A new plugin in this \
             repository\" in its README.md",
            dir.display(),
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn topics(kind: Kind, topic: &str) -> String {
    let names: &[&str] = match kind {
        Kind::Aggregate => &[topic],
        Kind::Projector | Kind::Policy => &["counter"],
        Kind::Saga => &["transfer", "account"],
    };
    names
        .iter()
        .map(|t| format!("\n[[topics]]\nname = \"{t}\"\npartitions = 1\n"))
        .collect()
}

fn plugin_keys(kind: Kind, topic: &str) -> String {
    match kind {
        Kind::Aggregate => format!("topic = \"{topic}\""),
        Kind::Projector | Kind::Policy => "subscriptions = [\"counter\"]".into(),
        Kind::Saga => "subscriptions = [\"transfer\", \"account\"]".into(),
    }
}

fn try_it(kind: Kind, name: &str, topic: &str) -> String {
    match kind {
        Kind::Aggregate => format!(
            "\nThen, with the host running:\n\n```sh\ncurl -s -XPOST localhost:7070/v1/aggregates/{name}/1 \
             -H 'Content-Type: application/json' \\\n  -d '{{\"type\":\"increment\",\"payload\":{{\"by\":2}}}}'\n\
             curl -s localhost:7070/v1/streams/{topic}-1\n```\n"
        ),
        Kind::Projector => {
            "\nIt reads the `counter` topic: add a `counter` aggregate to `factline.toml` \
             (`factline new aggregate counter` writes one), then\n`curl -s \
             localhost:7070/v1/read-models/NAME/counter-1`.\n"
                .replace("NAME", name)
        }
        Kind::Policy => {
            "\nIt reads the `counter` topic and sends commands to an `audit` aggregate: \
             add both to `factline.toml` to run it end to end.\n"
                .into()
        }
        Kind::Saga => {
            "\nIt starts on `transfer.requested` events and sends commands to an `account` \
             aggregate: add the aggregates that write those topics to `factline.toml`.\n"
                .into()
        }
    }
}

/// `{{key}}` replaced by its value; a template naming an unknown key is a bug here.
fn fill(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_owned();
    for (key, value) in vars {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    debug_assert!(!out.contains("{{"), "unfilled template: {out}");
    out
}

fn write(path: &Path, text: &str, executable: bool) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    #[cfg(not(unix))]
    let _ = executable;
    Ok(())
}
