//! The store machinery every plugin instance shares, whatever its world.
//!
//! A [`Core`] owns one `Store` and the instance of one world's component. Every call sets a
//! fresh deadline and clears the limiter's record. Any error from wasmtime (trap, deadline,
//! limit, host function error) poisons the `Store`: the instance is dropped and the next call
//! builds a fresh `Store` and instance (DESIGN §4 invariant 6).
//!
//! The world instance types (`worlds`) wrap a `Core` over their own typed pre-instance, so an
//! export of another world cannot be called: the kind is checked once, when a loaded plugin is
//! instantiated as a world ([`LoadedPlugin::instantiate`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use wasmtime::{Engine, Store};

use super::bindings::types;
use super::capabilities::seed_of;
use super::error::{CallFailure, FailureKind, InstantiateError};
use super::limits::{Breach, Limits, bound_message};
use super::state::HostState;
use super::{LoadedPlugin, PluginKind};
use crate::event::Event;
use crate::telemetry::PluginCalls;

/// What one world's typed pre-instance gives the shared store machinery.
pub(crate) trait WorldPre {
    /// The world's typed exports in one instance.
    type Exports;
    fn engine(&self) -> &Engine;
    fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Self::Exports>;
}

mod sealed {
    /// Only the four world instance types are instances.
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// A world's instance type (`AggregateInstance`, `ProjectorInstance`, `PolicyInstance`,
/// `SagaInstance`), made by [`LoadedPlugin::instantiate`].
pub trait Instantiate: Sealed + Sized {
    /// The kind a loaded plugin must be to be instantiated as this world.
    const KIND: PluginKind;
    #[doc(hidden)]
    fn from_loaded(plugin: &Arc<LoadedPlugin>) -> Result<Self, InstantiateError>;
}

struct Live<E> {
    store: Store<HostState>,
    exports: E,
}

/// One `Store` and instance of a world's component. Not shared: a handler owns one (or a
/// pool) and calls it serially.
pub(crate) struct Core<P: WorldPre> {
    pub(crate) plugin: Arc<LoadedPlugin>,
    pre: Arc<P>,
    live: Option<Live<P::Exports>>,
    /// Fresh stores built after a poisoned one, for tests and metrics.
    pub(crate) rebuilds: u64,
    /// WIT-shaped copies of the last batch, reused so steady-state batches allocate nothing on
    /// the host side (strings are overwritten in place).
    scratch: Vec<types::Event>,
    /// Call-time histograms and failure counters (`plugin_call_*`).
    calls: PluginCalls,
}

impl<P: WorldPre> Core<P> {
    /// Instantiates once, so a component that cannot start is refused here.
    pub(crate) fn new(plugin: Arc<LoadedPlugin>, pre: Arc<P>) -> Result<Self, CallFailure> {
        let calls = PluginCalls::new(&plugin.name, plugin.version.to_string());
        let mut me = Core {
            plugin,
            pre,
            live: None,
            rebuilds: 0,
            scratch: Vec::new(),
            calls,
        };
        me.live()?;
        Ok(me)
    }

    pub(crate) fn fmt_debug(
        &self,
        name: &str,
        f: &mut std::fmt::Formatter<'_>,
    ) -> std::fmt::Result {
        f.debug_struct(name)
            .field("plugin", &self.plugin.name)
            .field("live", &self.live.is_some())
            .finish()
    }

    pub(crate) fn pre(&self) -> &P {
        &self.pre
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.plugin.limits
    }

    fn deadline_ticks(&self) -> u64 {
        let tick = self.plugin.epoch_tick.as_millis().max(1);
        (self.plugin.limits.call_timeout.as_millis() / tick).max(1) as u64 + 1
    }

    fn live(&mut self) -> Result<&mut Live<P::Exports>, CallFailure> {
        if self.live.is_none() {
            let p = &self.plugin;
            let mut store = Store::new(
                self.pre.engine(),
                HostState::new(
                    p.name.as_str().into(),
                    p.limits.clone(),
                    &p.capabilities,
                    p.log_budget.clone(),
                ),
            );
            store.data_mut().json = p.boundary == super::Boundary::Json;
            store.limiter(|s| &mut s.limiter);
            store.epoch_deadline_trap();
            store.set_epoch_deadline(self.deadline_ticks());
            if p.fuel_enabled {
                // Start functions get the same budget as a call.
                store
                    .set_fuel(p.limits.fuel.unwrap_or(u64::MAX))
                    .expect("fuel is enabled in this engine");
            }
            let exports = self.pre.instantiate(&mut store).map_err(|e| {
                let mut f = classify(e, &store);
                f.message = format!("instantiation failed: {}", f.message);
                f
            })?;
            self.live = Some(Live { store, exports });
        }
        Ok(self.live.as_mut().expect("just built"))
    }

    /// Runs one call with a fresh deadline (and fuel), the guest clock at `now_ms` and its
    /// randomness seeded with `seed`; on any error the store is dropped so a trapped instance
    /// is never reused.
    pub(crate) fn call<R>(
        &mut self,
        function: &'static str,
        now_ms: u64,
        seed: u64,
        f: impl FnOnce(&mut Store<HostState>, &P::Exports) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        let ticks = self.deadline_ticks();
        let fuel = self
            .plugin
            .fuel_enabled
            .then(|| self.plugin.limits.fuel.unwrap_or(u64::MAX));
        let live = self.live()?;
        live.store.set_epoch_deadline(ticks);
        if let Some(fuel) = fuel {
            live.store
                .set_fuel(fuel)
                .expect("fuel is enabled in this engine");
        }
        live.store.data().random.reseed(seed);
        live.store.data_mut().limiter.breach = None;
        live.store.data_mut().output_breach = None;
        live.store.data().stderr_tail.clear();
        live.store.data().clock.store(now_ms, Ordering::Relaxed);
        let Live { store, exports } = live;
        let started = std::time::Instant::now();
        let result = f(store, exports).map_err(|e| classify(e, store));
        self.calls.record(function, started.elapsed());
        match result {
            Ok(r) => Ok(r),
            Err(failure) => {
                self.calls.failed(failure.kind);
                tracing::warn!(plugin = %self.plugin.name, version = %self.plugin.version, kind = %failure.kind, error = %failure.message, "plugin call failed; rebuilding its store");
                self.live = None;
                self.rebuilds += 1;
                Err(failure)
            }
        }
    }

    pub(crate) fn check_output(&self, what: &str, len: usize) -> Result<(), CallFailure> {
        let max = self.plugin.limits.max_output_bytes;
        if len > max {
            return Err(self.bad_output(format!(
                "{what} is {len} bytes, over the limit of {max} (max_output_bytes)"
            )));
        }
        Ok(())
    }

    /// The guest handed back something the host refuses (counted like any failed call).
    pub(crate) fn bad_output(&self, message: String) -> CallFailure {
        self.calls.failed(FailureKind::BadOutput);
        CallFailure::new(FailureKind::BadOutput, message)
    }

    /// The plugin's own failure (counted like a trap: the call did not succeed).
    pub(crate) fn guest_failure(&self, f: types::Failure) -> CallFailure {
        self.calls.failed(FailureKind::Guest);
        CallFailure {
            kind: FailureKind::Guest,
            message: bound_message(f.message, self.plugin.limits.max_message_bytes),
            backtrace: None,
            event_index: f.event_index,
        }
    }

    /// The batch in WIT form, written over the scratch copies of the previous batch.
    pub(crate) fn wit_events(&mut self, events: &[Event]) -> Vec<types::Event> {
        let mut wit = std::mem::take(&mut self.scratch);
        wit.truncate(events.len().min(MAX_SCRATCH));
        for (i, e) in events.iter().enumerate() {
            match wit.get_mut(i) {
                Some(d) => assign_wit_event(d, e),
                None => wit.push(to_wit_event(e)),
            }
        }
        wit
    }

    /// Hands the batch's WIT copies back for the next batch.
    pub(crate) fn keep_scratch(&mut self, wit: Vec<types::Event>) {
        self.scratch = wit;
    }
}

/// Most scratch events kept between calls (bounds the memory a huge batch leaves behind).
const MAX_SCRATCH: usize = 4096;

/// Instantiates `plugin` as `wanted` when its pre-instance is that world's; otherwise refuses
/// it with the kinds named (the one place a loaded plugin's kind is checked).
pub(crate) fn instantiate_as<P: WorldPre>(
    plugin: &Arc<LoadedPlugin>,
    wanted: PluginKind,
    pre: Option<&Arc<P>>,
) -> Result<Core<P>, InstantiateError> {
    match pre {
        Some(pre) => Ok(Core::new(plugin.clone(), pre.clone())?),
        None => Err(InstantiateError::KindMismatch {
            plugin: plugin.name.clone(),
            kind: plugin.kind,
            wanted,
        }),
    }
}

fn assign_wit_event(d: &mut types::Event, e: &Event) {
    d.event_id.clear();
    d.event_id.push_str(
        e.event_id
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    d.event_type.clone_from(&e.event_type);
    d.stream.clone_from(&e.stream);
    d.stream_version = e.stream_version;
    d.topic.clone_from(&e.topic);
    d.partition = e.partition;
    d.offset = e.offset;
    d.occurred_at = e.occurred_at;
    d.correlation_id.clone_from(&e.correlation_id);
    d.causation_id.clone_from(&e.causation_id);
    d.schema_version = e.schema_version;
    d.payload.clone_from(&e.payload);
    d.metadata.clear();
    d.metadata
        .extend(e.metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
}

pub(crate) fn to_wit_event(e: &Event) -> types::Event {
    types::Event {
        event_id: e
            .event_id
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .to_owned(),
        event_type: e.event_type.clone(),
        stream: e.stream.clone(),
        stream_version: e.stream_version,
        topic: e.topic.clone(),
        partition: e.partition,
        offset: e.offset,
        occurred_at: e.occurred_at,
        correlation_id: e.correlation_id.clone(),
        causation_id: e.causation_id.clone(),
        schema_version: e.schema_version,
        payload: e.payload.clone(),
        metadata: e
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Payloads are stored as MessagePack and every consumer decodes them: refuse anything that is
/// not exactly one well-formed value before it reaches the log.
pub(crate) fn check_msgpack(bytes: &[u8]) -> Result<(), String> {
    let mut rest = bytes;
    let value = rmpv::decode::read_value_ref(&mut rest).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after the value", rest.len()));
    }
    check_strings(&value)
}

/// Every string (map keys too) is valid UTF-8: a reader decoding the payload as JSON would
/// otherwise fail on it (or show `null`). Depth is bounded by the decoder.
fn check_strings(value: &rmpv::ValueRef<'_>) -> Result<(), String> {
    use rmpv::ValueRef;
    match value {
        ValueRef::String(s) if s.as_str().is_none() => {
            Err("a string is not valid UTF-8".to_owned())
        }
        ValueRef::Array(items) => items.iter().try_for_each(check_strings),
        ValueRef::Map(entries) => entries.iter().try_for_each(|(k, v)| {
            check_strings(k)?;
            check_strings(v)
        }),
        _ => Ok(()),
    }
}

/// A batch's randomness seed: its event ids, so a redelivered batch draws the same numbers.
pub(crate) fn batch_seed(events: &[Event]) -> u64 {
    seed_of(events.iter().map(|e| e.event_id.as_bytes().as_slice()))
}

/// Turns a wasmtime error into a typed failure, with the guest backtrace when there is one.
fn classify(err: wasmtime::Error, store: &Store<HostState>) -> CallFailure {
    let backtrace = err
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map(|bt| bt.to_string())
        .filter(|s| !s.trim().is_empty());
    let trap = err.downcast_ref::<wasmtime::Trap>().copied();
    if let Some(breach) = &store.data().output_breach {
        // The host refused what the guest handed it (a read-model write over its budget): the
        // guest's output, not the host, is at fault.
        return CallFailure {
            kind: FailureKind::BadOutput,
            message: bound_message(
                breach.0.clone(),
                store.data().limiter.limits().max_message_bytes,
            ),
            backtrace,
            event_index: None,
        };
    }
    let (kind, message) = match (store.data().limiter.breach, trap) {
        (Some(Breach::Memory { desired, limit }), _) => (
            FailureKind::MemoryLimit,
            format!(
                "memory limit: the plugin tried to grow a memory to {desired} bytes (limit {limit}); then: {}",
                trap.map(|t| t.to_string())
                    .unwrap_or_else(|| root_message(&err))
            ),
        ),
        (Some(Breach::Table { desired, limit }), _) => (
            FailureKind::MemoryLimit,
            format!(
                "table limit: the plugin tried to grow a table to {desired} elements (limit {limit})"
            ),
        ),
        (None, Some(wasmtime::Trap::Interrupt)) => (
            FailureKind::Deadline,
            "deadline: the call ran past its time limit and was interrupted".to_owned(),
        ),
        (None, Some(wasmtime::Trap::OutOfFuel)) => (
            FailureKind::Fuel,
            "fuel limit: the call used up its fuel (instructions budget) and was stopped"
                .to_owned(),
        ),
        (None, Some(t)) => (FailureKind::Trap, t.to_string()),
        (None, None) => (FailureKind::Host, root_message(&err)),
    };
    // A Rust guest's panic message goes to stderr just before the trap: keep it with the failure.
    let message = match store.data().stderr_tail.text() {
        Some(stderr) => format!("{message}; guest stderr: {stderr}"),
        None => message,
    };
    // Bounded where it is built from guest output, so every dead letter, log line and answer
    // made from it is bounded.
    let message = bound_message(message, store.data().limiter.limits().max_message_bytes);
    CallFailure {
        kind,
        message,
        backtrace,
        event_index: None,
    }
}

fn root_message(err: &wasmtime::Error) -> String {
    err.chain()
        .map(|c| c.to_string())
        .filter(|s| !s.contains("wasm backtrace"))
        .collect::<Vec<_>>()
        .join(": ")
}
