//! Runs consumer groups concurrently on tokio: a bounded pool of workers (a semaphore) executes
//! batches, one batch per group at a time, each on a blocking thread (plugin calls are
//! synchronous). An idle group waits on the log's commit watch or its next retry, never polls.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::group::{ConsumerError, ConsumerGroup, GroupMetrics, RetryOutcome, Step};
use crate::log::DeadLetterKey;
use crate::projector::Projection;

/// How long a group waits after a storage error before it tries again.
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
    Swap(Box<dyn Projection>, oneshot::Sender<()>),
}

/// A running group. Dead-letter operations go through it so they run between the group's
/// batches (a redelivered event and a batch never race on the read model).
pub struct GroupHandle {
    name: String,
    commands: mpsc::Sender<Command>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<ConsumerGroup>,
    metrics: Arc<GroupMetrics>,
}

impl std::fmt::Debug for GroupHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupHandle")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ConsumerPool {
    /// A pool running at most `workers` batches at once (over all its groups).
    pub fn new(workers: usize) -> Self {
        ConsumerPool {
            workers: Arc::new(Semaphore::new(workers.max(1))),
        }
    }

    /// Starts `group` on the current tokio runtime.
    pub fn spawn(&self, group: ConsumerGroup) -> GroupHandle {
        let (commands, rx) = mpsc::channel(16);
        let (stop, stop_rx) = oneshot::channel();
        let name = group.name().to_owned();
        let metrics = group.metrics().clone();
        let task = tokio::spawn(run(group, self.workers.clone(), rx, stop_rx));
        GroupHandle {
            name,
            commands,
            stop: Some(stop),
            task,
            metrics,
        }
    }
}

impl GroupHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn metrics(&self) -> &Arc<GroupMetrics> {
        &self.metrics
    }

    pub async fn retry_dead_letter(
        &self,
        key: DeadLetterKey,
    ) -> Result<RetryOutcome, ConsumerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Retry(key.clone(), tx)).await?;
        rx.await.map_err(|_| ConsumerError::Stopped)?
    }

    pub async fn discard_dead_letter(&self, key: DeadLetterKey) -> Result<(), ConsumerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Discard(key, tx)).await?;
        rx.await.map_err(|_| ConsumerError::Stopped)?
    }

    /// Deploys a new projection (plugin version) between two batches.
    pub async fn swap_projection(
        &self,
        projection: Box<dyn Projection>,
    ) -> Result<(), ConsumerError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Swap(projection, tx)).await?;
        rx.await.map_err(|_| ConsumerError::Stopped)
    }

    async fn send(&self, c: Command) -> Result<(), ConsumerError> {
        self.commands
            .send(c)
            .await
            .map_err(|_| ConsumerError::Stopped)
    }

    /// Stops after the current batch and hands the group back.
    pub async fn stop(mut self) -> ConsumerGroup {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.expect("consumer group task panicked")
    }
}

/// Runs `f` on the group on a blocking thread and gives the group back.
async fn blocking<R: Send + 'static>(
    group: ConsumerGroup,
    f: impl FnOnce(&mut ConsumerGroup) -> R + Send + 'static,
) -> (ConsumerGroup, R) {
    tokio::task::spawn_blocking(move || {
        let mut group = group;
        let r = f(&mut group);
        (group, r)
    })
    .await
    .expect("consumer group step panicked")
}

async fn handle(group: ConsumerGroup, command: Command) -> ConsumerGroup {
    match command {
        Command::Retry(key, reply) => {
            let (g, r) = blocking(group, move |g| g.retry_dead_letter(&key)).await;
            let _ = reply.send(r);
            g
        }
        Command::Discard(key, reply) => {
            let (g, r) = blocking(group, move |g| g.discard_dead_letter(&key)).await;
            let _ = reply.send(r);
            g
        }
        Command::Swap(projection, reply) => {
            let mut g = group;
            drop(g.swap_projection(projection));
            let _ = reply.send(());
            g
        }
    }
}

async fn run(
    mut group: ConsumerGroup,
    workers: Arc<Semaphore>,
    mut commands: mpsc::Receiver<Command>,
    mut stop: oneshot::Receiver<()>,
) -> ConsumerGroup {
    let mut commits = group.log().commits();
    loop {
        while let Ok(c) = commands.try_recv() {
            group = handle(group, c).await;
        }
        if stop.try_recv().is_ok() {
            return group;
        }
        // Mark every commit so far as seen before reading, so one landing after the read wakes
        // us below.
        commits.borrow_and_update();
        let step = {
            let Ok(_permit) = workers.acquire().await else {
                return group;
            };
            let (g, step) = blocking(group, ConsumerGroup::step).await;
            group = g;
            step
        };
        let wait = match step {
            Ok(Step::Progress { .. } | Step::Failed) => continue,
            Ok(Step::Idle { next_retry }) => next_retry.map(tokio::time::Instant::from_std),
            Err(e) => {
                tracing::error!(group = %group.name(), error = %e, "consumer group step failed; pausing");
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
                    return group; // the log closed
                }
            }
            () = sleep => {}
            c = commands.recv() => match c {
                Some(c) => group = handle(group, c).await,
                None => return group,
            },
            _ = &mut stop => return group,
        }
    }
}
