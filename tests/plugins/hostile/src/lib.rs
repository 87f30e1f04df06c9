//! A test-only aggregate that misbehaves on purpose, so the host's tests can prove fault
//! isolation: `trap` panics (a trap), `alloc` allocates without bound, `loop` never returns,
//! `stack` recurses without bound, `big` returns a 100 MiB event, `probe` tries every ambient
//! authority (files, environment, arguments, sockets, clock) and reports what it got, `ok`
//! behaves and emits `hostile.ok`.

use std::hint::black_box;

use factline_guest::{Aggregate, CommandContext, EventMeta, Rejection};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Hostile {
    /// How many `hostile.ok` events the stream holds.
    pub ok_count: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Trap,
    Alloc,
    Loop,
    Stack,
    Big,
    Probe,
    Ok,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "hostile.ok")]
    Ok,
    #[serde(rename = "hostile.big")]
    Big { blob: String },
    /// What the sandbox let the plugin see.
    #[serde(rename = "hostile.probed")]
    Probed {
        file: String,
        dir: String,
        env: Vec<String>,
        args: Vec<String>,
        socket: String,
        now_ms: u64,
        /// A number drawn from `wasi:random/random`.
        random: u64,
    },
}

/// Recurses until the stack runs out (the depth check never fires; it keeps the function
/// from being an infinite recursion the compiler could reject or fold).
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    // black_box stops the compiler from turning this into a loop.
    black_box(depth) + recurse(black_box(depth + 1))
}

fn probe() -> Event {
    let file = match std::fs::read_to_string("/etc/passwd") {
        Ok(text) => format!("read {} bytes", text.len()),
        Err(e) => format!("denied: {e}"),
    };
    let dir = match std::fs::read_dir("/") {
        Ok(entries) => format!("listed {} entries", entries.count()),
        Err(e) => format!("denied: {e}"),
    };
    let socket = match std::net::TcpStream::connect("127.0.0.1:7070") {
        Ok(_) => "connected".to_owned(),
        Err(e) => format!("denied: {e}"),
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let random = getrandom::u64().unwrap_or(0);
    Event::Probed {
        random,
        file,
        dir,
        env: std::env::vars().map(|(k, v)| format!("{k}={v}")).collect(),
        args: std::env::args().collect(),
        socket,
        now_ms,
    }
}

impl Aggregate for Hostile {
    type Command = Command;
    type Event = Event;

    fn decide(&self, command: Command, _ctx: &CommandContext) -> Result<Vec<Event>, Rejection> {
        // Also exercises the `logging` import before misbehaving.
        factline_guest::log::info(&format!("hostile: {command:?}"));
        match command {
            Command::Trap => panic!("hostile plugin: trap requested"),
            Command::Alloc => {
                // black_box keeps the optimizer from eliding allocations nobody reads.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![0xa5; 1 << 20]);
                    black_box(&mut hoard);
                }
            }
            Command::Loop => {
                let mut spins = 0u64;
                loop {
                    spins = black_box(spins.wrapping_add(1));
                }
            }
            Command::Stack => Ok(vec![Event::Big {
                blob: recurse(0).to_string(),
            }]),
            Command::Big => Ok(vec![Event::Big {
                blob: "x".repeat(100 << 20),
            }]),
            Command::Probe => Ok(vec![probe()]),
            Command::Ok => Ok(vec![Event::Ok]),
        }
    }

    fn evolve(&mut self, event: Event, _meta: &EventMeta) {
        if event == Event::Ok {
            self.ok_count += 1;
        }
    }
}

factline_guest::aggregate!(Hostile);

#[cfg(test)]
mod tests {
    use factline_guest::testing::{AggregateTest, json};

    use super::*;

    #[test]
    fn ok_emits_one_event() {
        AggregateTest::<Hostile>::given([Event::Ok])
            .when(Command::Ok)
            .then_events([Event::Ok])
            .then_state(json!({"ok_count": 2}))
            .run();
    }

    #[test]
    #[should_panic(expected = "trap requested")]
    fn trap_panics() {
        let _ = Hostile::default().decide(Command::Trap, &CommandContext::default());
    }
}
