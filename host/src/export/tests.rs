use super::*;

/// A MessagePack map of `entries` (already encoded key/value pairs).
fn map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_map_len(&mut out, entries.len() as u32).unwrap();
    for (k, v) in entries {
        rmp::encode::write_str(&mut out, k).unwrap();
        out.extend_from_slice(v);
    }
    out
}

fn str_value(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_str(&mut out, s).unwrap();
    out
}

fn uint(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_uint(&mut out, n).unwrap();
    out
}

fn written(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.bin");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

#[test]
fn lengths_that_the_file_does_not_hold_are_refused_without_allocating_them() {
    // An array and a byte string declaring 4 GiB, in a file of a few bytes.
    let mut huge_array = vec![0xdd];
    huge_array.extend_from_slice(&u32::MAX.to_be_bytes());
    let mut huge_bin = vec![0xc6];
    huge_bin.extend_from_slice(&u32::MAX.to_be_bytes());
    for (field, value) in [("history", huge_array), ("config", huge_bin)] {
        let bytes = map(&[
            ("format", str_value(EXPORT_FORMAT)),
            ("version", uint(EXPORT_VERSION.into())),
            (field, value),
        ]);
        let (_dir, path) = written(&bytes);
        match read(&path) {
            Err(ReplayError::NotAnExport { message, .. }) => assert!(!message.is_empty()),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn other_formats_versions_and_garbage_are_named() {
    let (_d, path) = written(&map(&[
        ("format", str_value("something-else")),
        ("version", uint(1)),
    ]));
    let e = read(&path).unwrap_err().to_string();
    assert!(
        e.contains("not a factline dead-letter export") && e.contains("something-else"),
        "{e}"
    );

    let (_d, path) = written(&map(&[
        ("format", str_value(EXPORT_FORMAT)),
        ("version", uint(2)),
    ]));
    let e = read(&path).unwrap_err();
    assert!(matches!(e, ReplayError::Version { found: 2, .. }), "{e}");

    let (_d, path) = written(b"\x00\x01garbage");
    assert!(matches!(read(&path), Err(ReplayError::NotAnExport { .. })));
}

#[test]
fn a_file_over_the_limit_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let f = std::fs::File::create(&path).unwrap();
    // Sparse: no disk used.
    f.set_len(MAX_EXPORT_BYTES + 1).unwrap();
    assert!(matches!(read(&path), Err(ReplayError::TooLarge { .. })));
}
