//! The benchmark binary runs: a short `http` run against the host it starts in-process
//! (the other benchmarks take minutes; `scripts/bench` runs them).

use std::path::Path;
use std::process::Command;

#[test]
fn a_short_http_bench_runs_and_reports() {
    let plugins = Path::new(factline_tests::ORDER).parent().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_factline-bench"))
        .arg("--plugins")
        .arg(plugins)
        .args([
            "http",
            "--clients",
            "4",
            "--seconds",
            "1",
            "--append-seconds",
            "0.5",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("HTTP commands, 4 keep-alive clients"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let count: u64 = line.split_whitespace().nth(5).unwrap().parse().unwrap();
    assert!(count > 0, "{stdout}");
    assert!(
        stdout.contains("HTTP commands / raw appends, 4 clients:"),
        "{stdout}"
    );
}
