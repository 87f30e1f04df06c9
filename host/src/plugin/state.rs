//! What a plugin's `Store` holds: the (empty) WASI context, limits, the deterministic clock and,
//! during a projector batch, its read-model session. Host functions see only this.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::capabilities::{Capabilities, SeededRandom};
use super::host::read_model::ReadModelSession;
use super::limits::{Limiter, Limits, LogBudget, OutputBreach};

pub(crate) struct HostState {
    pub plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: Limiter,
    /// The guest's notion of "now" (ms since epoch): the time of the event or command being
    /// handled, so a replay sees the same clock (DESIGN §4 invariant 8).
    pub clock: Arc<AtomicU64>,
    /// Reseeded from each call's input, unless real randomness is granted.
    pub random: SeededRandom,
    pub read_model: Option<ReadModelSession>,
    /// The component declared JSON at its boundary: read-model values cross as JSON.
    pub json: bool,
    /// A budget the current call's output ran over (a read-model write refused), so the
    /// failure is classified `bad-output`.
    pub output_breach: Option<OutputBreach>,
    /// Log lines per second of this plugin, shared by its instances.
    pub log_budget: Arc<LogBudget>,
    /// The guest's last stderr lines (a Rust panic message lands there), for failure reports.
    pub stderr_tail: StderrTail,
}

/// The last few lines a guest wrote to stderr during the current call.
#[derive(Clone, Default)]
pub(crate) struct StderrTail(Arc<std::sync::Mutex<std::collections::VecDeque<String>>>);

/// Lines kept: enough for a panic message, bounded against floods.
const TAIL_LINES: usize = 4;

impl StderrTail {
    fn push(&self, line: &str) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() == TAIL_LINES {
            t.pop_front();
        }
        t.push_back(line.to_owned());
    }

    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The kept lines, joined; `None` when the guest wrote nothing.
    pub fn text(&self) -> Option<String> {
        let t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (!t.is_empty()).then(|| t.iter().cloned().collect::<Vec<_>>().join(" "))
    }
}

impl HostState {
    pub fn new(
        plugin: Arc<str>,
        limits: Limits,
        capabilities: &Capabilities,
        log_budget: Arc<LogBudget>,
    ) -> Self {
        let clock = Arc::new(AtomicU64::new(0));
        let random = SeededRandom::default();
        let stderr_tail = StderrTail::default();
        // Nothing is granted: no preopened directories, no environment, no arguments, no
        // sockets (WasiCtxBuilder denies network by default), clocks from the envelope,
        // randomness seeded from the input.
        let mut wasi = WasiCtxBuilder::new();
        if !capabilities.real_clock {
            wasi.wall_clock(EnvelopeClock(clock.clone()))
                .monotonic_clock(EnvelopeClock(clock.clone()));
        }
        if !capabilities.real_random {
            wasi.secure_random(random.clone())
                .insecure_random(random.clone())
                .insecure_random_seed(0);
        }
        let wasi = wasi
            .stdout(GuestOutput {
                plugin: plugin.clone(),
                stream: "stdout",
                recent: None,
                budget: log_budget.clone(),
            })
            .stderr(GuestOutput {
                plugin: plugin.clone(),
                stream: "stderr",
                recent: Some(stderr_tail.clone()),
                budget: log_budget.clone(),
            })
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        HostState {
            plugin,
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(limits),
            clock,
            random,
            read_model: None,
            json: false,
            output_breach: None,
            log_budget,
            stderr_tail,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A clock that reads the envelope time set by the host before each call.
struct EnvelopeClock(Arc<AtomicU64>);

impl wasmtime_wasi::HostWallClock for EnvelopeClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

impl wasmtime_wasi::HostMonotonicClock for EnvelopeClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed).saturating_mul(1_000_000)
    }
}

/// Guest stdout/stderr, line by line into `tracing`.
struct GuestOutput {
    plugin: Arc<str>,
    stream: &'static str,
    recent: Option<StderrTail>,
    budget: Arc<LogBudget>,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }

    /// Synchronous, unlike the default adapter over `async_stream`, which hands writes to a
    /// background tokio task: a guest's write or flush then never waits for the runtime (which
    /// may be shutting down: a call blocked there would never return), and an instance spawns
    /// no task.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }
}

impl GuestOutput {
    fn writer(&self) -> LineWriter {
        LineWriter {
            plugin: self.plugin.clone(),
            stream: self.stream,
            recent: self.recent.clone(),
            budget: self.budget.clone(),
            line: Vec::new(),
        }
    }
}

impl Pollable for LineWriter {
    // Always ready: writes complete at once. (The trait is `async_trait`-shaped.)
    fn ready<'a, 'b>(&'a mut self) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(std::future::ready(()))
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.emit();
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

struct LineWriter {
    plugin: Arc<str>,
    stream: &'static str,
    recent: Option<StderrTail>,
    budget: Arc<LogBudget>,
    line: Vec<u8>,
}

const MAX_LINE: usize = 8 * 1024;

impl LineWriter {
    /// Adds `buf`, emitting each complete (or overlong) line.
    fn push(&mut self, buf: &[u8]) {
        for &b in buf {
            if b == b'\n' || self.line.len() >= MAX_LINE {
                self.emit();
            }
            if b != b'\n' {
                let _ = self.line.write(&[b]);
            }
        }
    }

    fn emit(&mut self) {
        if !self.line.is_empty() {
            let text = String::from_utf8_lossy(&self.line);
            let text = text.trim_end();
            if self.budget.admit() {
                tracing::info!(target: "factline::guest", plugin = &*self.plugin, stream = self.stream, "{text}");
            }
            // Kept even when not logged: a panic message belongs with the failure.
            if let Some(recent) = &self.recent {
                recent.push(text);
            }
            self.line.clear();
        }
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }
}
