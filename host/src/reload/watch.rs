//! Watches the configured component files (the `notify` crate) and deploys a file whose content
//! changed. Events are debounced: a build writes a file in several steps, so the file is read
//! once it has been quiet for [`QUIET`]. A file that fails to load is reported and the running
//! version stays; the next change is tried again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::host::Host;

/// How long a changed file must stay unchanged before it is deployed.
const QUIET: Duration = Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
#[error("watching {}: {source}", dir.display())]
pub struct WatchError {
    dir: PathBuf,
    source: notify::Error,
}

/// A running watcher; dropping it stops watching ([`PluginWatcher::stop`] also waits for a
/// deploy it started to be cancelled).
pub struct PluginWatcher {
    _watcher: notify::RecommendedWatcher,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for PluginWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginWatcher").finish_non_exhaustive()
    }
}

impl Drop for PluginWatcher {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl PluginWatcher {
    /// Stops watching and returns once the watcher's task has ended.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Watches the directory of every configured component (not recursively: only the files
    /// themselves matter, and editors and builds replace files by rename, which a watch on the
    /// file alone would lose). Call inside a tokio runtime.
    pub fn start(host: Arc<Host>) -> Result<PluginWatcher, WatchError> {
        // Compare canonical paths: notify reports them resolved.
        let mut by_path: BTreeMap<PathBuf, String> = BTreeMap::new();
        let mut dirs = BTreeSet::new();
        for p in &host.config().plugins {
            let path = canonical(&p.component);
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_path_buf());
            }
            by_path.insert(path, p.name.clone());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |e: notify::Result<notify::Event>| match e {
                Ok(event) if !event.kind.is_access() => {
                    for path in event.paths {
                        let _ = tx.send(path);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "plugin watcher error"),
            })
            .map_err(|source| WatchError {
                dir: PathBuf::new(),
                source,
            })?;
        for dir in &dirs {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|source| WatchError {
                    dir: dir.clone(),
                    source,
                })?;
        }
        tracing::info!(dirs = ?dirs, "watching plugin components");
        // Weak: the watcher must not keep the host alive (shutdown takes it back by value).
        let task = tokio::spawn(run(Arc::downgrade(&host), by_path, rx));
        Ok(PluginWatcher {
            _watcher: watcher,
            task: Some(task),
        })
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

async fn run(
    host: std::sync::Weak<Host>,
    by_path: BTreeMap<PathBuf, String>,
    mut rx: mpsc::UnboundedReceiver<PathBuf>,
) {
    let mut pending: BTreeSet<String> = BTreeSet::new();
    loop {
        let next = if pending.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(QUIET, rx.recv()).await {
                Ok(p) => p,
                Err(_) => {
                    // Quiet long enough: deploy what changed.
                    let Some(host) = host.upgrade() else { return };
                    for name in std::mem::take(&mut pending) {
                        deploy_file(&host, &name).await;
                    }
                    continue;
                }
            }
        };
        let Some(path) = next else { return };
        // A renamed-over file may not exist under its old canonical name; match by both.
        let name = by_path
            .get(&canonical(&path))
            .or_else(|| by_path.get(&path));
        if let Some(name) = name {
            pending.insert(name.clone());
        }
    }
}

async fn deploy_file(host: &Arc<Host>, name: &str) {
    // Read under the deploy lock (by the host): a file some deploy has rewritten since is read
    // as that deploy left it, never as the superseded content the event was about.
    match host.deploy_component_file(name).await {
        Ok(Some(r)) if r.swapped => {
            tracing::info!(plugin = name, from = %r.previous, to = %r.current, "component file changed: new version deployed");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(plugin = name, error = %e, "component file changed but was refused; running version kept");
        }
    }
}
