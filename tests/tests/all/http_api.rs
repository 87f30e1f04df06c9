//! The HTTP API through the real binary: commands, streams and read models over loopback, each
//! kind of bad request with its own status, the admin token, and a clean SIGTERM and restart.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{RunningHost, factline_binary};

/// One HTTP/1.1 request over a fresh connection: (status, body as JSON or Null).
pub(crate) fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, Value) {
    let (status, body) = request_text(port, method, path, token, body);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// [`request`] with the body as text.
pub(crate) fn request_text(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // A peer may answer (413) and close before reading a huge body: ignore the broken pipe.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command(port: u16, id: &str, t: &str, payload: Value) -> (u16, Value) {
    let body = serde_json::to_vec(&json!({ "type": t, "payload": payload })).unwrap();
    request(
        port,
        "POST",
        &format!("/v1/aggregates/order/{id}"),
        None,
        Some(&body),
    )
}

#[test]
fn the_order_flow_over_http_with_errors_auth_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("factline.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\nadmin_token = \"s3cret\"\n[http]\naddress = \"127.0.0.1:{port}\"\n[[topics]]\nname = \"order\"\npartitions = 4\n\n\
             [[plugins]]\nname = \"order\"\nkind = \"aggregate\"\ncomponent = {:?}\n\n\
             [[plugins]]\nname = \"order-summary\"\nkind = \"projector\"\ncomponent = {:?}\nsubscriptions = [\"order\"]\n",
            factline_tests::ORDER,
            factline_tests::ORDER_SUMMARY
        ),
    )
    .unwrap();
    let bin = factline_binary();
    let mut host = RunningHost::spawn(&bin, &config, &[]);
    host.wait_ready();

    let (s, created) = command(port, "ORD-1", "create", json!({"customer_id": "C-1"}));
    assert_eq!(s, 200, "{created}");
    assert_eq!(
        (created["stream"].as_str(), created["version"].as_u64()),
        (Some("order-ORD-1"), Some(1))
    );
    assert_eq!(created["events"][0]["payload"]["customer_id"], "C-1");
    for (product, qty, price) in [("A", 2, 1000), ("B", 1, 2000)] {
        let (s, r) = command(
            port,
            "ORD-1",
            "add-item",
            json!({"product_id": product, "quantity": qty, "unit_price": price}),
        );
        assert_eq!(s, 200, "{r}");
    }
    let (s, placed) = command(port, "ORD-1", "confirm", json!({}));
    assert_eq!((s, placed["version"].as_u64()), (200, Some(4)), "{placed}");

    // Each kind of bad request gets its own status and a JSON error body.
    command(port, "ORD-2", "create", json!({"customer_id": "C-2"}));
    let (s, r) = command(port, "ORD-2", "confirm", json!({}));
    assert_eq!(
        (s, r["error"].as_str(), r["code"].as_str()),
        (422, Some("rejected"), Some("order-empty")),
        "{r}"
    );
    let (s, r) = request(
        port,
        "POST",
        "/v1/aggregates/order/ORD-3",
        None,
        Some(b"{not json"),
    );
    assert_eq!((s, r["error"].as_str()), (400, Some("malformed")), "{r}");
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
    let huge =
        serde_json::to_vec(&json!({"type": "create", "payload": {"x": "y".repeat(2 << 20)}}))
            .unwrap();
    let (s, _) = request(
        port,
        "POST",
        "/v1/aggregates/order/ORD-4",
        None,
        Some(&huge),
    );
    assert_eq!(s, 413);
    let (s, stream) = request(port, "GET", "/v1/streams/order-ORD-1", None, None);
    assert_eq!(
        (
            s,
            stream["version"].as_u64(),
            stream["events"].as_array().map(Vec::len)
        ),
        (200, Some(4), Some(4))
    );
    let (s, _) = request(port, "GET", "/v1/streams/order-ORD-4", None, None);
    assert_eq!(
        s, 200,
        "the refused requests wrote nothing, and the host still serves"
    );

    // The projector catches up on its own.
    let deadline = Instant::now() + Duration::from_secs(30);
    let row = loop {
        let (s, row) = request(
            port,
            "GET",
            "/v1/read-models/order-summary/ORD-1",
            None,
            None,
        );
        if s == 200 && row["status"] == "confirmed" {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "projection did not catch up: {s} {row}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (row["item_count"].as_u64(), row["total"].as_u64()),
        (Some(3), Some(4000))
    );
    let (s, rows) = request(
        port,
        "GET",
        "/v1/read-models/order-summary?prefix=ORD-",
        None,
        None,
    );
    assert_eq!((s, rows["rows"].as_array().map(Vec::len)), (200, Some(2)));
    let (s, _) = request(
        port,
        "GET",
        "/v1/read-models/order-summary/ORD-9",
        None,
        None,
    );
    assert_eq!(s, 404);

    // Admin needs the token.
    assert_eq!(request(port, "GET", "/v1/admin/groups", None, None).0, 401);
    assert_eq!(
        request(port, "GET", "/v1/admin/groups", Some("wrong"), None).0,
        401
    );
    let (s, groups) = request(port, "GET", "/v1/admin/groups", Some("s3cret"), None);
    assert_eq!(
        (s, groups["groups"][0]["group"].as_str()),
        (200, Some("order-summary")),
        "{groups}"
    );
    let (s, plugins) = request(port, "GET", "/v1/admin/plugins", Some("s3cret"), None);
    assert_eq!(
        (s, plugins["plugins"].as_array().map(Vec::len)),
        (200, Some(2))
    );

    assert!(
        host.terminate().success(),
        "SIGTERM exits cleanly\n{}",
        host.stderr()
    );

    // A restart serves the same data.
    let mut host = RunningHost::spawn(&bin, &config, &[]);
    host.wait_ready();
    let (s, row) = request(
        port,
        "GET",
        "/v1/read-models/order-summary/ORD-1",
        None,
        None,
    );
    assert_eq!((s, row["status"].as_str()), (200, Some("confirmed")));
    let (s, r) = command(port, "ORD-1", "ship", json!({}));
    assert_eq!((s, r["version"].as_u64()), (200, Some(5)), "{r}");
    assert!(host.terminate().success());
}
