//! Guest SDK for factline plugins: a Rust plugin is a type, a trait impl and one macro line, or
//! for a small one a function or an impl under `#[export]`.
//!
//! The SDK hides the WIT bindings and the MessagePack encoding. Events and commands are serde
//! enums whose variant names are the type strings; state, payloads and read-model rows cross the
//! boundary as *named* MessagePack, so plugins in other languages read them by field name.
//!
//! The export macros ([`aggregate!`], [`projector!`], [`policy!`], [`saga!`]) emit the wasm glue
//! only for `target_arch = "wasm32"`: natively the plugin is an ordinary crate, tested with plain
//! `cargo test` and the [`testing`] harness. Build the component with
//! `cargo build --target wasm32-wasip2` (crate type `cdylib`).
//!
//! A complete aggregate:
//!
//! ```
//! use factline_guest::{Aggregate, CommandContext, EventMeta, Rejection};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! pub struct Counter { value: u64 }
//!
//! #[derive(Serialize, Deserialize)]
//! pub enum Command { #[serde(rename = "increment")] Increment { by: u64 } }
//!
//! #[derive(Serialize, Deserialize)]
//! pub enum Event { #[serde(rename = "counter.incremented")] Incremented { by: u64 } }
//!
//! impl Aggregate for Counter {
//!     type Command = Command;
//!     type Event = Event;
//!     fn decide(&self, Command::Increment { by }: Command, _: &CommandContext) -> Result<Vec<Event>, Rejection> {
//!         Rejection::ensure(by > 0, "zero", "increment by at least 1")?;
//!         Ok(vec![Event::Incremented { by }])
//!     }
//!     fn evolve(&mut self, Event::Incremented { by }: Event, _: &EventMeta) { self.value += by; }
//! }
//!
//! factline_guest::aggregate!(Counter);
//! ```
//!
//! A small plugin needs no trait: `#[export]` on a function makes it a projector (and defines
//! `Totals` for the testing harness), and on an `impl` with `decide` and `evolve` an aggregate
//! (their context parameters are optional):
//!
//! ```
//! use factline_guest::{EventMeta, ReadModel, Result};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! pub struct Row { total: u64 }
//! #[derive(Serialize, Deserialize)]
//! pub enum Event { #[serde(rename = "counter.incremented")] Incremented { by: u64 } }
//!
//! #[factline_guest::export]
//! fn totals(Event::Incremented { by }: Event, meta: &EventMeta, model: &mut ReadModel) -> Result {
//!     let mut row: Row = model.get(&meta.stream)?.unwrap_or_default();
//!     row.total += by;
//!     model.put(&meta.stream, &row)
//! }
//! # let _ = Totals;
//! ```
//!
//! The trait path stays for everything more: schema versions and upcasters, a read-model
//! version, policies and sagas.
//!
//! A type that does not implement the kind's trait is refused with an error at the type:
//!
//! ```compile_fail,E0277
//! pub struct NotAnAggregate;
//! factline_guest::aggregate!(NotAnAggregate);
//! ```
//!
//! Unknown event types are skipped (a consumer declares only what it handles); a known type whose
//! payload does not decode is a [`Failure`] naming the type. An unknown command type is rejected
//! with code `unknown-command`, an undecodable command with `invalid-command`.

mod aggregate;
pub mod codec;
pub mod log;
mod policy;
mod projector;
mod saga;
pub mod scenario;
pub mod testing;
mod types;

pub use aggregate::Aggregate;
pub use policy::Policy;
pub use projector::{MemoryStore, Projector, ReadModel, ReadModelStore};
pub use saga::{Saga, SagaDefinition, Started, StepDefinition, Verdict};
pub use types::{
    CommandContext, DecideError, EventMeta, Failure, OutgoingCommand, RawCommand, RawEvent,
    RawNewEvent, Rejection, StoredEvent,
};

/// Exports a projector function or an aggregate's `decide`/`evolve` impl without the trait:
/// `#[factline_guest::export]` (see the crate docs). The result is an ordinary `Projector` or
/// `Aggregate`, so the testing harness runs it:
///
/// ```
/// use factline_guest::testing::{AggregateTest, ProjectorTest, json};
/// use factline_guest::{CommandContext, EventMeta, ReadModel, Rejection, Result};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Default, Serialize, Deserialize)]
/// pub struct Counter { value: u64, last: u64 }
/// #[derive(Debug, Serialize, Deserialize)]
/// pub enum Command { #[serde(rename = "increment")] Increment { by: u64 } }
/// #[derive(Debug, Serialize, Deserialize)]
/// pub enum Event { #[serde(rename = "counter.incremented")] Incremented { by: u64 } }
///
/// #[factline_guest::export]
/// impl Counter {
///     // With the context parameters (both are optional).
///     fn decide(&self, Command::Increment { by }: Command, ctx: &CommandContext) -> Result<Vec<Event>, Rejection> {
///         Rejection::ensure(by > 0 && ctx.issued_at > 0, "zero", "increment by at least 1")?;
///         Ok(vec![Event::Incremented { by }])
///     }
///     fn evolve(&mut self, Event::Incremented { by }: Event, meta: &EventMeta) {
///         self.value += by;
///         self.last = meta.occurred_at;
///     }
/// }
///
/// AggregateTest::<Counter>::given([Event::Incremented { by: 2 }])
///     .when(Command::Increment { by: 3 })
///     .then_events([Event::Incremented { by: 3 }])
///     .then_state(json!({"value": 5, "last": 1_700_000_001_000_u64}))
///     .run();
/// AggregateTest::<Counter>::given([])
///     .when(Command::Increment { by: 0 })
///     .then_rejected("zero")
///     .run();
///
/// #[derive(Default, Serialize, Deserialize)]
/// pub struct Row { total: u64 }
///
/// #[factline_guest::export]
/// pub fn stream_totals(Event::Incremented { by }: Event, meta: &EventMeta, model: &mut ReadModel) -> Result {
///     let mut row: Row = model.get(&meta.stream)?.unwrap_or_default();
///     row.total += by;
///     model.put(&meta.stream, &row)
/// }
///
/// // The function's name in UpperCamelCase is the projector's type.
/// ProjectorTest::<StreamTotals>::given([
///     ("counter-1", Event::Incremented { by: 2 }),
///     ("counter-1", Event::Incremented { by: 3 }),
/// ])
/// .then_read_model("counter-1", json!({"total": 5}))
/// .then_absent("counter-2")
/// .run();
/// ```
///
/// Anything else is refused where it stands, with what it takes:
///
/// ```compile_fail
/// #[factline_guest::export]
/// pub struct Counter;
/// ```
///
/// ```compile_fail
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// pub struct Counter;
/// #[factline_guest::export]
/// impl Counter {
///     fn evolve(&mut self, _event: u64) {}
/// }
/// ```
pub use factline_guest_macros::export;

/// What a projector function returns: `Ok(())` or a [`Failure`] (the host retries, then parks
/// the event).
pub type Result<T = (), E = Failure> = std::result::Result<T, E>;

/// Exports an [`Aggregate`] as the component's `aggregate-handler`: `aggregate!(Order);`.
pub use factline_guest_macros::aggregate;
/// Exports a [`Policy`] as the component's `policy-handler`: `policy!(ReserveStock);`.
pub use factline_guest_macros::policy;
/// Exports a [`Projector`] as the component's `projector-handler`: `projector!(OrderSummary);`.
pub use factline_guest_macros::projector;
/// Exports a [`Saga`] as the component's `saga-handler`: `saga!(OrderPlacement);`.
pub use factline_guest_macros::saga;

/// The variant names of `T`, which must be an event enum (checked when the host loads a plugin).
fn variant_list<T: serde::de::DeserializeOwned>() -> Vec<String> {
    match codec::variant_names::<T>() {
        Some(names) => names.iter().map(|name| (*name).to_owned()).collect(),
        None => panic!(
            "`{}` must be an enum whose variant names are the event types",
            std::any::type_name::<T>()
        ),
    }
}

/// What the export glue calls. Not a stable API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use wit_bindgen;

    pub use crate::log::{Level, set_sink as set_log_sink};
    pub use crate::saga::runtime::{RawSagaDefinition, RawVerdict};
    pub use crate::{
        CommandContext, DecideError, EventMeta, Failure, OutgoingCommand, RawCommand, RawEvent,
        RawNewEvent, ReadModelStore, Rejection, StepDefinition,
    };

    pub mod aggregate {
        pub use crate::aggregate::runtime::*;
    }
    pub mod projector {
        pub use crate::projector::runtime::*;
    }
    pub mod policy {
        pub use crate::policy::runtime::*;
    }
    pub mod saga {
        pub use crate::saga::runtime::{compensate, definition, execute, judge, start};
    }

    // The macros call these on every target, so a wrong type fails `cargo check` natively too.
    pub const fn assert_aggregate<T: crate::Aggregate>() {}
    pub const fn assert_projector<T: crate::Projector>() {}
    pub const fn assert_policy<T: crate::Policy>() {}
    pub const fn assert_saga<T: crate::Saga>() {}
}
