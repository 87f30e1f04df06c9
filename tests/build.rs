//! Builds every plugin crate under `plugins/*` and `tests/plugins/*` for `wasm32-wasip2` with one
//! nested cargo, then writes `$OUT_DIR/plugins.rs`: a `pub const SHOUTY_NAME: &str` path per
//! component, `PLUGINS`, and `foreach_plugin!($mac)`, which invokes `$mac!(snake_name)` per
//! plugin so a test binary can demand an end-to-end test for each (as wasmtime's
//! `crates/test-programs/artifacts/build.rs` does).

use std::env;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-wasip2";

/// Directories whose direct subdirectories are plugin crates.
const PLUGIN_DIRS: &[&str] = &["plugins", "tests/plugins"];

struct Plugin {
    package: String,
    /// The cdylib's name, which names the `.wasm` file.
    lib: String,
}

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("the tests crate sits in the workspace root")
        .to_path_buf();
    for watched in ["plugins", "tests/plugins", "guest-sdk", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    require_target();
    let plugins = find_plugins(&root);
    require_end_to_end_tests(&root, &plugins);
    // Never the outer target dir: the outer cargo holds its lock while this script runs. One
    // per checkout: cargo's fingerprints do not include a workspace's absolute path, so two
    // worktrees sharing CARGO_TARGET_DIR would otherwise take each other's plugins as fresh.
    let checkout = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        root.hash(&mut h);
        h.finish()
    };
    let target_dir = out_dir.join(format!("wasm-target-{checkout:016x}"));
    let mut build = cargo(&root);
    build
        .args(["build", "--release", "--target", TARGET])
        .env("CARGO_TARGET_DIR", &target_dir);
    for plugin in &plugins {
        build.args(["-p", &plugin.package]);
    }
    // Cargo reads a build script's stdout as directives; the nested build's output goes to stderr.
    build.stdout(Stdio::from(std::io::stderr()));
    eprintln!("running: {build:?}");
    let status = build.status().expect("run cargo");
    assert!(
        status.success(),
        "building the plugins for {TARGET} failed (see above)"
    );

    let mut code = String::new();
    let mut list = String::new();
    let mut foreach = String::new();
    for plugin in &plugins {
        let wasm = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{}.wasm", plugin.lib));
        assert!(wasm.exists(), "cargo built no {}", wasm.display());
        let shouty = plugin.package.replace('-', "_").to_uppercase();
        let snake = plugin.package.replace('-', "_");
        writeln!(
            code,
            "/// The component built from package `{}`.",
            plugin.package
        )
        .unwrap();
        writeln!(
            code,
            "pub const {shouty}: &str = {:?};",
            wasm.display().to_string()
        )
        .unwrap();
        writeln!(list, "    ({:?}, {shouty}),", plugin.package).unwrap();
        writeln!(foreach, "        $mac!({snake});").unwrap();
    }
    writeln!(code, "\n/// `(package, component path)` of every plugin.").unwrap();
    writeln!(code, "pub const PLUGINS: &[(&str, &str)] = &[\n{list}];").unwrap();
    writeln!(
        code,
        "\n/// Invokes `$mac!(snake_case_package)` once per plugin."
    )
    .unwrap();
    writeln!(code, "#[macro_export]\nmacro_rules! foreach_plugin {{\n    ($mac:ident) => {{\n{foreach}    }};\n}}").unwrap();
    std::fs::write(out_dir.join("plugins.rs"), code).expect("write plugins.rs");
}

/// Every plugin needs its module in the integration binary (`foreach_plugin!` demands it);
/// say so here, with what to do, rather than as an unresolved import in `main.rs`.
fn require_end_to_end_tests(root: &Path, plugins: &[Plugin]) {
    let tests = root.join("tests/tests/all");
    let missing: Vec<String> = plugins
        .iter()
        .map(|p| p.package.replace('-', "_"))
        .filter(|snake| !tests.join(format!("{snake}.rs")).is_file())
        .collect();
    if !missing.is_empty() {
        panic!(
            "plugin crate(s) {missing:?} under plugins/ or tests/plugins/ have no end-to-end test: \
             add tests/tests/all/<name>.rs (a test that runs the built component, e.g. its \
             scenarios through ScenarioRunner) and `mod <name>;` in tests/tests/all/main.rs. A \
             plugin that does not belong to this repository's examples lives anywhere else \
             (`factline new` writes a stand-alone project); see README.md, \"A new plugin in this \
             repository\""
        );
    }
}

fn require_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("run rustc");
    let sysroot = String::from_utf8_lossy(&output.stdout);
    let lib = Path::new(sysroot.trim())
        .join("lib")
        .join("rustlib")
        .join(TARGET);
    if !lib.is_dir() {
        panic!("the {TARGET} target is not installed; run `rustup target add {TARGET}`");
    }
}

/// Workspace members under [`PLUGIN_DIRS`] with a cdylib, in a stable order.
fn find_plugins(root: &Path) -> Vec<Plugin> {
    let output = cargo(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo metadata");
    assert!(output.status.success(), "cargo metadata failed");
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let dirs: Vec<PathBuf> = PLUGIN_DIRS.iter().map(|dir| root.join(dir)).collect();
    let mut plugins: Vec<Plugin> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|package| {
            let manifest = Path::new(package["manifest_path"].as_str().unwrap_or_default());
            let crate_dir = manifest.parent().and_then(Path::parent);
            crate_dir.is_some_and(|parent| dirs.iter().any(|dir| dir == parent))
        })
        .map(|package| {
            let name = package["name"].as_str().expect("package name").to_owned();
            let lib = package["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|target| {
                    target["kind"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|k| k == "cdylib")
                })
                .and_then(|target| target["name"].as_str())
                .unwrap_or_else(|| panic!("plugin `{name}` needs crate-type = [\"cdylib\", …]"))
                .replace('-', "_");
            Plugin { package: name, lib }
        })
        .collect();
    plugins.sort_by(|a, b| a.package.cmp(&b.package));
    assert!(
        !plugins.is_empty(),
        "no plugin crates under {PLUGIN_DIRS:?}"
    );
    plugins
}

/// A cargo for the workspace at `root`, without the outer build's configuration (flags, target
/// dir, profile, clippy's wrapper), which would otherwise leak into the wasm build.
fn cargo(root: &Path) -> Command {
    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.current_dir(root).arg("--quiet");
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if leaks_into_nested_cargo(key) {
            cargo.env_remove(OsStr::new(key));
        }
    }
    cargo
}

fn leaks_into_nested_cargo(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_DIR",
    ];
    const PREFIXES: &[&str] = &[
        "CARGO_BUILD_",
        "CARGO_PROFILE_",
        "CARGO_TARGET_",
        "CARGO_LLVM_COV",
        "CARGO_CFG_",
        "CARGO_FEATURE_",
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "__CARGO_",
    ];
    EXACT.contains(&key) || PREFIXES.iter().any(|prefix| key.starts_with(prefix))
}
