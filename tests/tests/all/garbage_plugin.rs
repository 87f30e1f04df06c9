//! A plugin that bypasses the SDK and decides events whose payloads are not MessagePack: the
//! host refuses the output as `bad output`, appends nothing, and keeps serving.

use factline_host::{AggregateHandler, AggregateOptions, CommandError, CommandRequest};
use factline_host::{FailureKind, Limits, PluginKind};

use crate::support::{load, log, runtime};

#[test]
fn undecodable_payloads_are_refused_and_nothing_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("garbage", 1)]);
    let rt = runtime();
    let plugin = load(
        &rt,
        "garbage",
        PluginKind::Aggregate,
        factline_tests::GARBAGE_PLUGIN,
        Limits::default(),
    );
    let h = AggregateHandler::new(log.clone(), plugin, AggregateOptions::new("garbage")).unwrap();
    for command_type in ["reserved-byte", "truncated"] {
        let r = h.handle(CommandRequest {
            id: "G-1".into(),
            command_type: command_type.into(),
            ..Default::default()
        });
        match r {
            Err(CommandError::Failed { failure, .. }) => {
                assert_eq!(failure.kind, FailureKind::BadOutput, "{failure:?}");
                assert!(
                    failure.message.contains("not one MessagePack value"),
                    "{}",
                    failure.message
                );
            }
            other => panic!("expected bad output, got {other:?}"),
        }
    }
    assert_eq!(log.stream_version("garbage-G-1").unwrap(), 0);
    assert_eq!(log.high_water_mark("garbage", 0).unwrap(), 0);
}
