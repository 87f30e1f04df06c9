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

/// Writes `text` as `name` in a fresh directory and runs `factline test PLUGIN` on it.
fn factline_test_file(plugin: &str, name: &str, text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, text).unwrap();
    factline_test(&[plugin, file.to_str().unwrap()])
}

/// An aggregate scenario expects a failed call by kind and message; another kind is a diff.
#[test]
fn an_aggregate_scenario_expects_a_failure() {
    let scenario = |kind: &str| {
        format!(
            r#"
[[scenarios]]
kind = "aggregate"
name = "trap"
stream = "hostile-1"
when = {{ command_type = "trap" }}
then = {{ outcome = "failed", kind = "{kind}", message_contains = "wasm" }}
"#
        )
    };
    let (ok, out) = factline_test_file(
        factline_tests::HOSTILE_PLUGIN,
        "hostile.toml",
        &scenario("trap"),
    );
    assert!(ok && out.contains("1 passed, 0 failed"), "{out}");
    let (ok, out) = factline_test_file(
        factline_tests::HOSTILE_PLUGIN,
        "hostile.toml",
        &scenario("guest"),
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("failure: expected kind `guest`, got `trap`"),
        "{out}"
    );
}

/// Projector, policy and saga scenarios expect dead letters: the failing event is parked (the
/// others still count, as the host's `skip`), and an unexpected or missing one is a diff.
#[test]
fn consumer_scenarios_expect_dead_letters() {
    let projector = r#"
[[scenarios]]
kind = "projector"
name = "the poisoned event is parked, the others counted"
given = [
  { event_type = "item.a", stream = "item-1" },
  { event_type = "item.b", stream = "item-2", payload = { poison = true } },
  { event_type = "item.a", stream = "item-3" },
]
then = [{ key = "count/item.a", value = 2 }, { key = "count/item.b" }]
dead_letters = [{ event = 1, kind = "trap" }]
"#;
    let (ok, out) = factline_test_file(factline_tests::POISON_PLUGIN, "p.toml", projector);
    assert!(ok && out.contains("1 passed, 0 failed"), "{out}");
    // The fixed build parks nothing: the expectation is a diff.
    let (ok, out) = factline_test_file(factline_tests::POISON_FIXED_PLUGIN, "p.toml", projector);
    assert!(!ok, "{out}");
    assert!(
        out.contains("dead_letters: expected given event #1 to be parked, but it was handled"),
        "{out}"
    );
    // No dead letter expected: the one that happens is named.
    let (ok, out) = factline_test_file(
        factline_tests::POISON_PLUGIN,
        "p.toml",
        &projector.replace("dead_letters = [{ event = 1, kind = \"trap\" }]", ""),
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("dead_letters: given event #1 would be parked (trap)"),
        "{out}"
    );

    let policy = r#"
[[scenarios]]
kind = "policy"
name = "the poisoned event is parked"
given = [{ event_type = "item.a", stream = "item-1", payload = { poison = true } }]
dead_letters = [{ event = 0, kind = "trap", message_contains = "poisoned item-1" }]
"#;
    let (ok, out) = factline_test_file(factline_tests::POISON_POLICY, "p.toml", policy);
    assert!(ok && out.contains("1 passed, 0 failed"), "{out}");

    let saga = r#"
[[scenarios]]
kind = "saga"
name = "the poisoned trigger is parked"
trigger = { event_type = "item.a", stream = "item-1", payload = { poison = true } }
then = { status = "ignored" }
dead_letters = [{ event = 0, kind = "trap" }]
"#;
    let (ok, out) = factline_test_file(factline_tests::POISON_SAGA, "s.toml", saga);
    assert!(ok && out.contains("1 passed, 0 failed"), "{out}");
}

/// A saga scenario asserts the failure reason, worded as the host's saga log words it.
#[test]
fn a_saga_scenario_asserts_the_failure_reason() {
    let saga = |reason: &str| {
        format!(
            r#"
[[scenarios]]
kind = "saga"
name = "the charge is rejected"
trigger = {{ event_type = "order.placed", stream = "order-ORD-1", payload = {{ order_id = "ORD-1", customer_id = "C-1", items = [{{ product_id = "P-1", quantity = 2 }}], total = 4000 }} }}
answers = [
  {{ event_type = "inventory.reserved", stream = "inventory-main", payload = {{ order_id = "ORD-1" }} }},
  {{ rejected = "over the account limit" }},
]
then = {{ status = "failed", failed_step = "process_payment", reason_contains = "{reason}", commands = [
  {{ aggregate = "inventory", stream = "inventory-main", command_type = "reserve", payload = {{ order_id = "ORD-1", items = [{{ product_id = "P-1", quantity = 2 }}] }} }},
  {{ aggregate = "payment", stream = "payment-C-1", command_type = "charge", payload = {{ order_id = "ORD-1", amount = 4000 }} }},
], compensations = [
  {{ aggregate = "inventory", stream = "inventory-main", command_type = "release", payload = {{ order_id = "ORD-1" }} }},
] }}
"#
        )
    };
    let (ok, out) = factline_test_file(
        factline_tests::ORDER_PLACEMENT,
        "s.toml",
        &saga("payment rejected charge: over the account limit"),
    );
    assert!(ok && out.contains("1 passed, 0 failed"), "{out}");
    let (ok, out) = factline_test_file(
        factline_tests::ORDER_PLACEMENT,
        "s.toml",
        &saga("out of stock"),
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains(r#"failure reason: expected it to contain "out of stock", got "payment rejected charge: over the account limit""#),
        "{out}"
    );
}

/// A typo inside a scenario is reported at the key (TOML: its line and column; JSON: its path).
#[test]
fn scenario_file_errors_point_at_the_offending_key() {
    let typo = SCENARIOS.replacen("payload = { customer_id", "payloads = { customer_id", 1);
    let line = typo.lines().position(|l| l.contains("payloads")).unwrap() + 1;
    let column = typo
        .lines()
        .nth(line - 1)
        .unwrap()
        .find("payloads")
        .unwrap()
        + 1;
    let (ok, out) = factline_test_file(factline_tests::ORDER, "order.toml", &typo);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("order.toml:{line}:{column}: ")) && out.contains("payloads"),
        "{out}"
    );

    let json = r#"{"scenarios": [
  {"kind": "aggregate", "name": "create", "stream": "order-ORD-1",
   "when": {"command_type": "create", "payloads": {}},
   "then": {"outcome": "rejected"}}]}"#;
    let (ok, out) = factline_test_file(factline_tests::ORDER, "order.json", json);
    assert!(!ok, "{out}");
    assert!(
        out.contains("scenarios[0] (`create`).when.payloads: unknown field `payloads`"),
        "{out}"
    );
    assert_eq!(out.matches("payloads").count(), 2, "said once: {out}");

    let (ok, out) = factline_test(&[factline_tests::ORDER, "/nonexistent/order.toml"]);
    assert!(!ok, "{out}");
    assert_eq!(out.matches("No such file").count(), 1, "said once: {out}");
}

/// A file mixing kinds runs the scenarios of the component's kind, says once why the others
/// do not run, and ends with the summary and a non-zero exit.
#[test]
fn a_file_mixing_kinds_runs_what_it_can_and_summarizes() {
    let mixed = format!(
        "{SCENARIOS}\n{}",
        r#"
[[scenarios]]
kind = "projector"
name = "a row"
given = [{ event_type = "order.created", stream = "order-ORD-1", payload = { customer_id = "C-1" } }]
then = [{ key = "ORD-1" }]
"#
    );
    let (ok, out) = factline_test_file(factline_tests::ORDER, "mixed.toml", &mixed);
    assert!(!ok, "{out}");
    assert!(out.contains("ok      create\n"), "{out}");
    assert!(
        out.contains("NOT RUN 1 projector scenario(s): cannot load"),
        "{out}"
    );
    assert!(out.contains("1 passed, 1 failed, 1 not run"), "{out}");
    assert_eq!(
        out.matches("projector-handler").count(),
        1,
        "said once: {out}"
    );
}

/// `factline new` writes stand-alone projects of every kind in every language (a Rust one is its
/// own workspace, using this clone's SDK by path) and refuses the clone's plugin directories.
#[test]
fn factline_new_writes_a_project_and_refuses_what_it_cannot_write() {
    let new = |args: &[&str]| {
        let out = Command::new(crate::support::factline_binary())
            .arg("new")
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let dir = tempfile::tempdir().unwrap();
    for kind in ["aggregate", "projector", "policy", "saga"] {
        let project = dir.path().join(kind);
        let (ok, out) = new(&[kind, "my-plugin", "--dir", project.to_str().unwrap()]);
        assert!(ok, "{out}");
        let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        let sdk =
            std::fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk")).unwrap();
        assert!(manifest.contains("\n[workspace]\n"), "{manifest}");
        assert!(
            manifest.contains(&format!("path = \"{}\"", sdk.display())),
            "{manifest}"
        );
        let scenarios = project.join("scenarios.toml");
        factline_host::load_scenario_file(&scenarios).unwrap();
        for file in [
            "src/lib.rs",
            "build",
            "factline.toml",
            "README.md",
            "Cargo.lock",
        ] {
            assert!(project.join(file).is_file(), "{kind}: no {file}");
        }
        // Any component will do: the configuration checks the file is there.
        std::fs::copy(factline_tests::ORDER, project.join("my_plugin.wasm")).unwrap();
        let config = factline_host::Config::load(&project.join("factline.toml"));
        assert!(config.is_ok(), "{kind}: {config:?}");
    }
    // Every kind in every language: the handler beside the same scenario file and build script
    // (each builds and passes it in scripts/first-plugin, which has the guest toolchains).
    for lang in ["python", "js"] {
        for kind in ["aggregate", "projector", "policy", "saga"] {
            let project = dir.path().join(format!("{lang}-{kind}"));
            let (ok, out) = new(&[
                kind,
                "p",
                "--lang",
                lang,
                "--dir",
                project.to_str().unwrap(),
            ]);
            assert!(ok, "{out}");
            let (handler, language) = match lang {
                "python" => ("app.py", "python"),
                _ => ("index.js", "javascript"),
            };
            assert!(
                project.join(handler).is_file(),
                "{lang} {kind}: no {handler}"
            );
            factline_host::load_scenario_file(&project.join("scenarios.toml")).unwrap();
            let build = std::fs::read_to_string(project.join("build")).unwrap();
            assert!(
                build.contains(&format!("componentize\" {language} {kind} .")),
                "{build}"
            );
        }
    }
    let (ok, out) = new(&[
        "aggregate",
        "x",
        "--dir",
        dir.path().join("aggregate").to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("is not empty"), "{out}");
    let inside = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/new-one");
    let (ok, out) = new(&["aggregate", "new-one", "--dir", inside]);
    assert!(
        !ok && out.contains("inside the factline clone's plugin directories"),
        "{out}"
    );
    assert!(!std::path::Path::new(inside).exists());
    let (ok, out) = new(&["aggregate", "Bad_Name"]);
    assert!(!ok && out.contains("invalid plugin name"), "{out}");
}
