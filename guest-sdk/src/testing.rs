//! The native test harness: given events, when a command, then events or a rejection; given
//! events, then read-model rows.
//!
//! Each case is a typed builder over a [`Scenario`], so the same case runs natively here
//! ([`AggregateCase::run`], which panics with a readable diff) and, converted with
//! [`AggregateCase::scenario`], against the built `.wasm` in the host. Native runs go through
//! the same byte-level code as the wasm export glue (MessagePack state, type strings).
//!
//! ```
//! # use factline_guest::{Aggregate, CommandContext, EventMeta, Rejection};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Default, Serialize, Deserialize)]
//! # pub struct Counter { value: u64 }
//! # #[derive(Serialize, Deserialize)]
//! # pub enum Command { #[serde(rename = "increment")] Increment { by: u64 } }
//! # #[derive(Serialize, Deserialize)]
//! # pub enum Event { #[serde(rename = "counter.incremented")] Incremented { by: u64 } }
//! # impl Aggregate for Counter {
//! #     type Command = Command;
//! #     type Event = Event;
//! #     fn decide(&self, Command::Increment { by }: Command, _: &CommandContext) -> Result<Vec<Event>, Rejection> {
//! #         Rejection::ensure(by > 0, "zero", "increment by at least 1")?;
//! #         Ok(vec![Event::Incremented { by }])
//! #     }
//! #     fn evolve(&mut self, Event::Incremented { by }: Event, _: &EventMeta) { self.value += by; }
//! # }
//! use factline_guest::testing::{AggregateTest, json};
//!
//! AggregateTest::<Counter>::given([Event::Incremented { by: 2 }])
//!     .when(Command::Increment { by: 3 })
//!     .then_events([Event::Incremented { by: 3 }])
//!     .then_version(2)
//!     .then_state(json!({ "value": 5 }))
//!     .run();
//!
//! AggregateTest::<Counter>::given_no_events()
//!     .when(Command::Increment { by: 0 })
//!     .then_rejected("zero")
//!     .run();
//! ```

use std::marker::PhantomData;

use serde::Serialize;
pub use serde_json::{Value, json};

use crate::codec;
use crate::projector::MemoryStore;
use crate::scenario::{
    AggregateExpectation, AggregateOutcome, AggregateScenario, CallFailed, ExpectedCommand,
    ExpectedEvent, ExpectedRow, GivenEvent, Mismatch, PolicyOutcome, PolicyScenario,
    ProjectorOutcome, ProjectorScenario, Scenario, WhenCommand,
};
use crate::types::{DecideError, Failure};
use crate::{Aggregate, Policy, Projector, aggregate, policy, projector};

/// Lists a plugin's scenario functions once: `all()` returns them as [`Scenario`]s (for the
/// `.wasm` runner), and each becomes a native `#[test]`, plus one that the names are unique.
///
/// ```text
/// factline_guest::scenarios!(create_gives_version_1, creating_twice_is_rejected);
/// ```
#[macro_export]
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        /// Every scenario of this module, for runners outside this crate.
        pub fn all() -> Vec<$crate::scenario::Scenario> {
            vec![$($name().into()),*]
        }

        #[cfg(test)]
        mod tests {
            $(#[test]
            fn $name() {
                super::$name().run();
            })*

            #[test]
            fn scenario_names_are_unique() {
                let all = super::all();
                let mut names: Vec<&str> = all.iter().map(|s| s.name()).collect();
                names.sort_unstable();
                names.dedup();
                assert_eq!(names.len(), all.len(), "two scenarios share a name");
            }
        }
    };
}

/// The stream of an [`AggregateTest`] unless [`AggregateTest::on_stream`] sets one.
pub const DEFAULT_STREAM: &str = "test-1";

/// Checks that the JSON scenario file at `path` holds exactly `scenarios`, so the file that
/// plugins in other languages run cannot drift from the Rust cases. With `FACTLINE_BLESS=1` in
/// the environment it writes the file instead (after changing the Rust scenarios).
pub fn check_scenario_file(path: &std::path::Path, description: &str, scenarios: Vec<Scenario>) {
    let file = crate::scenario::ScenarioFile {
        description: description.to_owned(),
        scenarios,
    };
    let mut want = serde_json::to_string_pretty(&file).expect("scenarios serialize");
    want.push('\n');
    if std::env::var_os("FACTLINE_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(path, &want).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let got = std::fs::read_to_string(path).unwrap_or_default();
    let parsed: Option<crate::scenario::ScenarioFile> = serde_json::from_str(&got).ok();
    assert!(
        parsed.as_ref() == Some(&file),
        "{} does not hold this crate's scenarios; after changing them, rewrite it with \
         `FACTLINE_BLESS=1 cargo test -p <plugin> scenario_file`",
        path.display()
    );
}

/// Runs an aggregate scenario natively against `A` (steps as in [`crate::scenario`]).
pub fn run_aggregate<A: Aggregate>(scenario: &AggregateScenario) -> AggregateOutcome {
    let failed = |f: Failure| AggregateOutcome::Failed {
        kind: "guest".into(),
        message: f.to_string(),
    };
    let given = match scenario.given_events() {
        Ok(given) => given,
        Err(message) => {
            return AggregateOutcome::Failed {
                kind: "invalid-scenario".into(),
                message,
            };
        }
    };
    // As the host does: every reader sees stored events in their current schema.
    let given = match aggregate::runtime::upcast::<A>(given) {
        Ok(given) => given,
        Err(f) => return failed(f),
    };
    let mut state = aggregate::runtime::initial_state::<A>();
    if !given.is_empty() {
        state = match aggregate::runtime::evolve::<A>(&state, given) {
            Ok(state) => state,
            Err(f) => return failed(f),
        };
    }
    let new_events = match aggregate::runtime::decide::<A>(&state, scenario.command()) {
        Ok(events) => events,
        Err(DecideError::Rejected(r)) => {
            return AggregateOutcome::Rejected {
                code: r.code,
                message: r.message,
            };
        }
        Err(DecideError::Failed(f)) => return failed(f),
    };
    match aggregate::runtime::evolve::<A>(&state, scenario.emitted_events(&new_events)) {
        Ok(state) => {
            let version = (scenario.given.len() + new_events.len()) as u64;
            AggregateOutcome::from_msgpack(&new_events, version, &state)
        }
        Err(f) => failed(f),
    }
}

/// Runs a projector scenario natively against `P` with an in-memory read model.
/// Runs a saga scenario natively against the Rust type `S` (the same driver the `.wasm` runner
/// uses, over the byte-level entry points the export glue calls).
pub fn run_saga<S: crate::Saga>(
    scenario: &crate::scenario::SagaScenario,
) -> crate::scenario::SagaOutcome {
    scenario.run(&mut NativeSaga::<S>(std::marker::PhantomData))
}

struct NativeSaga<S>(std::marker::PhantomData<S>);

/// A native call's failure as the host reports a guest's own `failure`.
fn guest(f: Failure) -> CallFailed {
    CallFailed {
        kind: "guest".into(),
        message: f.message,
        event_index: f.event_index.map(|i| i as usize),
    }
}

impl<S: crate::Saga> crate::scenario::SagaCalls for NativeSaga<S> {
    fn steps(&mut self) -> Result<Vec<(String, bool)>, CallFailed> {
        Ok(crate::saga::runtime::definition::<S>()
            .steps
            .into_iter()
            .map(|s| (s.name, s.compensable))
            .collect())
    }

    fn start(&mut self, trigger: &crate::RawEvent) -> Result<Option<Vec<u8>>, CallFailed> {
        crate::saga::runtime::start::<S>(trigger.clone())
            .map(|s| s.map(|(_, data)| data))
            .map_err(guest)
    }

    fn execute(&mut self, step: &str, data: &[u8]) -> Result<crate::OutgoingCommand, CallFailed> {
        crate::saga::runtime::execute::<S>(step, data).map_err(guest)
    }

    fn compensate(
        &mut self,
        step: &str,
        data: &[u8],
    ) -> Result<Option<crate::OutgoingCommand>, CallFailed> {
        crate::saga::runtime::compensate::<S>(step, data).map_err(guest)
    }

    fn judge(
        &mut self,
        step: &str,
        data: &[u8],
        answer: &crate::RawEvent,
    ) -> Result<crate::scenario::Judgement, CallFailed> {
        use crate::saga::runtime::RawVerdict;
        use crate::scenario::Judgement;
        Ok(
            match crate::saga::runtime::judge::<S>(step, data, answer.clone()).map_err(guest)? {
                RawVerdict::Succeeded(d) => Judgement::Succeeded(d),
                RawVerdict::Failed(r) => Judgement::Failed(r),
                RawVerdict::NotMine => Judgement::NotMine,
            },
        )
    }
}

/// Runs a projector scenario natively against `P` with an in-memory read model, parking
/// failing events as the host does ([`crate::scenario::run_consumer`]).
pub fn run_projector<P: Projector>(scenario: &ProjectorScenario) -> ProjectorOutcome {
    let given = match scenario.given_events() {
        Ok(given) => given,
        Err(message) => return ProjectorOutcome::Failed { message },
    };
    let ran = crate::scenario::run_consumer(&given, |events| {
        let mut store = MemoryStore::default();
        projector::runtime::project::<P>(events.to_vec(), &mut store).map_err(guest)?;
        Ok(store.rows)
    });
    match ran {
        Ok((rows, dead_letters)) => ProjectorOutcome::from_msgpack(rows, dead_letters),
        Err(message) => ProjectorOutcome::Failed { message },
    }
}

/// Given events of an aggregate (builder start).
#[must_use = "continue with `.when(command)`"]
pub struct AggregateTest<A> {
    name: Option<String>,
    stream: String,
    given: Vec<GivenEvent>,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> AggregateTest<A> {
    pub fn given(events: impl IntoIterator<Item = A::Event>) -> Self {
        let given = events
            .into_iter()
            .map(|event| {
                let (event_type, payload) = to_parts(&event);
                GivenEvent {
                    event_type,
                    stream: None,
                    schema_version: A::schema_version(&event),
                    payload,
                    occurred_at: None,
                }
            })
            .collect();
        Self {
            name: None,
            stream: DEFAULT_STREAM.into(),
            given,
            aggregate: PhantomData,
        }
    }

    pub fn given_no_events() -> Self {
        Self::given([])
    }

    /// Given events with the time each occurred (ms since the Unix epoch), for rules that
    /// depend on event time.
    pub fn given_at(events: impl IntoIterator<Item = (u64, A::Event)>) -> Self {
        let (times, events): (Vec<u64>, Vec<A::Event>) = events.into_iter().unzip();
        let mut test = Self::given(events);
        for (given, at) in test.given.iter_mut().zip(times) {
            given.occurred_at = Some(at);
        }
        test
    }

    /// Adds an event as it was stored, possibly under an old schema (upcast before `evolve`,
    /// as the host does): `.and_stored("order.placed", 1, json!({..}))`.
    pub fn and_stored(
        mut self,
        event_type: impl Into<String>,
        schema_version: u32,
        payload: Value,
    ) -> Self {
        self.given.push(GivenEvent {
            event_type: event_type.into(),
            stream: None,
            schema_version,
            payload,
            occurred_at: None,
        });
        self
    }

    /// The aggregate's stream, e.g. `order-ORD-1` (default [`DEFAULT_STREAM`]).
    pub fn on_stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = stream.into();
        self
    }

    /// Names the scenario (default: its event and command types).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn when(self, command: A::Command) -> AggregateWhen<A> {
        let (command_type, payload) = to_parts(&command);
        AggregateWhen {
            test: self,
            when: WhenCommand {
                command_type,
                payload,
                issued_at: None,
            },
        }
    }
}

/// Given events and a command; say what should happen.
#[must_use = "continue with `.then_events(..)` or `.then_rejected(..)`"]
pub struct AggregateWhen<A> {
    test: AggregateTest<A>,
    when: WhenCommand,
}

impl<A: Aggregate> AggregateWhen<A> {
    pub fn issued_at(mut self, millis: u64) -> Self {
        self.when.issued_at = Some(millis);
        self
    }

    /// Exactly these new events, in order.
    pub fn then_events(self, events: impl IntoIterator<Item = A::Event>) -> AggregateCase<A> {
        let events = events
            .into_iter()
            .map(|event| {
                let (event_type, payload) = to_parts(&event);
                ExpectedEvent {
                    event_type,
                    payload,
                    schema_version: Some(A::schema_version(&event)),
                }
            })
            .collect();
        self.then(AggregateExpectation::Events {
            events,
            version: None,
            state: None,
        })
    }

    /// A rejection with this code.
    pub fn then_rejected(self, code: impl Into<String>) -> AggregateCase<A> {
        self.then(AggregateExpectation::Rejected {
            code: Some(code.into()),
            message_contains: None,
        })
    }

    fn then(self, then: AggregateExpectation) -> AggregateCase<A> {
        let AggregateTest {
            name,
            stream,
            given,
            ..
        } = self.test;
        let name = name.unwrap_or_else(|| {
            format!(
                "given [{}] when {}",
                types(given.iter().map(|g| &g.event_type)),
                self.when.command_type
            )
        });
        let scenario = AggregateScenario {
            name,
            stream,
            given,
            when: self.when,
            then,
        };
        AggregateCase {
            scenario,
            aggregate: PhantomData,
        }
    }
}

/// A complete aggregate case: run it natively or export it as a [`Scenario`].
#[must_use = "call `.run()`, or `.scenario()` to export it"]
pub struct AggregateCase<A> {
    scenario: AggregateScenario,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> AggregateCase<A> {
    /// The stream version after the new events.
    #[track_caller]
    pub fn then_version(mut self, expected: u64) -> Self {
        match &mut self.scenario.then {
            AggregateExpectation::Events { version, .. } => *version = Some(expected),
            AggregateExpectation::Rejected { .. } | AggregateExpectation::Failed { .. } => {
                panic!("then_version needs then_events")
            }
        }
        self
    }

    /// The whole state after the new events: a `json!` value or a value of `A` itself.
    #[track_caller]
    pub fn then_state(mut self, expected: impl Serialize) -> Self {
        match &mut self.scenario.then {
            AggregateExpectation::Events { state, .. } => *state = Some(to_json(&expected)),
            AggregateExpectation::Rejected { .. } | AggregateExpectation::Failed { .. } => {
                panic!("then_state needs then_events")
            }
        }
        self
    }

    /// The rejection's message contains `text`.
    #[track_caller]
    pub fn then_message_contains(mut self, text: impl Into<String>) -> Self {
        match &mut self.scenario.then {
            AggregateExpectation::Rejected {
                message_contains, ..
            }
            | AggregateExpectation::Failed {
                message_contains, ..
            } => *message_contains = Some(text.into()),
            AggregateExpectation::Events { .. } => {
                panic!("then_message_contains needs then_rejected")
            }
        }
        self
    }

    pub fn check(&self) -> Result<(), Mismatch> {
        self.scenario.verify(&run_aggregate::<A>(&self.scenario))
    }

    /// Runs natively; panics with the expected-vs-actual report on a mismatch.
    #[track_caller]
    pub fn run(&self) {
        if let Err(mismatch) = self.check() {
            panic!("{mismatch}");
        }
    }

    pub fn scenario(&self) -> Scenario {
        Scenario::Aggregate(self.scenario.clone())
    }
}

impl<A> From<AggregateCase<A>> for Scenario {
    fn from(case: AggregateCase<A>) -> Self {
        Scenario::Aggregate(case.scenario)
    }
}

/// Given events (each with its stream), then read-model rows.
#[must_use = "call `.run()`, or `.scenario()` to export it"]
pub struct ProjectorTest<P> {
    scenario: ProjectorScenario,
    named: bool,
    projector: PhantomData<fn() -> P>,
}

impl<P: Projector> ProjectorTest<P> {
    /// `(stream, event)` pairs, delivered in order as one batch.
    pub fn given<S: Into<String>>(events: impl IntoIterator<Item = (S, P::Event)>) -> Self {
        let (given, name) = given_on_streams(events);
        Self {
            scenario: ProjectorScenario {
                name,
                given,
                then: Vec::new(),
                dead_letters: Vec::new(),
            },
            named: false,
            projector: PhantomData,
        }
    }

    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.scenario.name = name.into();
        self.named = true;
        self
    }

    /// The row at `key` equals `expected` (a `json!` value or the row type itself).
    pub fn then_read_model(self, key: impl Into<String>, expected: impl Serialize) -> Self {
        let value = Some(to_json(&expected));
        self.then_row(ExpectedRow {
            key: key.into(),
            value,
        })
    }

    /// There is no row at `key`.
    pub fn then_absent(self, key: impl Into<String>) -> Self {
        self.then_row(ExpectedRow {
            key: key.into(),
            value: None,
        })
    }

    fn then_row(mut self, row: ExpectedRow) -> Self {
        if !self.named {
            let sep = if self.scenario.then.is_empty() {
                " then rows "
            } else {
                ", "
            };
            self.scenario.name = format!("{}{sep}{}", self.scenario.name, row.key);
        }
        self.scenario.then.push(row);
        self
    }

    pub fn check(&self) -> Result<(), Mismatch> {
        self.scenario.verify(&run_projector::<P>(&self.scenario))
    }

    #[track_caller]
    pub fn run(&self) {
        if let Err(mismatch) = self.check() {
            panic!("{mismatch}");
        }
    }

    pub fn scenario(&self) -> Scenario {
        Scenario::Projector(self.scenario.clone())
    }
}

impl<P> From<ProjectorTest<P>> for Scenario {
    fn from(test: ProjectorTest<P>) -> Self {
        Scenario::Projector(test.scenario)
    }
}

/// Runs a policy scenario natively against `P`.
pub fn run_policy<P: Policy>(scenario: &PolicyScenario) -> PolicyOutcome {
    let given = match scenario.given_events() {
        Ok(given) => given,
        Err(message) => return PolicyOutcome::Failed { message },
    };
    match crate::scenario::run_consumer(&given, |events| {
        policy::runtime::react::<P>(events.to_vec()).map_err(guest)
    }) {
        Ok((lists, dead_letters)) => PolicyOutcome::from_lists(lists, dead_letters),
        Err(message) => PolicyOutcome::Failed { message },
    }
}

/// Given events (each with its stream), then exactly these commands.
#[must_use = "call `.run()`, or `.scenario()` to export it"]
pub struct PolicyTest<P> {
    scenario: PolicyScenario,
    policy: PhantomData<fn() -> P>,
}

impl<P: Policy> PolicyTest<P> {
    /// `(stream, event)` pairs, delivered in order as one batch.
    pub fn given<S: Into<String>>(events: impl IntoIterator<Item = (S, P::Event)>) -> Self {
        let (given, name) = given_on_streams(events);
        Self {
            scenario: PolicyScenario {
                name,
                given,
                then: Vec::new(),
                dead_letters: Vec::new(),
            },
            policy: PhantomData,
        }
    }

    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.scenario.name = name.into();
        self
    }

    /// The next command sent: `command` (a serde enum like the target aggregate's `Command`)
    /// to `stream` of aggregate `aggregate`. Its id is not checked: runners give the events
    /// different id forms (a host uses UUIDs), so check derived ids in an end-to-end test.
    #[track_caller]
    pub fn then_command<C: Serialize>(
        mut self,
        aggregate: impl Into<String>,
        stream: impl Into<String>,
        command: &C,
    ) -> Self {
        let (command_type, payload) = to_parts(command);
        self.scenario.then.push(ExpectedCommand {
            aggregate: aggregate.into(),
            stream: stream.into(),
            command_type,
            command_id: None,
            payload,
        });
        self
    }

    pub fn check(&self) -> Result<(), Mismatch> {
        self.scenario.verify(&run_policy::<P>(&self.scenario))
    }

    #[track_caller]
    pub fn run(&self) {
        if let Err(mismatch) = self.check() {
            panic!("{mismatch}");
        }
    }

    pub fn scenario(&self) -> Scenario {
        Scenario::Policy(self.scenario.clone())
    }
}

impl<P> From<PolicyTest<P>> for Scenario {
    fn from(test: PolicyTest<P>) -> Self {
        Scenario::Policy(test.scenario)
    }
}

/// `(stream, event)` pairs as given events, and the default scenario name.
#[track_caller]
fn given_on_streams<S: Into<String>, E: Serialize>(
    events: impl IntoIterator<Item = (S, E)>,
) -> (Vec<GivenEvent>, String) {
    let given: Vec<GivenEvent> = events
        .into_iter()
        .map(|(stream, event)| {
            let (event_type, payload) = to_parts(&event);
            GivenEvent {
                event_type,
                stream: Some(stream.into()),
                schema_version: 1,
                payload,
                occurred_at: None,
            }
        })
        .collect();
    let name = format!("given [{}]", types(given.iter().map(|g| &g.event_type)));
    (given, name)
}

#[track_caller]
fn to_parts<T: Serialize>(value: &T) -> (String, Value) {
    let (name, payload) = codec::encode_variant(value).unwrap_or_else(|e| panic!("{e}"));
    (
        name,
        codec::msgpack_to_json(&payload).unwrap_or_else(|e| panic!("{e}")),
    )
}

/// A value as the plugin would store it: through named MessagePack, back to JSON.
#[track_caller]
fn to_json<T: Serialize>(value: &T) -> Value {
    let bytes = codec::encode(value).unwrap_or_else(|e| panic!("{e}"));
    codec::msgpack_to_json(&bytes).unwrap_or_else(|e| panic!("{e}"))
}

fn types<'a>(names: impl Iterator<Item = &'a String>) -> String {
    names.map(String::as_str).collect::<Vec<_>>().join(", ")
}
