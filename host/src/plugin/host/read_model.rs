//! `factline:plugin/read-model`: a projector's key-value store, scoped to that projector.
//!
//! Reads see the committed read model (one snapshot per batch) overlaid with the batch's own
//! writes; writes stay in the overlay until the batch commits with its offset.
//!
//! The session also records what it read from the snapshot ([`ReadModelSession::read_checks`]),
//! so a group running batches concurrently can have the commit refused if any of it changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::log::{ReadCheck, ReadModelView, ReadModelWrite, ValueDigest};
use crate::plugin::bindings::read_model::Host;
use crate::plugin::boundary::{from_json, to_json_text};
use crate::plugin::limits::OutputBreach;
use crate::plugin::state::HostState;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most entries one scan returns.
pub const MAX_SCAN: u32 = 10_000;

/// Rows a dry run (the deploy gate) wrote before the current batch, by key (`None`: deleted):
/// read under the batch's own writes and over the snapshot, never stored.
pub type Overlay = BTreeMap<String, Option<Vec<u8>>>;

/// The read model as one batch sees and changes it.
pub struct ReadModelSession {
    scope: String,
    view: Arc<ReadModelView>,
    base: Option<Arc<Overlay>>,
    writes: BTreeMap<String, Option<Vec<u8>>>,
    max_value_bytes: usize,
    /// Budget of the pending writes (keys + values), checked at each write before it is kept.
    max_pending_bytes: usize,
    max_pending_writes: usize,
    pending_bytes: usize,
    /// Snapshot `get`s by key (one per key: the snapshot cannot change under the batch).
    gets: BTreeMap<String, Option<ValueDigest>>,
    /// Snapshot scans, in call order.
    scans: Vec<ReadCheck>,
}

impl std::fmt::Debug for ReadModelSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModelSession")
            .field("scope", &self.scope)
            .field("writes", &self.writes.len())
            .finish()
    }
}

impl ReadModelSession {
    pub fn new(scope: impl Into<String>, view: ReadModelView, max_value_bytes: usize) -> Self {
        Self::over(scope, Arc::new(view), None, max_value_bytes)
    }

    /// A session over a shared snapshot with `base` between it and the batch's writes (a dry
    /// run's earlier batches).
    pub(crate) fn over(
        scope: impl Into<String>,
        view: Arc<ReadModelView>,
        base: Option<Arc<Overlay>>,
        max_value_bytes: usize,
    ) -> Self {
        ReadModelSession {
            scope: scope.into(),
            view,
            base,
            writes: BTreeMap::new(),
            max_value_bytes,
            max_pending_bytes: usize::MAX,
            max_pending_writes: usize::MAX,
            pending_bytes: 0,
            gets: BTreeMap::new(),
            scans: Vec::new(),
        }
    }

    pub fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        if let Some(v) = self.writes.get(key) {
            // The batch's own write: nothing committed was read.
            return Ok(v.clone());
        }
        if let Some(v) = self.base.as_ref().and_then(|b| b.get(key)) {
            return Ok(v.clone());
        }
        let value = self.view.get(&self.scope, key).map_err(|e| e.to_string())?;
        if !self.gets.contains_key(key) {
            self.gets
                .insert(key.to_owned(), value.as_deref().map(ValueDigest::of));
        }
        Ok(value)
    }

    /// Takes the plugin's budgets: a value up to `max_output_bytes`, and at most
    /// `max_read_model_bytes` / `max_read_model_writes` pending in this call.
    pub(crate) fn apply_limits(&mut self, limits: &crate::plugin::Limits) {
        self.max_value_bytes = limits.max_output_bytes;
        self.max_pending_bytes = limits.max_read_model_bytes;
        self.max_pending_writes = limits.max_read_model_writes;
    }

    pub fn put(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        check_key(&key)?;
        if value.len() > self.max_value_bytes {
            return Err(format!(
                "read-model value for {:?} is {} bytes, over the limit of {} (max_output_bytes)",
                short(&key),
                value.len(),
                self.max_value_bytes
            ));
        }
        self.reserve(&key, value.len())?;
        self.writes.insert(key, Some(value));
        Ok(())
    }

    pub fn delete(&mut self, key: String) -> Result<(), String> {
        check_key(&key)?;
        self.reserve(&key, 0)?;
        self.writes.insert(key, None);
        Ok(())
    }

    /// Accounts for writing `key` with a value of `len` bytes, refusing it (nothing kept)
    /// when the call's pending writes would go over their budget.
    fn reserve(&mut self, key: &str, len: usize) -> Result<(), String> {
        let replaced = self
            .writes
            .get(key)
            .map(|old| key.len() + old.as_ref().map_or(0, Vec::len));
        if replaced.is_none() && self.writes.len() >= self.max_pending_writes {
            return Err(format!(
                "one call wrote more than {} read-model keys (max_read_model_writes)",
                self.max_pending_writes
            ));
        }
        let pending = self.pending_bytes - replaced.unwrap_or(0) + key.len() + len;
        if pending > self.max_pending_bytes {
            return Err(format!(
                "one call wrote {pending} bytes to the read model, over the limit of {} (max_read_model_bytes)",
                self.max_pending_bytes
            ));
        }
        self.pending_bytes = pending;
        Ok(())
    }

    pub fn scan_prefix(
        &mut self,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, String> {
        let limit = limit.min(MAX_SCAN) as usize;
        let base = self.base.clone();
        let based: Vec<(&String, &Option<Vec<u8>>)> = base
            .iter()
            .flat_map(|b| b.range(prefix.to_owned()..))
            .take_while(|(k, _)| k.starts_with(prefix))
            .collect();
        // Enough committed rows that, after the overlays' deletes, `limit` can still be met.
        let stored_limit = limit + self.writes.len() + based.len();
        let stored = self
            .view
            .scan_prefix(&self.scope, prefix, start_after, stored_limit)
            .map_err(|e| e.to_string())?;
        // Checked as a whole (what the snapshot returned), which is stricter than what the
        // overlay let through: a spurious conflict only costs a re-run.
        self.scans.push(ReadCheck::Scan {
            scope: self.scope.clone(),
            prefix: prefix.to_owned(),
            start_after: start_after.map(str::to_owned),
            limit: stored_limit,
            seen: stored
                .iter()
                .map(|(k, v)| (k.clone(), ValueDigest::of(v)))
                .collect(),
        });
        let mut merged: BTreeMap<String, Option<Vec<u8>>> =
            stored.into_iter().map(|(k, v)| (k, Some(v))).collect();
        for (k, v) in based {
            if start_after.is_none_or(|s| k.as_str() > s) {
                merged.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in self.writes.range(prefix.to_owned()..) {
            if !k.starts_with(prefix) {
                break;
            }
            if start_after.is_some_and(|s| k.as_str() <= s) {
                continue;
            }
            merged.insert(k.clone(), v.clone());
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .take(limit)
            .collect())
    }

    /// What the batch read from its committed snapshot (not its own writes), for the commit's
    /// `read_checks`.
    pub fn read_checks(&self) -> Vec<ReadCheck> {
        self.gets
            .iter()
            .map(|(key, seen)| ReadCheck::Get {
                scope: self.scope.clone(),
                key: key.clone(),
                seen: *seen,
            })
            .chain(self.scans.iter().cloned())
            .collect()
    }

    /// The batch's writes and read checks, ready for the commit.
    pub fn into_commit(self) -> (Vec<ReadModelWrite>, Vec<ReadCheck>) {
        let checks = self.read_checks();
        (self.into_writes(), checks)
    }

    /// The batch's writes, ready for the commit.
    pub fn into_writes(self) -> Vec<ReadModelWrite> {
        let scope = self.scope;
        self.writes
            .into_iter()
            .map(|(key, value)| ReadModelWrite {
                scope: scope.clone(),
                key,
                value,
            })
            .collect()
    }

    pub fn pending_writes(&self) -> usize {
        self.writes.len()
    }
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "read-model key must be 1..={MAX_KEY_BYTES} bytes, not {}",
            key.len()
        ));
    }
    Ok(())
}

/// A key as shown in a message: at most its first 64 bytes.
fn short(key: &str) -> &str {
    let mut end = key.len().min(64);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}

/// A write the session refused is the plugin's bad output: recorded in the store, so the call
/// fails as `bad-output` (not as a host error), and the session drops what it held.
fn refused(state: &mut HostState, why: String) -> wasmtime::Error {
    state.output_breach = Some(OutputBreach(why.clone()));
    wasmtime::Error::msg(why)
}

pub(super) fn session(state: &mut HostState) -> wasmtime::Result<&mut ReadModelSession> {
    state
        .read_model
        .as_mut()
        .ok_or_else(|| wasmtime::Error::msg("read-model used outside of a projector batch"))
}

/// A stored value as JSON text, as a JSON-speaking guest reads it.
pub(super) fn outgoing_json(key: &str, value: &[u8]) -> wasmtime::Result<String> {
    to_json_text(value).map_err(|e| {
        wasmtime::Error::msg(format!(
            "read-model value for {:?} cannot be handed over as JSON: {e}",
            short(key)
        ))
    })
}

/// A value a JSON-speaking guest writes: bounded before it is transcoded, as after (the
/// MessagePack may be longer: floats), then put like any other.
pub(super) fn put_json(state: &mut HostState, key: String, json: &[u8]) -> wasmtime::Result<()> {
    let max = session(state)?.max_value_bytes;
    if json.len() > max {
        let why = format!(
            "read-model value for {:?} is {} bytes of JSON, over the limit of {max} (max_output_bytes)",
            short(&key),
            json.len()
        );
        return Err(refused(state, why));
    }
    match from_json(json) {
        Ok(value) => put(state, key, value),
        Err(e) => {
            let why = format!("read-model value for {:?} is not a value: {e}", short(&key));
            Err(refused(state, why))
        }
    }
}

fn put(state: &mut HostState, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
    match session(state)?.put(key, value) {
        Ok(()) => Ok(()),
        Err(why) => Err(refused(state, why)),
    }
}

pub(super) fn delete(state: &mut HostState, key: String) -> wasmtime::Result<()> {
    match session(state)?.delete(key) {
        Ok(()) => Ok(()),
        Err(why) => Err(refused(state, why)),
    }
}

impl Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let json = self.json;
        let value = session(self)?.get(&key).map_err(wasmtime::Error::msg)?;
        match value {
            Some(v) if json => outgoing_json(&key, &v).map(|t| Some(t.into_bytes())),
            v => Ok(v),
        }
    }

    fn put(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        if self.json {
            put_json(self, key, &value)
        } else {
            put(self, key, value)
        }
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        delete(self, key)
    }

    fn scan_prefix(
        &mut self,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Vec<(String, Vec<u8>)>> {
        let json = self.json;
        let rows = session(self)?
            .scan_prefix(&prefix, start_after.as_deref(), limit)
            .map_err(wasmtime::Error::msg)?;
        if !json {
            return Ok(rows);
        }
        rows.into_iter()
            .map(|(k, v)| outgoing_json(&k, &v).map(|t| (k, t.into_bytes())))
            .collect()
    }
}
