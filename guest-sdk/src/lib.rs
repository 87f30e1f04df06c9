//! Guest SDK for factline plugins: a Rust plugin is a type, a trait impl and one macro line.
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
