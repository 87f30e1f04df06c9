//! A bounded LRU of hot aggregate states. Entries are `(version, state)` pairs that were true
//! at that version; a reader still reads every event after it, so a stale entry costs time,
//! never correctness. `put` keeps the newer of two versions (concurrent commands may race).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

#[derive(Clone, Debug)]
pub(crate) struct CachedState {
    pub version: u64,
    pub state: Arc<Vec<u8>>,
    /// State bytes belong to the plugin version that produced them.
    pub plugin_hash: String,
}

pub(crate) struct StateCache {
    inner: Mutex<LruCache<String, CachedState>>,
}

impl StateCache {
    pub fn new(capacity: NonZeroUsize) -> Self {
        StateCache {
            inner: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub fn get(&self, stream: &str, plugin_hash: &str) -> Option<CachedState> {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        c.get(stream)
            .filter(|s| s.plugin_hash == plugin_hash)
            .cloned()
    }

    pub fn put(&self, stream: &str, state: CachedState) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let newer = c
            .peek(stream)
            .is_none_or(|old| old.plugin_hash != state.plugin_hash || old.version < state.version);
        if newer {
            c.put(stream.to_owned(), state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(version: u64) -> CachedState {
        CachedState {
            version,
            state: Arc::new(vec![version as u8]),
            plugin_hash: "h".into(),
        }
    }

    #[test]
    fn keeps_the_newer_version_and_checks_the_plugin() {
        let c = StateCache::new(NonZeroUsize::new(2).unwrap());
        c.put("a", st(3));
        c.put("a", st(2));
        assert_eq!(c.get("a", "h").unwrap().version, 3);
        c.put("a", st(5));
        assert_eq!(c.get("a", "h").unwrap().version, 5);
        assert!(c.get("a", "other").is_none());
        c.put("b", st(1));
        c.put("c", st(1));
        assert!(c.get("a", "h").is_none(), "evicted as least recently used");
    }
}
