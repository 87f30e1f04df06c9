//! Runs consumer groups concurrently on tokio: a bounded pool of workers (a semaphore) executes
//! batches, each on a blocking thread (plugin calls are synchronous). A group runs one task per
//! lane, so the lanes of one group run at once too (their commits are read-checked, see
//! `group.rs`); each lane runs one batch at a time. An idle lane waits on the log's commit watch
//! or its next retry, never polls.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::group::{
    ConsumerError, ConsumerGroup, Detached, GroupMetrics, Lane, RetryOutcome, Step, replicas,
};
use super::handler::Handler;
use crate::log::DeadLetterKey;

/// How long a lane waits after a storage error before it tries again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// A bounded pool of workers shared by many groups.
#[derive(Clone, Debug)]
pub struct ConsumerPool {
    workers: Arc<Semaphore>,
}

enum Command {
    Retry(
        DeadLetterKey,
        oneshot::Sender<Result<RetryOutcome, ConsumerError>>,
    ),
    Discard(DeadLetterKey, oneshot::Sender<Result<(), ConsumerError>>),
    Swap(Box<dyn Handler>, oneshot::Sender<()>),
}

/// One lane's task and its command queue.
struct LaneTask {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<Lane>,
    /// The partitions it owns, to route dead-letter operations without asking it.
    owns: Vec<(String, u32)>,
}

/// A group whose lanes are out running.
struct Running {
    /// The group without its lanes, which the lane tasks hold until they stop.
    group: Detached,
    lanes: Vec<LaneTask>,
    stop: watch::Sender<bool>,
}

impl Running {
    /// Stops every lane after its current batch and gives the group back.
    async fn stop(self) -> ConsumerGroup {
        let _ = self.stop.send(true);
        let mut lanes = Vec::with_capacity(self.lanes.len());
        for l in self.lanes {
            lanes.push(l.task.await.expect("consumer group lane task panicked"));
        }
        ConsumerGroup::from_parts(self.group, lanes)
    }

    fn lane_of(&self, name: &str, key: &DeadLetterKey) -> Result<&LaneTask, ConsumerError> {
        let not_ours = || ConsumerError::NotThisGroup(Box::new(key.clone()));
        if key.group != name {
            return Err(not_ours());
        }
        self.lanes
            .iter()
            .find(|l| {
                l.owns
                    .iter()
                    .any(|(t, p)| *t == key.topic && *p == key.partition)
            })
            .ok_or_else(not_ours)
    }
}

/// A running group. Dead-letter operations go through it so they run between the batches of
/// the lane owning the partition (a redelivered event and a batch of its partition never race;
/// other lanes are fenced by read checks as usual). The group can be paused and given back
/// another [`ConsumerGroup`] of the same name (a projector's rebuilt read model goes live so).
pub struct GroupHandle {
    name: String,
    pool: ConsumerPool,
    /// The same counters across pauses, whatever group runs.
    metrics: Arc<GroupMetrics>,
    /// `None` while paused, or when nothing runs under this name (a projector whose read model
    /// is being rebuilt before it may process).
    running: tokio::sync::Mutex<Option<Running>>,
}

impl std::fmt::Debug for GroupHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupHandle")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A paused group (see [`GroupHandle::pause`]). Dropping it starts whatever group it then holds;
/// dead-letter operations and deploys of this group wait meanwhile.
pub struct Paused<'a> {
    running: tokio::sync::MutexGuard<'a, Option<Running>>,
    pool: ConsumerPool,
    metrics: Arc<GroupMetrics>,
    group: Option<ConsumerGroup>,
}

impl std::fmt::Debug for Paused<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paused")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl Paused<'_> {
    /// The group that resumes when this is dropped (`None`: nothing will run).
    pub fn group(&self) -> Option<&ConsumerGroup> {
        self.group.as_ref()
    }

    /// Puts `group` in place of the paused one, which is returned.
    pub fn replace(&mut self, group: Option<ConsumerGroup>) -> Option<ConsumerGroup> {
        std::mem::replace(&mut self.group, group)
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        if let Some(mut group) = self.group.take() {
            group.share_metrics(self.metrics.clone());
            *self.running = Some(self.pool.start(group));
        }
    }
}

impl ConsumerPool {
    /// A pool running at most `workers` batches at once (over all its groups and lanes).
    pub fn new(workers: usize) -> Self {
        ConsumerPool {
            workers: Arc::new(Semaphore::new(workers.max(1))),
        }
    }

    /// Starts `group` on the current tokio runtime: one task per lane.
    pub fn spawn(&self, group: ConsumerGroup) -> GroupHandle {
        let name = group.name().to_owned();
        let metrics = group.metrics().clone();
        GroupHandle {
            name,
            pool: self.clone(),
            metrics,
            running: tokio::sync::Mutex::new(Some(self.start(group))),
        }
    }

    /// A handle for group `name` with nothing running yet; [`GroupHandle::pause`] and a
    /// replacement start it.
    pub fn idle(&self, name: impl Into<String>) -> GroupHandle {
        GroupHandle {
            name: name.into(),
            pool: self.clone(),
            metrics: Arc::default(),
            running: tokio::sync::Mutex::new(None),
        }
    }

    fn start(&self, group: ConsumerGroup) -> Running {
        let (stop, stop_rx) = watch::channel(false);
        let (group, lanes) = group.into_parts();
        let lanes = lanes
            .into_iter()
            .map(|lane| {
                let (commands, rx) = mpsc::channel(16);
                let owns = lane.partitions();
                let task = tokio::spawn(run(lane, self.workers.clone(), rx, stop_rx.clone()));
                LaneTask {
                    commands,
                    task,
                    owns,
                }
            })
            .collect();
        Running { group, lanes, stop }
    }
}

impl GroupHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn metrics(&self) -> &Arc<GroupMetrics> {
        &self.metrics
    }

    /// How many lanes run under this handle (0 while paused or not running).
    pub async fn lanes(&self) -> usize {
        self.running
            .lock()
            .await
            .as_ref()
            .map_or(0, |r| r.lanes.len())
    }

    /// Whether a group runs under this handle (not paused, not waiting for a rebuild).
    pub fn is_running(&self) -> bool {
        self.running.try_lock().map_or(true, |r| r.is_some())
    }

    /// The command queue of the lane owning `key`'s partition.
    async fn lane_of(&self, key: &DeadLetterKey) -> Result<mpsc::Sender<Command>, ConsumerError> {
        let running = self.running.lock().await;
        let running = running.as_ref().ok_or(ConsumerError::Stopped)?;
        Ok(running.lane_of(&self.name, key)?.commands.clone())
    }

    pub async fn retry_dead_letter(
        &self,
        key: DeadLetterKey,
    ) -> Result<RetryOutcome, ConsumerError> {
        let lane = self.lane_of(&key).await?;
        let (tx, rx) = oneshot::channel();
        send(&lane, Command::Retry(key, tx)).await?;
        rx.await.map_err(|_| ConsumerError::Stopped)?
    }

    pub async fn discard_dead_letter(&self, key: DeadLetterKey) -> Result<(), ConsumerError> {
        let lane = self.lane_of(&key).await?;
        let (tx, rx) = oneshot::channel();
        send(&lane, Command::Discard(key, tx)).await?;
        rx.await.map_err(|_| ConsumerError::Stopped)?
    }

    /// Deploys a new handler (plugin version) on every lane, each between two of its
    /// batches. The other lanes' replicas are made first, so a failure changes nothing.
    pub async fn swap_handler(&self, handler: Box<dyn Handler>) -> Result<(), ConsumerError> {
        let running = self.running.lock().await;
        let running = running.as_ref().ok_or(ConsumerError::Stopped)?;
        let (name, n) = (self.name.clone(), running.lanes.len());
        let projections = tokio::task::spawn_blocking(move || replicas(&name, handler, n))
            .await
            .expect("replicating a handler panicked")?;
        let mut replies = Vec::with_capacity(n);
        for (lane, p) in running.lanes.iter().zip(projections) {
            let (tx, rx) = oneshot::channel();
            send(&lane.commands, Command::Swap(p, tx)).await?;
            replies.push(rx);
        }
        for rx in replies {
            rx.await.map_err(|_| ConsumerError::Stopped)?;
        }
        Ok(())
    }

    /// Takes on `partitions`, between batches: the lanes stop after their current batch, the
    /// group opens the partitions' stored state, and the lanes start again.
    pub async fn assign(&self, partitions: Vec<(String, u32)>) -> Result<(), ConsumerError> {
        let mut paused = self.pause().await;
        let Some(group) = paused.replace(None) else {
            return Err(ConsumerError::Stopped);
        };
        let (group, result) = tokio::task::spawn_blocking(move || {
            let mut group = group;
            let r = group.assign(&partitions);
            (group, r)
        })
        .await
        .expect("assigning partitions panicked");
        paused.replace(Some(group));
        result
    }

    /// Gives `partitions` up, between batches (their state stays in the log).
    pub async fn revoke(&self, partitions: Vec<(String, u32)>) -> Result<(), ConsumerError> {
        let mut paused = self.pause().await;
        let Some(mut group) = paused.replace(None) else {
            return Err(ConsumerError::Stopped);
        };
        group.revoke(&partitions);
        paused.replace(Some(group));
        Ok(())
    }

    /// Stops every lane after its current batch and holds the group until the returned guard
    /// is dropped, which starts the group it then holds.
    pub async fn pause(&self) -> Paused<'_> {
        let mut running = self.running.lock().await;
        let group = match running.take() {
            Some(r) => Some(r.stop().await),
            None => None,
        };
        Paused {
            running,
            pool: self.pool.clone(),
            metrics: self.metrics.clone(),
            group,
        }
    }

    /// Stops every lane after its current batch and hands the group back (`None` if none ran).
    pub async fn stop(self) -> Option<ConsumerGroup> {
        let running = self.running.into_inner();
        match running {
            Some(r) => Some(r.stop().await),
            None => None,
        }
    }
}

async fn send(lane: &mpsc::Sender<Command>, c: Command) -> Result<(), ConsumerError> {
    lane.send(c).await.map_err(|_| ConsumerError::Stopped)
}

/// Runs `f` on the lane on a blocking thread and gives the lane back.
async fn blocking<R: Send + 'static>(
    lane: Lane,
    f: impl FnOnce(&mut Lane) -> R + Send + 'static,
) -> (Lane, R) {
    tokio::task::spawn_blocking(move || {
        let mut lane = lane;
        let r = f(&mut lane);
        (lane, r)
    })
    .await
    .expect("consumer group step panicked")
}

async fn handle(lane: Lane, command: Command) -> Lane {
    match command {
        Command::Retry(key, reply) => {
            let (l, r) = blocking(lane, move |l| l.retry_dead_letter(&key)).await;
            let _ = reply.send(r);
            l
        }
        Command::Discard(key, reply) => {
            let (l, r) = blocking(lane, move |l| l.discard_dead_letter(&key)).await;
            let _ = reply.send(r);
            l
        }
        Command::Swap(handler, reply) => {
            let mut l = lane;
            drop(l.swap_handler(handler));
            let _ = reply.send(());
            l
        }
    }
}

async fn run(
    mut lane: Lane,
    workers: Arc<Semaphore>,
    mut commands: mpsc::Receiver<Command>,
    mut stop: watch::Receiver<bool>,
) -> Lane {
    let mut commits = lane.log().commits();
    let metrics = lane.metrics().clone();
    // For the swap pause: when the last batch ended, and that instant once a swap arrived,
    // until the first batch on the new version starts.
    let mut last_batch_end: Option<std::time::Instant> = None;
    let mut swapped_after: Option<std::time::Instant> = None;
    loop {
        while let Ok(c) = commands.try_recv() {
            if matches!(c, Command::Swap(..)) {
                swapped_after = last_batch_end;
            }
            lane = handle(lane, c).await;
        }
        if *stop.borrow() {
            return lane;
        }
        // Mark every commit so far as seen before reading, so one landing after the read wakes
        // us below.
        commits.borrow_and_update();
        let step = {
            let Ok(_permit) = workers.acquire().await else {
                return lane;
            };
            let started = std::time::Instant::now();
            let (l, step) = blocking(lane, Lane::step).await;
            lane = l;
            if let Ok(Step::Progress { .. }) = step {
                if let Some(since) = swapped_after.take() {
                    let pause = started.saturating_duration_since(since).as_micros() as u64;
                    metrics.last_swap_pause_us.store(pause, Ordering::Relaxed);
                }
                last_batch_end = Some(std::time::Instant::now());
            }
            step
        };
        let wait = match step {
            Ok(Step::Progress { .. } | Step::Failed) => continue,
            Ok(Step::Idle { next_retry }) => next_retry.map(tokio::time::Instant::from_std),
            Err(e) => {
                tracing::error!(group = %lane.name(), error = %e, "consumer group step failed; pausing");
                Some(tokio::time::Instant::now() + ERROR_PAUSE)
            }
        };
        let sleep = async {
            match wait {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = commits.changed() => {
                if changed.is_err() {
                    return lane; // the log closed
                }
            }
            () = sleep => {}
            c = commands.recv() => match c {
                Some(c) => {
                    if matches!(c, Command::Swap(..)) {
                        swapped_after = last_batch_end;
                    }
                    lane = handle(lane, c).await
                }
                None => return lane,
            },
            // A stop, or the handle dropped without one: either way this lane is done.
            _ = stop.changed() => return lane,
        }
    }
}
