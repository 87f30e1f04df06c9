//! The language-neutral scenario format: given events, when a command, then events or a
//! rejection (aggregates); given events, then read-model rows (projectors) or commands
//! (policies); given a trigger and answers, then commands and compensations (sagas).
//!
//! Scenarios are plain serde data, so they are written in Rust with [`crate::testing`], or read
//! from JSON or TOML files, and run natively against a Rust type or against any built `.wasm`
//! (Rust, Python, JavaScript …). A runner turns what the plugin returned into an
//! [`AggregateOutcome`] or [`ProjectorOutcome`] and calls [`verify`]. Payloads are compared as
//! JSON values: MessagePack decoded to JSON, integers by value whatever their width.
//!
//! # Running an aggregate scenario (what a runner must do)
//! 1. `state = initial-state()`; if [`AggregateScenario::given_events`] is not empty,
//!    `state = evolve(state, given_events)` (one batch).
//! 2. `decide(state, command())`: a rejection gives [`AggregateOutcome::Rejected`], a failure
//!    [`AggregateOutcome::Failed`].
//! 3. `state = evolve(state, emitted_events(new_events))`, then
//!    [`AggregateOutcome::from_msgpack`]`(new_events, given.len() + new_events.len(), state)`.
//!
//! # Running a projector scenario
//! `project(given_events)` as one batch into an empty read model, then
//! [`ProjectorOutcome::from_msgpack`] over all rows (a failure gives `Failed`).
//!
//! # Running a policy scenario
//! `react(given_events)` as one batch, then [`PolicyOutcome::from_lists`] over the command lists
//! it returned (a failure gives `Failed`).
//!
//! # Running a saga scenario
//! [`SagaScenario::run`] drives the saga through a [`SagaCalls`] (the plugin's byte-level
//! exports, native or `.wasm`) as the host would, with answers arriving in order: `start` on the
//! trigger, `execute` the first step, then each answer is judged by the current step
//! (`not-mine` skips it; `succeeded` moves to the next step's command; `failed`, or a command the
//! aggregate rejected, fails the step and compensates the completed compensable steps newest
//! first). The outcome is the commands sent, the compensations sent, and the final status.
//!
//! Envelopes are deterministic: given event `i` has id `given-{i}`, offset `i`, partition 0, topic
//! = the stream's category (text before the first `-`), `occurred_at` =
//! [`default_occurred_at`]`(i)` unless set; the command has id `command` and `issued_at` =
//! `default_occurred_at(given.len())` unless set; emitted event `j` has id `command-{j}` and occurs
//! at `issued_at`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::codec::{self, CodecError};
use crate::types::{CommandContext, EventMeta, RawCommand, RawEvent, RawNewEvent};

/// 2023-11-14T22:13:20Z: the clock of a scenario that sets no times.
pub const BASE_TIME_MS: u64 = 1_700_000_000_000;

/// `occurred_at` of given event `index` when the scenario sets none: one second apart.
pub fn default_occurred_at(index: usize) -> u64 {
    BASE_TIME_MS + index as u64 * 1_000
}

const CORRELATION_ID: &str = "scenario";
const COMMAND_ID: &str = "command";

/// A scenario file (`docs/scenario-files.md`): the scenarios of one plugin, as JSON or TOML.
///
/// Plugins in every language share one file, so they are held to the same behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// What the scenarios are about, for people; not checked.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub scenarios: Vec<Scenario>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Scenario {
    Aggregate(AggregateScenario),
    Projector(ProjectorScenario),
    Policy(PolicyScenario),
    Saga(SagaScenario),
}

impl Scenario {
    pub fn name(&self) -> &str {
        match self {
            Scenario::Aggregate(s) => &s.name,
            Scenario::Projector(s) => &s.name,
            Scenario::Policy(s) => &s.name,
            Scenario::Saga(s) => &s.name,
        }
    }
}

/// A plugin call that failed, as a runner saw it: the host's failure kind (`trap`, `guest`,
/// `deadline`, ...), its message, and the event of the batch it names, when it names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailed {
    pub kind: String,
    pub message: String,
    pub event_index: Option<usize>,
}

impl CallFailed {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            event_index: None,
        }
    }

    fn dead_letter(self, event: usize) -> DeadLetter {
        DeadLetter {
            event,
            kind: self.kind,
            message: self.message,
        }
    }
}

impl fmt::Display for CallFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// The kinds of failed call a scenario can expect (the host's; a business rejection is an
/// outcome of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    Trap,
    MemoryLimit,
    Deadline,
    Fuel,
    Guest,
    BadOutput,
    Host,
}

impl FailureKind {
    fn name(self) -> String {
        to_json(&self).as_str().unwrap_or_default().to_owned()
    }
}

/// An event the host would park: its index among the given events, the failure's kind and
/// message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub event: usize,
    pub kind: String,
    pub message: String,
}

/// A dead letter a scenario expects: the event (index among the given events, from 0), and
/// optionally the failure's kind and a part of its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedDeadLetter {
    pub event: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FailureKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_contains: Option<String>,
}

/// Differences between the dead letters expected and those the run produced.
fn diff_dead_letters(want: &[ExpectedDeadLetter], got: &[DeadLetter], diffs: &mut Vec<String>) {
    for w in want {
        match got.iter().find(|g| g.event == w.event) {
            None => diffs.push(format!(
                "dead_letters: expected given event #{} to be parked, but it was handled",
                w.event
            )),
            Some(g) => check_failure(
                &format!("dead letter of event #{}", w.event),
                w.kind,
                w.message_contains.as_deref(),
                &g.kind,
                &g.message,
                diffs,
            ),
        }
    }
    for g in got
        .iter()
        .filter(|g| !want.iter().any(|w| w.event == g.event))
    {
        diffs.push(format!(
            "dead_letters: given event #{} would be parked ({}): {}",
            g.event, g.kind, g.message
        ));
    }
}

/// A report's `expected` or `actual` side, with the dead letters beside it when there are any.
fn with_dead_letters<T: Serialize>(value: Value, dead_letters: &[T]) -> Value {
    if dead_letters.is_empty() {
        return value;
    }
    json!({ "then": value, "dead_letters": to_json(&dead_letters) })
}

fn check_failure(
    what: &str,
    kind: Option<FailureKind>,
    message_contains: Option<&str>,
    got_kind: &str,
    got_message: &str,
    diffs: &mut Vec<String>,
) {
    if let Some(kind) = kind
        && kind.name() != got_kind
    {
        diffs.push(format!(
            "{what}: expected kind `{}`, got `{got_kind}` ({got_message})",
            kind.name()
        ));
    }
    if let Some(part) = message_contains
        && !got_message.contains(part)
    {
        diffs.push(format!(
            "{what}: expected the message to contain {part:?}, got {got_message:?}"
        ));
    }
}

/// Runs a consumer's batch as the host's engine does with `dead_letter = "skip"`: a failed call
/// names the failing event (or it is found by running ever longer prefixes, as the engine
/// isolates it), that event is parked, and the batch runs again without it. `call` gets the
/// events still delivered; its result is theirs.
pub fn run_consumer<T: Default>(
    given: &[RawEvent],
    mut call: impl FnMut(&[RawEvent]) -> Result<T, CallFailed>,
) -> Result<(T, Vec<DeadLetter>), String> {
    let mut parked: Vec<DeadLetter> = Vec::new();
    loop {
        let live: Vec<usize> = (0..given.len())
            .filter(|i| !parked.iter().any(|d| d.event == *i))
            .collect();
        if live.is_empty() {
            return Ok((T::default(), parked));
        }
        let batch: Vec<RawEvent> = live.iter().map(|&i| given[i].clone()).collect();
        let failure = match call(&batch) {
            Ok(result) => {
                parked.sort_by_key(|d| d.event);
                return Ok((result, parked));
            }
            Err(f) => f,
        };
        let at = match failure.event_index.filter(|&i| i < batch.len()) {
            Some(i) => Some((i, failure.clone())),
            None => (1..=batch.len()).find_map(|n| match call(&batch[..n]) {
                Ok(_) => None,
                Err(f) => Some((n - 1, f)),
            }),
        };
        let Some((index, failure)) = at else {
            return Err(format!(
                "the batch failed ({failure}), but no prefix of it fails: the plugin is not \
                 deterministic"
            ));
        };
        parked.push(failure.dead_letter(live[index]));
    }
}

/// Given a trigger event and answers in order, then the commands and compensations the saga
/// sends and where it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaScenario {
    pub name: String,
    /// Must name its stream.
    pub trigger: GivenEvent,
    #[serde(default)]
    pub answers: Vec<SagaAnswer>,
    pub then: SagaExpectation,
    /// The events whose call fails and that the host parks: `event` 0 is the trigger, 1.. the
    /// answers in order. None expected: none may fail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dead_letters: Vec<ExpectedDeadLetter>,
}

/// An answer to the current step: an event (naming its stream), or the step's command rejected
/// by its aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SagaAnswer {
    Rejected { rejected: String },
    Event(GivenEvent),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaExpectation {
    /// `ignored` (the trigger started nothing), `running`, `completed`, `failed` or
    /// `needs-attention` (a compensation failed).
    pub status: String,
    /// Step commands, in the order they were sent.
    #[serde(default)]
    pub commands: Vec<ExpectedCommand>,
    /// Compensating commands, in the order they were sent.
    #[serde(default)]
    pub compensations: Vec<ExpectedCommand>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    /// Text the failure reason must contain (the host's saga log keeps the reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_contains: Option<String>,
}

/// What a saga scenario's run did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SagaRun {
    pub status: String,
    pub commands: Vec<ExpectedCommand>,
    pub compensations: Vec<ExpectedCommand>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    /// Why the step failed, worded as the host's saga log words it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dead_letters: Vec<DeadLetter>,
}

/// What running a saga scenario produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum SagaOutcome {
    Ran(SagaRun),
    Failed { message: String },
}

/// A saga's judgement of an answer, as [`SagaCalls::judge`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    Succeeded(Vec<u8>),
    Failed(String),
    NotMine,
}

/// A saga plugin's exports at the byte level (instance data is the plugin's own bytes); errors
/// are the plugin's failed calls.
pub trait SagaCalls {
    /// `(step name, compensable)` in order.
    fn steps(&mut self) -> Result<Vec<(String, bool)>, CallFailed>;
    /// The new instance's data, or `None` when the trigger starts nothing.
    fn start(&mut self, trigger: &RawEvent) -> Result<Option<Vec<u8>>, CallFailed>;
    fn execute(&mut self, step: &str, data: &[u8]) -> Result<crate::OutgoingCommand, CallFailed>;
    fn compensate(
        &mut self,
        step: &str,
        data: &[u8],
    ) -> Result<Option<crate::OutgoingCommand>, CallFailed>;
    fn judge(
        &mut self,
        step: &str,
        data: &[u8],
        answer: &RawEvent,
    ) -> Result<Judgement, CallFailed>;
}

fn expected_command(c: crate::OutgoingCommand) -> Result<ExpectedCommand, String> {
    let payload = codec::msgpack_to_json(&c.payload)
        .map_err(|e| format!("payload of `{}`: {e}", c.command_type))?;
    Ok(ExpectedCommand {
        aggregate: c.aggregate,
        stream: c.stream,
        command_type: c.command_type,
        command_id: Some(c.command_id),
        payload,
    })
}

impl SagaScenario {
    /// Runs the scenario against `calls` (see the module documentation).
    pub fn run(&self, calls: &mut impl SagaCalls) -> SagaOutcome {
        match self.drive(calls) {
            Ok(ran) => SagaOutcome::Ran(ran),
            Err(message) => SagaOutcome::Failed { message },
        }
    }

    /// As the host: a failed `start` or `judge` parks its event (the instance is left as it
    /// was), a failed `execute` fails the step, a failed `compensate` leaves the instance
    /// `needs-attention`.
    fn drive(&self, calls: &mut impl SagaCalls) -> Result<SagaRun, String> {
        let mut given = vec![self.trigger.clone()];
        given.extend(self.answers.iter().filter_map(|a| match a {
            SagaAnswer::Event(e) => Some(e.clone()),
            SagaAnswer::Rejected { .. } => None,
        }));
        let mut events = raw_events(&given, None)?.into_iter();
        let trigger = events.next().expect("the trigger is first");
        let mut ran = SagaRun {
            status: "ignored".into(),
            ..SagaRun::default()
        };
        let steps = calls.steps().map_err(|f| f.to_string())?;
        let mut data = match calls.start(&trigger) {
            Ok(Some(data)) => data,
            Ok(None) => return Ok(ran),
            Err(f) => {
                ran.dead_letters.push(f.dead_letter(0));
                return Ok(ran);
            }
        };
        ran.status = "running".into();
        let mut current = 0;
        if steps.is_empty() {
            ran.status = "completed".into();
            return Ok(ran);
        }
        if !send_step(calls, &steps, current, &data, &mut ran)? {
            return Ok(ran);
        }
        for (index, answer) in self.answers.iter().enumerate() {
            let step = steps[current].0.clone();
            let verdict = match answer {
                SagaAnswer::Rejected { rejected } => {
                    let last = ran.commands.last().expect("a step's command was sent");
                    Judgement::Failed(format!(
                        "{} rejected {}: {rejected}",
                        last.aggregate, last.command_type
                    ))
                }
                SagaAnswer::Event(_) => {
                    let event = events.next().expect("one raw event per event answer");
                    match calls.judge(&step, &data, &event) {
                        Ok(verdict) => verdict,
                        Err(f) => {
                            ran.dead_letters.push(f.dead_letter(index + 1));
                            continue;
                        }
                    }
                }
            };
            match verdict {
                Judgement::NotMine => continue,
                Judgement::Succeeded(next) => {
                    data = next;
                    current += 1;
                    if current == steps.len() {
                        ran.status = "completed".into();
                        return Ok(ran);
                    }
                    if !send_step(calls, &steps, current, &data, &mut ran)? {
                        return Ok(ran);
                    }
                }
                Judgement::Failed(reason) => {
                    fail_step(calls, &steps, current, &data, reason, &mut ran)?;
                    return Ok(ran);
                }
            }
        }
        Ok(ran)
    }

    pub fn verify(&self, outcome: &SagaOutcome) -> Result<(), Mismatch> {
        let mut diffs = Vec::new();
        match outcome {
            SagaOutcome::Failed { message } => diffs.push(format!("the saga failed: {message}")),
            SagaOutcome::Ran(got) => {
                let want = &self.then;
                diff(
                    "status",
                    &json!(want.status),
                    &json!(got.status),
                    &mut diffs,
                );
                diff(
                    "failed_step",
                    &json!(want.failed_step),
                    &json!(got.failed_step),
                    &mut diffs,
                );
                if let Some(part) = &want.reason_contains {
                    match &got.failure_reason {
                        Some(reason) if reason.contains(part.as_str()) => {}
                        Some(reason) => diffs.push(format!(
                            "failure reason: expected it to contain {part:?}, got {reason:?}"
                        )),
                        None => diffs.push(format!(
                            "failure reason: expected it to contain {part:?}, but no step failed"
                        )),
                    }
                }
                for (what, want, got) in [
                    ("commands", &want.commands, &got.commands),
                    ("compensations", &want.compensations, &got.compensations),
                ] {
                    diff_commands(what, want, got, &mut diffs);
                }
                diff_dead_letters(&self.dead_letters, &got.dead_letters, &mut diffs);
            }
        }
        let expected = with_dead_letters(to_json(&self.then), &self.dead_letters);
        Mismatch::check(&self.name, diffs, expected, to_json(outcome))
    }
}

/// Sends step `current`'s command; a failed `execute` fails the step (as the host does).
/// Whether the saga goes on.
fn send_step(
    calls: &mut impl SagaCalls,
    steps: &[(String, bool)],
    current: usize,
    data: &[u8],
    ran: &mut SagaRun,
) -> Result<bool, String> {
    match calls.execute(&steps[current].0, data) {
        Ok(c) => {
            ran.commands.push(expected_command(c)?);
            Ok(true)
        }
        Err(f) => {
            let reason = format!("the saga could not build the command: {}", f.message);
            fail_step(calls, steps, current, data, reason, ran)?;
            Ok(false)
        }
    }
}

/// Fails step `current` and compensates the completed compensable steps, newest first.
fn fail_step(
    calls: &mut impl SagaCalls,
    steps: &[(String, bool)],
    current: usize,
    data: &[u8],
    reason: String,
    ran: &mut SagaRun,
) -> Result<(), String> {
    ran.status = "failed".into();
    ran.failed_step = Some(steps[current].0.clone());
    ran.failure_reason = Some(reason);
    for (done, compensable) in steps[..current].iter().rev() {
        if !*compensable {
            continue;
        }
        match calls.compensate(done, data) {
            Ok(Some(c)) => ran.compensations.push(expected_command(c)?),
            Ok(None) => {}
            Err(_) => {
                // The host retries it with backoff, then waits for an operator.
                ran.status = "needs-attention".into();
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Differences between expected and sent commands, in order; a `command_id` is compared only
/// when the expectation gives one.
fn diff_commands(
    what: &str,
    want: &[ExpectedCommand],
    got: &[ExpectedCommand],
    diffs: &mut Vec<String>,
) {
    if want.len() != got.len() {
        diffs.push(format!("expected {} {what}, got {}", want.len(), got.len()));
    }
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        let w = to_json(w);
        let mut g = to_json(g);
        if w.get("command_id").is_none()
            && let Some(o) = g.as_object_mut()
        {
            o.remove("command_id");
        }
        diff(&format!("{what}[{i}]"), &w, &g, diffs);
    }
}

/// Given events (each with its stream), then exactly these commands, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyScenario {
    pub name: String,
    pub given: Vec<GivenEvent>,
    #[serde(default)]
    pub then: Vec<ExpectedCommand>,
    /// The given events the host would park (their call fails). None expected: none may fail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dead_letters: Vec<ExpectedDeadLetter>,
}

/// A command a policy should send. `command_id` is checked only when given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedCommand {
    pub aggregate: String,
    pub stream: String,
    pub command_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    #[serde(default)]
    pub payload: Value,
}

impl PolicyScenario {
    /// The given events as the host would deliver them; each must name its stream.
    pub fn given_events(&self) -> Result<Vec<RawEvent>, String> {
        raw_events(&self.given, None)
    }

    pub fn verify(&self, outcome: &PolicyOutcome) -> Result<(), Mismatch> {
        let mut diffs = Vec::new();
        match outcome {
            PolicyOutcome::Failed { message } => {
                diffs.push(format!("the policy failed: {message}"))
            }
            PolicyOutcome::Commands {
                commands,
                dead_letters,
            } => {
                diff_commands("commands", &self.then, commands, &mut diffs);
                diff_dead_letters(&self.dead_letters, dead_letters, &mut diffs);
            }
        }
        let expected = with_dead_letters(to_json(&self.then), &self.dead_letters);
        Mismatch::check(&self.name, diffs, expected, to_json(outcome))
    }
}

/// What running a policy scenario produced: every command of every event, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum PolicyOutcome {
    Commands {
        commands: Vec<ExpectedCommand>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dead_letters: Vec<DeadLetter>,
    },
    Failed {
        message: String,
    },
}

impl PolicyOutcome {
    /// From the command lists `react` returned (payloads are named MessagePack) for the events
    /// delivered, and the events parked.
    pub fn from_lists(
        lists: Vec<Vec<crate::OutgoingCommand>>,
        dead_letters: Vec<DeadLetter>,
    ) -> Self {
        let commands = lists
            .into_iter()
            .flatten()
            .map(|c| {
                let payload = codec::msgpack_to_json(&c.payload)
                    .map_err(|e| format!("payload of `{}`: {e}", c.command_type))?;
                Ok(ExpectedCommand {
                    aggregate: c.aggregate,
                    stream: c.stream,
                    command_type: c.command_type,
                    command_id: Some(c.command_id),
                    payload,
                })
            })
            .collect();
        match commands {
            Ok(commands) => Self::Commands {
                commands,
                dead_letters,
            },
            Err(message) => Self::Failed { message },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateScenario {
    pub name: String,
    /// The aggregate's stream, e.g. `order-ORD-1`.
    pub stream: String,
    #[serde(default)]
    pub given: Vec<GivenEvent>,
    pub when: WhenCommand,
    pub then: AggregateExpectation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GivenEvent {
    pub event_type: String,
    /// Required in projector scenarios; in aggregate scenarios absent or the scenario's stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default = "one")]
    pub schema_version: u32,
    #[serde(default)]
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<u64>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenCommand {
    pub command_type: String,
    /// `null` (or absent) reads as `{}` for commands without fields.
    #[serde(default)]
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AggregateExpectation {
    /// Exactly these new events, in order; optionally the stream version and the full state after.
    Events {
        events: Vec<ExpectedEvent>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<Value>,
    },
    /// A rejection, optionally with this code and a message containing this text.
    Rejected {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_contains: Option<String>,
    },
    /// A failed call (the command would answer `plugin-failed`), optionally of this kind and
    /// with a message containing this text.
    Failed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<FailureKind>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_contains: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedEvent {
    pub event_type: String,
    #[serde(default)]
    pub payload: Value,
    /// Checked only when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectorScenario {
    pub name: String,
    #[serde(default)]
    pub given: Vec<GivenEvent>,
    /// Only the listed keys are checked.
    #[serde(default)]
    pub then: Vec<ExpectedRow>,
    /// The given events the host would park (their call fails). None expected: none may fail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dead_letters: Vec<ExpectedDeadLetter>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedRow {
    pub key: String,
    /// `None` (absent or `null`): there must be no row with this key.
    #[serde(default)]
    pub value: Option<Value>,
}

impl AggregateScenario {
    /// The given events as the host would deliver them (see the module docs).
    pub fn given_events(&self) -> Result<Vec<RawEvent>, String> {
        if let Some((index, event)) = self
            .given
            .iter()
            .enumerate()
            .find(|(_, e)| e.stream.as_ref().is_some_and(|s| *s != self.stream))
        {
            return Err(format!(
                "invalid scenario: given event #{index} is on stream `{}`, but an aggregate scenario's \
                 events belong to `{}`",
                event.stream.as_deref().unwrap_or_default(),
                self.stream
            ));
        }
        raw_events(&self.given, Some(&self.stream))
    }

    /// The command, with its payload as named MessagePack.
    pub fn command(&self) -> RawCommand {
        RawCommand {
            command_type: self.when.command_type.clone(),
            payload: codec::json_to_msgpack(&self.when.payload),
            ctx: CommandContext {
                command_id: COMMAND_ID.into(),
                stream: self.stream.clone(),
                issued_at: self.issued_at(),
                correlation_id: CORRELATION_ID.into(),
                causation_id: CORRELATION_ID.into(),
                metadata: Vec::new(),
            },
        }
    }

    /// Envelopes for the events `decide` returned, as if the host had appended them.
    pub fn emitted_events(&self, new_events: &[RawNewEvent]) -> Vec<RawEvent> {
        new_events
            .iter()
            .enumerate()
            .map(|(j, event)| RawEvent {
                event_type: event.event_type.clone(),
                payload: event.payload.clone(),
                meta: EventMeta {
                    event_id: format!("{COMMAND_ID}-{j}"),
                    stream: self.stream.clone(),
                    stream_version: (self.given.len() + j + 1) as u64,
                    occurred_at: self.issued_at(),
                    correlation_id: CORRELATION_ID.into(),
                    causation_id: COMMAND_ID.into(),
                    schema_version: event.schema_version,
                    topic: category(&self.stream).into(),
                    partition: 0,
                    offset: (self.given.len() + j) as u64,
                    metadata: event.metadata.clone(),
                },
            })
            .collect()
    }

    fn issued_at(&self) -> u64 {
        self.when
            .issued_at
            .unwrap_or_else(|| default_occurred_at(self.given.len()))
    }

    pub fn verify(&self, outcome: &AggregateOutcome) -> Result<(), Mismatch> {
        use AggregateExpectation as E;
        use AggregateOutcome as O;
        let mut diffs = Vec::new();
        match (&self.then, outcome) {
            (
                E::Events {
                    events,
                    version,
                    state,
                },
                O::Events {
                    events: got,
                    version: got_version,
                    state: got_state,
                },
            ) => {
                let expected: Vec<Value> = events.iter().map(ExpectedEvent::to_json).collect();
                let actual: Vec<Value> = got
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        e.to_json(events.get(i).is_some_and(|x| x.schema_version.is_some()))
                    })
                    .collect();
                diff(
                    "events",
                    &Value::Array(expected),
                    &Value::Array(actual),
                    &mut diffs,
                );
                if let Some(version) = version
                    && version != got_version
                {
                    diffs.push(format!("version: expected {version}, got {got_version}"));
                }
                if let Some(state) = state {
                    diff("state", state, got_state, &mut diffs);
                }
            }
            (
                E::Rejected {
                    code,
                    message_contains,
                },
                O::Rejected { code: got, message },
            ) => {
                if let Some(code) = code
                    && code != got
                {
                    diffs.push(format!(
                        "rejection code: expected `{code}`, got `{got}` ({message})"
                    ));
                }
                if let Some(part) = message_contains
                    && !message.contains(part.as_str())
                {
                    diffs.push(format!(
                        "rejection message: expected it to contain {part:?}, got {message:?}"
                    ));
                }
            }
            (E::Events { .. }, O::Rejected { code, message }) => {
                diffs.push(format!(
                    "expected events, but the command was rejected ({code}): {message}"
                ));
            }
            (E::Rejected { .. }, O::Events { events, .. }) => {
                let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
                diffs.push(format!(
                    "expected a rejection, but the command was accepted with events {types:?}"
                ));
            }
            (
                E::Failed {
                    kind,
                    message_contains,
                },
                O::Failed { kind: got, message },
            ) => check_failure(
                "failure",
                *kind,
                message_contains.as_deref(),
                got,
                message,
                &mut diffs,
            ),
            (E::Failed { .. }, O::Events { events, .. }) => {
                let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
                diffs.push(format!(
                    "expected a failure, but the command was accepted with events {types:?}"
                ));
            }
            (E::Failed { .. }, O::Rejected { code, message }) => diffs.push(format!(
                "expected a failure, but the command was rejected ({code}): {message}"
            )),
            (_, O::Failed { kind, message }) => {
                diffs.push(format!("the plugin failed ({kind}): {message}"))
            }
        }
        Mismatch::check(&self.name, diffs, to_json(&self.then), to_json(outcome))
    }
}

impl ProjectorScenario {
    /// The given events as the host would deliver them; each must name its stream.
    pub fn given_events(&self) -> Result<Vec<RawEvent>, String> {
        raw_events(&self.given, None)
    }

    pub fn verify(&self, outcome: &ProjectorOutcome) -> Result<(), Mismatch> {
        let mut diffs = Vec::new();
        let expected: serde_json::Map<String, Value> = self
            .then
            .iter()
            .map(|row| (row.key.clone(), row.value.clone().unwrap_or(Value::Null)))
            .collect();
        let actual = match outcome {
            ProjectorOutcome::Failed { message } => {
                diffs.push(format!("the projector failed: {message}"));
                to_json(outcome)
            }
            ProjectorOutcome::Rows { rows, dead_letters } => {
                diff_dead_letters(&self.dead_letters, dead_letters, &mut diffs);
                for row in &self.then {
                    let path = format!("rows[{:?}]", row.key);
                    match (&row.value, rows.get(&row.key)) {
                        (None, None) => {}
                        (None, Some(got)) => {
                            diffs.push(format!("{path}: expected no row, got {}", compact(got)))
                        }
                        (Some(want), None) => diffs.push(format!(
                            "{path}: expected {}, but there is no row",
                            compact(want)
                        )),
                        (Some(want), Some(got)) => diff(&path, want, got, &mut diffs),
                    }
                }
                // Only the rows the scenario names, so the report stays readable.
                let shown = self.then.iter().map(|row| {
                    (
                        row.key.clone(),
                        rows.get(&row.key).cloned().unwrap_or(Value::Null),
                    )
                });
                with_dead_letters(Value::Object(shown.collect()), dead_letters)
            }
        };
        let expected = with_dead_letters(Value::Object(expected), &self.dead_letters);
        Mismatch::check(&self.name, diffs, expected, actual)
    }
}

fn raw_events(given: &[GivenEvent], default_stream: Option<&str>) -> Result<Vec<RawEvent>, String> {
    let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
    given
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let stream =
                event.stream.as_deref().or(default_stream).ok_or_else(|| {
                    format!("invalid scenario: given event #{index} names no stream")
                })?;
            let version = versions.entry(stream).or_default();
            *version += 1;
            Ok(RawEvent {
                event_type: event.event_type.clone(),
                payload: codec::json_to_msgpack(&event.payload),
                meta: EventMeta {
                    event_id: format!("given-{index}"),
                    stream: stream.to_owned(),
                    stream_version: *version,
                    occurred_at: event
                        .occurred_at
                        .unwrap_or_else(|| default_occurred_at(index)),
                    correlation_id: CORRELATION_ID.into(),
                    causation_id: CORRELATION_ID.into(),
                    schema_version: event.schema_version,
                    topic: category(stream).into(),
                    partition: 0,
                    offset: index as u64,
                    metadata: Vec::new(),
                },
            })
        })
        .collect()
}

/// `order` for `order-ORD-1`.
fn category(stream: &str) -> &str {
    stream
        .split_once('-')
        .map_or(stream, |(category, _)| category)
}

impl ExpectedEvent {
    fn to_json(&self) -> Value {
        let mut value = json!({ "event_type": self.event_type, "payload": self.payload });
        if let Some(version) = self.schema_version {
            value["schema_version"] = version.into();
        }
        value
    }
}

/// A new event as a runner saw it, payload decoded to JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActualEvent {
    pub event_type: String,
    pub schema_version: u32,
    pub payload: Value,
}

impl ActualEvent {
    pub fn from_msgpack(event: &RawNewEvent) -> Result<Self, CodecError> {
        Ok(Self {
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload: codec::msgpack_to_json(&event.payload)
                .map_err(|e| CodecError::new(format!("payload of `{}`: {e}", event.event_type)))?,
        })
    }

    fn to_json(&self, with_schema_version: bool) -> Value {
        let mut value = json!({ "event_type": self.event_type, "payload": self.payload });
        if with_schema_version {
            value["schema_version"] = self.schema_version.into();
        }
        value
    }
}

/// What running an aggregate scenario produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum AggregateOutcome {
    /// The command was accepted: the new events, the stream version after them, the state after
    /// evolving them.
    Events {
        events: Vec<ActualEvent>,
        version: u64,
        state: Value,
    },
    Rejected {
        code: String,
        message: String,
    },
    /// A failure or trap anywhere in the run (including bytes that are not MessagePack).
    Failed {
        #[serde(default)]
        kind: String,
        message: String,
    },
}

impl AggregateOutcome {
    /// From the new events, the stream version after them, and the state bytes after them.
    pub fn from_msgpack(new_events: &[RawNewEvent], version: u64, state: &[u8]) -> Self {
        let events = new_events
            .iter()
            .map(ActualEvent::from_msgpack)
            .collect::<Result<Vec<_>, _>>();
        let state =
            codec::msgpack_to_json(state).map_err(|e| CodecError::new(format!("state: {e}")));
        match (events, state) {
            (Ok(events), Ok(state)) => Self::Events {
                events,
                version,
                state,
            },
            (Err(e), _) | (_, Err(e)) => Self::Failed {
                kind: "bad-output".into(),
                message: e.to_string(),
            },
        }
    }
}

/// What running a projector scenario produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum ProjectorOutcome {
    Rows {
        rows: BTreeMap<String, Value>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dead_letters: Vec<DeadLetter>,
    },
    Failed {
        message: String,
    },
}

impl ProjectorOutcome {
    /// From the read model's rows (named MessagePack values) and the events parked.
    pub fn from_msgpack(
        rows: impl IntoIterator<Item = (String, Vec<u8>)>,
        dead_letters: Vec<DeadLetter>,
    ) -> Self {
        let rows = rows
            .into_iter()
            .map(|(key, bytes)| match codec::msgpack_to_json(&bytes) {
                Ok(value) => Ok((key, value)),
                Err(e) => Err(format!("row `{key}`: {e}")),
            })
            .collect();
        match rows {
            Ok(rows) => Self::Rows { rows, dead_letters },
            Err(message) => Self::Failed { message },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Aggregate(AggregateOutcome),
    Projector(ProjectorOutcome),
    Policy(PolicyOutcome),
    Saga(SagaOutcome),
}

impl From<SagaOutcome> for Outcome {
    fn from(outcome: SagaOutcome) -> Self {
        Self::Saga(outcome)
    }
}

impl From<PolicyOutcome> for Outcome {
    fn from(outcome: PolicyOutcome) -> Self {
        Self::Policy(outcome)
    }
}

impl From<AggregateOutcome> for Outcome {
    fn from(outcome: AggregateOutcome) -> Self {
        Self::Aggregate(outcome)
    }
}

impl From<ProjectorOutcome> for Outcome {
    fn from(outcome: ProjectorOutcome) -> Self {
        Self::Projector(outcome)
    }
}

/// Checks an outcome against the scenario's expectation.
pub fn verify(scenario: &Scenario, outcome: &Outcome) -> Result<(), Mismatch> {
    match (scenario, outcome) {
        (Scenario::Aggregate(s), Outcome::Aggregate(o)) => s.verify(o),
        (Scenario::Projector(s), Outcome::Projector(o)) => s.verify(o),
        (Scenario::Policy(s), Outcome::Policy(o)) => s.verify(o),
        (Scenario::Saga(s), Outcome::Saga(o)) => s.verify(o),
        (s, o) => Mismatch::check(
            s.name(),
            vec!["the outcome is of another plugin kind than the scenario".into()],
            to_json(s),
            match o {
                Outcome::Aggregate(o) => to_json(o),
                Outcome::Projector(o) => to_json(o),
                Outcome::Policy(o) => to_json(o),
                Outcome::Saga(o) => to_json(o),
            },
        ),
    }
}

/// A scenario whose outcome differs from its expectation; `Display` is the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub scenario: String,
    /// One line per difference, each starting with where (`events[0].payload.total`, `state.status`).
    pub differences: Vec<String>,
    pub expected: Value,
    pub actual: Value,
}

impl Mismatch {
    fn check(
        scenario: &str,
        differences: Vec<String>,
        expected: Value,
        actual: Value,
    ) -> Result<(), Self> {
        if differences.is_empty() {
            return Ok(());
        }
        Err(Self {
            scenario: scenario.to_owned(),
            differences,
            expected,
            actual,
        })
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scenario `{}` does not match:", self.scenario)?;
        for difference in &self.differences {
            writeln!(f, "  - {difference}")?;
        }
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
        writeln!(f, "expected:\n{}", pretty(&self.expected))?;
        write!(f, "actual:\n{}", pretty(&self.actual))
    }
}

impl std::error::Error for Mismatch {}

fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|e| Value::String(format!("<{e}>")))
}

fn compact(value: &Value) -> String {
    value.to_string()
}

/// Appends one line per difference between `expected` and `actual` below `path`.
fn diff(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => {
            for (key, want) in want {
                let path = format!("{path}.{key}");
                match got.get(key) {
                    Some(got) => diff(&path, want, got, out),
                    None => out.push(format!(
                        "{path}: expected {}, but it is missing",
                        compact(want)
                    )),
                }
            }
            for (key, got) in got.iter().filter(|(key, _)| !want.contains_key(*key)) {
                out.push(format!("{path}.{key}: unexpected {}", compact(got)));
            }
        }
        (Value::Array(want), Value::Array(got)) => {
            if want.len() != got.len() {
                out.push(format!(
                    "{path}: expected {} items, got {}",
                    want.len(),
                    got.len()
                ));
            }
            for i in 0..want.len().max(got.len()) {
                let path = format!("{path}[{i}]");
                match (want.get(i), got.get(i)) {
                    (Some(want), Some(got)) => diff(&path, want, got, out),
                    (Some(want), None) => out.push(format!(
                        "{path}: expected {}, but it is missing",
                        compact(want)
                    )),
                    (None, Some(got)) => out.push(format!("{path}: unexpected {}", compact(got))),
                    (None, None) => {}
                }
            }
        }
        (Value::Number(want), Value::Number(got)) if numbers_equal(want, got) => {}
        _ if expected == actual => {}
        _ => out.push(format!(
            "{path}: expected {}, got {}",
            compact(expected),
            compact(actual)
        )),
    }
}

fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    let int = |n: &serde_json::Number| {
        n.as_u64()
            .map(i128::from)
            .or_else(|| n.as_i64().map(i128::from))
    };
    match (int(a), int(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a.as_f64() == b.as_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(then: Value) -> AggregateScenario {
        serde_json::from_value(json!({
            "name": "confirm",
            "stream": "order-ORD-1",
            "given": [{"event_type": "order.created", "payload": {"order_id": "ORD-1"}}],
            "when": {"command_type": "confirm"},
            "then": then,
        }))
        .unwrap()
    }

    fn events(payload: Value) -> AggregateOutcome {
        AggregateOutcome::Events {
            events: vec![ActualEvent {
                event_type: "order.placed".into(),
                schema_version: 2,
                payload,
            }],
            version: 2,
            state: json!({"status": "confirmed"}),
        }
    }

    #[test]
    fn scenarios_read_from_json_and_toml_shapes() {
        let parsed: Scenario = serde_json::from_value(json!({
            "kind": "projector",
            "name": "rows",
            "given": [{"event_type": "order.created", "stream": "order-ORD-1", "payload": {"customer_id": "C"}}],
            "then": [{"key": "ORD-1", "value": {"status": "created"}}, {"key": "ORD-2"}],
        }))
        .unwrap();
        let Scenario::Projector(p) = &parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(p.given[0].schema_version, 1);
        assert_eq!(p.then[1].value, None);
        let back: Scenario =
            serde_json::from_value(serde_json::to_value(&parsed).unwrap()).unwrap();
        assert_eq!(back, parsed);
        let typo = serde_json::from_value::<Scenario>(json!({
            "kind": "aggregate", "name": "x", "stream": "s",
            "when": {"command_type": "c", "payload_": {}}, "then": {"outcome": "rejected"},
        }));
        assert!(typo.unwrap_err().to_string().contains("payload_"));
    }

    #[test]
    fn envelopes_are_deterministic() {
        let s = scenario(json!({"outcome": "rejected"}));
        let given = s.given_events().unwrap();
        assert_eq!(given[0].meta.stream_version, 1);
        assert_eq!(given[0].meta.topic, "order");
        assert_eq!(given[0].meta.occurred_at, BASE_TIME_MS);
        assert_eq!(s.command().ctx.issued_at, BASE_TIME_MS + 1_000);
        assert_eq!(s.command().payload, codec::NIL);
        let emitted = s.emitted_events(&[RawNewEvent {
            event_type: "x".into(),
            schema_version: 2,
            ..Default::default()
        }]);
        assert_eq!(
            (emitted[0].meta.stream_version, emitted[0].meta.offset),
            (2, 1)
        );
        let mut wrong = s.clone();
        wrong.given[0].stream = Some("order-ORD-2".into());
        assert!(wrong.given_events().unwrap_err().contains("order-ORD-2"));
    }

    #[test]
    fn matching_outcome_verifies_with_numbers_compared_by_value() {
        let s = scenario(json!({
            "outcome": "events",
            "events": [{"event_type": "order.placed", "payload": {"total": 4000.0}}],
            "version": 2,
            "state": {"status": "confirmed"},
        }));
        s.verify(&events(json!({"total": 4000}))).unwrap();
    }

    #[test]
    fn mismatch_names_each_difference_by_path() {
        let s = scenario(json!({
            "outcome": "events",
            "events": [{"event_type": "order.placed", "schema_version": 1, "payload": {"total": 4000, "currency": "JPY"}}],
            "version": 3,
            "state": {"status": "created"},
        }));
        let mismatch = s
            .verify(&events(json!({"total": 3000, "discount": 0})))
            .unwrap_err();
        // Key order follows serde_json's map, which a feature elsewhere may change.
        let mut differences = mismatch.differences.clone();
        differences.sort();
        assert_eq!(
            differences,
            [
                "events[0].payload.currency: expected \"JPY\", but it is missing",
                "events[0].payload.discount: unexpected 0",
                "events[0].payload.total: expected 4000, got 3000",
                "events[0].schema_version: expected 1, got 2",
                "state.status: expected \"created\", got \"confirmed\"",
                "version: expected 3, got 2",
            ]
        );
        let report = mismatch.to_string();
        assert!(
            report.starts_with("scenario `confirm` does not match:\n  - events[0]"),
            "{report}"
        );
        assert!(
            report.contains("\n  - version: expected 3, got 2\n"),
            "{report}"
        );
        assert!(
            report.contains("expected:\n{") && report.contains("actual:\n{"),
            "{report}"
        );
    }

    #[test]
    fn rejections_are_checked_by_code_and_message() {
        let s = scenario(
            json!({"outcome": "rejected", "code": "order-empty", "message_contains": "empty"}),
        );
        let rejected = |code: &str, message: &str| AggregateOutcome::Rejected {
            code: code.into(),
            message: message.into(),
        };
        s.verify(&rejected("order-empty", "an empty order"))
            .unwrap();
        let wrong = s.verify(&rejected("not-open", "closed")).unwrap_err();
        assert_eq!(wrong.differences.len(), 2, "{wrong}");
        let accepted = s.verify(&events(json!({}))).unwrap_err();
        assert!(
            accepted.differences[0].contains("accepted with events [\"order.placed\"]"),
            "{accepted}"
        );
        let failed = s
            .verify(&AggregateOutcome::Failed {
                kind: "trap".into(),
                message: "unreachable".into(),
            })
            .unwrap_err();
        assert_eq!(
            failed.differences,
            ["the plugin failed (trap): unreachable"]
        );
    }

    #[test]
    fn projector_rows_present_absent_and_different() {
        let s: ProjectorScenario = serde_json::from_value(json!({
            "name": "rows",
            "then": [
                {"key": "A", "value": {"n": 1}},
                {"key": "B"},
                {"key": "C", "value": {"n": 3}},
            ],
        }))
        .unwrap();
        let outcome = ProjectorOutcome::from_msgpack(
            [
                ("A".to_owned(), codec::json_to_msgpack(&json!({"n": 1}))),
                ("B".to_owned(), codec::json_to_msgpack(&json!({"n": 2}))),
                ("D".to_owned(), codec::json_to_msgpack(&json!({"n": 4}))),
            ],
            Vec::new(),
        );
        let mismatch = s.verify(&outcome).unwrap_err();
        assert_eq!(
            mismatch.differences,
            [
                "rows[\"B\"]: expected no row, got {\"n\":2}",
                "rows[\"C\"]: expected {\"n\":3}, but there is no row"
            ]
        );
        assert_eq!(
            mismatch.actual,
            json!({"A": {"n": 1}, "B": {"n": 2}, "C": null})
        );
        assert!(matches!(
            ProjectorOutcome::from_msgpack([("x".to_owned(), vec![0x92])], Vec::new()),
            ProjectorOutcome::Failed { .. }
        ));
    }

    #[test]
    fn outcome_of_the_wrong_kind_is_a_mismatch() {
        let s = Scenario::Aggregate(scenario(json!({"outcome": "rejected"})));
        let outcome = Outcome::Projector(ProjectorOutcome::Rows {
            rows: BTreeMap::new(),
            dead_letters: Vec::new(),
        });
        assert!(verify(&s, &outcome).is_err());
    }
}
