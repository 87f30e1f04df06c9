//! `factline-bench http`: commands over loopback HTTP from concurrent keep-alive clients, with
//! p50/p99 latency, against the raw `append` rate of the log measured in the same run.
//!
//! Without `--url` it starts the host in this process exactly as `factline run` assembles it
//! (`Host::start` + the axum router) on a fresh temp directory with the order example (order +
//! order-summary); with `--url` it drives a host that is already running (with those plugins).
//! The client speaks raw HTTP/1.1 over tokio's `TcpStream`, one connection per client.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use factline_host::Config;
use factline_host::Host;
use factline_host::{EventLog, LogOptions, TopicConfig};
use factline_host::{ExpectedVersion, NewEvent};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Concurrent clients (one keep-alive connection each); one run per count, each on a fresh
    /// host and compared with as many raw appenders.
    #[arg(long, value_delimiter = ',', default_value = "64,256")]
    clients: Vec<usize>,
    /// How long the clients send commands, in seconds.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// How long the raw append comparison runs, in seconds.
    #[arg(long, default_value_t = 5.0)]
    append_seconds: f64,
    /// A running host (`http://127.0.0.1:7070`) to drive instead of starting one here.
    #[arg(long)]
    url: Option<String>,
}

/// Commands of one order: create, four items, confirm.
const ITEMS_PER_ORDER: u64 = 4;

pub fn run(args: Args, plugins: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.clients.is_empty() && args.clients.iter().all(|c| *c > 0) && args.seconds > 0.0,
        "--clients and --seconds must be positive"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "{:<58} {:>10} {:>9} {:>12} {:>9} {:>9}",
        "case", "count", "seconds", "per second", "p50 ms", "p99 ms"
    );
    println!("{}", "-".repeat(112));
    let mut ratios = Vec::new();
    for &clients in &args.clients {
        ratios.push((clients, runtime.block_on(bench(&args, clients, plugins))?));
    }
    println!();
    for (clients, (ratio, p99)) in ratios {
        let ok = ratio >= 0.75 && p99 <= 10.0;
        println!(
            "HTTP commands / raw appends, {clients} clients: {ratio:.2}, p99 {p99:.2} ms (target >= 0.75, p99 <= 10 ms) {}",
            if ok { "PASS" } else { "MISS" }
        );
    }
    Ok(())
}

/// One run with `clients` clients: the HTTP row and its raw-append row; returns the ratio of
/// the two rates and the commands' p99 in ms.
async fn bench(args: &Args, clients: usize, plugins: &Path) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let (address, host) = match &args.url {
        Some(url) => (parse_url(url)?, None),
        None => {
            let (address, host, server) = start_host(dir.path(), plugins).await?;
            (address, Some((host, server)))
        }
    };
    let duration = Duration::from_secs_f64(args.seconds);
    // Each run's orders are its own, so a second run against the same host never conflicts.
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let prefix = format!("B{}-{c}", &run_id[..12]);
        tasks.spawn(client(address, prefix, started + duration));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    let mut errors = 0u64;
    while let Some(done) = tasks.join_next().await {
        let (l, e) = done??;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    if let Some((host, (stop, server))) = host {
        // The clients closed their connections: a graceful stop returns at once.
        let _ = stop.send(());
        let _ = server.await;
        let host = Arc::try_unwrap(host)
            .map_err(|_| anyhow::anyhow!("the HTTP server still holds the host"))?;
        host.shutdown().await;
    }
    let appends = append_rate(clients, Duration::from_secs_f64(args.append_seconds)).await?;

    latencies.sort_unstable();
    let ok = latencies.len() as u64;
    let rate = ok as f64 / elapsed.as_secs_f64();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{:<58} {:>10} {:>9.2} {:>12.0} {:>9.2} {:>9.2}",
        format!("HTTP commands, {clients} keep-alive clients"),
        ok,
        elapsed.as_secs_f64(),
        rate,
        pct(0.50),
        pct(0.99)
    );
    println!(
        "{:<58} {:>10} {:>9.2} {:>12.0} {:>9.2} {:>9.2}",
        format!("raw log appends, {clients} concurrent tasks"),
        appends.count,
        appends.elapsed.as_secs_f64(),
        appends.rate(),
        appends.p50_ms,
        appends.p99_ms
    );
    anyhow::ensure!(errors == 0, "{errors} requests failed");
    anyhow::ensure!(ok > 0, "no command completed");
    Ok((rate / appends.rate().max(f64::MIN_POSITIVE), pct(0.99)))
}

/// The in-process server: its stop signal and its task.
type Server = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
);

/// The host as `factline run` assembles it, serving on an ephemeral loopback port.
async fn start_host(dir: &Path, plugins: &Path) -> anyhow::Result<(SocketAddr, Arc<Host>, Server)> {
    let component = |name: &str| -> anyhow::Result<std::path::PathBuf> {
        let path = plugins.join(name);
        anyhow::ensure!(
            path.is_file(),
            "{} is missing: build the example plugins (`cargo build --release --target wasm32-wasip2 -p order -p order-summary`) or pass --plugins",
            path.display()
        );
        Ok(path)
    };
    let config_path = dir.join("factline.toml");
    std::fs::write(
        &config_path,
        format!(
            "data_dir = \"data\"\n[http]\naddress = \"127.0.0.1:0\"\n\
             [[topics]]\nname = \"order\"\npartitions = 4\n\
             [[plugins]]\nname = \"order\"\nkind = \"aggregate\"\ncomponent = {:?}\n\
             [[plugins]]\nname = \"order-summary\"\nkind = \"projector\"\ncomponent = {:?}\nsubscriptions = [\"order\"]\n",
            component("order.wasm")?,
            component("order_summary.wasm")?,
        ),
    )?;
    let config = Config::load(&config_path)?;
    let listener = tokio::net::TcpListener::bind(config.http.address).await?;
    let address = listener.local_addr()?;
    let host = Arc::new(Host::start(config)?);
    let router = factline_host::http_router(host.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = factline_host::serve_http(listener, router, async {
            let _ = stopped.await;
        })
        .await;
    });
    Ok((address, host, (stop, server)))
}

fn parse_url(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .context("--url must be http://HOST:PORT")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    use std::net::ToSocketAddrs;
    authority
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("cannot resolve {authority}"))
}

/// One client: orders of `create`, items, `confirm`, one request at a time on one connection,
/// until `until`. Returns the latency of each successful command and the failure count.
async fn client(
    address: SocketAddr,
    prefix: String,
    until: Instant,
) -> anyhow::Result<(Vec<Duration>, u64)> {
    let stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_nodelay(true)?;
    let mut conn = BufReader::new(stream);
    let mut latencies = Vec::new();
    let mut errors = 0u64;
    let mut order = 0u64;
    let mut step = 0u64;
    let mut request = Vec::with_capacity(512);
    let mut body = Vec::with_capacity(4096);
    while Instant::now() < until {
        let (command, payload) = match step {
            0 => ("create", format!(r#"{{"customer_id":"{prefix}"}}"#)),
            s if s <= ITEMS_PER_ORDER => (
                "add-item",
                format!(r#"{{"product_id":"SKU-{s}","quantity":{s},"unit_price":1000}}"#),
            ),
            _ => ("confirm", "{}".to_owned()),
        };
        let json = format!(r#"{{"type":"{command}","payload":{payload}}}"#);
        request.clear();
        request.extend_from_slice(
            format!(
                "POST /v1/aggregates/order/{prefix}-{order} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                json.len()
            )
            .as_bytes(),
        );
        request.extend_from_slice(json.as_bytes());
        let sent = Instant::now();
        conn.get_mut().write_all(&request).await?;
        let status = read_response(&mut conn, &mut body).await?;
        if status == 200 {
            latencies.push(sent.elapsed());
        } else {
            errors += 1;
            if errors == 1 {
                eprintln!(
                    "bench: {status} for {command}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
        step += 1;
        if step > ITEMS_PER_ORDER + 1 {
            step = 0;
            order += 1;
        }
    }
    Ok((latencies, errors))
}

/// Reads one HTTP/1.1 response (status line, headers, `Content-Length` body) into `body`.
async fn read_response(conn: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> anyhow::Result<u16> {
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let mut length = 0usize;
    loop {
        line.clear();
        anyhow::ensure!(
            conn.read_line(&mut line).await? > 0,
            "connection closed mid-response"
        );
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().context("bad Content-Length")?;
        }
    }
    body.resize(length, 0);
    conn.read_exact(body).await?;
    Ok(status)
}

struct Appends {
    count: u64,
    elapsed: Duration,
    p50_ms: f64,
    p99_ms: f64,
}

impl Appends {
    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

/// The log alone: `tasks` concurrent single-event appenders (as `bench log` measures them, and
/// as the host calls `append`) for `duration`, with fsync per group commit.
async fn append_rate(tasks: usize, duration: Duration) -> anyhow::Result<Appends> {
    let dir = tempfile::tempdir()?;
    let log = EventLog::open(
        dir.path(),
        LogOptions::with_topics([TopicConfig::new("bench", 4)]),
    )?;
    let started = Instant::now();
    let until = started + duration;
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let log = log.clone();
        set.spawn(async move {
            let stream = format!("bench-{t}");
            // About the size of an order event's payload.
            let payload = rmp_serde::to_vec_named(&serde_json::json!({
                "product_id": "SKU-1", "quantity": 2, "unit_price": 1000, "customer_id": stream,
            }))?;
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let sent = Instant::now();
                log.append_async(
                    &stream,
                    ExpectedVersion::Any,
                    vec![NewEvent::new("bench.appended", payload.clone())],
                )
                .await?;
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r??);
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    let pct = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Ok(Appends {
        count: all.len() as u64,
        elapsed,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    })
}
