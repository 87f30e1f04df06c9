//! Projectors: events in, read-model rows out.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::types::{EventMeta, Failure};

/// A projector (WIT world `projector`). A fresh `Default` value handles each delivered batch, so
/// anything that must outlive a batch belongs in the [`ReadModel`] (which is what a rebuild
/// replays). Export it with [`projector!`](crate::projector!).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a factline projector",
    label = "implement `factline_guest::Projector` for this type"
)]
pub trait Projector: Default {
    /// A serde enum of the event types this projector reads; its own mirror of the producer's
    /// events, with only the fields it needs. Other types are skipped.
    type Event: Serialize + DeserializeOwned;

    fn project(
        &mut self,
        event: Self::Event,
        meta: &EventMeta,
        model: &mut ReadModel<'_>,
    ) -> Result<(), Failure>;

    /// Version of the read model's shape. Bump it when a new plugin version writes rows the old
    /// ones cannot be read with (new keys, new value shapes): deploying it then rebuilds the
    /// read model from offset 0 beside the running one, and queries switch over once it has
    /// caught up. Same version: the new plugin continues the existing read model in place.
    fn read_model_version() -> u32 {
        1
    }
}

/// Raw key-value storage behind a [`ReadModel`]: the host's `read-model` interface on wasm, a
/// [`MemoryStore`] in native tests.
pub trait ReadModelStore {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    fn put(&mut self, key: &str, value: &[u8]);
    fn delete(&mut self, key: &str);
    /// Entries whose key starts with `prefix`, in key order, after `start_after`, at most `limit`.
    fn scan(&self, prefix: &str, start_after: Option<&str>, limit: u32) -> Vec<(String, Vec<u8>)>;
}

/// An in-memory [`ReadModelStore`] for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStore {
    pub rows: BTreeMap<String, Vec<u8>>,
}

impl ReadModelStore for MemoryStore {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.rows.get(key).cloned()
    }

    fn put(&mut self, key: &str, value: &[u8]) {
        self.rows.insert(key.to_owned(), value.to_vec());
    }

    fn delete(&mut self, key: &str) {
        self.rows.remove(key);
    }

    fn scan(&self, prefix: &str, start_after: Option<&str>, limit: u32) -> Vec<(String, Vec<u8>)> {
        let start = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        self.rows
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit as usize)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}

/// The projector's own typed key-value read model; values are named MessagePack.
pub struct ReadModel<'a> {
    store: &'a mut dyn ReadModelStore,
}

/// Rows fetched per call to the host while scanning.
const SCAN_PAGE: u32 = 256;

impl<'a> ReadModel<'a> {
    pub fn new(store: &'a mut dyn ReadModelStore) -> Self {
        Self { store }
    }

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Failure> {
        self.store
            .get(key)
            .map(|bytes| decode_row(key, &bytes))
            .transpose()
    }

    pub fn put<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Failure> {
        let bytes = codec::encode(value).map_err(|e| Failure::new(format!("row `{key}`: {e}")))?;
        self.store.put(key, &bytes);
        Ok(())
    }

    pub fn delete(&mut self, key: &str) {
        self.store.delete(key);
    }

    /// All rows whose key starts with `prefix`, in key order.
    pub fn scan_prefix<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, Failure> {
        let mut rows = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.scan(prefix, after.as_deref(), SCAN_PAGE);
            let full = page.len() == SCAN_PAGE as usize;
            for (key, bytes) in page {
                let value = decode_row(&key, &bytes)?;
                after = Some(key.clone());
                rows.push((key, value));
            }
            if !full {
                return Ok(rows);
            }
        }
    }
}

impl std::fmt::Debug for ReadModel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModel").finish_non_exhaustive()
    }
}

fn decode_row<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, Failure> {
    codec::decode(bytes).map_err(|e| {
        Failure::new(format!(
            "row `{key}` is not a valid `{}`: {e}",
            std::any::type_name::<T>()
        ))
    })
}

pub(crate) mod runtime {
    use super::{Projector, ReadModel, ReadModelStore};
    use crate::codec;
    use crate::types::{Failure, RawEvent};

    pub fn event_types<P: Projector>() -> Vec<String> {
        crate::variant_list::<P::Event>()
    }

    pub fn read_model_version<P: Projector>() -> u32 {
        P::read_model_version()
    }

    /// Projects a batch. On failure the host discards the batch's writes (they commit with the
    /// offset), so partial writes here never become visible.
    pub fn project<P: Projector>(
        events: Vec<RawEvent>,
        store: &mut dyn ReadModelStore,
    ) -> Result<(), Failure> {
        let mut projector = P::default();
        let mut model = ReadModel::new(store);
        let names = codec::variant_names_of::<P::Event>().map_err(Failure::from)?;
        for (index, event) in events.into_iter().enumerate() {
            match codec::decode_variant_among::<P::Event>(names, &event.event_type, &event.payload)
            {
                Ok(Some(decoded)) => projector
                    .project(decoded, &event.meta, &mut model)
                    .map_err(|f| f.at(index))?,
                Ok(None) => {}
                Err(e) => return Err(Failure::from(e).at(index)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_pages_through_the_prefix_only() {
        let mut store = MemoryStore::default();
        let mut model = ReadModel::new(&mut store);
        for i in 0..600u32 {
            model.put(&format!("b/{i:04}"), &i).unwrap();
        }
        model.put("a", &1u32).unwrap();
        model.put("c", &1u32).unwrap();
        let rows: Vec<(String, u32)> = model.scan_prefix("b/").unwrap();
        assert_eq!(rows.len(), 600);
        assert_eq!(rows[599], ("b/0599".to_owned(), 599));
        assert!(rows.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(
            store.scan("b/", Some("a"), 2).len(),
            2,
            "a start before the prefix is ignored"
        );
    }

    #[test]
    fn typed_get_put_delete() {
        let mut store = MemoryStore::default();
        let mut model = ReadModel::new(&mut store);
        model.put("k", &vec!["x".to_owned()]).unwrap();
        assert_eq!(
            model.get::<Vec<String>>("k").unwrap(),
            Some(vec!["x".to_owned()])
        );
        let err = model.get::<u32>("k").unwrap_err().message;
        assert!(err.contains("row `k`"), "{err}");
        model.delete("k");
        assert_eq!(model.get::<u32>("k").unwrap(), None);
    }
}
