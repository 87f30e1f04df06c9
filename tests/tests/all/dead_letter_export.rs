//! `factline export` and `factline replay FILE [--with FILE]` through the real binary: a
//! running host parks poison events of a projector, a policy and a saga (the DLQ test's
//! plugins and config); each dead letter's context is exported through the admin API; with
//! the host stopped and its whole directory (data and components) gone, each file replays in
//! a fresh temporary directory: the exported version fails the same way, the fixed build shows
//! its effects (computed on the exported state), and nothing is left behind.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http_api::request;
use crate::poison_policy::{API_RETRY, ITEMS, KINDS, TOKEN, key, start_poisoned};
use crate::support::factline_binary;

/// `factline ARGS...` in `cwd` with `TMPDIR=tmp`: (success, stdout, stderr).
fn factline(bin: &Path, cwd: &Path, tmp: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin)
        .args(args)
        .current_dir(cwd)
        .env("TMPDIR", tmp)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn an_exported_dead_letter_replays_the_same_failure_and_a_fixs_effects_on_a_fresh_machine() {
    let host_dir = tempfile::tempdir().unwrap();
    let (mut host, parked) = start_poisoned(host_dir.path(), &[API_RETRY]);
    let port = host.port();
    let bin = factline_binary();
    // Every other item is processed: the projector's count and the notifications are there.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = request(port, "GET", "/v1/admin/groups", Some(TOKEN), None);
        assert_eq!(status, 200, "{body}");
        let groups = body["groups"].as_array().unwrap();
        if groups.len() == KINDS.len() && groups.iter().all(|g| g["lag"] == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "{body:#}\n{}", host.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }

    let laptop = tempfile::tempdir().unwrap();
    let (work, tmp) = (laptop.path().join("work"), laptop.path().join("tmp"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let url = host.url().to_owned();
    let mut files = Vec::new();
    for (name, _, _, _) in KINDS {
        let l = parked.iter().find(|l| l["group"] == name).unwrap();
        let [g, t, p, o] = key(l);
        let file = laptop.path().join(format!("{name}.export"));
        let file_arg = file.to_str().unwrap();
        let args = [
            "export", &g, &t, &p, &o, "-o", file_arg, "--host", &url, "--token", TOKEN,
        ];
        let (ok, out, err) = factline(&bin, &work, &tmp, &args);
        assert!(ok, "export {name}: {err}");
        assert!(out.contains("exported to"), "{out}");
        files.push((name, file, l.clone()));
    }
    // An export needs the token like every admin route.
    let (g, t, p, o) = ("counts", "item", "0", "0");
    let (ok, _, err) = factline(&bin, &work, &tmp, &["export", g, t, p, o, "--host", &url]);
    assert!(!ok && err.contains("unauthorized"), "{err}");
    assert!(host.terminate().success(), "{}", host.stderr());
    // "Another machine": nothing of the host is left, not its data nor its components.
    drop(host_dir);

    let fixed_of = |name: &str| KINDS.iter().find(|k| k.0 == name).unwrap().3;
    for (name, file, letter) in &files {
        let file = file.to_str().unwrap();
        let (ok, out, err) = factline(&bin, &work, &tmp, &["replay", file]);
        assert!(ok, "replay {name}: {err}");
        assert!(
            out.contains("fails: trap") && out.contains("reproduces the recorded failure"),
            "{name}: {out}"
        );
        assert!(
            out.contains("guest backtrace") && out.contains(letter["message"].as_str().unwrap()),
            "{name}: {out}"
        );
        let (ok, json, err) = factline(&bin, &work, &tmp, &["replay", file, "--json"]);
        assert!(ok, "{err}");
        let json: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            (json["outcome"].as_str(), json["reproduced"].as_bool()),
            (Some("failed"), Some(true)),
            "{json:#}"
        );
        assert_eq!(json["backtrace"], letter["backtrace"], "{name}");

        let with = ["replay", file, "--with", fixed_of(name)];
        let (ok, out, err) = factline(&bin, &work, &tmp, &with);
        assert!(ok, "replay {name} --with fixed: {err}");
        assert!(
            out.contains("succeeds, with these effects"),
            "{name}: {out}"
        );
        let effect = match *name {
            // The exported read model held the other items' count.
            "counts" => format!("read model counts count/item.a = {ITEMS}"),
            "poison-policy" => format!("append notification-{API_RETRY} notification.sent"),
            _ => format!("saga poison-saga {API_RETRY} -> running"),
        };
        assert!(out.contains(&effect), "{name}: {effect:?} in {out}");
        // Twice the same: deterministic.
        assert_eq!(factline(&bin, &work, &tmp, &with).1, out, "{name}");
    }
    assert!(
        is_empty(&work) && is_empty(&tmp),
        "replay left files behind"
    );

    // A file that is not an export is refused with its reason.
    let bogus = laptop.path().join("bogus.export");
    std::fs::write(&bogus, b"\x92\x01\x02").unwrap();
    let (ok, _, err) = factline(&bin, &work, &tmp, &["replay", bogus.to_str().unwrap()]);
    assert!(
        !ok && err.contains("is not a factline dead-letter export"),
        "{err}"
    );
}
