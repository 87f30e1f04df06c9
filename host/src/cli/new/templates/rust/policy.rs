//! The `{{name}}` policy: every `counter.incremented` of 10 or more sends the `audit`
//! aggregate a `record` command, one stream per counter. The command id derives from the
//! event, so a redelivered event sends nothing twice.

use factline_guest::{EventMeta, Failure, OutgoingCommand, Policy};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "counter.incremented")]
    Incremented { by: u64 },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditCommand {
    Record { counter: String, by: u64 },
}

#[derive(Debug, Default)]
pub struct LargeIncrements;

impl Policy for LargeIncrements {
    type Event = Event;

    fn react(&self, event: Event, meta: &EventMeta) -> Result<Vec<OutgoingCommand>, Failure> {
        let Event::Incremented { by } = event;
        if by < 10 {
            return Ok(Vec::new());
        }
        let command = AuditCommand::Record {
            counter: meta.stream.clone(),
            by,
        };
        Ok(vec![OutgoingCommand::new(
            "audit",
            format!("audit-{}", meta.stream),
            format!("{}/audit", meta.event_id),
            &command,
        )?])
    }
}

factline_guest::policy!(LargeIncrements);
