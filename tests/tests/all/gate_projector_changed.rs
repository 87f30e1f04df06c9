//! The deploy gate with a candidate whose effects differ in one read-model field
//! (`gate-projector-changed` counts `qty` twice): refused with that field in the diff and
//! nothing written; deployed with the changes accepted; the same through `factline plugins
//! deploy --gate` against the real binary, whose history shows both verdicts.

use std::sync::Arc;

use factline_host::{DeployError, EffectKind, GateOptions, GateVerdict, query_read_model};
use serde_json::json;

use crate::gate_projector::{append, start};

fn row(host: &factline_host::Host, stream: &str) -> serde_json::Value {
    let bytes = query_read_model(host.log(), "items", &format!("item/{stream}"))
        .unwrap()
        .expect("a row per stream");
    rmp_serde::from_slice(&bytes).unwrap()
}

#[test]
fn a_changed_field_is_refused_with_the_field_and_deployed_when_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, host) = start(dir.path(), "items", factline_tests::GATE_PROJECTOR);
    for i in 0..30u64 {
        let payload = json!({ "name": format!("n{i}"), "qty": 1 + i % 3 });
        append(&host, &format!("item-{}", i % 3), "item.added", payload);
    }
    rt.block_on(host.wait_until_idle()).unwrap();
    let running = host.plugins()[0].version.clone();
    let live = row(&host, "item-0");
    assert_eq!(live["count"], 10, "{live}");
    let candidate = std::fs::read(factline_tests::GATE_PROJECTOR_CHANGED).unwrap();

    let refused = rt
        .block_on(host.deploy_gated(
            "items",
            candidate.clone(),
            None,
            GateOptions::new(None, false).unwrap(),
        ))
        .unwrap_err();
    let DeployError::GateRefused { report, .. } = &refused else {
        panic!("expected a gate refusal, got {refused}");
    };
    assert_eq!(report.verdict, GateVerdict::Refused, "{report}");
    assert_eq!(report.replayed, 30, "{report}");
    assert!(report.candidate_failure.is_none(), "{report}");
    // Only read-model writes differ, and in each only `qty`.
    let c = &report.counts;
    assert!(c.read_model_writes > 0, "{report}");
    assert_eq!(c.total(), c.read_model_writes, "{report}");
    assert!(!report.cases.is_empty(), "{report}");
    for case in &report.cases {
        assert_eq!(case.effect, EffectKind::ReadModelWrite, "{report}");
        assert!(case.key.starts_with("item/item-"), "{report}");
        let fields: Vec<&str> = case.fields.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(fields, ["qty"], "{report}");
        let (a, b) = (&case.fields[0].running, &case.fields[0].candidate);
        assert!(b.as_u64().unwrap() > a.as_u64().unwrap(), "{report}");
        assert_eq!(case.running["count"], case.candidate["count"], "{report}");
    }
    let first = &report.cases[0];
    assert!(first.at.starts_with("item/"), "{report}");
    // The running version replayed over the live rows: its first write builds on them.
    let stream = first.key.trim_start_matches("item/");
    assert!(
        first.running["count"].as_u64().unwrap() > row(&host, stream)["count"].as_u64().unwrap()
    );
    assert!(refused.to_string().contains("qty"), "{refused}");
    // Nothing deployed, nothing written.
    assert_eq!(host.plugins()[0].version, running);
    assert_eq!(row(&host, "item-0"), live);

    let report = rt
        .block_on(host.deploy_gated(
            "items",
            candidate,
            Some("changed".into()),
            GateOptions::new(None, true).unwrap(),
        ))
        .unwrap();
    let gate = report.gate.as_ref().unwrap();
    assert_eq!(gate.verdict, GateVerdict::AcceptedWithChanges, "{gate}");
    assert!(gate.differing > 0 && gate.cases[0].fields[0].path == "qty");
    assert!(report.swapped, "{report:?}");
    let history = host.plugin_versions("items").unwrap();
    assert_eq!(history.current.version.label.as_deref(), Some("changed"));
    let verdicts: Vec<GateVerdict> = history.gates.iter().map(|g| g.verdict).collect();
    assert_eq!(
        verdicts,
        [GateVerdict::Refused, GateVerdict::AcceptedWithChanges]
    );

    // The deployed candidate processes new events with its own rule.
    append(
        &host,
        "item-0",
        "item.added",
        json!({ "name": "x", "qty": 5 }),
    );
    rt.block_on(host.wait_until_idle()).unwrap();
    let after = row(&host, "item-0");
    assert_eq!(after["count"], 11, "{after}");
    assert_eq!(
        after["qty"].as_u64().unwrap(),
        live["qty"].as_u64().unwrap() + 10
    );
    rt.block_on(Arc::into_inner(host).unwrap().shutdown());
}

/// `factline plugins deploy NAME FILE --gate [--last N] [--accept-changes]` and `factline
/// plugins history NAME` against `factline run`.
#[test]
fn the_cli_gates_a_deploy() {
    use crate::service::{cli, cli_json};
    use crate::support::{RunningHost, factline_binary, msgpack};
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(factline_tests::GATE_PROJECTOR, plugins.join("items.wasm")).unwrap();
    // The history, written before the host starts (no aggregate owns the topic).
    {
        let log = crate::support::log(&dir.path().join("data"), &[("item", 2)]);
        for i in 0..12u64 {
            let payload = msgpack(json!({ "name": format!("n{i}"), "qty": i }));
            log.append(
                &format!("item-{}", i % 4),
                factline_host::ExpectedVersion::Any,
                vec![factline_host::NewEvent::new("item.added", payload)],
            )
            .unwrap();
        }
    }
    let config = dir.path().join("factline.toml");
    std::fs::write(
        &config,
        "data_dir = \"data\"\n[http]\naddress = \"127.0.0.1:0\"\n[[topics]]\nname = \"item\"\npartitions = 2\n\
         [[plugins]]\nname = \"items\"\nkind = \"projector\"\ncomponent = \"plugins/items.wasm\"\nsubscriptions = [\"item\"]\n",
    )
    .unwrap();
    let bin = factline_binary();
    let mut host = RunningHost::spawn(&bin, &config, &[]);
    host.wait_ready();
    let url = host.url().to_owned();
    let candidate = factline_tests::GATE_PROJECTOR_CHANGED;
    // Wait until the running version has projected the history.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let rows = cli_json(
            &bin,
            &[
                "query", "items", "--prefix", "item/", "--host", &url, "--json",
            ],
            &[],
        );
        if rows.to_string().contains("\"count\":3") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{rows}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let deploy = |extra: &[&str]| {
        let mut args = vec![
            "plugins", "deploy", "items", candidate, "--gate", "--host", &url,
        ];
        args.extend_from_slice(extra);
        cli(&bin, &args, &[])
    };
    let refused = deploy(&["--last", "5"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("gate-refused"), "{stderr}");
    assert!(stderr.contains("5 events replayed"), "{stderr}");
    assert!(stderr.contains("qty: "), "{stderr}");

    let accepted = deploy(&["--accept-changes"]);
    let stdout = String::from_utf8_lossy(&accepted.stdout);
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    assert!(
        stdout.contains("gate accepted-with-changes: 12 events replayed"),
        "{stdout}"
    );
    assert!(stdout.contains("qty: "), "{stdout}");

    let history = cli(&bin, &["plugins", "history", "items", "--host", &url], &[]);
    let text = String::from_utf8_lossy(&history.stdout);
    assert!(
        text.contains("refused") && text.contains("accepted-with-changes"),
        "{text}"
    );
    let json = cli_json(
        &bin,
        &["plugins", "history", "items", "--host", &url, "--json"],
        &[],
    );
    assert_eq!(json["gates"][0]["replayed"], 5, "{json}");
    assert_eq!(json["previous"].as_array().map(Vec::len), Some(1), "{json}");

    // `--last` needs `--gate`; the API refuses it alone too.
    let alone = cli(
        &bin,
        &[
            "plugins", "deploy", "items", candidate, "--last", "3", "--host", &url,
        ],
        &[],
    );
    assert!(!alone.status.success());
    assert!(host.terminate().success(), "{}", host.stderr());
}
