//! Hot reload (DESIGN §4 invariant 7): versions of a running projector are swapped between
//! batches while events flow, through the API path (`Host::deploy`), rollbacks and the file
//! watcher; bad deploys are refused while the old version keeps processing. The `versioned`
//! plugin counts per version and marks every event, so the read model proves that no event was
//! lost or handled twice, and that each was handled by exactly one version.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use factline_host::Config;
use factline_host::EventLog;
use factline_host::Host;
use factline_host::{DeployError, DeployOrigin};
use factline_host::{ExpectedVersion, NewEvent};
use factline_host::{query_read_model, query_read_model_prefix};
use versioned_plugin::patch_tag;

const EVENTS: u64 = 100_000;

fn version(tag: u8) -> Vec<u8> {
    let wasm = std::fs::read(factline_tests::VERSIONED_PLUGIN).unwrap();
    patch_tag(&wasm, [b'0' + tag / 10, b'0' + tag % 10])
}

/// A host on `dir` running the versioned projector from `dir/plugins/versioned.wasm` (v00).
fn start(dir: &Path, watch: bool) -> (Arc<Host>, PathBuf) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let component = plugins.join("versioned.wasm");
    std::fs::write(&component, version(0)).unwrap();
    let text = format!(
        r#"data_dir = "data"
watch_plugins = {watch}
[[topics]]
name = "tick"
partitions = 4
[[plugins]]
name = "versioned"
kind = "projector"
component = "plugins/versioned.wasm"
subscriptions = ["tick"]
batch_size = 200
concurrency = 2
"#
    );
    let config = Config::parse(&text, Path::new("test.toml"), dir).unwrap();
    (Arc::new(Host::start(config).unwrap()), component)
}

/// Appends `events` ticks from 4 threads, 10 per append, over 1,000 streams.
pub(crate) fn spawn_appenders(log: &EventLog, events: u64) -> std::thread::JoinHandle<()> {
    let log = log.clone();
    std::thread::spawn(move || {
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..events / 40 {
                        let stream = format!("tick-{}", (t * 7919 + i) % 1000);
                        let batch = (0..10)
                            .map(|_| NewEvent::new("tick.v", vec![0xc0]))
                            .collect();
                        log.append(&stream, ExpectedVersion::Any, batch).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    })
}

fn count(log: &EventLog, tag: &str) -> u64 {
    query_read_model(log, "versioned", &format!("count/{tag}"))
        .unwrap()
        .map(|v| rmp_serde::from_slice(&v).unwrap())
        .unwrap_or(0)
}

/// Waits until version `tag` has handled at least one event (so every version gets a share).
async fn until_counted(log: &EventLog, tag: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(log, tag) == 0 {
        assert!(
            Instant::now() < deadline,
            "version {tag} never handled an event; dead letters: {:?}",
            log.dead_letters(None).unwrap().first()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every event was handled exactly once, by exactly one version: the per-version counts add up
/// to the events appended, no event was marked twice, one mark per event.
fn assert_exact(log: &EventLog, tags: &[&str]) {
    let counts: Vec<(&str, u64)> = tags.iter().map(|t| (*t, count(log, t))).collect();
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    assert_eq!(total, EVENTS, "per-version counts {counts:?}");
    assert_eq!(
        query_read_model(log, "versioned", "dup").unwrap(),
        None,
        "no event twice"
    );
    let all_counts = query_read_model_prefix(log, "versioned", "count/", 1000).unwrap();
    let nonzero = counts.iter().filter(|(_, n)| *n > 0).count();
    assert_eq!(
        all_counts.len(),
        nonzero,
        "only the deployed versions counted"
    );
    let marks = query_read_model_prefix(log, "versioned", "seen/", usize::MAX).unwrap();
    assert_eq!(marks.len() as u64, EVENTS);
}

#[test]
fn versions_swap_under_load_without_losing_or_repeating_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (host, component) = start(dir.path(), false);
        let log = host.log().clone();
        let appenders = spawn_appenders(&log, EVENTS);
        until_counted(&log, "v00").await;

        // Five deploys through the API path, each once the previous version has worked.
        let mut swaps = Vec::new();
        for tag in 1..=5u8 {
            let r = host
                .deploy("versioned", version(tag), None, DeployOrigin::Api)
                .await
                .unwrap();
            assert!(r.swapped && r.persist_error.is_none(), "{r:?}");
            swaps.push(r.swap);
            until_counted(&log, &format!("v{tag:02}")).await;
        }
        // The last deploy was written over the component file (a restart runs it).
        assert_eq!(std::fs::read(&component).unwrap(), version(5));

        // Redeploying the running bytes changes nothing.
        let same = host
            .deploy("versioned", version(5), None, DeployOrigin::Api)
            .await
            .unwrap();
        assert!(!same.swapped);

        // A rollback returns to v04 without compiling.
        let back = host.rollback("versioned").await.unwrap();
        assert!(back.swapped, "{back:?}");
        let history = host.plugin_versions("versioned").unwrap();
        assert_eq!(history.current.version, back.current);
        assert_eq!(history.previous.len(), 4, "v00..v03 remain to roll back to");
        assert_eq!(std::fs::read(&component).unwrap(), version(4));

        appenders.join().unwrap();
        host.wait_until_idle().await.unwrap();
        assert_exact(&log, &["v00", "v01", "v02", "v03", "v04", "v05"]);
        let reports = Arc::into_inner(host).unwrap().shutdown().await;
        assert_eq!(reports[0].events_processed, EVENTS);
        eprintln!("swap durations: {swaps:?}");
    });
}

#[test]
fn bad_deploys_are_refused_while_the_running_version_keeps_processing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (host, component) = start(dir.path(), true);
        let watcher = factline_host::PluginWatcher::start(host.clone()).unwrap();
        let log = host.log().clone();
        let appenders = spawn_appenders(&log, EVENTS);
        until_counted(&log, "v00").await;
        let running = host.plugins()[0].version.clone();

        let corrupt = host
            .deploy(
                "versioned",
                b"\0asm garbage".to_vec(),
                None,
                DeployOrigin::Api,
            )
            .await
            .unwrap_err();
        assert!(matches!(corrupt, DeployError::Load { .. }), "{corrupt}");
        let order = std::fs::read(factline_tests::ORDER).unwrap();
        let wrong_world = host
            .deploy("versioned", order, None, DeployOrigin::Api)
            .await
            .unwrap_err();
        assert!(
            wrong_world.to_string().contains("projector-handler"),
            "{wrong_world}"
        );
        let unknown = host
            .deploy("nope", version(1), None, DeployOrigin::Api)
            .await
            .unwrap_err();
        assert!(
            matches!(unknown, DeployError::UnknownPlugin(_)),
            "{unknown}"
        );
        assert!(matches!(
            host.rollback("versioned").await.unwrap_err(),
            DeployError::NoPrevious(_)
        ));
        assert_eq!(host.plugins()[0].version, running, "still the old version");
        assert_eq!(
            std::fs::read(&component).unwrap(),
            version(0),
            "file untouched"
        );

        // The watcher: a corrupt file is refused (old version stays), a good one deployed.
        std::fs::write(&component, b"not a component").unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(host.plugins()[0].version, running);
        let tmp = dir.path().join("plugins/.versioned.wasm.tmp");
        std::fs::write(&tmp, version(7)).unwrap();
        std::fs::rename(&tmp, &component).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while host.plugins()[0].version == running {
            assert!(Instant::now() < deadline, "the watcher never deployed v07");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        appenders.join().unwrap();
        host.wait_until_idle().await.unwrap();
        assert_exact(&log, &["v00", "v07"]);
        watcher.stop().await;
        Arc::into_inner(host).unwrap().shutdown().await;
    });
}

/// The deploy API: a component far over the 1 MiB body limit of other requests is accepted,
/// labelled, listed in the history, and rolled back; bad bytes get 422 and a rollback with no
/// previous version 409.
#[test]
fn deploy_and_rollback_over_http() {
    use crate::http_api::request;
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (host, component) = start(dir.path(), false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let router = factline_host::http_router(host.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let call = move |method: &'static str, path: String, body: Option<Vec<u8>>| {
            tokio::task::spawn_blocking(move || request(port, method, &path, None, body.as_deref()))
        };

        // Padded with a 3 MiB custom section: a valid component over the general body limit.
        let mut big = version(3);
        let pad = vec![0u8; 3 << 20];
        big.push(0);
        let mut size = pad.len() + 2;
        let name_len_and_name = [1u8, b'p'];
        loop {
            let b = (size & 0x7f) as u8;
            size >>= 7;
            big.push(if size == 0 { b } else { b | 0x80 });
            if size == 0 {
                break;
            }
        }
        big.extend_from_slice(&name_len_and_name);
        big.extend_from_slice(&pad);
        let path = "/v1/admin/plugins/versioned/deploy?version=3.0".to_owned();
        let (status, report) = call("POST", path, Some(big.clone())).await.unwrap();
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["swapped"], true, "{report}");
        assert_eq!(report["current"]["label"], "3.0", "{report}");
        assert_eq!(std::fs::read(&component).unwrap(), big, "persisted");

        let (status, history) = call("GET", "/v1/admin/plugins/versioned".into(), None)
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(history["current"]["version"]["label"], "3.0", "{history}");
        assert_eq!(
            history["previous"].as_array().unwrap().len(),
            1,
            "{history}"
        );

        let garbage = vec![0x42u8; 2 << 20];
        let path = "/v1/admin/plugins/versioned/deploy".to_owned();
        let (status, err) = call("POST", path, Some(garbage)).await.unwrap();
        assert_eq!(status, 422, "{err}");
        assert_eq!(err["error"], "invalid-component", "{err}");

        let rollback = "/v1/admin/plugins/versioned/rollback".to_owned();
        let (status, back) = call("POST", rollback.clone(), None).await.unwrap();
        assert_eq!(status, 200, "{back}");
        assert_eq!(back["current"]["label"], serde_json::Value::Null, "{back}");
        assert_eq!(std::fs::read(&component).unwrap(), version(0));
        let (status, err) = call("POST", rollback, None).await.unwrap();
        assert_eq!(status, 409, "{err}");
        let (status, _) = call("POST", "/v1/admin/plugins/nope/rollback".into(), None)
            .await
            .unwrap();
        assert_eq!(status, 404);
    });
}

/// `factline plugins deploy|rollback` and `factline saga list` against the real binary: the
/// CLI mirrors the API, and the file watcher of `factline run` sees the CLI's own rewrite of the
/// component file as "unchanged" (one swap per deploy, none from the watcher).
#[test]
fn the_cli_deploys_and_rolls_back_a_running_plugin() {
    use crate::service::cli_json;
    use crate::support::{RunningHost, factline_binary};
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("versioned.wasm"), version(0)).unwrap();
    let config = dir.path().join("factline.toml");
    std::fs::write(
        &config,
        "data_dir = \"data\"\n[http]\naddress = \"127.0.0.1:0\"\n[[topics]]\nname = \"tick\"\npartitions = 2\n\
         [[plugins]]\nname = \"versioned\"\nkind = \"projector\"\ncomponent = \"plugins/versioned.wasm\"\nsubscriptions = [\"tick\"]\n",
    )
    .unwrap();
    let bin = factline_binary();
    let mut host = RunningHost::spawn(&bin, &config, &[]);
    host.wait_ready();
    let url = host.url().to_owned();
    let new = dir.path().join("v2.wasm");
    std::fs::write(&new, version(2)).unwrap();

    let report = cli_json(
        &bin,
        &[
            "plugins",
            "deploy",
            "versioned",
            new.to_str().unwrap(),
            "--version",
            "2.0",
            "--host",
            &url,
            "--json",
        ],
        &[],
    );
    assert_eq!(report["swapped"], true, "{report}");
    assert_eq!(report["current"]["label"], "2.0", "{report}");
    // Give the watcher time to see the rewrite; it must not deploy anything itself.
    std::thread::sleep(Duration::from_millis(800));
    let listed = cli_json(&bin, &["plugins", "--host", &url, "--json"], &[]);
    assert_eq!(listed["plugins"][0]["label"], "2.0", "{listed}");

    let back = cli_json(
        &bin,
        &["plugins", "rollback", "versioned", "--host", &url, "--json"],
        &[],
    );
    assert_eq!(back["swapped"], true, "{back}");
    assert_eq!(
        std::fs::read(plugins.join("versioned.wasm")).unwrap(),
        version(0)
    );
    let refused = crate::service::cli(
        &bin,
        &["plugins", "rollback", "versioned", "--host", &url],
        &[],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no previous version"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let sagas = cli_json(&bin, &["saga", "list", "--host", &url, "--json"], &[]);
    assert_eq!(sagas, serde_json::json!([]));
    assert!(host.terminate().success(), "{}", host.stderr());
}

/// Issue 20 item 8: 8 deploys at once with the file watcher on, 20 rounds, while events flow.
/// Deploys are serialized with the watcher: the running version and the component file end as
/// the last acknowledged deploy, every version in the history keeps its label, and no
/// superseded version handles an event after a later deploy was acknowledged.
#[test]
fn concurrent_deploys_with_the_watcher_on_end_on_the_last_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (host, component) = start(dir.path(), true);
        let watcher = factline_host::PluginWatcher::start(host.clone()).unwrap();
        let log = host.log().clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let appender = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let batch = (0..10).map(|_| NewEvent::new("tick.v", vec![0xc0])).collect();
                    log.append(&format!("tick-{}", i % 100), ExpectedVersion::Any, batch)
                        .unwrap();
                    i += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        until_counted(&log, "v00").await;
        let initial = host.plugins()[0].version.clone();
        // Distinct content per deploy: tags a0..t7 (two ASCII bytes, never v00).
        let tag = |round: usize, i: usize| [b'a' + round as u8, b'0' + i as u8];
        let tag_name = |t: [u8; 2]| format!("v{}", String::from_utf8_lossy(&t));
        let wasm = std::fs::read(factline_tests::VERSIONED_PLUGIN).unwrap();
        let sequence = Arc::new(std::sync::atomic::AtomicU64::new(0));
        for round in 0..20 {
            let deploys: Vec<_> = (0..8)
                .map(|i| {
                    let (host, sequence) = (host.clone(), sequence.clone());
                    let bytes = versioned_plugin::patch_tag(&wasm, tag(round, i));
                    tokio::spawn(async move {
                        let label = format!("r{round}-{i}");
                        let r = host
                            .deploy("versioned", bytes.clone(), Some(label.clone()), DeployOrigin::Api)
                            .await
                            .unwrap();
                        // The order in which deploys were acknowledged.
                        let seq = sequence.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        (seq, i, label, bytes, r)
                    })
                })
                .collect();
            let mut done = Vec::new();
            for d in deploys {
                done.push(d.await.unwrap());
            }
            done.sort_by_key(|d| d.0);
            let (_, last_i, last_label, last_bytes, last) = done.last().unwrap().clone();
            assert_eq!(last.current.label.as_deref(), Some(last_label.as_str()));
            let superseded: Vec<String> = done[..done.len() - 1]
                .iter()
                .map(|d| tag_name(tag(round, d.1)))
                .collect();
            let before: Vec<u64> = superseded.iter().map(|t| count(&log, t)).collect();
            // Give the watcher every chance to act on the rewrites it saw (quiet time 300 ms).
            let settle = Instant::now() + Duration::from_millis(900);
            while Instant::now() < settle {
                let running = host.plugin_versions("versioned").unwrap().current;
                assert_eq!(
                    running.version, last.current,
                    "round {round}: the running version is not the last acknowledged deploy"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let after: Vec<u64> = superseded.iter().map(|t| count(&log, t)).collect();
            assert_eq!(
                before, after,
                "round {round}: superseded versions {superseded:?} handled events after v{} was acknowledged",
                tag_name(tag(round, last_i))
            );
            assert_eq!(
                std::fs::read(&component).unwrap(),
                last_bytes,
                "round {round}: the file holds the last acknowledged deploy"
            );
            // Only the version the host started with (from the file, no label) lacks one.
            let history = host.plugin_versions("versioned").unwrap();
            for v in history.previous.iter().chain([&history.current]) {
                assert!(
                    v.version.label.is_some() || v.version == initial,
                    "round {round}: a version without its label: {history:?}"
                );
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        appender.join().unwrap();
        host.wait_until_idle().await.unwrap();
        assert_eq!(query_read_model(&log, "versioned", "dup").unwrap(), None, "no event twice");
        watcher.stop().await;
        Arc::into_inner(host).unwrap().shutdown().await;
    });
}
