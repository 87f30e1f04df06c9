//! A real Kafka-protocol broker for the tests: tansu 0.6.0 with SQLite storage, as
//! `scripts/kafka-broker` installs it (`scripts/test` runs that first). Each broker has its own
//! directory and loopback port; it can be killed (SIGKILL) and restarted on both.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a broker may take to accept connections after its start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The tansu binary: `FACTLINE_TANSU`, or where `scripts/kafka-broker` installs it.
pub fn tansu_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("FACTLINE_TANSU") {
        return bin.into();
    }
    let tools = std::env::var_os("FACTLINE_TOOLS_DIR").map_or_else(
        || {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/factline/tools")
        },
        PathBuf::from,
    );
    let bin = tools.join("tansu-0.6.0/bin/tansu");
    assert!(
        bin.is_file(),
        "the Kafka broker is missing at {}: run scripts/kafka-broker (it installs tansu)",
        bin.display()
    );
    bin
}

/// A free loopback port (bound, read, released: the broker binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running tansu broker; killed when dropped.
pub struct Broker {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Broker {
    /// Starts a broker storing in `dir` on a free port and waits until it accepts connections.
    pub fn start(dir: &Path) -> Broker {
        std::fs::create_dir_all(dir).unwrap();
        let mut broker = Broker {
            dir: dir.to_owned(),
            port: free_port(),
            child: None,
            log: dir.join("broker.log"),
        };
        broker.restart();
        broker
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts it again (same port, same storage) after [`Broker::kill`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(tansu_binary())
            .current_dir(&self.dir)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://broker.db"])
            // tansu reads its flags from these too; the test's own environment must not leak in.
            .env_remove("STORAGE_ENGINE")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning tansu: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the broker exited ({status}) at start:\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "the broker did not listen within {START_TIMEOUT:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: what it acknowledged is in its SQLite file, nothing else.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What the broker printed (for failure messages).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
