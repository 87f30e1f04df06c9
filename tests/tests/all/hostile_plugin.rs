//! Fault isolation (DESIGN §4 invariant 6): a plugin that traps, allocates without bound or loops
//! forever gets a typed failure, and the same handler serves the next command.

use std::time::{Duration, Instant};

use factline_host::{AggregateHandler, AggregateOptions, CommandError, CommandRequest};
use factline_host::{
    AggregateInstance, Capabilities, CommandInput, Decision, FailureKind, Limits, LoadError,
    LoadSpec, PluginKind, PluginRuntime, RuntimeConfig,
};

use crate::support::{load, log, msgpack, runtime};

fn cmd(t: &str) -> CommandRequest {
    CommandRequest {
        id: "H-1".into(),
        command_type: t.into(),
        payload: msgpack(serde_json::json!(null)),
        ..Default::default()
    }
}

fn failure(r: Result<factline_host::CommandOutcome, CommandError>) -> factline_host::CallFailure {
    match r {
        Err(CommandError::Failed { failure, .. }) => failure,
        other => panic!("expected a failed call, got {other:?}"),
    }
}

/// A handler for the hostile plugin with `limits`, on a scratch log.
fn hostile(log: &factline_host::EventLog, limits: Limits) -> AggregateHandler {
    let rt = runtime();
    let plugin = load(
        &rt,
        "hostile",
        PluginKind::Aggregate,
        factline_tests::HOSTILE_PLUGIN,
        limits,
    );
    AggregateHandler::new(log.clone(), plugin, AggregateOptions::new("hostile")).unwrap()
}

#[test]
fn each_fault_is_typed_and_the_host_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("hostile", 1)]);
    let limits = Limits {
        memory_bytes: 32 << 20,
        call_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let h = hostile(&log, limits);
    h.handle(cmd("ok")).unwrap();

    let trap = failure(h.handle(cmd("trap")));
    assert_eq!(trap.kind, FailureKind::Trap, "{trap:?}");
    let bt = trap.backtrace.as_deref().unwrap_or_default();
    assert!(
        bt.contains("decide") || bt.contains("hostile"),
        "a guest backtrace: {bt}"
    );
    assert_eq!(h.handle(cmd("ok")).unwrap().version, 2);

    let mem = failure(h.handle(cmd("alloc")));
    assert_eq!(mem.kind, FailureKind::MemoryLimit, "{mem:?}");
    assert!(mem.message.contains("limit"), "{}", mem.message);
    assert_eq!(h.handle(cmd("ok")).unwrap().version, 3);

    let start = Instant::now();
    let dl = failure(h.handle(cmd("loop")));
    assert_eq!(dl.kind, FailureKind::Deadline, "{dl:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "interrupted near its 300 ms deadline"
    );
    assert_eq!(h.handle(cmd("ok")).unwrap().version, 4);

    // Failures appended nothing.
    assert_eq!(log.stream_version("hostile-H-1").unwrap(), 4);
}

#[test]
fn limit_breaches_and_call_times_are_counted_per_plugin_and_kind() {
    let metrics = factline_host::install_metrics().expect("the only recorder in this binary");
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("hostile", 1)]);
    let limits = Limits {
        memory_bytes: 32 << 20,
        call_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    // Its own name: other tests of this binary count under `hostile` at the same time.
    let plugin = load(
        &runtime(),
        "hostile-metered",
        PluginKind::Aggregate,
        factline_tests::HOSTILE_PLUGIN,
        limits,
    );
    let h = AggregateHandler::new(log.clone(), plugin, AggregateOptions::new("hostile")).unwrap();
    h.handle(cmd("ok")).unwrap();
    for (command, kind) in [
        ("alloc", FailureKind::MemoryLimit),
        ("loop", FailureKind::Deadline),
        ("alloc", FailureKind::MemoryLimit),
    ] {
        assert_eq!(failure(h.handle(cmd(command))).kind, kind);
    }
    let text = factline_host::render_metrics(metrics, || {});
    // The value of the sample of `name` for this plugin whose labels contain `label`.
    let sample = |name: &str, label: &str| -> Option<f64> {
        text.lines()
            .find(|l| {
                l.starts_with(&format!("{name}{{"))
                    && l.contains("hostile-metered")
                    && l.contains(label)
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let failures = "plugin_call_failures_total";
    assert_eq!(
        sample(failures, r#"kind="memory-limit""#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(sample(failures, r#"kind="deadline""#), Some(1.0), "{text}");
    assert_eq!(sample(failures, r#"kind="trap""#), None, "{text}");
    let calls = "plugin_call_duration_seconds_count";
    assert_eq!(sample(calls, r#"function="decide""#), Some(4.0), "{text}");
    let commands = "commands_total";
    assert_eq!(sample(commands, r#"outcome="failed""#), Some(3.0), "{text}");
    assert_eq!(
        sample(commands, r#"outcome="accepted""#),
        Some(1.0),
        "{text}"
    );
}

#[test]
fn a_component_of_the_wrong_world_is_refused_naming_what_is_missing() {
    let rt = runtime();
    let err = rt
        .load_file(
            "x",
            PluginKind::Aggregate,
            factline_tests::ORDER_SUMMARY.as_ref(),
            Limits::default(),
            None,
        )
        .unwrap_err();
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("aggregate-handler") && msg.contains("projector-handler"),
        "{msg}"
    );

    let err = rt
        .load(
            "x",
            PluginKind::Projector,
            b"not wasm at all",
            Limits::default(),
            None,
        )
        .unwrap_err();
    assert!(matches!(err, LoadError::Compile(_)), "{err}");

    // The runtime still loads good components afterwards.
    load(
        &rt,
        "order",
        PluginKind::Aggregate,
        factline_tests::ORDER,
        Limits::default(),
    );
}

#[test]
fn compiled_artifacts_are_cached_and_a_corrupt_entry_is_recompiled() {
    use factline_host::CacheOutcome;
    let cache = tempfile::tempdir().unwrap();
    let config = || RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let path = factline_tests::ORDER.as_ref();
    let first = PluginRuntime::new(config())
        .unwrap()
        .load_file(
            "order",
            PluginKind::Aggregate,
            path,
            Limits::default(),
            None,
        )
        .unwrap();
    assert_eq!(first.cache_outcome, CacheOutcome::Miss);
    let second = PluginRuntime::new(config())
        .unwrap()
        .load_file(
            "order",
            PluginKind::Aggregate,
            path,
            Limits::default(),
            None,
        )
        .unwrap();
    assert_eq!(second.cache_outcome, CacheOutcome::Hit);
    assert_eq!(first.version, second.version);

    // Flip one byte in the middle of the cached artifact (not its check file).
    let entry = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&entry, bytes).unwrap();
    let third = PluginRuntime::new(config())
        .unwrap()
        .load_file(
            "order",
            PluginKind::Aggregate,
            path,
            Limits::default(),
            None,
        )
        .unwrap();
    assert_eq!(third.cache_outcome, CacheOutcome::Corrupt);
    let mut inst: AggregateInstance = third.instantiate().unwrap();
    assert!(
        !inst.initial_state().unwrap().is_empty(),
        "the recompiled plugin works"
    );
    let fourth = PluginRuntime::new(config())
        .unwrap()
        .load_file(
            "order",
            PluginKind::Aggregate,
            path,
            Limits::default(),
            None,
        )
        .unwrap();
    assert_eq!(
        fourth.cache_outcome,
        CacheOutcome::Hit,
        "the entry was replaced"
    );
}

/// A plugin that tries every ambient authority gets none of it: no files, no environment, no
/// arguments, no sockets; its clock reads the command's time (deterministic replay).
#[test]
fn a_plugin_sees_no_files_env_args_or_network_and_a_deterministic_clock() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("hostile", 1)]);
    let h = hostile(&log, Limits::default());
    let before = factline_host::now_millis();
    let out = h.handle(cmd("probe")).unwrap();
    let after = factline_host::now_millis();
    let probed = factline_guest::codec::msgpack_to_json(&out.events[0].payload).unwrap();
    for key in ["file", "dir", "socket"] {
        assert!(
            probed[key].as_str().unwrap().starts_with("denied"),
            "{key}: {probed}"
        );
    }
    assert_eq!(probed["env"], serde_json::json!([]), "{probed}");
    assert_eq!(probed["args"], serde_json::json!([]), "{probed}");
    // The guest's "now" is the time the host received the command, not its own reading.
    let now = probed["now_ms"].as_u64().unwrap();
    assert!(
        before <= now && now <= after,
        "{now} not in [{before}, {after}]"
    );
}

#[test]
fn stack_overflow_and_oversized_output_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("hostile", 1)]);
    let h = hostile(&log, Limits::default());

    let stack = failure(h.handle(cmd("stack")));
    assert_eq!(stack.kind, FailureKind::Trap, "{stack:?}");
    assert!(stack.message.contains("stack"), "{}", stack.message);

    // With room to build it (1 GiB), a 100 MiB event still exceeds the 16 MiB output limit.
    // Time to build it too: this checks the output limit, not the deadline, on a loaded machine.
    let roomy = Limits {
        memory_bytes: 1 << 30,
        call_timeout: std::time::Duration::from_secs(60),
        ..Limits::default()
    };
    let h = hostile(&log, roomy);
    let big = failure(h.handle(cmd("big")));
    assert_eq!(big.kind, FailureKind::BadOutput, "{big:?}");
    assert!(big.message.contains("over the limit"), "{}", big.message);

    assert_eq!(
        h.handle(cmd("ok")).unwrap().version,
        1,
        "nothing else was appended"
    );
}

/// Decides `probe` on a bare instance with `command_id` and returns what the plugin saw.
fn probe_with(instance: &mut AggregateInstance, command_id: &str) -> serde_json::Value {
    let input = CommandInput {
        command_id: command_id.into(),
        command_type: "probe".into(),
        stream: "hostile-H-1".into(),
        payload: msgpack(serde_json::json!(null)),
        correlation_id: command_id.into(),
        causation_id: command_id.into(),
        issued_at: 1_700_000_000_000,
        metadata: Vec::new(),
    };
    let state = instance.initial_state().unwrap();
    match instance.decide(&state, &input).unwrap() {
        Decision::Accepted(events) => {
            factline_guest::codec::msgpack_to_json(&events[0].payload).unwrap()
        }
        other => panic!("{other:?}"),
    }
}

/// Randomness is seeded from the input: the same command draws the same numbers (a replay
/// decides the same), another command other numbers; granting `real_random` and `real_clock`
/// gives the host's own.
#[test]
fn randomness_and_clocks_are_deterministic_unless_granted() {
    let rt = runtime();
    let bytes = std::fs::read(factline_tests::HOSTILE_PLUGIN).unwrap();
    let load = |capabilities| {
        let spec = LoadSpec {
            capabilities,
            ..LoadSpec::default()
        };
        rt.load_spec("hostile", PluginKind::Aggregate, &bytes, spec)
            .unwrap()
            .instantiate()
            .unwrap()
    };
    // Fresh instances: the guest's std keeps its own state between calls of one instance.
    let fresh = |id: &str| probe_with(&mut load(Capabilities::default()), id);
    let a = fresh("cmd-a");
    assert_eq!(
        a["random"],
        fresh("cmd-a")["random"],
        "same input, same draw"
    );
    assert_ne!(
        a["random"],
        fresh("cmd-b")["random"],
        "other input, other draw"
    );
    assert_eq!(a["now_ms"], 1_700_000_000_000u64);

    let real = Capabilities {
        real_clock: true,
        real_random: true,
    };
    let first = probe_with(&mut load(real.clone()), "cmd-a");
    assert_ne!(
        first["random"],
        probe_with(&mut load(real), "cmd-a")["random"]
    );
    let now = factline_host::now_millis();
    let seen = first["now_ms"].as_u64().unwrap();
    assert!(now.abs_diff(seen) < 60_000, "real clock: {seen} vs {now}");
}

/// Fuel is the deterministic budget: an endless loop stops on fuel, typed as such, long before
/// its (generous) deadline; a plugin asking for fuel on a runtime without metering is refused.
#[test]
fn fuel_limits_stop_an_endless_loop_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let log = log(dir.path(), &[("hostile", 1)]);
    let rt = PluginRuntime::new(RuntimeConfig {
        fuel: true,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let limits = Limits {
        fuel: Some(50_000_000),
        call_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let plugin = load(
        &rt,
        "hostile",
        PluginKind::Aggregate,
        factline_tests::HOSTILE_PLUGIN,
        limits.clone(),
    );
    let h = AggregateHandler::new(log.clone(), plugin, AggregateOptions::new("hostile")).unwrap();
    let started = Instant::now();
    let f = failure(h.handle(cmd("loop")));
    assert_eq!(f.kind, FailureKind::Fuel, "{f:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(h.handle(cmd("ok")).unwrap().version, 1, "fuel is per call");

    let bytes = std::fs::read(factline_tests::HOSTILE_PLUGIN).unwrap();
    let err = runtime()
        .load("hostile", PluginKind::Aggregate, &bytes, limits, None)
        .unwrap_err();
    assert!(matches!(err, LoadError::FuelDisabled), "{err}");
}

/// A component importing an interface the host never provides is refused at load, naming it.
#[test]
fn a_component_importing_wasi_http_is_refused_naming_the_import() {
    let component =
        wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#)
            .unwrap();
    let err = runtime()
        .load(
            "http",
            PluginKind::Projector,
            &component,
            Limits::default(),
            None,
        )
        .unwrap_err();
    assert!(matches!(err, LoadError::ForbiddenImport { .. }), "{err}");
    assert!(
        err.to_string().contains("wasi:http/outgoing-handler@0.2.0"),
        "{err}"
    );
}
