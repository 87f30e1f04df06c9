//! Scenario files (docs/scenario-files.md): the files that the Python and JavaScript builds are
//! held to pass against the Rust components, and `factline test` reports a mismatch as a diff
//! with a non-zero exit.

use std::process::Command;

use factline_host::ScenarioRunner;

#[test]
fn the_shared_scenario_files_pass_against_the_rust_components() {
    let runner = ScenarioRunner::new().unwrap();
    for (wasm, file) in [
        (factline_tests::ORDER, order::scenarios::FILE),
        (
            factline_tests::ORDER_SUMMARY,
            order_summary::scenarios::FILE,
        ),
    ] {
        let file = factline_host::load_scenario_file(file.as_ref()).unwrap();
        assert!(file.scenarios.len() > 5, "{file:?}");
        for s in &file.scenarios {
            runner
                .run(wasm.as_ref(), s)
                .unwrap_or_else(|e| panic!("{wasm}: {e}"));
        }
    }
}

const SCENARIOS: &str = r#"
[[scenarios]]
kind = "aggregate"
name = "create"
stream = "order-ORD-1"
when = { command_type = "create", payload = { customer_id = "C-1" } }
then = { outcome = "events", events = [{ event_type = "order.created", payload = { order_id = "ORD-1", customer_id = "C-1" } }], version = 1 }

[[scenarios]]
kind = "aggregate"
name = "create for another customer"
stream = "order-ORD-1"
when = { command_type = "create", payload = { customer_id = "C-1" } }
then = { outcome = "events", events = [{ event_type = "order.created", payload = { order_id = "ORD-1", customer_id = "C-2" } }] }
"#;

fn factline_test(args: &[&str]) -> (bool, String) {
    let out = Command::new(crate::support::factline_binary())
        .arg("test")
        .args(args)
        .arg("--no-cache")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn factline_test_prints_a_diff_and_exits_non_zero_on_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("order.toml");
    std::fs::write(&file, SCENARIOS).unwrap();
    let file = file.to_str().unwrap();

    let (ok, out) = factline_test(&[factline_tests::ORDER, file]);
    assert!(!ok, "{out}");
    assert!(out.contains("ok      create\n"), "{out}");
    assert!(
        out.contains("FAILED  create for another customer\n"),
        "{out}"
    );
    assert!(
        out.contains(r#"events[0].payload.customer_id: expected "C-2", got "C-1""#),
        "{out}"
    );
    assert!(out.contains("1 passed, 1 failed"), "{out}");

    let (ok, out) = factline_test(&[factline_tests::ORDER, file, "--filter", "create"]);
    assert!(!ok, "{out}");
    let (ok, out) = factline_test(&[factline_tests::ORDER, file, "--filter", "another"]);
    assert!(!ok && out.contains("0 passed, 1 failed"), "{out}");
    let (ok, out) = factline_test(&[factline_tests::ORDER, order::scenarios::FILE]);
    let all = order::scenarios::all().len();
    assert!(
        ok && out.contains(&format!("{all} passed, 0 failed")),
        "{out}"
    );
}

#[test]
fn factline_test_refuses_a_component_of_another_kind_once() {
    let (ok, out) = factline_test(&[factline_tests::ORDER, order_summary::scenarios::FILE]);
    assert!(!ok, "{out}");
    assert!(out.contains("projector-handler"), "{out}");
    assert_eq!(out.matches("cannot load").count(), 1, "{out}");
}

/// Saga scenarios: the order-placement saga's file passes; a wrong expectation is a diff that
/// names what differs, with a non-zero exit.
#[test]
fn saga_scenario_files_run_through_factline_test() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../plugins/order-placement/scenarios.json"
    );
    let (ok, out) = factline_test(&[factline_tests::ORDER_PLACEMENT, file]);
    assert!(ok && out.contains("5 passed, 0 failed"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.json");
    let text = std::fs::read_to_string(file)
        .unwrap()
        .replacen("\"status\": \"completed\"", "\"status\": \"failed\"", 1)
        .replacen("\"ORD-1/release\"", "\"ORD-1/release-twice\"", 1);
    std::fs::write(&wrong, text).unwrap();
    let (ok, out) = factline_test(&[factline_tests::ORDER_PLACEMENT, wrong.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(r#"status: expected "failed", got "completed""#),
        "{out}"
    );
    assert!(
        out.contains(r#"compensations[0].command_id: expected "ORD-1/release-twice""#),
        "{out}"
    );
    assert!(out.contains("3 passed, 2 failed"), "{out}");
}
