//! Budgets of a `decide` through `factline run` (issue 20 items 2–5, 9): metadata floods, a
//! payload that is not valid MessagePack for its strings, a 1 MiB rejection code and a 30 MiB
//! rejection message, a 50 MiB failure, too many events and a log flood. Each is refused (or
//! cut) with a typed answer, nothing is stored, `/metrics` counts it and the host's memory stays
//! within its bound.

use crate::budget_projector::{
    PEAK_RSS_BOUND_KIB, get, metric_sum, metrics, peak_rss_kib, send, start,
};

#[test]
fn oversized_or_invalid_decisions_are_refused_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (host, port) = start(dir.path());
    let pid = host.pid();
    assert_eq!(send(port, "OK-1", "ok").0, 200);

    // (command, status, kind, a word of the message)
    let cases = [
        ("metadata", 500, "bad-output", "max_output_bytes"),
        ("bad-utf8", 500, "bad-output", "UTF-8"),
        ("long-code", 500, "bad-output", "max_rejection_code_bytes"),
        ("many-events", 500, "bad-output", "max_events_per_decide"),
        ("long-failure", 500, "guest", "[cut: 52428800 bytes"),
    ];
    for (command, status, kind, word) in cases {
        let (s, r, len) = send(port, &format!("X-{command}"), command);
        assert_eq!(
            (s, r["kind"].as_str()),
            (status, Some(kind)),
            "{command}: {r}"
        );
        let message = r["message"].as_str().unwrap();
        assert!(message.contains(word), "{command}: {message}");
        assert!(len < 17 * 1024 + 512, "{command}: a {len}-byte answer");
        let (s, stream, _) = get(port, &format!("/v1/streams/budget-X-{command}"));
        assert_eq!(
            (s, stream["version"].as_u64()),
            (200, Some(0)),
            "nothing stored: {stream}"
        );
    }
    // A long rejection message is cut, not refused: it stays a business rejection.
    let (s, r, len) = send(port, "X-long-rejection", "long-rejection");
    assert_eq!((s, r["code"].as_str()), (422, Some("too-long")), "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("[cut: 31457280 bytes"),
        "{r}"
    );
    assert!(len < 17 * 1024, "a {len}-byte 422");

    // A log flood: the command succeeds, the lines past the rate are dropped and counted.
    let (s, r, _) = send(port, "LOG-1", "log-flood");
    assert_eq!(s, 200, "{r}");
    let logged = host.stderr().matches("budget-aggregate flood line").count();
    assert!(logged <= 200, "{logged} flood lines reached the log");

    let m = metrics(port);
    let bad = metric_sum(
        &m,
        "plugin_call_failures_total",
        &["plugin=\"budget\"", "kind=\"bad-output\""],
    );
    let dropped = metric_sum(&m, "plugin_log_lines_dropped_total", &["plugin=\"budget\""]);
    assert!(bad >= 4.0, "bad-output counted {bad}\n{m}");
    assert!(dropped >= 19_000.0, "dropped {dropped}");
    // Only the accepted events are counted (the projector catches up on its own).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, row, _) = get(port, "/v1/read-models/counter/tick.a");
        if row.as_u64() == Some(2) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "counter at {row}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let peak = peak_rss_kib(pid);
    eprintln!(
        "budget aggregate: peak RSS {peak} KiB, {logged} flood lines logged, {dropped} dropped"
    );
    assert!(peak < PEAK_RSS_BOUND_KIB, "peak RSS {peak} KiB");
}
