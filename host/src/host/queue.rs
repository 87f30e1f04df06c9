//! Commands on one stream wait their turn instead of racing: two commands deciding on the same
//! version make the second one's append fail and decide again, and enough clients at once make
//! some give up. A turn per stream serializes them inside the host, so each decides on the
//! version the previous one left.
//!
//! Bounded: at most [`PER_STREAM`] commands hold or wait for one stream's turn and
//! [`TOTAL`] for all streams together (each waiting command holds its decoded body); past that
//! a command is refused at once ([`Busy`]). A stream's entry lives only while a command holds
//! or waits for it, so idle streams cost nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Commands holding or awaiting one stream's turn, at most.
pub const PER_STREAM: usize = 256;

/// Commands holding or awaiting a turn, over all streams, at most.
pub const TOTAL: usize = 4096;

/// Too many commands wait already: nothing was decided; try again later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{queued} commands already wait for stream {stream} (at most {limit}); try again later")]
pub struct Busy {
    pub stream: String,
    pub queued: usize,
    pub limit: usize,
}

#[derive(Debug, Default)]
struct State {
    streams: HashMap<String, Slot>,
    /// Tickets outstanding over all streams.
    queued: usize,
}

#[derive(Debug)]
struct Slot {
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Tickets of this stream: the command deciding plus those waiting.
    tickets: usize,
}

/// The turns of every stream commands are waiting for.
#[derive(Debug, Clone)]
pub(crate) struct StreamQueue {
    state: Arc<Mutex<State>>,
    per_stream: usize,
    total: usize,
}

/// A place in a stream's queue; dropping it (also while waiting) gives the place up, and the
/// last one of a stream removes the stream's entry.
#[derive(Debug)]
struct Ticket {
    state: Arc<Mutex<State>>,
    stream: String,
}

/// The stream's turn: the holder alone decides and appends on it until it drops this.
#[derive(Debug)]
pub(crate) struct Turn {
    // Released before the ticket, so the entry is never removed while its lock is held.
    _held: tokio::sync::OwnedMutexGuard<()>,
    _ticket: Ticket,
}

impl StreamQueue {
    pub(crate) fn new() -> Self {
        Self::with_limits(PER_STREAM, TOTAL)
    }

    fn with_limits(per_stream: usize, total: usize) -> Self {
        StreamQueue {
            state: Arc::default(),
            per_stream,
            total,
        }
    }

    /// Waits for `stream`'s turn, or refuses at once when its queue (or all of them) is full.
    /// Cancel-safe: a caller dropped while waiting leaves the queue.
    pub(crate) async fn turn(&self, stream: &str) -> Result<Turn, Busy> {
        let (ticket, lock) = self.ticket(stream)?;
        let held = lock.lock_owned().await;
        Ok(Turn {
            _held: held,
            _ticket: ticket,
        })
    }

    fn ticket(&self, stream: &str) -> Result<(Ticket, Arc<tokio::sync::Mutex<()>>), Busy> {
        let mut state = lock(&self.state);
        let queued = state.streams.get(stream).map_or(0, |s| s.tickets);
        if queued >= self.per_stream || state.queued >= self.total {
            let (queued, limit) = if queued >= self.per_stream {
                (queued, self.per_stream)
            } else {
                (state.queued, self.total)
            };
            return Err(Busy {
                stream: stream.to_owned(),
                queued,
                limit,
            });
        }
        state.queued += 1;
        let slot = state
            .streams
            .entry(stream.to_owned())
            .or_insert_with(|| Slot {
                turn: Arc::default(),
                tickets: 0,
            });
        slot.tickets += 1;
        let turn = slot.turn.clone();
        Ok((
            Ticket {
                state: self.state.clone(),
                stream: stream.to_owned(),
            },
            turn,
        ))
    }

    #[cfg(test)]
    fn streams(&self) -> usize {
        lock(&self.state).streams.len()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        state.queued -= 1;
        if let Some(slot) = state.streams.get_mut(&self.stream) {
            slot.tickets -= 1;
            if slot.tickets == 0 {
                state.streams.remove(&self.stream);
            }
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // Counters only, updated in one step each: a panic elsewhere cannot leave them torn.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_turn_per_stream_bounded_and_forgotten_when_idle() {
        let q = StreamQueue::with_limits(2, 3);
        let a = q.turn("s-1").await.unwrap();
        // Another stream is not held up.
        let b = q.turn("s-2").await.unwrap();
        let mut waiting = Box::pin(q.turn("s-1"));
        assert!(
            futures_poll(&mut waiting).is_none(),
            "the second command on s-1 waits"
        );
        // s-1 holds two tickets: a third is refused at once.
        assert_eq!(
            q.turn("s-1").await.unwrap_err(),
            Busy {
                stream: "s-1".into(),
                queued: 2,
                limit: 2
            }
        );
        // Three tickets over all streams: the total is reached too.
        assert_eq!(q.turn("s-3").await.unwrap_err().limit, 3);
        drop(a);
        let second = waiting.await.unwrap();
        drop((b, second));
        assert_eq!(q.streams(), 0, "idle streams leave no entry");

        // A caller dropped while waiting gives its place up.
        let held = q.turn("s-1").await.unwrap();
        let mut gone = Box::pin(q.turn("s-1"));
        assert!(futures_poll(&mut gone).is_none());
        drop(gone);
        drop(held);
        assert_eq!(q.streams(), 0);
        assert_eq!(lock(&q.state).queued, 0);
    }

    /// Polls a future once.
    fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(f).poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }
}
