//! Budgets of a projector call through `factline run` (issue 20 items 1, 2, 9): a projector
//! that tries to write 2 GB in one call, an oversized value, 200,000 keys, a 50 MiB failure
//! message and 20,000 log lines. Each fault is one dead letter with a bounded message, the
//! host's memory stays within its bound, the healthy projector beside it stays exact, and
//! `/metrics` counts it.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http_errors::{exchange, free_port, rss_kib};
use crate::support::{RunningHost, factline_binary};

/// Documented bound (README, "Sandbox"): the host's peak RSS through this whole run, which
/// attempts 2 GB of read-model writes in one call.
pub(crate) const PEAK_RSS_BOUND_KIB: u64 = 1024 * 1024;

pub(crate) fn get(port: u16, path: &str) -> (u16, Value, usize) {
    let a = exchange(port, &format!("GET {path} HTTP/1.1\r\nHost: x"), &[]);
    let len = a.body.len();
    (
        a.status,
        serde_json::from_str(&a.body).unwrap_or(Value::Null),
        len,
    )
}

pub(crate) fn send(port: u16, id: &str, command_type: &str) -> (u16, Value, usize) {
    let body = format!(r#"{{"type":"{command_type}"}}"#);
    let a = exchange(
        port,
        &format!(
            "POST /v1/aggregates/budget/{id} HTTP/1.1\r\nHost: x\r\nContent-Length: {}",
            body.len()
        ),
        body.as_bytes(),
    );
    let len = a.body.len();
    (
        a.status,
        serde_json::from_str(&a.body).unwrap_or(Value::Null),
        len,
    )
}

pub(crate) fn metrics(port: u16) -> String {
    exchange(port, "GET /metrics HTTP/1.1\r\nHost: x", &[]).body
}

/// The sum of a metric's samples whose label set contains every one of `labels`.
pub(crate) fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter(|l| l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub(crate) fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// A host running the budget aggregate, the hostile projector and `counter` beside it.
pub(crate) fn start(dir: &std::path::Path) -> (RunningHost, u16) {
    let port = free_port();
    let config = dir.join("factline.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\nwatch_plugins = false\n[http]\naddress = \"127.0.0.1:{port}\"\n\
             [[topics]]\nname = \"budget\"\npartitions = 2\n\n\
             [[plugins]]\nname = \"budget\"\nkind = \"aggregate\"\ncomponent = {:?}\n\n\
             [[plugins]]\nname = \"flood\"\nkind = \"projector\"\ncomponent = {:?}\nsubscriptions = [\"budget\"]\n\
             dead_letter = \"skip\"\nretry = {{ base_ms = 5, cap_ms = 20, max_attempts = 2 }}\n\n\
             [[plugins]]\nname = \"counter\"\nkind = \"projector\"\ncomponent = {:?}\nsubscriptions = [\"budget\"]\n",
            factline_tests::BUDGET_AGGREGATE,
            factline_tests::BUDGET_PROJECTOR,
            factline_tests::COUNTER_PLUGIN,
        ),
    )
    .unwrap();
    let mut host =
        RunningHost::spawn_with_env(&factline_binary(), &config, &[], &[("RUST_LOG", "warn")]);
    host.wait_ready();
    (host, port)
}

#[test]
fn a_flooding_projector_is_parked_and_the_host_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (host, port) = start(dir.path());
    let pid = host.pid();
    let faults = ["gigabytes", "big-value", "many-keys", "long-failure"];
    let mut oks = 0;
    let mut all = 0;
    for (i, fault) in faults.iter().chain(&["log-flood"]).enumerate() {
        for n in 0..5 {
            let (s, r, _) = send(port, &format!("S-{i}-{n}"), "ok");
            assert_eq!(s, 200, "{r}");
            oks += 1;
            all += 1;
        }
        let (s, r, _) = send(port, &format!("T-{i}"), &format!("emit-{fault}"));
        assert_eq!(s, 200, "{r}");
        all += 1;
    }

    // Every group catches up: the faults are parked, the rest is processed.
    let deadline = Instant::now() + Duration::from_secs(120);
    let letters = loop {
        let (_, groups, _) = get(port, "/v1/admin/groups");
        let lag: u64 = groups["groups"]
            .as_array()
            .map(|g| g.iter().filter_map(|g| g["lag"].as_u64()).sum())
            .unwrap_or(u64::MAX);
        let (_, dlq, dlq_len) = get(port, "/v1/admin/dlq");
        let letters = dlq["dead_letters"].as_array().cloned().unwrap_or_default();
        if lag == 0 && letters.len() >= faults.len() {
            break (letters, dlq_len);
        }
        assert!(
            Instant::now() < deadline,
            "no catch-up: lag {lag}, {} dead letters\n{}",
            letters.len(),
            host.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (letters, dlq_len) = letters;
    assert_eq!(
        letters.len(),
        faults.len(),
        "one dead letter per fault: {letters:?}"
    );
    let text = serde_json::to_string(&letters).unwrap();
    for l in &letters {
        assert_eq!(l["group"], "flood", "{l}");
        let message = l["message"]
            .as_str()
            .unwrap_or_else(|| panic!("a message in {l}"));
        assert!(message.len() <= 16 * 1024 + 64, "{} bytes", message.len());
    }
    assert!(
        dlq_len < 200 * 1024,
        "GET /v1/admin/dlq answered {dlq_len} bytes"
    );
    for needle in [
        "max_read_model_bytes",
        "max_output_bytes",
        "max_read_model_writes",
        "[cut: 52428800 bytes",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }

    // The healthy projector beside it is exact, and so is the flood's own count of the rest.
    let (s, row, _) = get(port, "/v1/read-models/counter/tick.a");
    assert_eq!((s, row.as_u64()), (200, Some(oks)), "{row}");
    let (s, seen, _) = get(port, "/v1/read-models/flood/seen");
    assert_eq!(
        (s, seen.as_u64()),
        (200, Some(all - faults.len() as u64)),
        "{seen}"
    );

    // Counted: bad output (three budgets), the guest failure, the dropped log lines, parking.
    let m = metrics(port);
    let bad = metric_sum(
        &m,
        "plugin_call_failures_total",
        &["plugin=\"flood\"", "kind=\"bad-output\""],
    );
    let guest = metric_sum(
        &m,
        "plugin_call_failures_total",
        &["plugin=\"flood\"", "kind=\"guest\""],
    );
    let dropped = metric_sum(&m, "plugin_log_lines_dropped_total", &["plugin=\"flood\""]);
    let parked = metric_sum(&m, "dlq_messages_total", &["group=\"flood\""]);
    assert!(
        bad >= 3.0 && guest >= 1.0 && parked == 4.0,
        "bad {bad} guest {guest} parked {parked}"
    );
    assert!(dropped >= 19_000.0, "dropped {dropped}");
    let logged = host.stderr().matches("budget-projector flood line").count();
    assert!(logged <= 200, "{logged} flood lines reached the log");

    let peak = peak_rss_kib(pid);
    let now = rss_kib(pid);
    eprintln!(
        "flood projector: peak RSS {peak} KiB, now {now} KiB, {logged} flood lines logged, {dropped} dropped, dlq {dlq_len} bytes"
    );
    assert!(peak < PEAK_RSS_BOUND_KIB, "peak RSS {peak} KiB");
}
