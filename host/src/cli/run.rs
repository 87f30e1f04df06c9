//! `factline run --config FILE`: the long-running host. The assembly lives in the library
//! (`factline_host::Host`); this is the process glue: signals, the ready line, exit code.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use factline_host::Config;
use factline_host::Host;

#[derive(clap::Args)]
pub struct Args {
    /// The configuration file (see factline.example.toml).
    #[arg(long, env = "FACTLINE_CONFIG")]
    config: PathBuf,
    /// Exit (status 0) once every consumer group has caught up: for batch jobs and catch-up
    /// runs. Partitions blocked on a dead letter count as caught up.
    #[arg(long)]
    exit_when_idle: bool,
}

/// Printed (and flushed) on stdout once everything is loaded and the groups run; scripts and
/// tests wait for it.
const READY: &str = "factline: ready";
/// Printed on stdout just before [`READY`], followed by the API's base URL.
const LISTENING: &str = "factline: listening on";

/// Where this host's spans go, if anywhere (`[telemetry] otlp_endpoint`, else the standard
/// environment variables). A config that does not load is `run`'s to report.
pub fn otlp_endpoint(args: &Args) -> Option<String> {
    let configured = Config::load(&args.config)
        .ok()
        .and_then(|c| c.telemetry.otlp_endpoint);
    factline_host::otlp_endpoint(configured.as_deref())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("factline")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config, args.exit_when_idle))
}

async fn serve(config: Config, exit_when_idle: bool) -> anyhow::Result<()> {
    // Registered before the ready line, so a signal right after it is a clean stop, not the
    // default action (termination mid-batch).
    let stop = StopSignals::install()?;
    // Bind first: a taken address must refuse the start before any group runs.
    let listener = bind(config.http.address).await?;
    let host = std::sync::Arc::new(Host::start(config)?);
    serve_host(host, listener, stop, exit_when_idle, |_| {}).await
}

pub(crate) async fn bind(address: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the HTTP API to {address}"))
}

/// Serves a started host's HTTP API (and its plugin watcher) until a stop signal, or until
/// every group is idle with `exit_when_idle`, then shuts it down. `on_ready` runs with the
/// bound URL just before the ready line.
pub(crate) async fn serve_host(
    host: std::sync::Arc<Host>,
    listener: tokio::net::TcpListener,
    mut stop: StopSignals,
    exit_when_idle: bool,
    on_ready: impl FnOnce(&str),
) -> anyhow::Result<()> {
    let data_dir = host.config().data_dir.clone();
    let address = listener.local_addr()?;
    let watcher = if host.config().watch_plugins {
        Some(factline_host::PluginWatcher::start(host.clone())?)
    } else {
        None
    };
    if let Some(metrics) = factline_host::metrics_handle() {
        // Histograms keep raw samples until drained: drain them even when nobody scrapes.
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                every.tick().await;
                metrics.run_upkeep();
            }
        });
    }
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(factline_host::serve_http(
        listener,
        factline_host::http_router(host.clone()),
        async {
            let _ = http_stopped.await;
        },
    ));
    for p in host.plugins() {
        eprintln!(
            "factline: loaded {} {} version {} (cache {}, {} ms)",
            p.kind,
            p.name,
            p.version,
            format!("{:?}", p.cache_outcome).to_lowercase(),
            p.load_time.as_millis()
        );
    }
    eprintln!(
        "factline: data directory {}, {} consumer group(s) started, HTTP API on http://{address}",
        data_dir.display(),
        host.groups().len()
    );
    on_ready(&format!("http://{address}"));
    {
        let mut out = std::io::stdout().lock();
        // The bound address first: with port 0 in the config, scripts learn it here.
        writeln!(out, "{LISTENING} http://{address}")?;
        writeln!(out, "{READY}")?;
        out.flush()?;
    }
    let stopped_by = tokio::select! {
        signal = stop.next() => Ok(signal),
        idle = host.wait_until_idle(), if exit_when_idle => {
            idle.map(|()| "every consumer group caught up")
        }
    };
    // Stop cleanly even when the lag check failed; report its error afterwards.
    let reason = match &stopped_by {
        Ok(reason) => reason.to_string(),
        Err(e) => format!("checking consumer lag failed ({e})"),
    };
    eprintln!("factline: {reason}; stopping the consumer groups after their in-flight batch");
    // In-flight requests finish first; then the host is ours alone again.
    let _ = stop_http.send(());
    match server.await {
        Ok(Err(e)) => eprintln!("factline: HTTP server error: {e}"),
        Err(e) => eprintln!("factline: HTTP server task failed: {e}"),
        Ok(Ok(())) => {}
    }
    // No deploy may start (or still run) once the groups stop.
    if let Some(w) = watcher {
        w.stop().await;
    }
    let host = std::sync::Arc::try_unwrap(host)
        .map_err(|_| anyhow::anyhow!("the HTTP server still holds the host after shutdown"))?;
    for g in host.shutdown().await {
        eprintln!(
            "factline: group {} processed {} events in {} batches ({} failed calls, {} dead-lettered)",
            g.name, g.events_processed, g.batches_committed, g.failed_calls, g.dead_lettered
        );
    }
    eprintln!("factline: stopped");
    stopped_by.context("checking consumer lag")?;
    Ok(())
}

/// SIGTERM and Ctrl-C (SIGINT).
pub(crate) struct StopSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub(crate) fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                terminate: signal(SignalKind::terminate()).context("installing SIGTERM")?,
                interrupt: signal(SignalKind::interrupt()).context("installing SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Waits for the first stop signal; returns its name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => "SIGTERM",
                _ = self.interrupt.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
