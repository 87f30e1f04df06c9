//! A full disk heals without a restart (issue 20 item 10): the data directory is a small tmpfs
//! the test mounts (it needs root, as the test machines run). Commands fill it, then answer 503
//! `storage-unavailable` with `Retry-After` while `/readyz` and `/healthz` say so; once space is
//! freed the log reopens its database by itself and commands are accepted again within 5 s, the
//! projector catches up, and after a SIGKILL and restart every acknowledged command is there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::budget_projector::{get, metric_sum, metrics};
use crate::http_errors::{exchange, free_port};
use crate::support::{RunningHost, factline_binary};

/// The tmpfs, unmounted on drop (after the host using it is gone).
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(dir: &Path, size: &str) -> SmallFs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a {size} tmpfs on {} needs root (the full-disk test mounts its own small filesystem)",
            dir.display()
        );
        SmallFs(dir.to_path_buf())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn create(port: u16, id: &str, filler: &str) -> (u16, Value, Option<String>) {
    let body = format!(r#"{{"type":"create","payload":{{"customer_id":"{filler}"}}}}"#);
    let a = exchange(
        port,
        &format!(
            "POST /v1/aggregates/order/{id} HTTP/1.1\r\nHost: x\r\nContent-Length: {}",
            body.len()
        ),
        body.as_bytes(),
    );
    let retry_after = a
        .headers
        .iter()
        .find(|(k, _)| k == "retry-after")
        .map(|(_, v)| v.clone());
    (
        a.status,
        serde_json::from_str(&a.body).unwrap_or(Value::Null),
        retry_after,
    )
}

fn start(config: &Path) -> (RunningHost, u16) {
    let mut host = RunningHost::spawn(&factline_binary(), config, &[]);
    host.wait_ready();
    let port = host.port();
    (host, port)
}

#[test]
fn a_full_disk_heals_without_a_restart_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SmallFs::mount(&dir.path().join("small"), "48m");
    let port = free_port();
    let config = dir.path().join("factline.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nwatch_plugins = false\n[http]\naddress = \"127.0.0.1:{port}\"\n\
             [[topics]]\nname = \"order\"\npartitions = 2\n\n\
             [[plugins]]\nname = \"order\"\nkind = \"aggregate\"\ncomponent = {:?}\n\n\
             [[plugins]]\nname = \"order-summary\"\nkind = \"projector\"\ncomponent = {:?}\nsubscriptions = [\"order\"]\n",
            fs.0.join("data"),
            factline_tests::ORDER,
            factline_tests::ORDER_SUMMARY
        ),
    )
    .unwrap();
    let (mut host, port) = start(&config);

    // Ballast takes all but ~3 MiB; commands fill the rest.
    let ballast = fs.0.join("ballast");
    let free = fs2_free(&fs.0);
    let keep = 3u64 << 20;
    std::fs::write(&ballast, vec![0u8; free.saturating_sub(keep) as usize]).unwrap();
    let filler = "c".repeat(4000);
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..20_000 {
        let id = format!("ORD-{i}");
        let (s, r, retry_after) = create(port, &id, &filler);
        match s {
            200 => acknowledged.push(id),
            _ => {
                refused = Some((s, r, retry_after));
                break;
            }
        }
    }
    let (s, r, retry_after) = refused.expect("the disk filled up");
    assert!(!acknowledged.is_empty());
    assert_eq!(
        (s, r["code"].as_str(), r["error"].as_str()),
        (
            503,
            Some("storage-unavailable"),
            Some("storage-unavailable")
        ),
        "{r}"
    );
    assert!(retry_after.is_some(), "a Retry-After header");
    // Still full: still 503, and the probes say why.
    let (s, _, _) = create(port, "ORD-full", "x");
    assert_eq!(s, 503);
    let (s, ready, _) = get(port, "/readyz");
    assert_eq!(
        (s, ready["code"].as_str()),
        (503, Some("storage-unavailable")),
        "{ready}"
    );
    let (s, health, _) = get(port, "/healthz");
    assert_eq!(
        (
            s,
            health["status"].as_str(),
            health["storage"]["available"].as_bool()
        ),
        (200, Some("storage-unavailable"), Some(false)),
        "{health}"
    );
    let m = metrics(port);
    assert!(
        metric_sum(&m, "storage_write_failures_total", &[]) >= 1.0,
        "{m}"
    );

    // Space comes back: accepted again within 5 s, without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let freed = Instant::now();
    let healed = loop {
        let id = format!("ORD-after-{}", acknowledged.len());
        let (s, r, _) = create(port, &id, "x");
        if s == 200 {
            acknowledged.push(id);
            break freed.elapsed();
        }
        assert_eq!(s, 503, "{r}");
        assert!(
            freed.elapsed() < Duration::from_secs(5),
            "still refused 5 s after space came back: {r}\n{}",
            host.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    for i in 0..20 {
        let id = format!("ORD-healed-{i}");
        let (s, r, _) = create(port, &id, "x");
        assert_eq!(s, 200, "{r}");
        acknowledged.push(id);
    }
    let (s, ready, _) = get(port, "/readyz");
    assert_eq!(s, 200, "{ready}");
    let m = metrics(port);
    assert!(metric_sum(&m, "storage_reopens_total", &[]) >= 1.0, "{m}");
    // The projector resumed on its own.
    let last = acknowledged.last().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(port, &format!("/v1/read-models/order-summary/{last}")).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the projector did not resume\n{}",
            host.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "full disk: {} commands acknowledged before and after; accepted again {healed:?} after space came back",
        acknowledged.len()
    );

    // Nothing acknowledged is lost across a SIGKILL.
    host.kill();
    let (mut host, port) = start(&config);
    for id in &acknowledged {
        let (s, stream, _) = get(port, &format!("/v1/streams/order-{id}"));
        assert_eq!(
            (s, stream["version"].as_u64()),
            (200, Some(1)),
            "{id}: {stream}"
        );
    }
    assert!(host.terminate().success());
}

/// Free bytes of the filesystem holding `dir`.
fn fs2_free(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the free bytes")
}
