//! Shared helpers: a scratch log and a plugin runtime.

use std::sync::Arc;

use factline_host::log::{Durability, EventLog, LogOptions, TopicConfig};
use factline_host::plugin::{Limits, LoadedPlugin, PluginKind, PluginRuntime, RuntimeConfig};

pub fn log(dir: &std::path::Path, topics: &[(&str, u32)]) -> EventLog {
    let mut o = LogOptions::with_topics(topics.iter().map(|(n, p)| TopicConfig::new(*n, *p)));
    o.durability = Durability::NoSyncForTests;
    EventLog::open(dir, o).unwrap()
}

pub fn runtime() -> PluginRuntime {
    PluginRuntime::new(RuntimeConfig::default()).unwrap()
}

pub fn load(
    rt: &PluginRuntime,
    name: &str,
    kind: PluginKind,
    path: &str,
    limits: Limits,
) -> Arc<LoadedPlugin> {
    rt.load_file(name, kind, path.as_ref(), limits, None)
        .unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

pub fn msgpack(v: serde_json::Value) -> Vec<u8> {
    factline_guest::codec::json_to_msgpack(&v)
}

/// Runs an aggregate scenario natively with the SDK's harness and checks it.
pub fn native_aggregate<A: factline_guest::Aggregate>(s: &factline_guest::scenario::Scenario) {
    let factline_guest::scenario::Scenario::Aggregate(a) = s else {
        panic!("{} is not an aggregate scenario", s.name())
    };
    a.verify(&factline_guest::testing::run_aggregate::<A>(a))
        .unwrap_or_else(|m| panic!("native: {m}"));
}

/// Runs a projector scenario natively with the SDK's harness and checks it.
pub fn native_projector<P: factline_guest::Projector>(s: &factline_guest::scenario::Scenario) {
    let factline_guest::scenario::Scenario::Projector(p) = s else {
        panic!("{} is not a projector scenario", s.name())
    };
    p.verify(&factline_guest::testing::run_projector::<P>(p))
        .unwrap_or_else(|m| panic!("native: {m}"));
}

/// The `factline` binary next to this test binary (`target/debug/deps/all-…` →
/// `target/debug/factline`); `cargo test --workspace` builds it.
pub fn factline_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let bin = profile_dir.join(format!("factline{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the factline binary is missing at {}: run the tests with `cargo test --workspace` (which \
         builds it), or `cargo build -p factline-host` first",
        bin.display()
    );
    bin
}
