//! Records every sent notification in a read model, keyed `<recipient>/<stream>/<version>`
//! (so a recipient's notifications are one prefix scan, in stream order).

use factline_guest::{EventMeta, Failure, Projector, ReadModel};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub recipient: String,
    pub subject: String,
    pub body: String,
    /// The notification's stream, e.g. `notification-ORD-1`.
    pub stream: String,
    pub sent_at: u64,
    pub correlation_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "notification.sent")]
    Sent {
        recipient: String,
        subject: String,
        body: String,
    },
}

#[derive(Debug, Default)]
pub struct NotificationLog;

impl Projector for NotificationLog {
    type Event = Event;

    fn project(
        &mut self,
        Event::Sent {
            recipient,
            subject,
            body,
        }: Event,
        meta: &EventMeta,
        model: &mut ReadModel<'_>,
    ) -> Result<(), Failure> {
        let key = format!("{recipient}/{}/{:010}", meta.stream, meta.stream_version);
        model.put(
            &key,
            &Sent {
                recipient,
                subject,
                body,
                stream: meta.stream.clone(),
                sent_at: meta.occurred_at,
                correlation_id: meta.correlation_id.clone(),
            },
        )
    }
}

factline_guest::projector!(NotificationLog);
