//! Policies (choreography): events in, commands out, no state of their own.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{EventMeta, Failure, OutgoingCommand};

/// A policy (WIT world `policy`). Export it with [`policy!`](crate::policy!).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a factline policy",
    label = "implement `factline_guest::Policy` for this type"
)]
pub trait Policy: Default {
    /// A serde enum of the event types this policy reacts to; others are skipped.
    type Event: Serialize + DeserializeOwned;

    /// The commands one event causes. Derive each command id from `meta.event_id` so a
    /// redelivered event sends nothing twice.
    fn react(&self, event: Self::Event, meta: &EventMeta) -> Result<Vec<OutgoingCommand>, Failure>;
}

pub(crate) mod runtime {
    use super::Policy;
    use crate::codec;
    use crate::types::{Failure, OutgoingCommand, RawEvent};

    pub fn event_types<P: Policy>() -> Vec<String> {
        crate::variant_list::<P::Event>()
    }

    /// One list of commands per event of the batch, in order.
    pub fn react<P: Policy>(events: Vec<RawEvent>) -> Result<Vec<Vec<OutgoingCommand>>, Failure> {
        let policy = P::default();
        let names = codec::variant_names_of::<P::Event>().map_err(Failure::from)?;
        events
            .into_iter()
            .enumerate()
            .map(|(index, event)| {
                match codec::decode_variant_among::<P::Event>(
                    names,
                    &event.event_type,
                    &event.payload,
                ) {
                    Ok(Some(decoded)) => {
                        policy.react(decoded, &event.meta).map_err(|f| f.at(index))
                    }
                    Ok(None) => Ok(Vec::new()),
                    Err(e) => Err(Failure::from(e).at(index)),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::codec::json_to_msgpack;
    use crate::types::RawEvent;

    #[derive(Default)]
    struct Notify;

    #[derive(Serialize, Deserialize)]
    enum Event {
        #[serde(rename = "review.approved")]
        Approved { review: String },
    }

    #[derive(Serialize, Deserialize)]
    enum Command {
        #[serde(rename = "send")]
        Send { about: String },
    }

    impl Policy for Notify {
        type Event = Event;
        fn react(
            &self,
            Event::Approved { review }: Event,
            meta: &EventMeta,
        ) -> Result<Vec<OutgoingCommand>, Failure> {
            let id = format!("{}/send", meta.event_id);
            Ok(vec![OutgoingCommand::new(
                "notification",
                "notification-1",
                id,
                &Command::Send { about: review },
            )?])
        }
    }

    #[test]
    fn one_list_of_commands_per_event_and_none_for_unknown_types() {
        let event = |event_type: &str, payload| RawEvent {
            event_type: event_type.into(),
            payload: json_to_msgpack(&payload),
            ..Default::default()
        };
        let lists = runtime::react::<Notify>(vec![
            event("review.approved", json!({"review": "R1"})),
            event("review.rejected", json!({})),
        ])
        .unwrap();
        assert_eq!(lists.iter().map(Vec::len).collect::<Vec<_>>(), [1, 0]);
        assert_eq!(lists[0][0].command_type, "send");
        let failure = runtime::react::<Notify>(vec![
            event("review.rejected", json!({})),
            event("review.approved", json!({})),
        ])
        .unwrap_err();
        assert_eq!(failure.event_index, Some(1));
    }

    #[test]
    fn a_policy_scenario_reports_a_wrong_or_missing_command() {
        use crate::testing::PolicyTest;
        let given = || {
            PolicyTest::<Notify>::given([(
                "review-1",
                Event::Approved {
                    review: "R1".into(),
                },
            )])
        };
        let send = |about: &str| Command::Send {
            about: about.into(),
        };
        given()
            .then_command("notification", "notification-1", &send("R1"))
            .run();
        let wrong = given()
            .then_command("notification", "notification-1", &send("R2"))
            .check()
            .unwrap_err();
        assert!(
            wrong.differences[0].starts_with("commands[0].payload.about"),
            "{wrong}"
        );
        let none = given().check().unwrap_err();
        assert_eq!(none.differences, ["expected 0 commands, got 1"]);
    }
}
