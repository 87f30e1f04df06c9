//! Blue/green projector rebuilds (issue #7): the read model is replayed from offset 0 beside
//! the live one while events keep arriving and queries keep being answered from the old one;
//! the switch is atomic and the old read model is dropped. Built on the `versioned` projector,
//! which marks every event and counts per version, so the read model itself proves that no
//! event was lost or applied twice, and which version built it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use factline_host::Config;
use factline_host::{DeployError, DeployOrigin};
use factline_host::{EventLog, LogOptions, rebuild_group};
use factline_host::{Host, RebuildRequestError};
use factline_host::{RebuildPhase, RebuildReason, RebuildStatus};
use factline_host::{query_read_model, query_read_model_prefix};
use versioned_plugin::{patch_read_model_version, patch_tag};

use crate::versioned_plugin::spawn_appenders;

const EVENTS: u64 = 40_000;

/// The versioned projector tagged `tag`, declaring read-model version `read_model`.
fn build(tag: u8, read_model: u8) -> Vec<u8> {
    let wasm = std::fs::read(factline_tests::VERSIONED_PLUGIN).unwrap();
    let tagged = patch_tag(&wasm, [b'0' + tag / 10, b'0' + tag % 10]);
    patch_read_model_version(&tagged, read_model)
}

/// A host on `dir` running `dir/plugins/versioned.wasm` (written first when `bytes` is given).
fn start(dir: &Path, bytes: Option<Vec<u8>>) -> Arc<Host> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    if let Some(b) = bytes {
        std::fs::write(plugins.join("versioned.wasm"), b).unwrap();
    }
    let text = r#"data_dir = "data"
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
"#;
    let config = Config::parse(text, Path::new("test.toml"), dir).unwrap();
    Arc::new(Host::start(config).unwrap())
}

fn count(log: &EventLog, tag: &str) -> Option<u64> {
    query_read_model(log, "versioned", &format!("count/{tag}"))
        .unwrap()
        .map(|v| rmp_serde::from_slice(&v).unwrap())
}

async fn until_counted(log: &EventLog, tag: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(log, tag).is_none() {
        assert!(Instant::now() < deadline, "version {tag} never counted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls the versioned projector until its rebuild has ended; returns the last status.
async fn rebuild_ended(host: &Host) -> RebuildStatus {
    rebuild_of(host, "versioned").await
}

async fn rebuild_of(host: &Host, projector: &str) -> RebuildStatus {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status = host.projector(projector).unwrap().unwrap();
        let r = status.rebuild.expect("a rebuild was started");
        if !r.is_running() {
            return r;
        }
        assert!(Instant::now() < deadline, "the rebuild never ended: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The read model was built by version `tag` alone, from every event exactly once.
fn assert_built_by(log: &EventLog, tag: &str, events: u64) {
    assert_eq!(count(log, tag), Some(events), "count/{tag}");
    let counts = query_read_model_prefix(log, "versioned", "count/", 100).unwrap();
    assert_eq!(counts.len(), 1, "only {tag} counted: {counts:?}");
    assert_eq!(
        query_read_model(log, "versioned", "dup").unwrap(),
        None,
        "no event twice"
    );
    let marks = query_read_model_prefix(log, "versioned", "seen/", usize::MAX).unwrap();
    assert_eq!(marks.len() as u64, events);
}

/// The live group is at the end of every partition, the rebuild group has no offsets left, and
/// the old generation's rows are gone.
fn assert_switched(log: &EventLog, old_scope: &str) {
    for p in 0..4 {
        assert_eq!(
            log.group_offset("versioned", "tick", p).unwrap(),
            Some(log.high_water_mark("tick", p).unwrap())
        );
        assert_eq!(
            log.group_offset(&rebuild_group("versioned"), "tick", p)
                .unwrap(),
            None
        );
    }
    let old = log
        .read_models()
        .unwrap()
        .scan_prefix(old_scope, "", None, 10)
        .unwrap();
    assert!(old.is_empty(), "the old read model was dropped: {old:?}");
}

/// Reads `count/<tag>` in a loop until stopped: the answer must never go backwards or vanish
/// (the old read model answers until the switch, the new one, which has caught up, after it).
fn spawn_reader(
    log: &EventLog,
    tag: &'static str,
    stop: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<()>, Arc<AtomicU64>) {
    let log = log.clone();
    let reads = Arc::new(AtomicU64::new(0));
    let r = reads.clone();
    let handle = std::thread::spawn(move || {
        let mut last = 0;
        while !stop.load(Ordering::SeqCst) {
            let now = count(&log, tag).unwrap_or(0);
            assert!(now >= last, "count/{tag} went back from {last} to {now}");
            last = now;
            r.fetch_add(1, Ordering::Relaxed);
        }
    });
    (handle, reads)
}

#[test]
fn a_rebuild_replays_beside_the_live_read_model_and_switches_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let host = start(dir.path(), Some(build(0, 1)));
        let log = host.log().clone();
        let appenders = spawn_appenders(&log, EVENTS);
        // Some history to replay, with events still arriving.
        let deadline = Instant::now() + Duration::from_secs(60);
        while count(&log, "v00").unwrap_or(0) < EVENTS / 4 {
            assert!(Instant::now() < deadline, "the live group is stuck");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (reader, reads) = spawn_reader(&log, "v00", stop.clone());

        let started = host.rebuild_projector("versioned").await.unwrap();
        assert_eq!(started.reason, RebuildReason::Requested);
        assert!(matches!(
            host.rebuild_projector("nope").await.unwrap_err(),
            RebuildRequestError::UnknownProjector(_)
        ));
        let reads_before = reads.load(Ordering::Relaxed);
        let done = rebuild_ended(&host).await;
        let reads_during = reads.load(Ordering::Relaxed) - reads_before;
        assert_eq!(done.phase, RebuildPhase::Done, "{done:?}");
        assert_eq!(done.generation, 1);
        assert!(reads_during > 0, "queries were answered during the rebuild");

        appenders.join().unwrap();
        host.wait_until_idle().await.unwrap();
        stop.store(true, Ordering::SeqCst);
        reader.join().unwrap();
        let status = host.projector("versioned").unwrap().unwrap();
        assert_eq!(status.scope, "versioned@1");
        assert_eq!(status.live.unwrap().generation, 1);
        assert!(status.processing);
        assert_built_by(&log, "v00", EVENTS);
        assert_switched(&log, "versioned");
        eprintln!(
            "rebuild of {} events: {} queries answered meanwhile, switch pause {:?} ms",
            done.processed, reads_during, done.switch_pause_ms
        );

        // A second rebuild moves on to generation 2 and drops generation 1.
        host.rebuild_projector("versioned").await.unwrap();
        let again = rebuild_ended(&host).await;
        assert_eq!(
            (again.phase, again.generation),
            (RebuildPhase::Done, 2),
            "{again:?}"
        );
        host.wait_until_idle().await.unwrap();
        assert_built_by(&log, "v00", EVENTS);
        assert_switched(&log, "versioned@1");
        let reports = Arc::into_inner(host).unwrap().shutdown().await;
        assert_eq!(reports.len(), 1);
    });
}

#[test]
fn deploying_a_new_read_model_version_rebuilds_it_while_the_old_version_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("plugins/versioned.wasm");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let host = start(dir.path(), Some(build(0, 1)));
        let log = host.log().clone();
        let appenders = spawn_appenders(&log, EVENTS);
        until_counted(&log, "v00").await;
        let old = host.plugins()[0].version.clone();

        // Same read-model version: swapped in place, as any deploy.
        let same_shape = host
            .deploy("versioned", build(1, 1), None, DeployOrigin::Api)
            .await
            .unwrap();
        assert!(same_shape.swapped && same_shape.rebuild.is_none());
        until_counted(&log, "v01").await;
        // Enough history that the checks below run while the rebuild replays.
        let deadline = Instant::now() + Duration::from_secs(60);
        while count(&log, "v00").unwrap_or(0) + count(&log, "v01").unwrap_or(0) < EVENTS / 4 {
            assert!(Instant::now() < deadline, "the live group is stuck");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        // Read-model version 2: built beside the live one, which keeps running v01.
        let report = host
            .deploy("versioned", build(2, 2), None, DeployOrigin::Api)
            .await
            .unwrap();
        assert!(!report.swapped, "{report:?}");
        let rebuild = report.rebuild.expect("a rebuild was started");
        assert_eq!(rebuild.reason, RebuildReason::Deploy);
        assert_ne!(host.plugins()[0].version, old);
        assert_eq!(
            host.plugins()[0].version,
            same_shape.current,
            "v01 stays current until the switch"
        );
        assert_eq!(std::fs::read(&component).unwrap(), build(1, 1));
        assert!(count(&log, "v01").is_some(), "the old read model answers");

        let done = rebuild_ended(&host).await;
        assert_eq!(done.phase, RebuildPhase::Done, "{done:?}");
        assert_eq!(done.read_model_version, 2);
        assert_eq!(host.plugins()[0].version, report.current, "v02 is current");
        assert_eq!(std::fs::read(&component).unwrap(), build(2, 2));
        let history = host.plugin_versions("versioned").unwrap();
        assert_eq!(history.previous.len(), 2, "v00 and v01 to roll back to");

        appenders.join().unwrap();
        host.wait_until_idle().await.unwrap();
        // v02 built its read model from offset 0: nothing of v00 or v01 is left.
        assert_built_by(&log, "v02", EVENTS);
        assert_switched(&log, "versioned");
        let live = host.projector("versioned").unwrap().unwrap().live.unwrap();
        assert_eq!((live.generation, live.read_model_version), (1, 2));
        drop(log);
        Arc::into_inner(host).unwrap().shutdown().await;

        // A restart runs v02 on its read model: no rebuild.
        let host = start(dir.path(), None);
        let status = host.projector("versioned").unwrap().unwrap();
        assert!(status.rebuild.is_none() && status.processing, "{status:?}");
        assert_eq!(status.scope, "versioned@1");
        assert_built_by(host.log(), "v02", EVENTS);
        Arc::into_inner(host).unwrap().shutdown().await;
    });
}

/// A component file changed while the host was down declares another read-model version: the
/// start rebuilds before the projector processes (queries answer from the old read model
/// meanwhile). Interrupted by a shutdown, the rebuild resumes at the next start from its
/// committed offsets.
#[test]
fn a_start_on_an_old_read_model_rebuilds_first_and_an_interrupted_rebuild_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let host = start(dir.path(), Some(build(0, 1)));
        let log = host.log().clone();
        spawn_appenders(&log, EVENTS).join().unwrap();
        host.wait_until_idle().await.unwrap();
        assert_built_by(&log, "v00", EVENTS);
        drop(log);
        Arc::into_inner(host).unwrap().shutdown().await;

        let host = start(dir.path(), Some(build(3, 4)));
        let status = host.projector("versioned").unwrap().unwrap();
        assert!(!status.processing, "the projector waits for its read model");
        assert_eq!(status.rebuild.unwrap().reason, RebuildReason::Startup);
        let lag = host.lag().unwrap();
        assert!(
            lag.iter()
                .any(|(group, _)| *group == rebuild_group("versioned")),
            "a running rebuild's lag is listed: {lag:?}"
        );
        // One rebuild at a time, and no deploy of the projector meanwhile.
        assert!(matches!(
            host.rebuild_projector("versioned").await.unwrap_err(),
            RebuildRequestError::AlreadyRunning(_)
        ));
        assert!(matches!(
            host.deploy("versioned", build(1, 1), None, DeployOrigin::Api)
                .await
                .unwrap_err(),
            DeployError::Rebuilding(_)
        ));
        assert!(matches!(
            host.rollback("versioned").await.unwrap_err(),
            DeployError::Rebuilding(_)
        ));
        assert_eq!(
            count(host.log(), "v00"),
            Some(EVENTS),
            "the old one answers"
        );
        // Interrupt it once it has made some progress.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = host
                .projector("versioned")
                .unwrap()
                .unwrap()
                .rebuild
                .unwrap();
            if r.processed > 0 {
                break;
            }
            assert!(r.is_running() && Instant::now() < deadline, "{r:?}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Arc::into_inner(host).unwrap().shutdown().await;

        // What the interrupted rebuild left: its record and its committed offsets.
        let log = EventLog::open(dir.path().join("data"), LogOptions::default()).unwrap();
        let pending = log
            .projection("versioned")
            .unwrap()
            .unwrap()
            .rebuild
            .expect("the interrupted rebuild is still recorded");
        let kept: u64 = (0..4)
            .map(|p| {
                log.group_offset(&rebuild_group("versioned"), "tick", p)
                    .unwrap()
                    .unwrap_or(0)
            })
            .sum();
        assert!(kept > 0 && kept < EVENTS, "kept {kept}");
        drop(log);

        let host = start(dir.path(), None);
        let log = host.log().clone();
        let done = rebuild_ended(&host).await;
        assert_eq!(done.phase, RebuildPhase::Done, "{done:?}");
        assert_eq!(
            done.generation, pending.generation,
            "resumed, not restarted"
        );
        host.wait_until_idle().await.unwrap();
        assert!(host.projector("versioned").unwrap().unwrap().processing);
        assert_built_by(&log, "v03", EVENTS);
        assert_switched(&log, "versioned");
        assert_eq!(
            log.projection("versioned")
                .unwrap()
                .unwrap()
                .active
                .read_model_version,
            4
        );
        eprintln!("resumed a rebuild interrupted after {kept} events");
        Arc::into_inner(host).unwrap().shutdown().await;
    });
}

/// The real binary: `factline projector rebuild` against a running `factline run` with the
/// order example, its progress and exit code, the admin API's status, and queries that answer
/// the same before and after the switch.
#[test]
fn projector_rebuild_through_the_cli_and_the_admin_api() {
    use crate::http_api::request;
    use crate::service::{TOKEN, cli, write_config};
    use crate::support::{RunningHost, factline_binary};
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let bin = factline_binary();
    let mut host = RunningHost::spawn(&bin, &config, &[]);
    host.wait_ready();
    let port = host.port();
    let orders = 40;
    for o in 0..orders {
        for body in [
            json!({"type": "create", "payload": {"customer_id": format!("C-{o}")}}),
            json!({"type": "add-item", "payload": {"product_id": "A", "quantity": o + 1, "unit_price": 100}}),
        ] {
            let body = serde_json::to_vec(&body).unwrap();
            let path = format!("/v1/aggregates/order/ORD-{o:03}");
            let (s, r) = request(port, "POST", &path, None, Some(&body));
            assert_eq!(s, 200, "{r}");
        }
    }
    let rows = || {
        let (s, r) = request(
            port,
            "GET",
            "/v1/read-models/order-summary?prefix=ORD-",
            None,
            None,
        );
        assert_eq!(s, 200, "{r}");
        r["rows"].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows().as_array().map(Vec::len) != Some(orders as usize)
        || rows()[orders as usize - 1]["value"]["total"] != json!(100 * orders)
    {
        assert!(Instant::now() < deadline, "rows: {}", rows());
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = rows();

    let status_path = "/v1/admin/projectors/order-summary";
    assert_eq!(request(port, "GET", status_path, None, None).0, 401);
    let (s, status) = request(port, "GET", status_path, Some(TOKEN), None);
    assert_eq!(s, 200, "{status}");
    assert_eq!(
        (
            status["scope"].as_str(),
            status["live"]["generation"].as_u64()
        ),
        (Some("order-summary"), Some(0)),
        "{status}"
    );
    let (s, r) = request(
        port,
        "POST",
        "/v1/admin/projectors/order/rebuild",
        Some(TOKEN),
        None,
    );
    assert_eq!(
        (s, r["error"].as_str()),
        (404, Some("unknown-projector")),
        "{r}"
    );

    let url = host.url().to_owned();
    let out = cli(
        &bin,
        &["projector", "rebuild", "order-summary", "--host", &url],
        &[("FACTLINE_TOKEN", TOKEN)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("order-summary: generation 1 live (80 events replayed"),
        "{stdout}"
    );
    // Not a terminal: progress as lines, the last one the end.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("order-summary: done 80/80 events"),
        "{stderr}"
    );
    assert_eq!(rows(), before, "the rebuilt read model answers the same");

    let (_, status) = request(port, "GET", status_path, Some(TOKEN), None);
    assert_eq!(status["scope"], "order-summary@1", "{status}");
    assert_eq!(status["rebuild"]["phase"], "done", "{status}");
    assert_eq!(status["rebuild"]["processed"], 80, "{status}");
    let show = cli(
        &bin,
        &[
            "projector",
            "show",
            "order-summary",
            "--host",
            &url,
            "--token",
            TOKEN,
        ],
        &[],
    );
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(
        shown.contains("generation 1 live (scope order-summary@1"),
        "{shown}"
    );

    // New events go to the new read model.
    let body = serde_json::to_vec(&json!({"type": "confirm", "payload": {}})).unwrap();
    let (s, r) = request(
        port,
        "POST",
        "/v1/aggregates/order/ORD-000",
        None,
        Some(&body),
    );
    assert_eq!(s, 200, "{r}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while rows()[0]["value"]["status"] != "confirmed" {
        assert!(Instant::now() < deadline, "{}", rows());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(host.terminate().success(), "{}", host.stderr());
}

/// The real binary killed (SIGKILL) in the middle of a start-up rebuild: the restart resumes it
/// and the read model ends exact, built by the new version alone.
#[test]
fn a_host_killed_mid_rebuild_resumes_it_on_restart() {
    use crate::http_api::request;
    use crate::support::{RunningHost, factline_binary};

    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let host = start(dir.path(), Some(build(0, 1)));
        spawn_appenders(host.log(), EVENTS).join().unwrap();
        host.wait_until_idle().await.unwrap();
        Arc::into_inner(host).unwrap().shutdown().await;
    });
    std::fs::write(dir.path().join("plugins/versioned.wasm"), build(5, 2)).unwrap();
    let config = dir.path().join("factline.toml");
    std::fs::write(
        &config,
        "data_dir = \"data\"\n[http]\naddress = \"127.0.0.1:0\"\n\
         [[topics]]\nname = \"tick\"\npartitions = 4\n\
         [[plugins]]\nname = \"versioned\"\nkind = \"projector\"\ncomponent = \"plugins/versioned.wasm\"\n\
         subscriptions = [\"tick\"]\nbatch_size = 200\nconcurrency = 2\n",
    )
    .unwrap();
    let bin = factline_binary();
    let status = |port| {
        let (s, r) = request(port, "GET", "/v1/admin/projectors/versioned", None, None);
        assert_eq!(s, 200, "{r}");
        r
    };
    let mut host = RunningHost::spawn(&bin, &config, &[]);
    host.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = status(host.port());
        if r["rebuild"]["processed"].as_u64() > Some(0) {
            assert_eq!(r["rebuild"]["phase"], "replaying", "killed mid-replay: {r}");
            break;
        }
        assert!(Instant::now() < deadline, "{r}");
        std::thread::sleep(Duration::from_millis(1));
    }
    host.kill();

    let mut host = RunningHost::spawn(&bin, &config, &[]);
    host.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let r = status(host.port());
        if r["rebuild"]["phase"] != "replaying" && r["rebuild"]["phase"] != "switching" {
            break r;
        }
        assert!(Instant::now() < deadline, "{r}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(done["rebuild"]["phase"], "done", "{done}");
    assert_eq!(done["rebuild"]["generation"], 1, "resumed: {done}");
    assert!(host.terminate().success(), "{}", host.stderr());

    let log = EventLog::open(dir.path().join("data"), LogOptions::default()).unwrap();
    assert_built_by(&log, "v05", EVENTS);
    assert_switched(&log, "versioned");
}

/// A host on `dir` running the poison projector from `dir/poison.wasm` over 2 partitions of
/// `item`, with dead-letter policy `policy` after two quick attempts.
fn poison_host(dir: &Path, policy: &str) -> Config {
    let text = format!(
        "data_dir = \"data\"\nwatch_plugins = false\n[[topics]]\nname = \"item\"\npartitions = 2\n\
         [[plugins]]\nname = \"poison\"\nkind = \"projector\"\ncomponent = \"poison.wasm\"\n\
         subscriptions = [\"item\"]\ndead_letter = \"{policy}\"\n\
         retry = {{ base_ms = 1, cap_ms = 2, max_attempts = 2 }}\n"
    );
    Config::parse(&text, Path::new("test.toml"), dir).unwrap()
}

/// A poison event met by a rebuild: parked (`skip`) or holding its partition (`block`) by the
/// rebuild group, exactly as by the live group, and after the switch the live group's dead
/// letter is the rebuild's (so a retry with a fixed version applies it once).
#[test]
fn a_poison_event_in_a_rebuild_ends_as_the_live_groups_dead_letter() {
    use crate::poison_plugin::{append, count};
    use factline_host::RetryOutcome;

    for policy in ["skip", "block"] {
        let dir = tempfile::tempdir().unwrap();
        let component = dir.path().join("poison.wasm");
        std::fs::copy(factline_tests::POISON_PLUGIN, &component).unwrap();
        let config = poison_host(dir.path(), policy);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let host = Host::start(config).unwrap();
            let log = host.log().clone();
            // Blocking appends, off the runtime's own threads.
            let poisoned = tokio::task::block_in_place(|| {
                for i in 0..20 {
                    append(&log, &format!("item-{}", i % 4), "item.a", false);
                }
                let poisoned = append(&log, "item-1", "item.a", true);
                for i in 0..20 {
                    append(&log, &format!("item-{}", i % 4), "item.b", false);
                }
                poisoned
            });
            let (_, partition) = log.locate("item-1").unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while log.dead_letters(Some("poison")).unwrap().is_empty() {
                assert!(Instant::now() < deadline, "{policy}: never parked");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Idle: every partition at its end or held by its `block` dead letter.
            host.wait_until_idle().await.unwrap();
            let before = (count(&log, "item.a"), count(&log, "item.b"));

            host.rebuild_projector("poison").await.unwrap();
            let done = rebuild_of(&host, "poison").await;
            assert_eq!(done.phase, RebuildPhase::Done, "{policy}: {done:?}");
            assert_eq!(
                (count(&log, "item.a"), count(&log, "item.b")),
                before,
                "{policy}: the rebuilt read model matches the old one"
            );
            assert!(
                log.dead_letters(Some(&rebuild_group("poison")))
                    .unwrap()
                    .is_empty()
            );
            let letters = log.dead_letters(Some("poison")).unwrap();
            assert_eq!(letters.len(), 1, "{policy}: {letters:?}");
            let letter = &letters[0];
            assert_eq!(
                (letter.partition, letter.offset, letter.blocking),
                (partition, poisoned, policy == "block"),
                "{policy}"
            );
            if policy == "block" {
                assert_eq!(
                    host.projector("poison")
                        .unwrap()
                        .unwrap()
                        .live
                        .unwrap()
                        .generation,
                    1
                );
                assert_eq!(
                    log.group_offset("poison", "item", partition).unwrap(),
                    Some(poisoned),
                    "the new live group holds the partition at the poison event"
                );
            }

            // The fixed version retries it on the new read model, once.
            let fixed = std::fs::read(factline_tests::POISON_FIXED_PLUGIN).unwrap();
            let report = host
                .deploy("poison", fixed, None, DeployOrigin::Api)
                .await
                .unwrap();
            assert!(report.swapped, "{report:?}");
            let handle = host.groups().iter().find(|g| g.name() == "poison").unwrap();
            let outcome = handle.retry_dead_letter(letter.key()).await.unwrap();
            assert_eq!(
                outcome,
                if policy == "skip" {
                    RetryOutcome::Reprocessed
                } else {
                    RetryOutcome::Unblocked
                }
            );
            host.wait_until_idle().await.unwrap();
            assert_eq!(
                (count(&log, "item.a"), count(&log, "item.b")),
                (21, 20),
                "{policy}"
            );
            assert!(log.dead_letters(None).unwrap().is_empty());
            drop(log);
            host.shutdown().await;
        });
    }
}

/// A start-up rebuild that cannot catch up (a `block` poison event the old version had
/// handled): it fails, the old read model keeps answering, nothing of the failed generation is
/// left, and deploying a version of the live read model's shape starts the projector on it.
#[test]
fn a_failed_start_up_rebuild_keeps_the_old_read_model_until_a_fitting_version_is_deployed() {
    use crate::poison_plugin::{append, count};

    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("poison.wasm");
    let fixed = std::fs::read(factline_tests::POISON_FIXED_PLUGIN).unwrap();
    std::fs::write(&component, &fixed).unwrap();
    let config = || poison_host(dir.path(), "block");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The fixed version handles everything, the poison event too.
        let host = Host::start(config()).unwrap();
        let log = host.log().clone();
        tokio::task::block_in_place(|| {
            for i in 0..10 {
                append(&log, &format!("item-{}", i % 4), "item.a", i == 5);
            }
        });
        host.wait_until_idle().await.unwrap();
        assert_eq!(count(&log, "item.a"), 10);
        drop(log);
        host.shutdown().await;

        // The trapping build, declaring read-model version 2: its rebuild blocks at the poison
        // event, which the live read model is past.
        let buggy = std::fs::read(factline_tests::POISON_PLUGIN).unwrap();
        std::fs::write(&component, patch_read_model_version(&buggy, 2)).unwrap();
        let host = Host::start(config()).unwrap();
        let failed = rebuild_of(&host, "poison").await;
        assert_eq!(failed.phase, RebuildPhase::Failed, "{failed:?}");
        assert!(failed.error.unwrap().contains("blocked"));
        let status = host.projector("poison").unwrap().unwrap();
        assert!(!status.processing);
        assert_eq!(status.scope, "poison", "the old read model stays live");
        let log = host.log().clone();
        assert_eq!(count(&log, "item.a"), 10);
        let record = log.projection("poison").unwrap().unwrap();
        assert_eq!((record.rebuild, record.retired), (None, vec![]));
        assert!(
            log.read_models()
                .unwrap()
                .scan_prefix("poison@1", "", None, 10)
                .unwrap()
                .is_empty()
        );
        assert!(
            log.dead_letters(Some(&rebuild_group("poison")))
                .unwrap()
                .is_empty()
        );

        // The fixed version (read-model version 1, the live one's) starts the projector.
        let report = host
            .deploy("poison", fixed.clone(), None, DeployOrigin::Api)
            .await
            .unwrap();
        assert!(report.swapped && report.rebuild.is_none(), "{report:?}");
        assert!(host.projector("poison").unwrap().unwrap().processing);
        tokio::task::block_in_place(|| append(&log, "item-9", "item.b", false));
        host.wait_until_idle().await.unwrap();
        assert_eq!((count(&log, "item.a"), count(&log, "item.b")), (10, 1));
        drop(log);
        host.shutdown().await;
    });
}

/// A rollback to a version of another read-model version rebuilds like a deploy; when that
/// rebuild fails, the running version stays and the one rolled back to is kept in the history.
#[test]
fn a_rollback_whose_rebuild_fails_keeps_the_running_version_and_the_history() {
    use crate::poison_plugin::{append, count};

    let dir = tempfile::tempdir().unwrap();
    let buggy = patch_read_model_version(&std::fs::read(factline_tests::POISON_PLUGIN).unwrap(), 2);
    std::fs::write(dir.path().join("poison.wasm"), &buggy).unwrap();
    let config = poison_host(dir.path(), "block");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let host = Host::start(config).unwrap();
        let log = host.log().clone();
        tokio::task::block_in_place(|| {
            for i in 0..6 {
                append(&log, &format!("item-{i}"), "item.a", false);
            }
        });
        host.wait_until_idle().await.unwrap();
        // The fixed version has read-model version 1: a deploy rebuilds.
        let fixed = std::fs::read(factline_tests::POISON_FIXED_PLUGIN).unwrap();
        let deployed = host
            .deploy("poison", fixed, None, DeployOrigin::Api)
            .await
            .unwrap();
        assert!(deployed.rebuild.is_some(), "{deployed:?}");
        assert_eq!(rebuild_of(&host, "poison").await.phase, RebuildPhase::Done);
        tokio::task::block_in_place(|| append(&log, "item-1", "item.a", true));
        host.wait_until_idle().await.unwrap();
        assert_eq!(
            count(&log, "item.a"),
            7,
            "the fixed version handled the poison event"
        );

        // Back to the trapping version: its rebuild blocks behind the live group and fails.
        let back = host.rollback("poison").await.unwrap();
        assert!(back.rebuild.is_some(), "{back:?}");
        let failed = rebuild_of(&host, "poison").await;
        assert_eq!(failed.phase, RebuildPhase::Failed, "{failed:?}");
        assert_eq!(
            host.plugins()[0].version,
            deployed.current,
            "still the fixed version"
        );
        let history = host.plugin_versions("poison").unwrap();
        assert_eq!(
            history.previous.len(),
            1,
            "the trapping version is kept: {history:?}"
        );
        assert_eq!(history.previous[0].version, deployed.previous);
        let status = host.projector("poison").unwrap().unwrap();
        assert!(status.processing);
        assert_eq!(count(&log, "item.a"), 7);
        drop(log);
        host.shutdown().await;
    });
}
