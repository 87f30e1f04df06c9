//! Compiled-artifact cache: a restart loads precompiled code instead of recompiling.
//!
//! Key: SHA-256 of the component bytes + a digest of the engine's configuration and wasmtime
//! version (`Engine::precompile_compatibility_hash`). Two files per entry:
//! `<key>.cwasm`, exactly what wasmtime produced, so it is mapped rather than copied
//! (`Component::deserialize_file`: no copy of the code, and the memory images of the guest's
//! heap are copy-on-write mappings of the file, which is what makes a cached interpreter
//! component start quickly), and `<key>.check`:
//! `MAGIC (8 bytes) | boundary (1) | artifact length (8, LE) | CRC-32 of the artifact (4, LE)`.
//! An artifact whose length or CRC does not match is treated as absent and replaced: a corrupt
//! entry is recompiled, never trusted. (CRC-32 rather than SHA-256: it catches corruption, the
//! threat here, and runs at memory speed; SHA-256 of a 36 MB artifact alone took longer than
//! the whole load may.) Stale entries cannot match: the key names the content and the engine.

use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::boundary::Boundary;

const MAGIC: &[u8; 8] = b"FLART\x02\0\0";
const CHECK_LEN: usize = 8 + 1 + 8 + 4;

/// How a load was served, for metrics and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    Hit,
    Miss,
    /// An entry existed but failed its checksum; it was recompiled and replaced.
    Corrupt,
    Disabled,
}

#[derive(Clone, Debug)]
pub(crate) struct ArtifactCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

/// `std::hash::Hasher` over SHA-256, so `precompile_compatibility_hash` gives a stable digest.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// What an entry's check file says.
struct Check {
    boundary: Boundary,
    len: u64,
    crc: u32,
}

impl Check {
    fn of(artifact: &[u8], boundary: Boundary) -> Self {
        Check {
            boundary,
            len: artifact.len() as u64,
            crc: crc32fast::hash(artifact),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHECK_LEN);
        out.extend_from_slice(MAGIC);
        out.push(self.boundary.to_byte());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.crc.to_le_bytes());
        out
    }

    fn parse(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != CHECK_LEN || !bytes.starts_with(MAGIC) {
            return None;
        }
        Some(Check {
            boundary: Boundary::from_byte(bytes[8])?,
            len: u64::from_le_bytes(bytes[9..17].try_into().ok()?),
            crc: u32::from_le_bytes(bytes[17..21].try_into().ok()?),
        })
    }
}

/// Why a cached entry was not used.
enum Unusable {
    /// No entry (or an entry of an older layout, without its check file).
    Absent,
    /// The entry failed its check or the engine refused it.
    Corrupt,
}

impl ArtifactCache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = hex(&h.0.finalize()[..8]);
        ArtifactCache { dir, engine_key }
    }

    fn paths(&self, content_hash: &str) -> Option<(PathBuf, PathBuf)> {
        self.dir.as_ref().map(|d| {
            let stem = format!("{content_hash}-{}", self.engine_key);
            (
                d.join(format!("{stem}.cwasm")),
                d.join(format!("{stem}.check")),
            )
        })
    }

    /// The cached compiled component of version `content_hash` and its declared boundary, if
    /// a verified one is there.
    pub fn load(&self, engine: &Engine, content_hash: &str) -> Option<(Component, Boundary)> {
        let (artifact, check) = self.paths(content_hash)?;
        open_verified(engine, &artifact, &check).ok()
    }

    /// Loads the compiled component for `bytes` (whose SHA-256 is `content_hash` and whose
    /// declared boundary is `boundary`).
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        content_hash: &str,
        boundary: Boundary,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some((artifact_path, check_path)) = self.paths(content_hash) else {
            return Ok((
                Component::from_binary(engine, bytes)?,
                CacheOutcome::Disabled,
            ));
        };
        let outcome = match open_verified(engine, &artifact_path, &check_path) {
            // The key covers the bytes, so a hit declares what `bytes` declare.
            Ok((component, cached)) if cached == boundary => {
                return Ok((component, CacheOutcome::Hit));
            }
            Ok(_) | Err(Unusable::Corrupt) => CacheOutcome::Corrupt,
            Err(Unusable::Absent) => CacheOutcome::Miss,
        };
        let artifact = engine.precompile_component(bytes)?;
        // SAFETY: these are the bytes this engine just produced.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &artifact)? };
        if let Err(e) = store(&artifact_path, &check_path, &artifact, boundary) {
            tracing::warn!(path = %artifact_path.display(), error = %e, "could not write the artifact cache");
        }
        Ok((component, outcome))
    }
}

/// Maps the artifact at `path` once its length and CRC match its check file.
fn open_verified(
    engine: &Engine,
    path: &Path,
    check_path: &Path,
) -> Result<(Component, Boundary), Unusable> {
    let Ok(check) = std::fs::read(check_path) else {
        return Err(Unusable::Absent);
    };
    let corrupt = |why: &str| {
        tracing::warn!(path = %path.display(), "cached artifact {why}; recompiling");
        Unusable::Corrupt
    };
    let check = Check::parse(&check).ok_or_else(|| corrupt("has an unreadable check file"))?;
    let (len, crc) = checksum(path).map_err(|_| corrupt("cannot be read"))?;
    if len != check.len || crc != check.crc {
        return Err(corrupt("failed its checksum"));
    }
    // SAFETY: the artifact was produced by `precompile_component` of an engine with this
    // configuration (the key says so) and matches the length and CRC recorded when it was
    // written, so it is the bytes wasmtime produced, not untrusted input. Entries are only
    // ever replaced by rename, never written in place, so the mapping cannot change under the
    // engine; a rename between the check and the mapping brings an entry of the same key,
    // the same compiler output.
    #[allow(unsafe_code)]
    let loaded = unsafe { Component::deserialize_file(engine, path) };
    match loaded {
        Ok(c) => Ok((c, check.boundary)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cached artifact refused by the engine; recompiling");
            Err(Unusable::Corrupt)
        }
    }
}

/// Length and CRC-32 of a file, read in pieces (no copy of the whole artifact in memory).
fn checksum(path: &Path) -> std::io::Result<(u64, u32)> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut hasher = crc32fast::Hasher::new();
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((len, hasher.finalize()));
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
}

fn store(
    path: &Path,
    check_path: &Path,
    artifact: &[u8],
    boundary: Boundary,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Write-then-rename: a crash mid-write leaves no half file under the real name; the check
    // file comes last, so an artifact without it is absent, never trusted.
    let tmp = |p: &Path| {
        let mut name = p.as_os_str().to_owned();
        name.push(format!(".tmp{}", std::process::id()));
        PathBuf::from(name)
    };
    let _ = std::fs::remove_file(check_path);
    std::fs::write(tmp(path), artifact)?;
    std::fs::rename(tmp(path), path)?;
    std::fs::write(tmp(check_path), Check::of(artifact, boundary).to_bytes())?;
    std::fs::rename(tmp(check_path), check_path)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a component, hex.
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}
