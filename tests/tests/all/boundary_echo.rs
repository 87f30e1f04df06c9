//! What crosses a projector's boundary (host/src/plugin/boundary.rs): a component without a
//! declaration is handed the stored MessagePack unchanged; one whose `factline:boundary`
//! section says `json` is handed JSON, and what it writes back as JSON is stored as the same
//! MessagePack. The same echo projector is built both ways (the section appended to it, as
//! scripts/componentize does for the Python and JavaScript projectors).

use factline_host::{Boundary, ExpectedVersion, Limits, LoadError, NewEvent, PluginKind};
use serde_json::json;

use crate::support::{log, msgpack, projector_group, runtime};

/// `component` with the custom section declaring `content` at its boundary.
fn declaring(component: &[u8], content: &str) -> Vec<u8> {
    let name = b"factline:boundary";
    let mut out = component.to_vec();
    out.push(0);
    out.push(u8::try_from(1 + name.len() + content.len()).unwrap());
    out.push(u8::try_from(name.len()).unwrap());
    out.extend_from_slice(name);
    out.extend_from_slice(content.as_bytes());
    out
}

/// One event's stored payload, the bytes the projector was handed, and what it wrote back.
type Row = (Vec<u8>, Vec<u8>, Vec<u8>);

/// Runs the echo projector built from `component` over two events; for each, what it was handed
/// (`seen`) and what it wrote back, as stored (`echo`), beside the stored payload.
fn run(component: &[u8]) -> (Boundary, Vec<Row>) {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("thing", 1)]);
    let payloads = [
        // Ints and floats, nesting, non-ASCII, null, a `$` key among others.
        msgpack(
            json!({"n": 7, "f": 2.5, "whole": 3.0, "deep": {"list": [1, -2, "é"]}, "none": null, "$x": 1}),
        ),
        // What JSON cannot say plainly: binary, an integer key, one `$` key alone.
        {
            use rmpv::Value;
            let mut out = Vec::new();
            let map = Value::Map(vec![
                (
                    "a".into(),
                    Value::Map(vec![("bin".into(), Value::Binary(vec![0, 255]))]),
                ),
                (
                    "b".into(),
                    Value::Map(vec![(Value::from(7), "seven".into())]),
                ),
                (
                    "c".into(),
                    Value::Map(vec![("$bin".into(), Value::from(1))]),
                ),
            ]);
            rmpv::encode::write_value(&mut out, &map).unwrap();
            out
        },
    ];
    let appended = log
        .append(
            "thing-1",
            ExpectedVersion::NoStream,
            payloads
                .iter()
                .map(|p| NewEvent::new("thing.happened", p.clone()))
                .collect(),
        )
        .unwrap();
    let rt = runtime();
    let plugin = rt
        .load(
            "echo",
            PluginKind::Projector,
            component,
            Limits::default(),
            None,
        )
        .unwrap();
    let mut group = projector_group(&log, "echo", &["thing"], 16, &plugin);
    group.run_until_idle().unwrap();
    let ids = appended.event_ids.iter();
    let rows = ids
        .zip(payloads)
        .map(|(id, stored)| {
            let row = |key: String| {
                factline_host::query_read_model(&log, "echo", &key)
                    .unwrap()
                    .unwrap_or_else(|| panic!("no row {key}"))
            };
            let seen: rmpv::Value =
                rmpv::decode::read_value(&mut row(format!("seen/{id}")).as_slice()).unwrap();
            let rmpv::Value::Binary(seen) = seen else {
                panic!("seen is not binary: {seen}")
            };
            (stored, seen, row(format!("echo/{id}")))
        })
        .collect();
    (plugin.boundary, rows)
}

#[test]
fn an_undeclared_component_gets_msgpack_unchanged() {
    let plain = std::fs::read(factline_tests::BOUNDARY_ECHO).unwrap();
    let (boundary, rows) = run(&plain);
    assert_eq!(boundary, Boundary::MessagePack);
    for (stored, seen, echo) in rows {
        assert_eq!(seen, stored, "handed the stored bytes");
        assert_eq!(echo, stored, "and what it wrote is stored as is");
    }
    // Declaring MessagePack explicitly is the same.
    let (boundary, _) = run(&declaring(&plain, "msgpack"));
    assert_eq!(boundary, Boundary::MessagePack);
}

#[test]
fn a_component_declaring_json_gets_json_and_its_json_is_stored_as_msgpack() {
    let json = declaring(
        &std::fs::read(factline_tests::BOUNDARY_ECHO).unwrap(),
        "json",
    );
    let (boundary, rows) = run(&json);
    assert_eq!(boundary, Boundary::Json);
    let seen: Vec<String> = rows
        .iter()
        .map(|(_, seen, _)| String::from_utf8(seen.clone()).unwrap())
        .collect();
    assert_eq!(
        seen,
        [
            r#"{"$x":1,"deep":{"list":[1,-2,"\u00e9"]},"f":2.5,"n":7,"none":null,"whole":3.0}"#,
            r#"{"a":{"bin":{"$bin":[0,255]}},"b":{"$map":[[7,"seven"]]},"c":{"$map":[["$bin",1]]}}"#,
        ]
    );
    for (stored, _, echo) in rows {
        assert_eq!(
            echo, stored,
            "the JSON written back is the stored MessagePack, byte for byte"
        );
    }
}

#[test]
fn only_projectors_may_declare_json_and_a_bad_declaration_is_refused() {
    let rt = runtime();
    let order = std::fs::read(factline_tests::ORDER).unwrap();
    let e = rt
        .load(
            "order",
            PluginKind::Aggregate,
            &declaring(&order, "json"),
            Limits::default(),
            None,
        )
        .unwrap_err();
    assert!(matches!(e, LoadError::Boundary(_)), "{e}");
    assert!(e.to_string().contains("only projectors"), "{e}");
    let echo = std::fs::read(factline_tests::BOUNDARY_ECHO).unwrap();
    let e = rt
        .load(
            "echo",
            PluginKind::Projector,
            &declaring(&echo, "yaml"),
            Limits::default(),
            None,
        )
        .unwrap_err();
    assert!(e.to_string().contains("must be `json` or `msgpack`"), "{e}");
}
