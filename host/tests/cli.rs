//! The `factline` binary's command line, run as a process. Besides checking the refusal of a bad
//! config end to end, this integration test makes `cargo test` build `target/<profile>/factline`,
//! which the workspace's crash test (`tests/tests/all/counter_plugin.rs`) runs and SIGKILLs.

use std::process::Command;

const FACTLINE: &str = env!("CARGO_BIN_EXE_factline");

#[test]
fn run_refuses_a_config_with_a_typo_naming_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("factline.toml");
    std::fs::write(
        &config,
        "data_dir = \"data\"\n\n[[topics]]\nname = \"tick\"\npartitions = 2\npartitons = 3\n",
    )
    .unwrap();
    let out = Command::new(FACTLINE)
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("factline.toml:6:1: unknown field `partitons`"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing is ready");
    assert!(!dir.path().join("data").exists(), "nothing was written");
}

#[test]
fn run_without_a_config_file_says_which_file() {
    let out = Command::new(FACTLINE)
        .args(["run", "--config", "/nonexistent/factline.toml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/factline.toml"), "{stderr}");
}
