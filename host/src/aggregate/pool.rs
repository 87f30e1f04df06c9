//! An aggregate's plugin instances: up to one per core, so commands on different streams decide
//! at once instead of queueing behind one instance (the instances hold no state between calls:
//! every call starts from explicit state bytes). All idle instances are of the current version;
//! one leased across a swap is dropped when it comes back.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::plugin::{AggregateInstance, CallFailure, LoadedPlugin};

pub(crate) struct InstancePool {
    inner: Mutex<Inner>,
    returned: Condvar,
    max: usize,
}

struct Inner {
    plugin: Arc<LoadedPlugin>,
    /// Bumped by every swap: leases of an older generation are not taken back.
    generation: u64,
    idle: Vec<AggregateInstance>,
    /// Instances of this generation out on lease.
    leased: usize,
}

/// An instance on lease; it goes back to the pool when dropped.
pub(crate) struct Lease<'a> {
    pool: &'a InstancePool,
    generation: u64,
    instance: Option<AggregateInstance>,
}

impl InstancePool {
    /// A pool of at most `max` instances of `plugin`, the first made now (a failure is the
    /// caller's at once, not a later command's).
    pub fn new(plugin: Arc<LoadedPlugin>, max: usize) -> Result<Self, CallFailure> {
        let first = plugin.instantiate()?;
        Ok(InstancePool {
            inner: Mutex::new(Inner {
                plugin,
                generation: 0,
                idle: vec![first],
                leased: 0,
            }),
            returned: Condvar::new(),
            max: max.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves nothing half-updated that matters.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The plugin version deciding commands now.
    pub fn plugin(&self) -> Arc<LoadedPlugin> {
        self.lock().plugin.clone()
    }

    /// Makes `plugin` the current version (its first instance made first: a failure changes
    /// nothing). Commands already holding an instance finish on the old version. Returns the
    /// version it replaced.
    pub fn swap(&self, plugin: Arc<LoadedPlugin>) -> Result<Arc<LoadedPlugin>, CallFailure> {
        let fresh = plugin.instantiate()?;
        let mut inner = self.lock();
        inner.generation += 1;
        inner.idle.clear();
        inner.idle.push(fresh);
        inner.leased = 0;
        let old = std::mem::replace(&mut inner.plugin, plugin);
        self.returned.notify_all();
        Ok(old)
    }

    /// An idle instance, a new one while fewer than `max` exist, or else the next returned.
    pub fn lease(&self) -> Result<Lease<'_>, CallFailure> {
        let mut inner = self.lock();
        loop {
            if let Some(instance) = inner.idle.pop() {
                return Ok(self.leased(&mut inner, instance));
            }
            if inner.leased < self.max {
                match inner.plugin.instantiate() {
                    Ok(instance) => return Ok(self.leased(&mut inner, instance)),
                    // No instance at all to wait for: the command fails.
                    Err(e) if inner.leased == 0 => return Err(e.into()),
                    Err(e) => {
                        tracing::warn!(error = %CallFailure::from(e), "another instance of an aggregate could not be made; waiting for one in use");
                    }
                }
            }
            inner = self.returned.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn leased(&self, inner: &mut Inner, instance: AggregateInstance) -> Lease<'_> {
        inner.leased += 1;
        Lease {
            pool: self,
            generation: inner.generation,
            instance: Some(instance),
        }
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = AggregateInstance;
    fn deref(&self) -> &AggregateInstance {
        self.instance.as_ref().expect("leased until dropped")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut AggregateInstance {
        self.instance.as_mut().expect("leased until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(instance) = self.instance.take() else {
            return;
        };
        let mut inner = self.pool.lock();
        if inner.generation == self.generation {
            inner.leased -= 1;
            inner.idle.push(instance);
            self.pool.returned.notify_one();
        }
    }
}
