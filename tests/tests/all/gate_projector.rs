//! The deploy gate (issue 17, part 2) on projectors through the public `Host` API: a candidate
//! that behaves like the running version passes and is deployed; one that traps on an event of
//! the history is refused with that event and its error, nothing deployed and nothing written.
//! The gate of a changed candidate is in `gate_projector_changed.rs`.

use std::path::Path;
use std::sync::Arc;

use factline_host::{
    Config, DeployError, EffectKind, ExpectedVersion, FailureKind, GateOptions, GateVerdict, Host,
    NewEvent, query_read_model,
};
use serde_json::json;

use crate::support::msgpack;

/// A host on `dir` running `wasm` as projector `name` over topic `item` (3 partitions), and the
/// runtime it runs on.
pub(crate) fn start(dir: &Path, name: &str, wasm: &str) -> (tokio::runtime::Runtime, Arc<Host>) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(wasm, plugins.join(format!("{name}.wasm"))).unwrap();
    let text = format!(
        "data_dir = \"data\"\n[[topics]]\nname = \"item\"\npartitions = 3\n[[plugins]]\nname = \"{name}\"\n\
         kind = \"projector\"\ncomponent = \"plugins/{name}.wasm\"\nsubscriptions = [\"item\"]\nbatch_size = 8\n"
    );
    let config = Config::parse(&text, Path::new("test.toml"), dir).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let host = {
        let _in_runtime = rt.enter();
        Arc::new(Host::start(config).unwrap())
    };
    (rt, host)
}

/// Appends one event and returns its offset.
pub(crate) fn append(
    host: &Host,
    stream: &str,
    event_type: &str,
    payload: serde_json::Value,
) -> u64 {
    host.log()
        .append(
            stream,
            ExpectedVersion::Any,
            vec![NewEvent::new(event_type, msgpack(payload))],
        )
        .unwrap()
        .first_offset
}

/// `wasm` with a custom section appended: another content hash, the same behaviour.
fn relabelled(wasm: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(wasm).unwrap();
    let name = b"gate-test";
    let payload = b"same code, other bytes";
    bytes.push(0); // custom section id
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn an_identical_candidate_passes_and_is_deployed() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, host) = start(dir.path(), "items", factline_tests::GATE_PROJECTOR);
    for i in 0..40 {
        let payload = json!({ "name": format!("n{i}"), "qty": i % 7 });
        append(&host, &format!("item-{}", i % 5), "item.added", payload);
    }
    rt.block_on(host.wait_until_idle()).unwrap();
    let before = host.plugins()[0].version.clone();

    let report = rt
        .block_on(host.deploy_gated(
            "items",
            relabelled(factline_tests::GATE_PROJECTOR),
            Some("same".into()),
            GateOptions::new(Some(100), false).unwrap(),
        ))
        .unwrap();
    let gate = report
        .gate
        .as_ref()
        .expect("a gated deploy reports its gate");
    assert_eq!(gate.verdict, GateVerdict::Passed, "{gate}");
    assert_eq!(
        (gate.unit, gate.replayed, gate.differing),
        ("events", 40, 0),
        "{gate}"
    );
    assert!(
        gate.cases.is_empty() && gate.candidate_failure.is_none(),
        "{gate}"
    );
    assert!(report.swapped, "{report:?}");
    assert_ne!(report.current.content_hash, before.content_hash);

    let history = host.plugin_versions("items").unwrap();
    assert_eq!(history.current.version.label.as_deref(), Some("same"));
    let last = history.gates.last().expect("the verdict is in the history");
    assert_eq!((last.verdict, last.replayed), (GateVerdict::Passed, 40));
    assert_eq!(last.candidate, report.current);

    // Only the last N events are replayed.
    let report = rt
        .block_on(host.deploy_gated(
            "items",
            std::fs::read(factline_tests::GATE_PROJECTOR).unwrap(),
            None,
            GateOptions::new(Some(7), false).unwrap(),
        ))
        .unwrap();
    assert_eq!(report.gate.unwrap().replayed, 7);
    rt.block_on(Arc::into_inner(host).unwrap().shutdown());
}

#[test]
fn a_trapping_candidate_is_refused_with_the_event_and_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, host) = start(dir.path(), "poison", factline_tests::POISON_FIXED_PLUGIN);
    for i in 0..20 {
        append(&host, &format!("item-{}", i % 4), "item.a", json!({}));
    }
    let poisoned = append(&host, "item-2", "item.b", json!({ "poison": true }));
    let (_, partition) = host.log().locate("item-2").unwrap();
    for i in 0..10 {
        append(&host, &format!("item-{}", i % 4), "item.a", json!({}));
    }
    rt.block_on(host.wait_until_idle()).unwrap();
    let running = host.plugins()[0].version.clone();
    let row = |key: &str| query_read_model(host.log(), "poison", key).unwrap();
    let (a, b) = (row("count/item.a"), row("count/item.b"));
    let offsets: Vec<_> = (0..3)
        .map(|p| host.log().group_offset("poison", "item", p).unwrap())
        .collect();

    // The trapping release, even with the changes accepted.
    let refused = rt
        .block_on(host.deploy_gated(
            "poison",
            std::fs::read(factline_tests::POISON_PLUGIN).unwrap(),
            None,
            GateOptions::new(None, true).unwrap(),
        ))
        .unwrap_err();
    let DeployError::GateRefused { report, .. } = &refused else {
        panic!("expected a gate refusal, got {refused}");
    };
    assert_eq!(report.verdict, GateVerdict::Refused, "{report}");
    let failure = report.candidate_failure.as_ref().expect("the failing case");
    assert_eq!(
        failure.at,
        format!("item/{partition} offset {poisoned}"),
        "{report}"
    );
    assert_eq!(failure.kind, FailureKind::Trap, "{report}");
    assert!(failure.message.contains("poisoned item.b"), "{report}");
    assert_eq!(report.counts.failures, 1, "{report}");
    assert!(
        report.cases.iter().any(|c| c.effect == EffectKind::Failure),
        "{report}"
    );
    assert!(refused.to_string().contains("poisoned item.b"), "{refused}");

    // Nothing deployed, nothing written.
    assert_eq!(host.plugins()[0].version, running);
    assert_eq!((row("count/item.a"), row("count/item.b")), (a, b));
    for p in 0..3 {
        assert_eq!(
            host.log().group_offset("poison", "item", p).unwrap(),
            offsets[p as usize]
        );
    }
    assert_eq!(host.log().dead_letter_count().unwrap(), 0);
    let history = host.plugin_versions("poison").unwrap();
    assert!(history.previous.is_empty());
    assert_eq!(history.gates.last().unwrap().verdict, GateVerdict::Refused);
    rt.block_on(Arc::into_inner(host).unwrap().shutdown());
}
