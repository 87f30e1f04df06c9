//! Schema evolution: each topic's events are upcast by the aggregate that owns the topic.
//!
//! An aggregate component may export `schema-evolution` (WIT): the old `(event type, schema
//! version)` pairs it rewrites, and `upcast`. [`Upcasters`] asks each aggregate for its pairs
//! once, and as an [`Upcast`] installed on the [`EventLog`](crate::log::EventLog) sends it only
//! the events that are old, so every reader (the aggregate's own loading, projectors, policies,
//! sagas, the HTTP API) sees current events while the log keeps them as written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::event::Event;
use crate::log::{Upcast, UpcastError};
use crate::plugin::{AggregateInstance, CallFailure, LoadedPlugin};

/// The upcaster of one topic: its owning aggregate's instance and declared old pairs.
struct TopicUpcaster {
    plugin: String,
    old: Vec<(String, u32)>,
    instance: Mutex<AggregateInstance>,
}

fn is_old(old: &[(String, u32)], e: &Event) -> bool {
    old.iter()
        .any(|(t, v)| *v == e.schema_version && *t == e.event_type)
}

/// Sends the events of `events` that `old` names through `instance.upcast`, in place. Current
/// events (the usual case) never cross into the plugin.
pub fn upcast_in_place(
    instance: &mut AggregateInstance,
    old: &[(String, u32)],
    events: &mut [Event],
) -> Result<(), CallFailure> {
    let positions: Vec<usize> = (0..events.len())
        .filter(|&i| is_old(old, &events[i]))
        .collect();
    if positions.is_empty() {
        return Ok(());
    }
    let mut batch: Vec<Event> = positions.iter().map(|&i| events[i].clone()).collect();
    instance.upcast(&mut batch).map_err(|mut f| {
        if let Some(e) = f.event_index.and_then(|i| batch.get(i as usize)) {
            f.message = format!("at {}@{}: {}", e.stream, e.stream_version, f.message);
        }
        f
    })?;
    for (i, e) in positions.into_iter().zip(batch) {
        events[i] = e;
    }
    Ok(())
}

/// Upcasters by topic.
#[derive(Default)]
pub struct Upcasters {
    by_topic: HashMap<String, TopicUpcaster>,
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.by_topic.iter().map(|(t, u)| (t, &u.old)))
            .finish()
    }
}

impl Upcasters {
    /// Makes aggregate `plugin` the upcaster of `topic` if it declares old event versions;
    /// returns whether it does.
    pub fn add(&mut self, topic: &str, plugin: &Arc<LoadedPlugin>) -> Result<bool, CallFailure> {
        let mut instance: AggregateInstance = plugin.instantiate()?;
        let old = instance.upcasts()?;
        if old.is_empty() {
            return Ok(false);
        }
        self.by_topic.insert(
            topic.to_owned(),
            TopicUpcaster {
                plugin: plugin.name.clone(),
                old,
                instance: Mutex::new(instance),
            },
        );
        Ok(true)
    }

    pub fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }
}

/// The owning aggregate's upcaster failed on an event.
#[derive(Debug, thiserror::Error)]
#[error("the {plugin} plugin's upcaster failed: {failure}")]
pub struct UpcasterFailed {
    pub plugin: String,
    pub failure: CallFailure,
}

impl Upcast for Upcasters {
    fn upcast(&self, topic: &str, events: &mut [Event]) -> Result<(), UpcastError> {
        let Some(u) = self.by_topic.get(topic) else {
            return Ok(());
        };
        // Readers of current events never wait for the upcaster's instance.
        if !events.iter().any(|e| is_old(&u.old, e)) {
            return Ok(());
        }
        let mut instance = u.instance.lock().unwrap_or_else(|p| p.into_inner());
        upcast_in_place(&mut instance, &u.old, events).map_err(|failure| {
            Box::new(UpcasterFailed {
                plugin: u.plugin.clone(),
                failure,
            }) as UpcastError
        })
    }
}
