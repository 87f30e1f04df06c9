//! The notification aggregate as `.wasm`: a subject is sent once per stream; no recipient is
//! rejected.

use factline_host::aggregate::{AggregateHandler, AggregateOptions, CommandError, CommandRequest};
use factline_host::plugin::{Limits, PluginKind};
use serde_json::{Value, json};

use crate::support::{load, log, msgpack, runtime};

fn send(h: &AggregateHandler, payload: Value) -> Result<usize, CommandError> {
    Ok(h.handle(CommandRequest {
        id: "ORD-1".into(),
        command_type: "send".into(),
        payload: msgpack(payload),
        ..Default::default()
    })?
    .events
    .len())
}

#[test]
fn sends_each_subject_once() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let plugin = load(
        &rt,
        "notification",
        PluginKind::Aggregate,
        factline_tests::NOTIFICATION,
        Limits::default(),
    );
    let h = AggregateHandler::new(
        log(dir.path(), &[("notification", 1)]),
        plugin,
        AggregateOptions::new("notification"),
    )
    .unwrap();
    let hello = json!({"recipient": "C1", "subject": "hello", "body": "hi"});
    assert_eq!(send(&h, hello.clone()).unwrap(), 1);
    assert_eq!(send(&h, hello).unwrap(), 0);
    let nobody = send(&h, json!({"recipient": "", "subject": "x", "body": ""})).unwrap_err();
    assert!(
        matches!(&nobody, CommandError::Rejected(r) if r.code == "no-recipient"),
        "{nobody}"
    );
}
