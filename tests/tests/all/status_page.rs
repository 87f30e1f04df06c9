//! The status page `factline run` serves: its files (public, with a strict content security
//! policy), the admin data it reads, and the page itself in a real browser (Debian's Chromium,
//! headless, driven by Playwright from `tests/browser/status_page.mjs`): sign in with the
//! token, see a blocked projector's lag and its dead letter with the failure kind and guest
//! backtrace, deploy a fixed build, press Retry, see the dead letter clear.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use crate::http_api::{request, request_text};
use crate::support::{RunningHost, factline_binary};

const TOKEN: &str = "ui-s3cret";

/// A data directory with ten `item` events, the fifth poisoned, and a config running the order
/// flow beside the poison projector `counts` in `block` mode.
fn poisoned_host(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    {
        let log = crate::support::log(&data, &[("order", 4), ("item", 2)]);
        for i in 0..10 {
            let payload = crate::support::msgpack(serde_json::json!({ "poison": i == 4 }));
            log.append(
                &format!("item-{i}"),
                factline_host::ExpectedVersion::NoStream,
                vec![factline_host::NewEvent::new("item.a", payload)],
            )
            .unwrap();
        }
    }
    // A deploy writes its bytes over the component file: the test's own copy, not the build's.
    let component = dir.join("counts.wasm");
    std::fs::copy(factline_tests::POISON_PLUGIN, &component).unwrap();
    let config = dir.join("factline.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\nadmin_token = {TOKEN:?}\n[http]\naddress = \"127.0.0.1:0\"\n\
             [[topics]]\nname = \"order\"\npartitions = 4\n[[topics]]\nname = \"item\"\npartitions = 2\n\n\
             [[plugins]]\nname = \"order\"\nkind = \"aggregate\"\ncomponent = {:?}\n\n\
             [[plugins]]\nname = \"order-summary\"\nkind = \"projector\"\ncomponent = {:?}\nsubscriptions = [\"order\"]\n\n\
             [[plugins]]\nname = \"counts\"\nkind = \"projector\"\ncomponent = {:?}\nsubscriptions = [\"item\"]\n\
             retry = {{ base_ms = 1, cap_ms = 2, max_attempts = 2 }}\ndead_letter = \"block\"\n",
            factline_tests::ORDER,
            factline_tests::ORDER_SUMMARY,
            component,
        ),
    )
    .unwrap();
    config
}

/// Polls `GET path` (with the token) until `done` holds for its body.
fn wait_for(port: u16, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (s, body) = request(port, "GET", path, Some(TOKEN), None);
        assert_eq!(s, 200, "{path}: {body}");
        if done(&body) {
            return body;
        }
        if Instant::now() > deadline {
            let (_, dlq) = request(port, "GET", "/v1/admin/dlq", Some(TOKEN), None);
            panic!("{path} never got there: {body:#}\ndead letters: {dlq:#}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn group<'a>(groups: &'a Value, name: &str) -> &'a Value {
    groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == name)
        .unwrap_or_else(|| panic!("no group {name} in {groups:#}"))
}

/// The page and its files are public and hold no data; the admin data they read is not.
/// `/v1/admin/groups` says a blocked group is blocked (and where), `/v1/admin/topics` gives
/// every partition's high-water mark.
#[test]
fn the_status_page_is_served_and_reads_the_groups_state_and_the_topics() {
    let dir = tempfile::tempdir().unwrap();
    let config = poisoned_host(dir.path());
    let mut host = RunningHost::spawn(&factline_binary(), &config, &[]);
    host.wait_ready();
    let port = host.port();

    for (path, ty, needle) in [
        ("/", "text/html", "<script src=\"/ui/app.js\""),
        ("/ui/app.js", "text/javascript", "sessionStorage"),
        ("/ui/style.css", "text/css", "#throughput-chart"),
    ] {
        let (s, text) = request_raw(port, path);
        assert_eq!(s, 200, "{path}: {text}");
        let head = text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        assert!(
            head.contains(&format!("content-type: {ty}")),
            "{path}: {head}"
        );
        assert!(
            head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
            "{path}: {head}"
        );
        assert!(text.contains(needle), "{path} lacks {needle:?}");
    }
    // The page holds no data, whoever asks; the data needs the token.
    let (_, page) = request_text(port, "GET", "/", None, None);
    assert!(!page.contains("item.a") && !page.contains(TOKEN), "{page}");
    for path in ["/v1/admin/topics", "/v1/admin/groups"] {
        let (s, body) = request(port, "GET", path, None, None);
        assert_eq!((s, body["error"].as_str()), (401, Some("unauthorized")));
    }

    let groups = wait_for(port, "/v1/admin/groups", |g| {
        group(g, "counts")["state"] == "blocked"
    });
    let counts = group(&groups, "counts");
    assert_eq!(counts["kind"], "projector");
    let blocked = &counts["blocked"][0];
    let (s, dlq) = request(port, "GET", "/v1/admin/dlq", Some(TOKEN), None);
    assert_eq!(s, 200);
    let letter = &dlq["dead_letters"][0];
    assert_eq!(
        (&blocked["topic"], &blocked["partition"], &blocked["offset"]),
        (&letter["topic"], &letter["partition"], &letter["offset"]),
        "{groups:#}"
    );
    assert!(counts["lag"].as_u64().unwrap() > 0, "{counts:#}");
    assert_eq!(group(&groups, "order-summary")["state"], "running");

    let (s, topics) = request(port, "GET", "/v1/admin/topics", Some(TOKEN), None);
    assert_eq!(s, 200, "{topics}");
    let item = topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "item")
        .unwrap_or_else(|| panic!("{topics:#}"));
    let marks: Vec<u64> = item["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["high_water_mark"].as_u64().unwrap())
        .collect();
    assert_eq!((marks.len(), marks.iter().sum::<u64>()), (2, 10), "{item}");
    assert_eq!(item["events"], 10);
    let hwm = counts["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["partition"] == blocked["partition"])
        .unwrap()["high_water_mark"]
        .as_u64();
    assert_eq!(
        hwm,
        Some(marks[blocked["partition"].as_u64().unwrap() as usize])
    );
    assert!(host.terminate().success(), "{}", host.stderr());
}

/// `GET path` without a token: the status line, headers and body as text.
fn request_raw(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
    (status, raw)
}

/// Where the browser's screenshots go: `<target>/test-artifacts/status-page/`.
fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary lives in <target>/<profile>/deps");
    target.join("test-artifacts").join("status-page")
}

/// The page in Debian's Chromium (see the module docs). Needs `/usr/bin/chromium` (or
/// `CHROMIUM`) and `playwright-core` in `node_modules`: `scripts/test` installs both
/// (`scripts/chromium`, `scripts/guests`) before it runs the suite; without them this fails
/// saying which to run.
#[test]
fn the_status_page_in_a_browser_shows_a_dead_letter_and_retry_clears_it() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "no Chromium at {chromium}: run scripts/chromium (as root)"
    );
    assert!(
        repo.join("node_modules/playwright-core/package.json")
            .is_file(),
        "no playwright-core in node_modules: run scripts/guests (npm ci)"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = poisoned_host(dir.path());
    let mut host = RunningHost::spawn(&factline_binary(), &config, &[]);
    host.wait_ready();
    let port = host.port();
    wait_for(port, "/v1/admin/groups", |g| {
        group(g, "counts")["state"] == "blocked"
    });

    let artifacts = artifacts_dir();
    let started = Instant::now();
    let out = Command::new("node")
        .arg(repo.join("tests/browser/status_page.mjs"))
        .env("FACTLINE_URL", host.url())
        .env("FACTLINE_TOKEN", TOKEN)
        .env("FIXED_COMPONENT", factline_tests::POISON_FIXED_PLUGIN)
        .env("ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("{stdout}browser run: {:.1?}", started.elapsed());
    assert!(
        out.status.success(),
        "the browser test failed (screenshots in {}):\n{stdout}\n{stderr}\nhost:\n{}",
        artifacts.display(),
        host.stderr()
    );
    assert!(artifacts.join("status-page.png").is_file());

    // What the page showed, from the API: nothing parked, counts caught up on the fixed build.
    let (_, dlq) = request(port, "GET", "/v1/admin/dlq", Some(TOKEN), None);
    assert_eq!(
        dlq["dead_letters"].as_array().map(Vec::len),
        Some(0),
        "{dlq}"
    );
    let groups = wait_for(port, "/v1/admin/groups", |g| group(g, "counts")["lag"] == 0);
    assert_eq!(group(&groups, "counts")["state"], "running");
    assert!(host.terminate().success(), "{}", host.stderr());
    // The poisoned event was counted once, by the fixed build, after the retry.
    let log = crate::support::log(&dir.path().join("data"), &[("order", 4), ("item", 2)]);
    let count = factline_host::query_read_model(&log, "counts", "count/item.a")
        .unwrap()
        .unwrap();
    assert_eq!(rmp_serde::from_slice::<u64>(&count).unwrap(), 10);
}
