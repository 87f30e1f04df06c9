//! The host as a service through the real binary: the order flow over HTTP, the read model,
//! `/metrics` counters equal to what was sent, JSON logs with the command and batch spans, the
//! CLI client against the running host, bad input that writes nothing, SIGTERM and a restart,
//! `factline inspect` on the stopped directory, and a config typo.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http_api::{request, request_text};
use crate::support::{RunningHost, factline_binary};

pub(crate) const TOKEN: &str = "t0ken";

/// The order example (aggregate + order-summary) with an admin token, on any free port.
pub(crate) fn write_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("factline.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\nadmin_token = \"{TOKEN}\"\n[http]\naddress = \"127.0.0.1:0\"\n\
             [[topics]]\nname = \"order\"\npartitions = 4\n\n\
             [[plugins]]\nname = \"order\"\nkind = \"aggregate\"\ncomponent = {:?}\n\n\
             [[plugins]]\nname = \"order-summary\"\nkind = \"projector\"\ncomponent = {:?}\nsubscriptions = [\"order\"]\n",
            factline_tests::ORDER,
            factline_tests::ORDER_SUMMARY
        ),
    )
    .unwrap();
    config
}

fn post_command(port: u16, id: &str, body: Value) -> (u16, Value) {
    let body = serde_json::to_vec(&body).unwrap();
    request(
        port,
        "POST",
        &format!("/v1/aggregates/order/{id}"),
        None,
        Some(&body),
    )
}

/// The value of one sample line `name{labels} value` whose name and labels contain `parts`.
fn sample(metrics: &str, name: &str, parts: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Sum of every sample of `name` (over all label sets).
fn total(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn scrape(port: u16) -> String {
    let (s, text) = request_text(port, "GET", "/metrics", Some(TOKEN), None);
    assert_eq!(s, 200, "{text}");
    text
}

/// Runs the CLI with `args`; returns its output.
pub(crate) fn cli(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("FACTLINE_CONFIG")
        .output()
        .unwrap()
}

pub(crate) fn cli_json(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Value {
    let out = cli(bin, args, env);
    assert!(
        out.status.success(),
        "factline {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "factline {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Waits until the order-summary row of `id` has `status`.
fn wait_for_row(port: u16, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, row) = request(
            port,
            "GET",
            &format!("/v1/read-models/order-summary/{id}"),
            None,
            None,
        );
        if s == 200 && row["status"] == status {
            return row;
        }
        assert!(Instant::now() < deadline, "{id} not {status}: {s} {row}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// High-water marks of the stopped directory, summed, via `factline inspect --json`.
fn stored_events(bin: &Path, data: &Path) -> (u64, Value) {
    let report = cli_json(
        bin,
        &["inspect", "--json", "--data-dir", data.to_str().unwrap()],
        &[],
    );
    let sum = report["topics"][0]["high_water_marks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_u64().unwrap())
        .sum();
    (sum, report)
}

#[test]
fn order_flow_metrics_logs_cli_bad_input_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let data = dir.path().join("data");
    let bin = factline_binary();
    let mut host = RunningHost::spawn_with_env(
        &bin,
        &config,
        &["--log-format", "json"],
        &[(
            "RUST_LOG",
            "factline_host::aggregate=debug,factline_host::consumer=debug",
        )],
    );
    host.wait_ready();
    let port = host.port();

    // The first command of the run carries our ids; the batch that projects it starts with it.
    let (s, first) = post_command(
        port,
        "ORD-0",
        json!({"type": "create", "payload": {"customer_id": "C-0"}, "correlation_id": "corr-42", "causation_id": "cause-7"}),
    );
    assert_eq!(s, 200, "{first}");
    wait_for_row(port, "ORD-0", "created");

    // The order flow: per order create, two items, confirm.
    let orders = 5;
    let mut events = 1u64;
    let mut accepted = 1u64;
    for o in 1..=orders {
        let id = format!("ORD-{o}");
        let mut send = |body: Value| {
            let (s, r) = post_command(port, &id, body);
            assert_eq!(s, 200, "{r}");
            events += r["events"].as_array().unwrap().len() as u64;
            accepted += 1;
        };
        send(json!({"type": "create", "payload": {"customer_id": format!("C-{o}")}}));
        for (product, qty) in [("A", 1), ("B", o)] {
            send(
                json!({"type": "add-item", "payload": {"product_id": product, "quantity": qty, "unit_price": 500}}),
            );
        }
        send(json!({"type": "confirm", "payload": {}}));
    }
    // A business rejection writes nothing.
    let (s, r) = post_command(port, "ORD-0", json!({"type": "confirm", "payload": {}}));
    assert_eq!((s, r["error"].as_str()), (422, Some("rejected")), "{r}");
    for o in 1..=orders {
        let row = wait_for_row(port, &format!("ORD-{o}"), "confirmed");
        assert_eq!(row["total"].as_u64(), Some(500 * (1 + o)), "{row}");
    }
    let (s, rows) = request(
        port,
        "GET",
        "/v1/read-models/order-summary?prefix=ORD-",
        None,
        None,
    );
    assert_eq!((s, rows["rows"].as_array().map(Vec::len)), (200, Some(6)));

    // The counters equal what was sent.
    let m = scrape(port);
    assert_eq!(
        sample(&m, "events_published_total", &[r#"topic="order""#]),
        Some(events as f64),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "events_consumed_total",
            &[r#"group="order-summary""#, r#"topic="order""#]
        ),
        Some(events as f64),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "commands_total",
            &[r#"aggregate="order""#, r#"outcome="accepted""#]
        ),
        Some(accepted as f64),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "commands_total",
            &[r#"aggregate="order""#, r#"outcome="rejected""#]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "plugin_call_duration_seconds_count",
            &[r#"plugin="order""#, r#"function="decide""#]
        ),
        Some((accepted + 1) as f64),
        "{m}"
    );
    assert_eq!(total(&m, "consumer_lag"), 0.0, "{m}");
    assert_eq!(total(&m, "dlq_messages_total"), 0.0, "{m}");
    assert_eq!(total(&m, "plugin_call_failures_total"), 0.0, "{m}");
    assert!(
        sample(
            &m,
            "event_processing_duration_seconds_count",
            &[r#"group="order-summary""#]
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert!(
        m.contains("# TYPE event_processing_duration_seconds histogram"),
        "{m}"
    );

    // Bad input: each its own answer, nothing written, the host still serves.
    let published = |m: &str| sample(m, "events_published_total", &[r#"topic="order""#]);
    let (s, r) = request(
        port,
        "POST",
        "/v1/aggregates/order/ORD-9",
        None,
        Some(b"{\"type\":"),
    );
    assert_eq!((s, r["error"].as_str()), (400, Some("malformed")), "{r}");
    let (s, r) = request(
        port,
        "POST",
        "/v1/aggregates/order/ORD-9",
        None,
        Some(br#"{"type":"create","extra":1}"#),
    );
    assert_eq!(
        (s, r["error"].as_str()),
        (400, Some("malformed")),
        "unknown fields are refused: {r}"
    );
    let huge =
        serde_json::to_vec(&json!({"type": "create", "payload": {"x": "y".repeat(2 << 20)}}))
            .unwrap();
    let (s, _) = request(
        port,
        "POST",
        "/v1/aggregates/order/ORD-9",
        None,
        Some(&huge),
    );
    assert_eq!(s, 413);
    let (s, r) = request(
        port,
        "POST",
        "/v1/aggregates/nope/X-1",
        None,
        Some(br#"{"type":"create"}"#),
    );
    assert_eq!(
        (s, r["error"].as_str()),
        (404, Some("unknown-aggregate")),
        "{r}"
    );
    // Prometheus scrapers send no token: /metrics is open unless `protect_metrics`.
    let (s, text) = request_text(port, "GET", "/metrics", None, None);
    assert!(s == 200 && text.contains("commands_total"), "{s} {text}");
    for token in [None, Some("wrong")] {
        for path in ["/v1/admin/groups", "/v1/admin/dlq"] {
            let (s, r) = request(port, "GET", path, token, None);
            assert_eq!(
                (s, r["error"].as_str()),
                (401, Some("unauthorized")),
                "{path}: {r}"
            );
        }
        let (s, _) = request(
            port,
            "POST",
            "/v1/admin/dlq/order-summary/order/0/0/discard",
            token,
            None,
        );
        assert_eq!(s, 401);
    }
    let m = scrape(port);
    assert_eq!(
        published(&m),
        Some(events as f64),
        "bad input wrote nothing"
    );
    let (s, r) = request(port, "GET", "/v1/streams/order-ORD-9", None, None);
    assert_eq!((s, r["version"].as_u64()), (200, Some(0)), "{r}");

    // The CLI client against the running host.
    let url = host.url().to_owned();
    let env = [("FACTLINE_HOST", url.as_str())];
    let sent = cli_json(
        &bin,
        &[
            "send",
            "order",
            "ORD-CLI",
            "create",
            r#"{"customer_id":"C-CLI"}"#,
            "--json",
        ],
        &env,
    );
    assert_eq!(
        (sent["stream"].as_str(), sent["version"].as_u64()),
        (Some("order-ORD-CLI"), Some(1)),
        "{sent}"
    );
    events += 1;
    let read = cli_json(
        &bin,
        &["read", "order-ORD-CLI", "--from", "1", "--json"],
        &env,
    );
    assert_eq!(
        read["events"][0]["payload"]["customer_id"], "C-CLI",
        "{read}"
    );
    wait_for_row(port, "ORD-CLI", "created");
    let row = cli_json(&bin, &["query", "order-summary", "ORD-CLI", "--json"], &env);
    assert_eq!(row["customer_id"], "C-CLI", "{row}");
    let rows = cli_json(
        &bin,
        &["query", "order-summary", "--prefix", "ORD-", "--json"],
        &env,
    );
    assert_eq!(rows["rows"].as_array().map(Vec::len), Some(7), "{rows}");
    let groups = cli_json(&bin, &["groups", "--json", "--token", TOKEN], &env);
    assert_eq!(groups["groups"][0]["group"], "order-summary", "{groups}");
    let plugins = cli_json(
        &bin,
        &["plugins", "--json"],
        &[("FACTLINE_HOST", &url), ("FACTLINE_TOKEN", TOKEN)],
    );
    assert_eq!(
        plugins["plugins"].as_array().map(Vec::len),
        Some(2),
        "{plugins}"
    );
    let letters = cli_json(&bin, &["dlq", "list", "--json", "--token", TOKEN], &env);
    assert_eq!(letters, json!([]));
    // Tables by default; errors name the API's answer and exit non-zero.
    let out = cli(&bin, &["groups", "--token", TOKEN], &env);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.contains("order-summary") && table.contains("lag"),
        "{table}"
    );
    let out = cli(&bin, &["groups"], &env);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );
    let out = cli(
        &bin,
        &["send", "order", "ORD-CLI", "create", "{not json"],
        &env,
    );
    assert!(!out.status.success());
    let out = cli(&bin, &["send", "order", "ORD-CLI", "confirm"], &env);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("order-empty"),
        "{out:?}"
    );
    // Offline tools refuse the running host's directory.
    let out = cli(
        &bin,
        &["inspect", "--data-dir", data.to_str().unwrap()],
        &[],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("running"),
        "{out:?}"
    );

    assert!(
        host.terminate().success(),
        "SIGTERM exits cleanly\n{}",
        host.stderr()
    );

    // JSON logs: the command span and the batch span carry the first command's ids.
    let logs = host.stderr();
    let spans: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| l.get("span").cloned())
        .collect();
    assert!(
        spans.iter().any(|s| s["name"] == "command"
            && s["correlation_id"] == "corr-42"
            && s["causation_id"] == "cause-7"
            && s["command_type"] == "create"),
        "no command span with our ids in\n{logs}"
    );
    assert!(
        spans.iter().any(|s| s["name"] == "batch"
            && s["correlation_id"] == "corr-42"
            && s["group"] == "order-summary"),
        "no batch span with our ids in\n{logs}"
    );

    // The stopped directory holds exactly the accepted events, all consumed.
    let (stored, report) = stored_events(&bin, &data);
    assert_eq!(stored, events, "{report:#}");
    assert_eq!(report["format_version"], factline_host::FORMAT_VERSION);
    let positions = report["groups"].as_array().unwrap();
    assert!(
        !positions.is_empty() && positions.iter().all(|p| p["lag"] == 0),
        "{report:#}"
    );
    let table = cli(
        &bin,
        &["inspect", "--data-dir", data.to_str().unwrap()],
        &[],
    );
    assert!(String::from_utf8_lossy(&table.stdout).contains("high-water mark"));

    // A clean restart serves the same data and goes on.
    let mut host = RunningHost::spawn(&bin, &config, &[]);
    host.wait_ready();
    let port = host.port();
    wait_for_row(port, "ORD-1", "confirmed");
    let (s, r) = post_command(port, "ORD-1", json!({"type": "ship", "payload": {}}));
    assert_eq!((s, r["version"].as_u64()), (200, Some(5)), "{r}");
    let m = scrape(port);
    assert_eq!(published(&m), Some(1.0), "counters are this process's: {m}");
    assert!(host.terminate().success(), "{}", host.stderr());
    assert_eq!(stored_events(&bin, &data).0, events + 1);
}

#[test]
fn a_config_typo_is_refused_naming_the_key_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("address = ", "adress = ");
    std::fs::write(&config, &text).unwrap();
    let out = Command::new(factline_binary())
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("adress"), "{stderr}");
    let line = text.lines().position(|l| l.starts_with("adress")).unwrap() + 1;
    assert!(
        stderr.contains(&format!("factline.toml:{line}:")),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists(), "nothing was created");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ready"));
}

/// `[http] protect_metrics = true`: /metrics wants the admin token like the admin API.
#[test]
fn protected_metrics_need_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("[http]\n", "[http]\nprotect_metrics = true\n");
    std::fs::write(&config, text).unwrap();
    let mut host = RunningHost::spawn(&factline_binary(), &config, &[]);
    host.wait_ready();
    for token in [None, Some("wrong")] {
        let (s, r) = request(host.port(), "GET", "/metrics", token, None);
        assert_eq!((s, r["error"].as_str()), (401, Some("unauthorized")), "{r}");
    }
    let (s, text) = request_text(host.port(), "GET", "/metrics", Some(TOKEN), None);
    assert!(s == 200 && text.contains("# TYPE"), "{s} {text}");
}
