//! Every error path of the HTTP API, through the real binary: each answers its documented status
//! as `application/json` `{"error": kind, "message": text}`, the framework's own refusals
//! (unknown route, wrong method, bad query or path, body and header limits) included; and an
//! unauthenticated deploy is refused before its body is read.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{RunningHost, factline_binary};

/// A raw answer: status, headers (lower-cased names), body.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body` on a fresh
/// connection and reads the answer to the end.
pub(crate) fn exchange(port: u16, head: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    // A peer may answer and close before reading a body it refuses.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(dir: &std::path::Path) -> (RunningHost, u16) {
    let port = free_port();
    let config = dir.join("factline.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\nadmin_token = \"s3cret\"\nwatch_plugins = false\n[http]\naddress = \"127.0.0.1:{port}\"\n[[topics]]\nname = \"order\"\npartitions = 2\n\n\
             [[plugins]]\nname = \"order\"\nkind = \"aggregate\"\ncomponent = {:?}\n\n\
             [[plugins]]\nname = \"order-summary\"\nkind = \"projector\"\ncomponent = {:?}\nsubscriptions = [\"order\"]\n",
            factline_tests::ORDER,
            factline_tests::ORDER_SUMMARY
        ),
    )
    .unwrap();
    let mut host = RunningHost::spawn(&factline_binary(), &config, &[]);
    host.wait_ready();
    (host, port)
}

const AUTH: &str = "\r\nAuthorization: Bearer s3cret";

#[test]
fn every_error_path_answers_json_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let (host, port) = start(dir.path());
    let create = br#"{"type":"create","payload":{"customer_id":"C"}}"#;
    let created = exchange(
        port,
        &format!(
            "POST /v1/aggregates/order/ORD-1 HTTP/1.1\r\nHost: x\r\nContent-Length: {}",
            create.len()
        ),
        create,
    );
    assert_eq!(created.status, 200, "{}", created.body);

    let big_header = format!("\r\nX-Big: {}", "h".repeat(100 * 1024));
    let many_headers: String = (0..150).map(|i| format!("\r\nX-H{i}: v")).collect();
    let two_mib = format!(
        r#"{{"type":"create","payload":{{"x":"{}"}}}}"#,
        "y".repeat(2 << 20)
    );
    // (what, head, body, status, error kind)
    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        (
            "unknown route",
            "GET /nope HTTP/1.1".into(),
            vec![],
            404,
            "unknown-route",
        ),
        (
            "unknown admin route",
            format!("GET /v1/admin/nope HTTP/1.1{AUTH}"),
            vec![],
            404,
            "unknown-route",
        ),
        (
            "wrong method",
            "DELETE /v1/streams/order-ORD-1 HTTP/1.1".into(),
            vec![],
            405,
            "method-not-allowed",
        ),
        (
            "wrong method on a command",
            "GET /v1/aggregates/order/ORD-1 HTTP/1.1".into(),
            vec![],
            405,
            "method-not-allowed",
        ),
        (
            "negative from",
            "GET /v1/streams/order-ORD-1?from=-1 HTTP/1.1".into(),
            vec![],
            400,
            "malformed",
        ),
        (
            "limit not a number",
            "GET /v1/read-models/order-summary?limit=many HTTP/1.1".into(),
            vec![],
            400,
            "malformed",
        ),
        (
            "partition not a number",
            format!("POST /v1/admin/dlq/order-summary/order/x/0/retry HTTP/1.1{AUTH}"),
            vec![],
            400,
            "malformed",
        ),
        (
            "offset negative",
            format!("POST /v1/admin/dlq/order-summary/order/0/-5/retry HTTP/1.1{AUTH}"),
            vec![],
            400,
            "malformed",
        ),
        (
            "body not JSON",
            "POST /v1/aggregates/order/ORD-2 HTTP/1.1".into(),
            b"{not json".to_vec(),
            400,
            "malformed",
        ),
        (
            "body of the wrong shape",
            "POST /v1/aggregates/order/ORD-2 HTTP/1.1".into(),
            br#"{"type":5}"#.to_vec(),
            400,
            "malformed",
        ),
        (
            "unknown body field",
            "POST /v1/aggregates/order/ORD-2 HTTP/1.1".into(),
            br#"{"type":"create","typo":1}"#.to_vec(),
            400,
            "malformed",
        ),
        (
            "command id not a UUID",
            "POST /v1/aggregates/order/ORD-2 HTTP/1.1".into(),
            br#"{"type":"create","command_id":"x"}"#.to_vec(),
            400,
            "malformed",
        ),
        (
            "empty body",
            "POST /v1/aggregates/order/ORD-2 HTTP/1.1".into(),
            vec![],
            400,
            "malformed",
        ),
        (
            "invalid stream id",
            "POST /v1/aggregates/order/%20 HTTP/1.1".into(),
            br#"{"type":"create","payload":{"customer_id":"C"}}"#.to_vec(),
            400,
            "invalid-stream",
        ),
        (
            "body over 1 MiB",
            "POST /v1/aggregates/order/ORD-2 HTTP/1.1".into(),
            two_mib.into_bytes(),
            413,
            "too-large",
        ),
        (
            "unknown aggregate",
            "POST /v1/aggregates/nope/X-1 HTTP/1.1".into(),
            br#"{"type":"create"}"#.to_vec(),
            404,
            "unknown-aggregate",
        ),
        (
            "business rejection",
            "POST /v1/aggregates/order/ORD-1 HTTP/1.1".into(),
            br#"{"type":"confirm"}"#.to_vec(),
            422,
            "rejected",
        ),
        (
            "unknown row",
            "GET /v1/read-models/order-summary/NOPE HTTP/1.1".into(),
            vec![],
            404,
            "not-found",
        ),
        (
            "admin without token",
            "GET /v1/admin/groups HTTP/1.1".into(),
            vec![],
            401,
            "unauthorized",
        ),
        (
            "admin with a wrong token",
            "GET /v1/admin/groups HTTP/1.1\r\nAuthorization: Bearer nope".into(),
            vec![],
            401,
            "unauthorized",
        ),
        // `/metrics` is open by default (service.rs covers it and `protect_metrics`).
        (
            "dead letters without token",
            "GET /v1/admin/dlq HTTP/1.1".into(),
            vec![],
            401,
            "unauthorized",
        ),
        (
            "deploy without token",
            "POST /v1/admin/plugins/order/deploy HTTP/1.1".into(),
            b"\0asm".to_vec(),
            401,
            "unauthorized",
        ),
        (
            "deploy not a component",
            format!("POST /v1/admin/plugins/order/deploy HTTP/1.1{AUTH}"),
            b"not wasm".to_vec(),
            422,
            "invalid-component",
        ),
        (
            "deploy of an unknown plugin",
            format!("POST /v1/admin/plugins/nope/deploy HTTP/1.1{AUTH}"),
            b"\0asm".to_vec(),
            404,
            "unknown-plugin",
        ),
        (
            "rollback without a previous version",
            format!("POST /v1/admin/plugins/order/rollback HTTP/1.1{AUTH}"),
            vec![],
            409,
            "no-previous-version",
        ),
        (
            "unknown plugin",
            format!("GET /v1/admin/plugins/nope HTTP/1.1{AUTH}"),
            vec![],
            404,
            "unknown-plugin",
        ),
        (
            "unknown projector",
            format!("GET /v1/admin/projectors/nope HTTP/1.1{AUTH}"),
            vec![],
            404,
            "unknown-projector",
        ),
        (
            "rebuild of an unknown projector",
            format!("POST /v1/admin/projectors/nope/rebuild HTTP/1.1{AUTH}"),
            vec![],
            404,
            "unknown-projector",
        ),
        (
            "unknown saga instance",
            format!("GET /v1/admin/sagas/s/i HTTP/1.1{AUTH}"),
            vec![],
            404,
            "unknown-saga-instance",
        ),
        (
            "unknown group",
            format!("POST /v1/admin/dlq/nope/order/0/0/retry HTTP/1.1{AUTH}"),
            vec![],
            404,
            "unknown-group",
        ),
        (
            "unknown dead-letter action",
            format!("POST /v1/admin/dlq/order-summary/order/0/0/frob HTTP/1.1{AUTH}"),
            vec![],
            404,
            "unknown-action",
        ),
        (
            "no such dead letter",
            format!("POST /v1/admin/dlq/order-summary/order/0/0/discard HTTP/1.1{AUTH}"),
            vec![],
            404,
            "no-dead-letter",
        ),
        (
            "a 100 KiB header",
            format!("GET /v1/streams/order-ORD-1 HTTP/1.1{big_header}"),
            vec![],
            431,
            "headers-too-large",
        ),
        (
            "150 headers",
            format!("GET /v1/streams/order-ORD-1 HTTP/1.1{many_headers}"),
            vec![],
            431,
            "headers-too-large",
        ),
    ];
    let mut failures = Vec::new();
    for (what, head, body, status, kind) in &cases {
        let head = format!(
            "{head}\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        );
        let a = exchange(port, &head, body);
        let json: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
        let ok = a.status == *status
            && a.header("content-type") == Some("application/json")
            && json["error"].as_str() == Some(kind)
            && json["message"].as_str().is_some_and(|m| !m.is_empty());
        if !ok {
            failures.push(format!(
                "{what}: wanted {status} {kind}, got {} {:?} {}",
                a.status,
                a.header("content-type"),
                a.body.chars().take(300).collect::<String>()
            ));
        }
    }
    // A business rejection carries its code; nothing else answers 422 but a bad deploy.
    let rejected = exchange(
        port,
        "POST /v1/aggregates/order/ORD-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 18",
        br#"{"type":"confirm"}"#,
    );
    let json: Value = serde_json::from_str(&rejected.body).unwrap();
    assert_eq!(json["code"], "order-empty", "{json}");
    // A deploy declaring more than the limit is refused without its body being sent.
    let declared = exchange(
        port,
        &format!(
            "POST /v1/admin/plugins/order/deploy HTTP/1.1{AUTH}\r\nHost: x\r\nContent-Length: {}",
            300u64 << 20
        ),
        &[],
    );
    let json: Value = serde_json::from_str(&declared.body).unwrap_or(Value::Null);
    if (declared.status, json["error"].as_str()) != (413, Some("too-large")) {
        failures.push(format!(
            "declared 300 MiB deploy: {} {}",
            declared.status, declared.body
        ));
    }
    assert!(
        failures.is_empty(),
        "{} of {} error paths are wrong:\n{}\n{}",
        failures.len(),
        cases.len() + 1,
        failures.join("\n"),
        host.stderr()
    );
    // The host still serves after all of it.
    let a = exchange(port, "GET /v1/streams/order-ORD-1 HTTP/1.1\r\nHost: x", &[]);
    assert_eq!(a.status, 200, "{}", a.body);
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn an_unauthenticated_deploy_is_refused_before_its_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (host, port) = start(dir.path());
    let pid = host.pid();
    let before = rss_kib(pid);
    let mut worst = Duration::ZERO;
    for _ in 0..4 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body_len: usize = 200 << 20;
        let head = format!(
            "POST /v1/admin/plugins/order/deploy HTTP/1.1\r\nHost: x\r\nContent-Length: {body_len}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        // The body goes on in the background, as a client streaming a component would.
        let mut writer = s.try_clone().unwrap();
        let streaming = std::thread::spawn(move || {
            let chunk = vec![0u8; 1 << 20];
            let mut sent = 0;
            while sent < body_len {
                if writer.write_all(&chunk).is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        });
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        // Up to the end of the head and the small JSON body.
        while !String::from_utf8_lossy(&raw).contains("}") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed before an answer");
            raw.extend_from_slice(&buf[..n]);
        }
        let took = started.elapsed();
        worst = worst.max(took);
        let a = parse(&raw);
        let json: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
        assert_eq!(
            (a.status, json["error"].as_str()),
            (401, Some("unauthorized")),
            "{}",
            a.body
        );
        let _ = s.shutdown(std::net::Shutdown::Both);
        let sent = streaming.join().unwrap();
        assert!(
            sent < body_len,
            "the host read all {sent} bytes of an unauthenticated body"
        );
    }
    let after = rss_kib(pid);
    eprintln!(
        "unauthenticated 200 MiB deploys: slowest 401 in {worst:?}; RSS {before} -> {after} KiB"
    );
    assert!(worst <= Duration::from_millis(50), "the 401 took {worst:?}");
    // Reading one body would have added 200 MiB; allow noise (buffers, allocator).
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
}
