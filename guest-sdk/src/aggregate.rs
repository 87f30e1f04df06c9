//! Aggregates: the decider model. The type is the state.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{CommandContext, EventMeta, Failure, Rejection, StoredEvent};

/// An aggregate (WIT world `aggregate`). The implementing type *is* the state: `Default` is the
/// state of a new stream, and it crosses the boundary as named MessagePack so the host can cache
/// and snapshot it. Export it with [`aggregate!`](crate::aggregate!).
///
/// `Command` and `Event` are serde enums whose variant names (`#[serde(rename = "order.created")]`)
/// are the type strings.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a factline aggregate",
    label = "implement `factline_guest::Aggregate` for this type"
)]
pub trait Aggregate: Default + Serialize + DeserializeOwned {
    type Command: Serialize + DeserializeOwned;
    type Event: Serialize + DeserializeOwned;

    /// Decides on a command: the events to append, or a rejection. Must not change anything;
    /// the host applies the events through [`evolve`](Self::evolve) once they are stored.
    fn decide(
        &self,
        command: Self::Command,
        ctx: &CommandContext,
    ) -> Result<Vec<Self::Event>, Rejection>;

    /// Folds one stored event into the state.
    fn evolve(&mut self, event: Self::Event, meta: &EventMeta);

    /// Schema version recorded with a new event (for later upcasting).
    fn schema_version(_event: &Self::Event) -> u32 {
        1
    }

    /// Version of the state's serialized shape. Bump it when a new plugin version changes the
    /// state incompatibly: the host then ignores snapshots of the old shape and writes new ones.
    const STATE_SCHEMA: u32 = 1;

    /// The old `(event type, schema version)` pairs [`upcast`](Self::upcast) understands.
    fn upcasts() -> Vec<(&'static str, u32)> {
        Vec::new()
    }

    /// Rewrites an old event one step towards its current schema (it must change the type or
    /// raise the version). The SDK repeats it until the event is current, for every reader of
    /// the stream: this aggregate's `evolve`, and every projector, policy and saga.
    fn upcast(old: StoredEvent) -> Result<StoredEvent, Failure> {
        Err(Failure::new(format!(
            "no upcaster for `{}` schema {}",
            old.event_type, old.schema_version
        )))
    }
}

/// The byte-level entry points the export glue calls; the native harness runs the same code.
pub(crate) mod runtime {
    use super::Aggregate;
    use crate::codec;
    use crate::types::{
        DecideError, Failure, RawCommand, RawEvent, RawNewEvent, Rejection, StoredEvent,
    };

    pub fn event_types<A: Aggregate>() -> Vec<String> {
        crate::variant_list::<A::Event>()
    }

    pub fn state_schema<A: Aggregate>() -> u32 {
        A::STATE_SCHEMA
    }

    pub fn initial_state<A: Aggregate>() -> Vec<u8> {
        save(&A::default()).unwrap_or_else(|f| panic!("initial state: {f}"))
    }

    pub fn evolve<A: Aggregate>(state: &[u8], events: Vec<RawEvent>) -> Result<Vec<u8>, Failure> {
        let mut state: A = load(state)?;
        let names = codec::variant_names_of::<A::Event>().map_err(Failure::from)?;
        for (index, event) in events.into_iter().enumerate() {
            match codec::decode_variant_among::<A::Event>(names, &event.event_type, &event.payload)
            {
                Ok(Some(decoded)) => state.evolve(decoded, &event.meta),
                // Not ours: the host filters by `event-types`, so this is an old or foreign type.
                Ok(None) => {}
                Err(e) => return Err(Failure::from(e).at(index)),
            }
        }
        save(&state)
    }

    pub fn decide<A: Aggregate>(
        state: &[u8],
        command: RawCommand,
    ) -> Result<Vec<RawNewEvent>, DecideError> {
        let state: A = load(state).map_err(DecideError::Failed)?;
        // A command the aggregate cannot read will never succeed on retry: tell the sender.
        let decoded =
            match codec::decode_variant::<A::Command>(&command.command_type, &command.payload) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => {
                    return Err(DecideError::Rejected(Rejection::new(
                        "unknown-command",
                        format!(
                            "`{}` is not a command of this aggregate",
                            command.command_type
                        ),
                    )));
                }
                Err(e) => {
                    return Err(DecideError::Rejected(Rejection::new(
                        "invalid-command",
                        e.to_string(),
                    )));
                }
            };
        let events = state
            .decide(decoded, &command.ctx)
            .map_err(DecideError::Rejected)?;
        events
            .iter()
            .map(|event| {
                let (event_type, payload) = codec::encode_variant(event)?;
                Ok(RawNewEvent {
                    event_type,
                    schema_version: A::schema_version(event),
                    payload,
                    metadata: Vec::new(),
                })
            })
            .collect::<Result<_, codec::CodecError>>()
            .map_err(|e| DecideError::Failed(e.into()))
    }

    /// The declared old versions, as owned strings (what the host asks once per instance).
    pub fn upcasts<A: Aggregate>() -> Vec<(String, u32)> {
        A::upcasts()
            .into_iter()
            .map(|(t, v)| (t.to_owned(), v))
            .collect()
    }

    /// Brings every event the aggregate declares old to its current schema; others pass as they
    /// are. A step that makes no progress, or a chain longer than the declared pairs, fails.
    pub fn upcast<A: Aggregate>(events: Vec<RawEvent>) -> Result<Vec<RawEvent>, Failure> {
        let old = A::upcasts();
        let is_old = |t: &str, v: u32| old.iter().any(|(ot, ov)| *ot == t && *ov == v);
        events
            .into_iter()
            .enumerate()
            .map(|(index, mut event)| {
                let mut steps = 0;
                while is_old(&event.event_type, event.meta.schema_version) {
                    steps += 1;
                    let before = (event.event_type.clone(), event.meta.schema_version);
                    if steps > old.len() {
                        return Err(Failure::new(format!(
                            "upcasting `{}` schema {} does not end",
                            before.0, before.1
                        ))
                        .at(index));
                    }
                    let stored = StoredEvent {
                        event_type: event.event_type,
                        schema_version: event.meta.schema_version,
                        payload: codec::msgpack_to_json(&event.payload)
                            .map_err(|e| Failure::from(e).at(index))?,
                    };
                    let new = A::upcast(stored).map_err(|f| f.at(index))?;
                    if (new.event_type.as_str(), new.schema_version) == (&*before.0, before.1) {
                        return Err(Failure::new(format!(
                            "the upcaster left `{}` at schema {}",
                            before.0, before.1
                        ))
                        .at(index));
                    }
                    event.event_type = new.event_type;
                    event.meta.schema_version = new.schema_version;
                    event.payload = codec::json_to_msgpack(&new.payload);
                }
                Ok(event)
            })
            .collect()
    }

    /// Empty bytes read as the initial state, so a host may skip `initial-state`.
    fn load<A: Aggregate>(state: &[u8]) -> Result<A, Failure> {
        if state.is_empty() {
            return Ok(A::default());
        }
        codec::decode(state).map_err(|e| {
            Failure::new(format!(
                "state is not a valid `{}`: {e}",
                std::any::type_name::<A>()
            ))
        })
    }

    fn save<A: Aggregate>(state: &A) -> Result<Vec<u8>, Failure> {
        codec::encode(state).map_err(|e| {
            Failure::new(format!(
                "cannot encode state `{}`: {e}",
                std::any::type_name::<A>()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::codec::json_to_msgpack;
    use crate::types::{DecideError, RawCommand, RawEvent};

    #[derive(Debug, Default, Serialize, Deserialize)]
    struct Tally {
        n: u32,
    }

    #[derive(Serialize, Deserialize)]
    enum Command {
        #[serde(rename = "add")]
        Add { by: u32 },
    }

    #[derive(Serialize, Deserialize)]
    enum Event {
        #[serde(rename = "t.added")]
        Added { by: u32 },
    }

    impl Aggregate for Tally {
        type Command = Command;
        type Event = Event;
        fn decide(
            &self,
            Command::Add { by }: Command,
            _: &CommandContext,
        ) -> Result<Vec<Event>, Rejection> {
            Rejection::ensure(by > 0, "zero", "add at least 1")?;
            Ok(vec![Event::Added { by }])
        }
        fn evolve(&mut self, Event::Added { by }: Event, _: &EventMeta) {
            self.n += by;
        }
    }

    fn event(event_type: &str, payload: serde_json::Value) -> RawEvent {
        RawEvent {
            event_type: event_type.into(),
            payload: json_to_msgpack(&payload),
            ..Default::default()
        }
    }

    fn command(command_type: &str, payload: serde_json::Value) -> RawCommand {
        RawCommand {
            command_type: command_type.into(),
            payload: json_to_msgpack(&payload),
            ..Default::default()
        }
    }

    #[test]
    fn evolve_skips_unknown_types_and_blames_the_malformed_event() {
        let state = runtime::initial_state::<Tally>();
        let events = vec![
            event("t.added", json!({"by": 2})),
            event("t.other", json!(1)),
            event("t.added", json!({"by": 3})),
        ];
        let state = runtime::evolve::<Tally>(&state, events).unwrap();
        assert_eq!(
            crate::codec::msgpack_to_json(&state).unwrap(),
            json!({"n": 5})
        );
        let bad = vec![
            event("t.added", json!({"by": 1})),
            event("t.added", json!({"by": -1})),
        ];
        let failure = runtime::evolve::<Tally>(&state, bad).unwrap_err();
        assert_eq!(failure.event_index, Some(1));
        assert!(
            failure.message.starts_with("invalid payload for `t.added`"),
            "{failure}"
        );
    }

    #[test]
    fn commands_that_cannot_be_read_are_rejected_not_failed() {
        let rejected = |result| match result {
            Err(DecideError::Rejected(r)) => r.code,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            rejected(runtime::decide::<Tally>(&[], command("sub", json!({})))),
            "unknown-command"
        );
        assert_eq!(
            rejected(runtime::decide::<Tally>(
                &[],
                command("add", json!({"by": "x"}))
            )),
            "invalid-command"
        );
        assert_eq!(
            rejected(runtime::decide::<Tally>(
                &[],
                command("add", json!({"by": 0}))
            )),
            "zero"
        );
        let events = runtime::decide::<Tally>(&[], command("add", json!({"by": 4}))).unwrap();
        assert_eq!(
            (events[0].event_type.as_str(), events[0].schema_version),
            ("t.added", 1)
        );
    }

    #[test]
    fn corrupt_state_is_a_failure() {
        let result = runtime::decide::<Tally>(&[0x92], command("add", json!({"by": 1})));
        assert!(
            matches!(result, Err(DecideError::Failed(f)) if f.message.contains("state is not a valid"))
        );
    }
}
