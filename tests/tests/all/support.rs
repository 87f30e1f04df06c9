//! Shared helpers: a scratch log and a plugin runtime.

use factline_host::{Durability, EventLog, LogOptions, TopicConfig};
use factline_host::{Limits, LoadedPlugin, PluginKind, PluginRuntime, RuntimeConfig};

pub fn log(dir: &std::path::Path, topics: &[(&str, u32)]) -> EventLog {
    let mut o = LogOptions::with_topics(topics.iter().map(|(n, p)| TopicConfig::new(*n, *p)));
    o.durability = Durability::NoSyncForTests;
    EventLog::open(dir, o).unwrap()
}

pub fn runtime() -> PluginRuntime {
    PluginRuntime::new(RuntimeConfig::default()).unwrap()
}

pub fn load(
    rt: &PluginRuntime,
    name: &str,
    kind: PluginKind,
    path: &str,
    limits: Limits,
) -> Arc<LoadedPlugin> {
    rt.load_file(name, kind, path.as_ref(), limits, None)
        .unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

/// A projector's consumer group (read-model scope = its name) over `topics`, as the host runs
/// one, stepped by the test.
pub fn projector_group(
    log: &EventLog,
    name: &str,
    topics: &[&str],
    batch_size: usize,
    plugin: &Arc<LoadedPlugin>,
) -> factline_host::ConsumerGroup {
    let mut config =
        factline_host::GroupConfig::new(name, topics.iter().map(|t| (*t).to_owned()).collect());
    config.batch_size = batch_size;
    let projection = factline_host::WasmProjection::new(plugin.instantiate().unwrap()).unwrap();
    factline_host::ConsumerGroup::new(
        log.clone(),
        config,
        factline_host::ProjectionHandler::boxed(projection),
    )
    .unwrap()
}

pub fn msgpack(v: serde_json::Value) -> Vec<u8> {
    factline_guest::codec::json_to_msgpack(&v)
}

/// A command to aggregate instance `id` (JSON payload sent as MessagePack).
pub fn command(
    id: &str,
    command_type: &str,
    payload: serde_json::Value,
) -> factline_host::CommandRequest {
    factline_host::CommandRequest {
        id: id.into(),
        command_type: command_type.into(),
        payload: msgpack(payload),
        ..Default::default()
    }
}

/// Runs an aggregate scenario natively with the SDK's harness and checks it.
pub fn native_aggregate<A: factline_guest::Aggregate>(s: &factline_guest::scenario::Scenario) {
    let factline_guest::scenario::Scenario::Aggregate(a) = s else {
        panic!("{} is not an aggregate scenario", s.name())
    };
    a.verify(&factline_guest::testing::run_aggregate::<A>(a))
        .unwrap_or_else(|m| panic!("native: {m}"));
}

/// Runs a projector scenario natively with the SDK's harness and checks it.
pub fn native_projector<P: factline_guest::Projector>(s: &factline_guest::scenario::Scenario) {
    let factline_guest::scenario::Scenario::Projector(p) = s else {
        panic!("{} is not a projector scenario", s.name())
    };
    p.verify(&factline_guest::testing::run_projector::<P>(p))
        .unwrap_or_else(|m| panic!("native: {m}"));
}

/// Runs a policy scenario natively with the SDK's harness and checks it.
pub fn native_policy<P: factline_guest::Policy>(s: &factline_guest::scenario::Scenario) {
    let factline_guest::scenario::Scenario::Policy(p) = s else {
        panic!("{} is not a policy scenario", s.name())
    };
    p.verify(&factline_guest::testing::run_policy::<P>(p))
        .unwrap_or_else(|m| panic!("native: {m}"));
}

/// The `factline` binary next to this test binary (`target/debug/deps/all-…` →
/// `target/debug/factline`); `cargo test --workspace` builds it.
/// `FACTLINE_BIN` overrides it (a target directory shared by several worktrees holds one
/// `factline` for all of them).
pub fn factline_binary() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("FACTLINE_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let bin = profile_dir.join(format!("factline{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the factline binary is missing at {}: run the tests with `cargo test --workspace` (which \
         builds it), or `cargo build -p factline-host` first",
        bin.display()
    );
    bin
}

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const READY: &str = "factline: ready";
/// Printed just before the ready line, followed by the API's base URL.
const LISTENING: &str = "factline: listening on ";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `factline SUBCOMMAND --config CONFIG ARGS...` (an offline command on a stopped host's
/// directory): its stdout, once it exited successfully.
pub fn factline_offline(bin: &Path, subcommand: &str, config: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .arg(subcommand)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{subcommand} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `factline run --exit-when-idle --config CONFIG`: runs the host until every group caught up,
/// and asserts it exited successfully.
pub fn factline_run_until_idle(bin: &Path, config: &Path) {
    let out = Command::new(bin)
        .args(["run", "--exit-when-idle", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `factline run` child with its output collected.
pub struct RunningHost {
    child: Child,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Ends when the child's stderr closes; joined after exit so no line is missed.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    /// The HTTP API's base URL, from the line before the ready line.
    url: Option<String>,
    /// What it printed on stdout before the ready line.
    printed: Vec<String>,
}

impl RunningHost {
    pub fn spawn(bin: &Path, config: &Path, extra: &[&str]) -> RunningHost {
        Self::spawn_with_env(bin, config, extra, &[])
    }

    pub fn spawn_with_env(
        bin: &Path,
        config: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> RunningHost {
        let mut args = vec!["run".as_ref(), "--config".as_ref(), config.as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        Self::spawn_command(bin, &args, env)
    }

    /// `bin ARGS...`: any subcommand that prints the ready line (`run`, `demo`).
    pub fn spawn_command(
        bin: &Path,
        args: &[&std::ffi::OsStr],
        env: &[(&str, &str)],
    ) -> RunningHost {
        let mut child = Command::new(bin)
            .envs(env.iter().copied())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        let (tx, stdout) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err, sink) = (child.stderr.take().unwrap(), stderr.clone());
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        RunningHost {
            child,
            stdout,
            stderr,
            stderr_reader: Some(stderr_reader),
            url: None,
            printed: Vec::new(),
        }
    }

    /// The API's base URL (`http://127.0.0.1:PORT`), known once ready.
    pub fn url(&self) -> &str {
        self.url
            .as_deref()
            .expect("the host printed its address before ready")
    }

    /// The API's port (for `127.0.0.1:0` configs).
    pub fn port(&self) -> u16 {
        self.url()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the URL ends with the port")
    }

    /// The child's process id (RSS measurements read `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its stdout up to the ready line.
    pub fn printed(&self) -> &[String] {
        &self.printed
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self
                .stdout
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line == READY => return,
                Ok(line) => {
                    if let Some(url) = line.strip_prefix(LISTENING) {
                        self.url = Some(url.to_owned());
                    }
                    self.printed.push(line);
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("no {READY:?} within {READY_TIMEOUT:?}\n{}", self.stderr());
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().unwrap();
                    let status = self.exited(status);
                    panic!("the host exited before ready ({status})\n{}", self.stderr());
                }
            }
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix).
    pub fn kill(&mut self) -> ExitStatus {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        self.exited(status)
    }

    fn exited(&mut self, status: ExitStatus) -> ExitStatus {
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().unwrap();
        }
        status
    }

    pub fn terminate(&mut self) -> ExitStatus {
        self.stop_with("-TERM")
    }

    /// Ctrl-C.
    pub fn interrupt(&mut self) -> ExitStatus {
        self.stop_with("-INT")
    }

    fn stop_with(&mut self, signal: &str) -> ExitStatus {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
        self.wait(Duration::from_secs(30))
    }

    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return self.exited(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the host did not exit within {timeout:?}\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        // A failed assertion must not leave a host running on the temp dir.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An aggregate handler named `name` (its topic too, one partition) over a scratch log in `dir`.
pub fn aggregate_handler(
    dir: &Path,
    name: &str,
    component: &str,
) -> factline_host::AggregateHandler {
    use factline_host::{AggregateHandler, AggregateOptions};
    let plugin = load(
        &runtime(),
        name,
        PluginKind::Aggregate,
        component,
        Limits::default(),
    );
    AggregateHandler::new(log(dir, &[(name, 1)]), plugin, AggregateOptions::new(name)).unwrap()
}

/// Sends a command (fresh id) to stream `<topic>-<id>`.
pub fn send(
    h: &factline_host::AggregateHandler,
    id: &str,
    command_type: &str,
    payload: serde_json::Value,
) -> Result<factline_host::CommandOutcome, factline_host::CommandError> {
    h.handle(factline_host::CommandRequest {
        id: id.into(),
        command_type: command_type.into(),
        payload: msgpack(payload),
        ..Default::default()
    })
}

/// The types of the events a command appended.
pub fn appended(
    outcome: Result<factline_host::CommandOutcome, factline_host::CommandError>,
) -> Result<Vec<String>, factline_host::CommandError> {
    Ok(outcome?.events.into_iter().map(|e| e.event_type).collect())
}
