//! The assembly's refusals and an empty host's lifecycle. Running real plugins through the real
//! binary is the crash test in `tests/tests/all/counter_plugin.rs` (this crate has no `.wasm`).

use std::path::Path;

use super::*;

fn config(dir: &Path, plugins: &str) -> Config {
    let text =
        format!("data_dir = \"data\"\n[[topics]]\nname = \"tick\"\npartitions = 2\n{plugins}");
    Config::parse(&text, Path::new("test.toml"), dir).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn refuses_to_start_outside_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Host::start(config(dir.path(), "")),
        Err(HostError::NoRuntime)
    ));
}

#[test]
fn an_empty_host_starts_is_idle_and_shuts_down_releasing_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let host = Host::start(config(dir.path(), "")).unwrap();
        assert_eq!(host.log().topic("tick").unwrap().partitions, 2);
        assert!(host.is_idle().unwrap());
        host.wait_until_idle().await.unwrap();
        assert!(host.shutdown().await.is_empty());
    });
    // The log is closed: another open of the same directory succeeds.
    drop(EventLog::open(dir.path().join("data"), LogOptions::default()).unwrap());
}

#[test]
fn a_component_that_is_not_wasm_refuses_the_start_naming_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.wasm"), b"not wasm").unwrap();
    let c = config(
        dir.path(),
        "[[plugins]]\nname = \"bad\"\nkind = \"projector\"\ncomponent = \"bad.wasm\"\nsubscriptions = [\"tick\"]\n",
    );
    let rt = runtime();
    let e = rt.block_on(async { Host::start(c).unwrap_err() });
    assert!(
        matches!(&e, HostError::Load { name, .. } if name == "bad"),
        "{e}"
    );
    assert!(e.to_string().contains("bad.wasm"), "{e}");
}

#[test]
fn a_data_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _held = EventLog::open(dir.path().join("data"), LogOptions::default()).unwrap();
    let rt = runtime();
    let e = rt.block_on(async { Host::start(config(dir.path(), "")).unwrap_err() });
    assert!(
        matches!(
            &e,
            HostError::Open {
                source: OpenError::AlreadyOpen { .. },
                ..
            }
        ),
        "{e}"
    );
}
