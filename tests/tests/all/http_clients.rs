//! The HTTP API as a real client uses it, through the `factline run` binary: expected versions
//! (`expected_version`, `If-Match`), concurrent commands on one stream queued instead of failing,
//! read-model pages with a cursor and a count, saga data as JSON, bodies without a JSON content
//! type, a watcher deploy keeping its label, a rebuild's target from its start, and
//! `docs/openapi.json` describing exactly the router's routes.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http_errors::{Answer, exchange};
use crate::support::{RunningHost, factline_binary};

/// A host over `dir` running `plugins` (TOML of `[[plugins]]` tables) on `topics`.
fn start(dir: &Path, topics: &[&str], plugins: &str) -> RunningHost {
    let mut text = "data_dir = \"data\"\n[http]\naddress = \"127.0.0.1:0\"\n".to_owned();
    for t in topics {
        text += &format!("[[topics]]\nname = {t:?}\npartitions = 2\n");
    }
    text += plugins;
    let config = dir.join("factline.toml");
    std::fs::write(&config, text).unwrap();
    let mut host = RunningHost::spawn(&factline_binary(), &config, &[]);
    host.wait_ready();
    host
}

/// A host running the bank-account aggregate (topic `account`).
fn account_host(dir: &Path) -> RunningHost {
    let plugin = aggregate("bank-account", factline_tests::BANK_ACCOUNT) + "topic = \"account\"\n";
    start(dir, &["account"], &plugin)
}

/// A host running the order aggregate and the order-summary projector.
fn order_host(dir: &Path) -> RunningHost {
    let plugins = aggregate("order", factline_tests::ORDER)
        + &projector("order-summary", factline_tests::ORDER_SUMMARY, "order");
    start(dir, &["order"], &plugins)
}

/// Creates order `id` of `customer`.
fn create_order(port: u16, id: &str, customer: &str) {
    let (s, r, _) = command(
        port,
        &format!("/v1/aggregates/order/{id}"),
        &[],
        json!({"type": "create", "payload": {"customer_id": customer}}),
    );
    assert_eq!(s, 200, "{r}");
}

fn aggregate(name: &str, component: &str) -> String {
    format!("[[plugins]]\nname = {name:?}\nkind = \"aggregate\"\ncomponent = {component:?}\n")
}

fn projector(name: &str, component: &str, topic: &str) -> String {
    format!(
        "[[plugins]]\nname = {name:?}\nkind = \"projector\"\ncomponent = {component:?}\nsubscriptions = [{topic:?}]\n"
    )
}

/// `method path` with `headers` (each `Name: value`) and `body`, JSON content type unless a
/// header names another.
fn call(port: u16, method: &str, path: &str, headers: &[&str], body: &[u8]) -> (Answer, Value) {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x");
    for h in headers {
        head += "\r\n";
        head += h;
    }
    head += &format!("\r\nContent-Length: {}", body.len());
    let a = exchange(port, &head, body);
    let json = serde_json::from_str(&a.body).unwrap_or(Value::Null);
    (a, json)
}

fn command(port: u16, path: &str, headers: &[&str], body: Value) -> (u16, Value, Option<String>) {
    let (a, json) = call(
        port,
        "POST",
        path,
        headers,
        &serde_json::to_vec(&body).unwrap(),
    );
    let etag = a.header("etag").map(str::to_owned);
    (a.status, json, etag)
}

fn get(port: u16, path: &str) -> Value {
    let (a, json) = call(port, "GET", path, &[], &[]);
    assert_eq!(a.status, 200, "GET {path}: {}", a.body);
    json
}

fn stream_version(port: u16, stream: &str) -> u64 {
    get(port, &format!("/v1/streams/{stream}"))["version"]
        .as_u64()
        .unwrap()
}

/// Polls `path` until `done` holds for its JSON.
fn wait_for(port: u16, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (a, json) = call(port, "GET", path, &[], &[]);
        if a.status == 200 && done(&json) {
            return json;
        }
        assert!(Instant::now() < deadline, "{path}: {} {}", a.status, a.body);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn expected_versions_conflict_with_both_versions_and_concurrent_commands_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = account_host(dir.path());
    let port = host.port();
    let acc = "/v1/aggregates/bank-account/ACC-1";
    let deposit = |extra: Value| {
        let mut b = json!({"type": "deposit", "payload": {"amount": 10}});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };

    // 0: the stream must not exist yet.
    let open = json!({"type": "open", "payload": {"owner": "H", "initial_balance": 100}, "expected_version": 0});
    let (s, r, etag) = command(port, acc, &[], open.clone());
    assert_eq!((s, r["version"].as_u64()), (200, Some(1)), "{r}");
    assert_eq!(
        etag.as_deref(),
        Some("\"1\""),
        "the answer's ETag is the version"
    );
    // The same again (a fresh command id): the stream exists now.
    let (s, r, _) = command(port, acc, &[], open);
    assert_eq!(
        (s, r["error"].as_str(), &r["expected"], &r["actual"]),
        (409, Some("conflict"), &json!(0), &json!(1)),
        "{r}"
    );
    // The ETag back as If-Match, then the same version in the body.
    let (s, r, etag) = command(port, acc, &["If-Match: \"1\""], deposit(json!({})));
    assert_eq!((s, r["version"].as_u64()), (200, Some(2)), "{r}");
    let (s, r, _) = command(port, acc, &[], deposit(json!({"expected_version": 2})));
    assert_eq!((s, r["version"].as_u64()), (200, Some(3)), "{r}");
    // A stale version, by header (the ETag of version 2) or body: 409 with both versions.
    let stale = etag.unwrap();
    let (s, r, _) = command(
        port,
        acc,
        &[&format!("If-Match: {stale}")],
        deposit(json!({})),
    );
    assert_eq!(
        (s, r["error"].as_str(), &r["expected"], &r["actual"]),
        (409, Some("conflict"), &json!(2), &json!(3)),
        "{r}"
    );
    assert_eq!(r["stream"], "account-ACC-1");
    // A stream read gives the same ETag.
    let (a, _) = call(port, "GET", "/v1/streams/account-ACC-1", &[], &[]);
    assert_eq!(a.header("etag"), Some("\"3\""));
    let (s, r, _) = command(port, acc, &[], deposit(json!({"expected_version": 7})));
    assert_eq!(
        (s, &r["expected"], &r["actual"]),
        (409, &json!(7), &json!(3))
    );
    // "any" checks nothing; header and body must agree; bad values say what to send.
    let (s, r, _) = command(port, acc, &[], deposit(json!({"expected_version": "any"})));
    assert_eq!((s, r["version"].as_u64()), (200, Some(4)), "{r}");
    for (headers, extra, what) in [
        (
            vec!["If-Match: \"4\""],
            json!({"expected_version": 3}),
            "disagree",
        ),
        (
            vec![],
            json!({"expected_version": -1}),
            "expected_version must be",
        ),
        (
            vec![],
            json!({"expected_version": "latest"}),
            "expected_version must be",
        ),
        (vec!["If-Match: *"], json!({}), "If-Match must be"),
    ] {
        let (s, r, _) = command(port, acc, &headers, deposit(extra));
        assert_eq!((s, r["error"].as_str()), (400, Some("malformed")), "{r}");
        assert!(r["message"].as_str().unwrap().contains(what), "{r}");
    }
    // `factline send --expected-version` sends the same.
    let send = |expected: &str| {
        crate::service::cli(
            &factline_binary(),
            &[
                "send",
                "bank-account",
                "ACC-1",
                "deposit",
                r#"{"amount": 1}"#,
                "--expected-version",
                expected,
                "--host",
                host.url(),
            ],
            &[],
        )
    };
    let refused = send("3");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("409 Conflict: conflict"),
        "{stderr}"
    );
    assert!(
        stderr.contains("at version 4, the command expected version 3"),
        "{stderr}"
    );
    assert!(send("4").status.success());
    assert_eq!(
        stream_version(port, "account-ACC-1"),
        5,
        "refused commands wrote nothing"
    );

    // 40 deposits at once on one new account, and 8 commands expecting its version 1 among
    // them: every deposit is accepted at its own version, and of the 8 at most the one that
    // comes first right after the open is (the others get 409, however they queue).
    let acc = "/v1/aggregates/bank-account/ACC-Q";
    let (s, r, _) = command(
        port,
        acc,
        &[],
        json!({"type": "open", "payload": {"owner": "Q", "initial_balance": 0}}),
    );
    assert_eq!(s, 200, "{r}");
    let started = std::sync::Arc::new(std::sync::Barrier::new(48));
    let clients: Vec<_> = (0..48)
        .map(|i| {
            let started = started.clone();
            std::thread::spawn(move || {
                let mut body = json!({"type": "deposit", "payload": {"amount": i + 1}});
                if i >= 40 {
                    body["expected_version"] = json!(1);
                }
                started.wait();
                let (s, r, _) = command(port, acc, &[], body);
                (i, s, r)
            })
        })
        .collect();
    let answers: Vec<(u64, u16, Value)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let mut versions = BTreeSet::new();
    let mut expecting_accepted = 0;
    for (i, s, r) in &answers {
        if *i < 40 {
            assert_eq!(s, &200, "deposit {i}: {r}\n{}", host.stderr());
        } else if *s == 200 {
            expecting_accepted += 1;
        } else {
            assert_eq!(
                (s, r["error"].as_str(), &r["expected"]),
                (&409, Some("conflict"), &json!(1)),
                "{r}"
            );
            assert!(r["actual"].as_u64().unwrap() > 1, "{r}");
        }
        if *s == 200 {
            assert!(versions.insert(r["version"].as_u64().unwrap()), "{r}");
        }
    }
    assert!(expecting_accepted <= 1, "{answers:?}");
    let last = 41 + expecting_accepted;
    assert_eq!(
        versions,
        (2..=last).collect::<BTreeSet<u64>>(),
        "one version each, no gap"
    );
    let stream = get(port, "/v1/streams/account-ACC-Q?limit=100");
    let stored: Vec<u64> = stream["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stream_version"].as_u64().unwrap())
        .collect();
    assert_eq!(stored, (1..=last).collect::<Vec<u64>>());
    let deposited: u64 = stream["events"].as_array().unwrap()[1..]
        .iter()
        .map(|e| e["payload"]["amount"].as_u64().unwrap())
        .sum();
    let expected_sum: u64 = (1..=40).sum::<u64>();
    assert!(
        deposited == expected_sum || (expecting_accepted == 1 && deposited > expected_sum),
        "{deposited}"
    );
    assert!(host.terminate().success(), "{}", host.stderr());
}

#[test]
fn a_command_body_is_json_whatever_its_content_type() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = account_host(dir.path());
    let port = host.port();
    let variants: [&[&str]; 5] = [
        &[],
        &["Content-Type: text/plain"],
        &["Content-Type: application/x-www-form-urlencoded"],
        &["Content-Type: application/json; charset=utf-8"],
        &["Content-Type: application/octet-stream"],
    ];
    for (i, headers) in variants.iter().enumerate() {
        let path = format!("/v1/aggregates/bank-account/ACC-{i}");
        let body = json!({"type": "open", "payload": {"owner": "H", "initial_balance": 1}});
        let (s, r, _) = command(port, &path, headers, body);
        assert_eq!(
            (s, r["version"].as_u64()),
            (200, Some(1)),
            "{headers:?}: {r}"
        );
        // Not JSON under the same header: 400 saying what to send.
        let (a, r) = call(port, "POST", &path, headers, b"type=deposit&amount=1");
        assert_eq!(
            (a.status, r["error"].as_str()),
            (400, Some("malformed")),
            "{r}"
        );
        let message = r["message"].as_str().unwrap();
        assert!(message.contains("send a JSON object"), "{message}");
    }
    assert!(host.terminate().success(), "{}", host.stderr());
}

#[test]
fn read_model_pages_follow_the_cursor_and_count_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = order_host(dir.path());
    let port = host.port();
    // 23 orders of customer C-1 (keys ORD-00..ORD-22) and 2 others that share no prefix.
    let ids: Vec<String> = (0..23).map(|i| format!("ORD-{i:02}")).collect();
    for id in ids.iter().map(String::as_str).chain(["X-1", "X-2"]) {
        create_order(port, id, "C-1");
    }
    wait_for(port, "/v1/read-models/order-summary?prefix=X-", |p| {
        p["count"] == 2
    });
    wait_for(port, "/v1/read-models/order-summary?prefix=ORD-", |p| {
        p["count"] == 23
    });

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let cursor = after
            .as_ref()
            .map(|a| format!("&after={a}"))
            .unwrap_or_default();
        let page = get(
            port,
            &format!("/v1/read-models/order-summary?prefix=ORD-&limit=10{cursor}"),
        );
        pages += 1;
        assert_eq!(
            (&page["count"], &page["count_exact"]),
            (&json!(23), &json!(true)),
            "the count is the prefix's, not the page's: {page}"
        );
        let rows = page["rows"].as_array().unwrap();
        seen.extend(rows.iter().map(|r| r["key"].as_str().unwrap().to_owned()));
        assert!(rows.iter().all(|r| r["value"]["customer_id"] == "C-1"));
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(rows.len(), 10, "{page}");
                assert_eq!(next, seen.last().unwrap(), "next is the page's last key");
                after = Some(next.to_owned());
            }
            None => {
                assert!(page["next"].is_null(), "{page}");
                break;
            }
        }
        assert!(pages < 10, "the cursor does not advance");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "every order once, in key order");
    // A page that ends exactly at the last row says so (no empty page after it).
    let page = get(
        port,
        "/v1/read-models/order-summary?prefix=ORD-&after=ORD-12&limit=10",
    );
    assert_eq!(
        (page["rows"].as_array().unwrap().len(), &page["next"]),
        (10, &Value::Null),
        "{page}"
    );
    // `factline query` pages the same way.
    let cli = |extra: &[&str]| {
        let mut args = vec![
            "query",
            "order-summary",
            "--prefix",
            "ORD-",
            "--limit",
            "10",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--host", host.url()]);
        let out = crate::service::cli(&factline_binary(), &args, &[]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let first = cli(&[]);
    assert!(
        first.contains("23 rows match; next page: --after ORD-09"),
        "{first}"
    );
    let last = cli(&["--after", "ORD-19"]);
    assert!(
        last.contains("ORD-22") && !last.contains("ORD-19") && last.contains("last page"),
        "{last}"
    );
    let (a, r) = call(
        port,
        "GET",
        "/v1/read-models/order-summary?limit=0",
        &[],
        &[],
    );
    assert_eq!(
        (a.status, r["error"].as_str()),
        (400, Some("malformed")),
        "{r}"
    );
    assert!(host.terminate().success(), "{}", host.stderr());
}

#[test]
fn a_rebuild_reports_its_target_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = order_host(dir.path());
    let port = host.port();
    for i in 0..30 {
        create_order(port, &format!("ORD-{i}"), "C");
    }
    let (a, started) = call(
        port,
        "POST",
        "/v1/admin/projectors/order-summary/rebuild",
        &[],
        &[],
    );
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(
        (&started["phase"], &started["processed"], &started["target"]),
        (&json!("replaying"), &json!(0), &json!(30)),
        "the first status already knows the 30 events to replay: {started}"
    );
    let done = wait_for(port, "/v1/admin/projectors/order-summary", |s| {
        s["rebuild"]["phase"] == "done"
    });
    assert_eq!(done["rebuild"]["target"], 30, "{done}");
    // `factline projector rebuild` starts its progress at 0 of the 30.
    let out = crate::service::cli(
        &factline_binary(),
        &[
            "projector",
            "rebuild",
            "order-summary",
            "--host",
            host.url(),
        ],
        &[],
    );
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{progress}");
    assert_eq!(
        progress.lines().next(),
        Some("order-summary: replaying 0/30 events"),
        "{progress}"
    );
    assert!(host.terminate().success(), "{}", host.stderr());
}

#[test]
fn saga_instances_show_their_data_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let text = crate::shop::config_text(&dir.path().join("data"), factline_tests::ORDER_PLACEMENT)
        .replacen('\n', "\n[http]\naddress = \"127.0.0.1:0\"\n", 1);
    let config = dir.path().join("factline.toml");
    std::fs::write(&config, text).unwrap();
    let bin = factline_binary();
    let mut host = RunningHost::spawn(&bin, &config, &[]);
    host.wait_ready();
    let port = host.port();
    let order = "/v1/aggregates/order/ORD-S1";
    for body in [
        json!({"type": "create", "payload": {"customer_id": "C-1"}}),
        json!({"type": "add-item", "payload": {"product_id": "P1", "quantity": 2, "unit_price": 300}}),
        json!({"type": "confirm", "payload": {}}),
    ] {
        let (s, r, _) = command(port, order, &[], body);
        assert_eq!(s, 200, "{r}");
    }
    let listed = wait_for(port, "/v1/admin/sagas?saga=order-placement", |l| {
        l["instances"].as_array().is_some_and(|a| !a.is_empty())
    });
    let data = &listed["instances"][0]["data"];
    assert!(
        data.is_object(),
        "data is JSON, not MessagePack bytes: {data}"
    );
    assert_eq!(data["order_id"], "ORD-S1", "{data}");
    let one = get(port, "/v1/admin/sagas/order-placement/ORD-S1");
    assert_eq!(one["data"], *data, "{one}");
    assert_eq!(one["instance_id"], "ORD-S1");
    // The CLI reads the same API into its table and its JSON.
    let shown = crate::service::cli_json(
        &bin,
        &["saga", "show", "ORD-S1", "--host", host.url(), "--json"],
        &[],
    );
    assert_eq!(shown["data"], *data, "{shown}");
    assert!(host.terminate().success(), "{}", host.stderr());
}

#[test]
fn a_watcher_deploy_keeps_the_configured_version_label() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(factline_tests::VERSIONED_PLUGIN).unwrap();
    let component = dir.path().join("versioned.wasm");
    std::fs::write(&component, versioned_plugin::patch_tag(&wasm, *b"00")).unwrap();
    let plugin = "[[plugins]]\nname = \"versioned\"\nkind = \"projector\"\ncomponent = \"versioned.wasm\"\nsubscriptions = [\"tick\"]\nversion = \"1.4.0\"\n";
    let mut host = start(dir.path(), &["tick"], plugin);
    let port = host.port();
    let first = get(port, "/v1/admin/plugins")["plugins"][0].clone();
    assert_eq!(first["label"], "1.4.0", "{first}");

    // A rebuilt component copied over the file: the watcher deploys it.
    let next = dir.path().join("next.wasm");
    std::fs::write(&next, versioned_plugin::patch_tag(&wasm, *b"01")).unwrap();
    std::fs::rename(&next, &component).unwrap();
    let deployed = wait_for(port, "/v1/admin/plugins", |l| {
        l["plugins"][0]["content_hash"] != first["content_hash"]
    });
    assert_eq!(
        deployed["plugins"][0]["label"], "1.4.0",
        "the watcher's deploy keeps the label: {deployed}"
    );
    let history = get(port, "/v1/admin/plugins/versioned");
    assert_eq!(history["current"]["version"]["label"], "1.4.0", "{history}");
    assert!(host.terminate().success(), "{}", host.stderr());
}

/// Every route the router serves is in `docs/openapi.json` with its method, and the file
/// describes nothing else.
#[test]
fn the_openapi_description_matches_the_router() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut described = BTreeSet::new();
    for (route, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {route} describes no response"
            );
            described.insert((method.to_ascii_uppercase(), route.clone()));
        }
    }
    let served: BTreeSet<(String, String)> = factline_host::http_routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_owned()))
        .collect();
    assert!(served.len() >= 18, "{served:?}");
    let missing: Vec<_> = served.difference(&described).collect();
    let extra: Vec<_> = described.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not in docs/openapi.json: {missing:?}; described but not served: {extra:?}"
    );
}
