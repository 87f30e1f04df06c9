//! Blue/green projector rebuilds: replay every event from offset 0 into a fresh read model
//! beside the live one, which keeps answering queries (and keeps processing) meanwhile; once the
//! new one has caught up, pause the live group, let the new one take the last events, and switch
//! in one transaction (`log/projection.rs`): queries and the live group move to the new
//! generation and the old one is dropped. Nothing is lost or applied twice: the rebuild group's
//! offsets become the live group's offsets in the same transaction as the switch.
//!
//! Three ways in: `factline projector rebuild` (API), the deploy of a projector version that
//! declares another read-model version (the new version builds the new read model while the old
//! one keeps running), and a start on a read model of another version than the plugin's (or
//! after a crash mid-rebuild, which resumes from the rebuild's committed offsets).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::consumer::{ConsumerError, ConsumerGroup, GroupConfig, GroupHandle, StartFrom};
use crate::event::now_millis;
use crate::log::{
    DeadLetterKey, EventLog, ProjectionChange, ProjectionError, ReadError, read_model_scope,
    rebuild_group,
};
use crate::plugin::{CallFailure, LoadedPlugin};
use crate::projector::{Projection, ProjectionHandler, WasmProjection};

/// Rows deleted per transaction when a retired read model is dropped: small enough that the
/// writer's other requests never wait long behind it.
const DROP_CHUNK: usize = 5_000;

/// Why a rebuild was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebuildReason {
    /// Asked for (`factline projector rebuild`).
    Requested,
    /// A deployed version declares another read-model version.
    Deploy,
    /// At start: the plugin declares another read-model version than the stored one, or an
    /// interrupted rebuild of this version resumes.
    Startup,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebuildPhase {
    /// Replaying the log into the new read model; the old one answers queries.
    Replaying,
    /// The live group is paused while the new read model takes the last events and goes live.
    Switching,
    /// The new read model is live and the old one is gone.
    Done,
    /// Stopped with an error; the old read model stays live and the new one was dropped.
    Failed,
    /// Stopped by a shutdown; a restart resumes it.
    Interrupted,
}

/// A rebuild's progress, as the API reports it.
#[derive(Clone, Debug, Serialize)]
pub struct RebuildStatus {
    pub projector: String,
    pub reason: RebuildReason,
    pub phase: RebuildPhase,
    /// The generation being built (0 until the log assigned it).
    pub generation: u64,
    pub read_model_version: u32,
    pub plugin_version: String,
    /// Events the new read model has consumed (its committed offsets, summed over partitions).
    pub processed: u64,
    /// Events in its topics (their high-water marks, summed; it grows while events arrive).
    pub target: u64,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// How long the live group was paused for the last events and the switch.
    pub switch_pause_ms: Option<f64>,
    pub error: Option<String>,
}

impl RebuildStatus {
    pub fn is_running(&self) -> bool {
        matches!(
            self.phase,
            RebuildPhase::Replaying | RebuildPhase::Switching
        )
    }
}

/// Shared between a rebuild task and whoever watches or stops it.
#[derive(Debug)]
pub struct RebuildProgress {
    status: Mutex<RebuildStatus>,
    stop: AtomicBool,
}

impl RebuildProgress {
    /// A rebuild about to start over `topics`: its target is their events already (the
    /// high-water marks), not 0 until the replay's first check.
    pub(crate) fn new(
        projector: &str,
        reason: RebuildReason,
        plugin: &LoadedPlugin,
        log: &EventLog,
        topics: &[String],
    ) -> Arc<Self> {
        let target = high_water_marks(log, topics).unwrap_or_else(|e| {
            tracing::warn!(%projector, error = %e, "rebuild target unknown until the replay starts");
            0
        });
        Arc::new(RebuildProgress {
            status: Mutex::new(RebuildStatus {
                projector: projector.to_owned(),
                reason,
                phase: RebuildPhase::Replaying,
                generation: 0,
                read_model_version: 0,
                plugin_version: plugin.version.to_string(),
                processed: 0,
                target,
                started_at_ms: now_millis(),
                finished_at_ms: None,
                switch_pause_ms: None,
                error: None,
            }),
            stop: AtomicBool::new(false),
        })
    }

    pub fn status(&self) -> RebuildStatus {
        self.lock().clone()
    }

    /// Asks the rebuild to stop at its next batch boundary (it stays resumable).
    pub fn interrupt(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RebuildStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut RebuildStatus)) {
        f(&mut self.lock());
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Why a rebuild stopped without switching.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("instantiating the projector: {0}")]
    Instantiate(CallFailure),
    #[error(transparent)]
    Record(#[from] ProjectionError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A `block` dead letter stops the replay at an event the live group has passed; the old
    /// read model stays live.
    #[error(
        "the replay is blocked by a dead letter at {topic}/{partition}@{offset}, which the live read model is past; the old read model stays live"
    )]
    Blocked {
        topic: String,
        partition: u32,
        offset: u64,
    },
    #[error("interrupted by a shutdown; a restart resumes it")]
    Interrupted,
}

/// One rebuild of one projector, run by [`RebuildJob::run`].
pub(crate) struct RebuildJob {
    pub log: EventLog,
    /// The live group's handle: paused for the switch, then given the new generation's group.
    pub live: Arc<GroupHandle>,
    /// The live group's configuration (its scope is replaced by the new generation's).
    pub config: GroupConfig,
    /// The version that builds the new read model and runs it once live.
    pub plugin: Arc<LoadedPlugin>,
    pub progress: Arc<RebuildProgress>,
    /// Continue an unfinished rebuild by the same version instead of starting over.
    pub resume: bool,
    pub hooks: RebuildHooks,
}

/// A callback of a rebuild's outcome.
pub(crate) type Hook = Box<dyn FnOnce() + Send + Sync>;

/// What a rebuild's starter does at its end.
#[derive(Default)]
pub(crate) struct RebuildHooks {
    /// Right after the switch committed (a deploy makes its version current there).
    pub on_switch: Option<Hook>,
    /// When it failed (not when a shutdown interrupted it): a rollback puts the version it
    /// took off the history back.
    pub on_failure: Option<Hook>,
}

impl RebuildJob {
    /// Runs the rebuild to its end and records the outcome in its progress.
    pub async fn run(mut self) {
        let progress = self.progress.clone();
        let name = self.config.name.clone();
        let outcome = self.rebuild().await;
        if outcome
            .as_ref()
            .is_err_and(|e| !matches!(e, RebuildError::Interrupted))
            && let Some(f) = self.hooks.on_failure.take()
        {
            f();
        }
        progress.update(|s| {
            s.finished_at_ms = Some(now_millis());
            match &outcome {
                Ok(()) => s.phase = RebuildPhase::Done,
                Err(RebuildError::Interrupted) => s.phase = RebuildPhase::Interrupted,
                Err(e) => {
                    s.phase = RebuildPhase::Failed;
                    s.error = Some(e.to_string());
                }
            }
        });
        let s = progress.status();
        match outcome {
            Ok(()) => {
                tracing::info!(projector = %name, generation = s.generation, events = s.processed, switch_pause_ms = s.switch_pause_ms, "read model rebuilt and live")
            }
            Err(RebuildError::Interrupted) => {
                tracing::info!(projector = %name, generation = s.generation, "read model rebuild interrupted; a restart resumes it")
            }
            Err(e) => {
                tracing::error!(projector = %name, generation = s.generation, error = %e, "read model rebuild failed; the old read model stays live")
            }
        }
    }

    async fn rebuild(&mut self) -> Result<(), RebuildError> {
        let name = self.config.name.clone();
        let projection = self.projection().await?;
        let read_model_version = projection.read_model_version();
        let record = self
            .log
            .change_projection_async(ProjectionChange::BeginRebuild {
                projector: name.clone(),
                read_model_version,
                plugin_version: self.plugin.version.to_string(),
                resume: self.resume,
            })
            .await?;
        let next = record.rebuild.expect("a begun rebuild is recorded");
        let generation = next.generation;
        self.progress.update(|s| {
            s.generation = generation;
            s.read_model_version = read_model_version;
        });
        tracing::info!(projector = %name, generation, read_model_version, plugin = %self.plugin.version, "rebuilding the read model beside the live one");
        let config = GroupConfig {
            name: rebuild_group(&name),
            scope: Some(next.scope(&name)),
            start: StartFrom::Earliest,
            ..self.config.clone()
        };
        let log = self.log.clone();
        let result = match blocking(move || {
            ConsumerGroup::new(log, config, Box::new(ProjectionHandler(projection)))
        })
        .await
        {
            Ok(group) => self.switch_over(group, generation).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = &result
            && !matches!(e, RebuildError::Interrupted)
        {
            // Drop what the failed rebuild wrote; a record that moved on is left alone.
            let abort = ProjectionChange::Abort {
                projector: name.clone(),
                generation,
            };
            match self.log.change_projection_async(abort).await {
                Ok(_) => drop_retired(&self.log, &name).await,
                Err(e) => {
                    tracing::warn!(projector = %name, generation, error = %e, "dropping the failed rebuild's rows")
                }
            }
        }
        result
    }

    async fn projection(&self) -> Result<Box<dyn Projection>, RebuildError> {
        let plugin = self.plugin.clone();
        blocking(move || {
            WasmProjection::new(plugin.instantiate()?).map(|p| Box::new(p) as Box<dyn Projection>)
        })
        .await
        .map_err(RebuildError::Instantiate)
    }

    async fn switch_over(
        &mut self,
        group: ConsumerGroup,
        generation: u64,
    ) -> Result<(), RebuildError> {
        let name = self.config.name.clone();
        // Replay while the live read model answers and keeps processing, until the new one has
        // caught up with it (not with the log's end, which moves on under load).
        let group = self.replay(group).await?;
        // The live projection of the new generation, made before anything is paused.
        let projection = self.projection().await?;
        self.progress.update(|s| s.phase = RebuildPhase::Switching);
        let mut paused = self.live.pause().await;
        let paused_at = Instant::now();
        // The events the live group handled since: its offsets no longer move, so this is
        // bounded by the batches it ran meanwhile, whatever the append rate.
        let group = self.replay(group).await?;
        drop(group);
        self.log
            .change_projection_async(ProjectionChange::Switch {
                projector: name.clone(),
                generation,
            })
            .await?;
        // From here the new generation is live: the old group must not run again.
        drop(paused.replace(None));
        if let Some(f) = self.hooks.on_switch.take() {
            f();
        }
        let config = GroupConfig {
            scope: Some(read_model_scope(&name, generation)),
            ..self.config.clone()
        };
        let log = self.log.clone();
        let live = blocking(move || {
            ConsumerGroup::new(log, config, Box::new(ProjectionHandler(projection)))
        })
        .await;
        let pause = paused_at.elapsed();
        match live {
            Ok(g) => {
                paused.replace(Some(g));
            }
            Err(e) => {
                tracing::error!(projector = %name, error = %e, "the rebuilt read model is live, but its consumer group did not start");
            }
        }
        drop(paused);
        self.progress
            .update(|s| s.switch_pause_ms = Some(pause.as_secs_f64() * 1000.0));
        // No query reaches the old rows any more: delete them in small transactions.
        drop_retired(&self.log, &name).await;
        Ok(())
    }

    /// Steps `group` until it has caught up with the live group: at or past its committed
    /// offset on every partition (or at the end of every partition).
    async fn replay(&self, group: ConsumerGroup) -> Result<ConsumerGroup, RebuildError> {
        let progress = self.progress.clone();
        let topics = self.config.topics.clone();
        let log = self.log.clone();
        let live = self.config.name.clone();
        let (group, result) = tokio::task::spawn_blocking(move || {
            let mut group = group;
            let r = replay_blocking(&mut group, &log, &live, &topics, &progress);
            (group, r)
        })
        .await
        .expect("a rebuild replay panicked");
        result.map(|()| group)
    }
}

/// Events in `topics`: their partitions' high-water marks, summed.
fn high_water_marks(log: &EventLog, topics: &[String]) -> Result<u64, ReadError> {
    let mut sum = 0;
    for topic in topics {
        let info = log
            .topic(topic)
            .ok_or_else(|| ReadError::UnknownTopic(topic.clone()))?;
        for partition in 0..info.partitions {
            sum += log.high_water_mark(topic, partition)?;
        }
    }
    Ok(sum)
}

/// Replays on every lane of `group` at once (each on its own thread, like the live group's
/// lanes under a runner) until it has caught up with the live group.
fn replay_blocking(
    group: &mut ConsumerGroup,
    log: &EventLog,
    live: &str,
    topics: &[String],
    progress: &RebuildProgress,
) -> Result<(), RebuildError> {
    let name = group.name().to_owned();
    // Reports progress; true once the rebuild is at or past the live group everywhere.
    let caught_up = || -> Result<bool, ReadError> {
        let lag = crate::consumer::lag(log, &name, topics)?;
        progress.update(|s| {
            s.processed = lag.iter().map(|p| p.committed).sum();
            s.target = lag.iter().map(|p| p.high_water_mark).sum();
        });
        for p in &lag {
            let live_at = log.group_offset(live, &p.topic, p.partition)?.unwrap_or(0);
            if p.committed < live_at.min(p.high_water_mark) {
                return Ok(false);
            }
            // The live group waits on a `block` dead letter here: the rebuild has caught up
            // once it parked the same event (its dead letters become the live group's).
            let blocking = |group: &str| -> Result<bool, ReadError> {
                let key = DeadLetterKey {
                    group: group.to_owned(),
                    topic: p.topic.clone(),
                    partition: p.partition,
                    offset: p.committed,
                };
                Ok(log.dead_letter(&key)?.is_some_and(|d| d.blocking))
            };
            if p.committed == live_at && blocking(live)? && !blocking(&name)? {
                return Ok(false);
            }
        }
        Ok(true)
    };
    // Checked often enough to stop soon after catching up, rarely enough to cost nothing.
    let check_every = Duration::from_millis(10);
    if caught_up()? {
        return Ok(());
    }
    loop {
        // Asked by every lane between its batches; one of them checks at a time.
        let checked = Mutex::new(Instant::now());
        let failure: Mutex<Option<ReadError>> = Mutex::new(None);
        let done = AtomicBool::new(false);
        let stop = || {
            if progress.stopping() || done.load(Ordering::Relaxed) {
                return true;
            }
            let Ok(mut at) = checked.try_lock() else {
                return false;
            };
            if at.elapsed() < check_every {
                return false;
            }
            *at = Instant::now();
            let finished = caught_up().unwrap_or_else(|e| {
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                true
            });
            done.store(finished, Ordering::Relaxed);
            finished
        };
        group.run_lanes_until_idle(&stop)?;
        if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e.into());
        }
        if progress.stopping() {
            return Err(RebuildError::Interrupted);
        }
        // Every lane idle: at the end of every partition, or held by a `block` dead letter.
        // Caught up unless the live group is past that event (then it never will be).
        if done.into_inner() || caught_up()? {
            return Ok(());
        }
        if let Some((topic, partition, offset)) = group.blocked().into_iter().next() {
            return Err(RebuildError::Blocked {
                topic,
                partition,
                offset,
            });
        }
        // Not blocked: events arrived (and the live group took them) after the lanes went
        // idle; replay those too.
    }
}

async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a rebuild step panicked")
}

/// Deletes the rows of `projector`'s retired read models, a bounded transaction at a time.
/// Failures are logged: the rows are unreachable, and the next start tries again.
pub(crate) async fn drop_retired(log: &EventLog, projector: &str) {
    loop {
        let change = ProjectionChange::DropRetired {
            projector: projector.to_owned(),
            max_rows: DROP_CHUNK,
        };
        match log.change_projection_async(change).await {
            Ok(r) if r.retired.is_empty() => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%projector, error = %e, "dropping a retired read model; the next start retries");
                return;
            }
        }
    }
}
