//! The notification aggregate as `.wasm`: a subject is sent once per stream; no recipient is
//! rejected.

use factline_host::{AggregateHandler, CommandError};
use serde_json::{Value, json};

use crate::support::{self, aggregate_handler, appended};

fn send(h: &AggregateHandler, payload: Value) -> Result<usize, CommandError> {
    Ok(appended(support::send(h, "ORD-1", "send", payload))?.len())
}

#[test]
fn sends_each_subject_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = aggregate_handler(dir.path(), "notification", factline_tests::NOTIFICATION);
    let hello = json!({"recipient": "C1", "subject": "hello", "body": "hi"});
    assert_eq!(send(&h, hello.clone()).unwrap(), 1);
    assert_eq!(send(&h, hello).unwrap(), 0);
    let nobody = send(&h, json!({"recipient": "", "subject": "x", "body": ""})).unwrap_err();
    assert!(
        matches!(&nobody, CommandError::Rejected(r) if r.code == "no-recipient"),
        "{nobody}"
    );
}
