//! Compiled-artifact cache: a restart loads precompiled code instead of recompiling.
//!
//! Key: SHA-256 of the component bytes + a digest of the engine's configuration and wasmtime
//! version (`Engine::precompile_compatibility_hash`). File layout:
//! `MAGIC (8 bytes) | SHA-256 of the artifact (32 bytes) | artifact`. A file whose digest does
//! not match is treated as absent and replaced: a corrupt entry is recompiled, never trusted.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"FLART\x01\0\0";

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

impl ArtifactCache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = hex(&h.0.finalize()[..8]);
        ArtifactCache { dir, engine_key }
    }

    fn path(&self, content_hash: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{content_hash}-{}.cwasm", self.engine_key)))
    }

    /// The cached compiled component of version `content_hash`, if a verified one is there.
    pub fn load(&self, engine: &Engine, content_hash: &str) -> Option<Component> {
        let path = self.path(content_hash)?;
        let file = std::fs::read(&path).ok()?;
        let artifact = verified(&file)?;
        // SAFETY: as in `load_or_compile`: this engine configuration's own verified output.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, artifact) };
        loaded
            .inspect_err(|e| tracing::warn!(path = %path.display(), error = %e, "cached artifact refused by the engine"))
            .ok()
    }

    /// Loads the compiled component for `bytes` (whose SHA-256 is `content_hash`).
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        content_hash: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(path) = self.path(content_hash) else {
            return Ok((
                Component::from_binary(engine, bytes)?,
                CacheOutcome::Disabled,
            ));
        };
        let mut outcome = CacheOutcome::Miss;
        if let Ok(file) = std::fs::read(&path) {
            match verified(&file) {
                Some(artifact) => {
                    // SAFETY: the artifact was produced by `precompile_component` of an engine
                    // with this configuration (the key says so) and its SHA-256 matches what we
                    // wrote, so it is the exact bytes wasmtime produced, not untrusted input.
                    #[allow(unsafe_code)]
                    let loaded = unsafe { Component::deserialize(engine, artifact) };
                    match loaded {
                        Ok(c) => return Ok((c, CacheOutcome::Hit)),
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "cached artifact refused by the engine; recompiling");
                            outcome = CacheOutcome::Corrupt;
                        }
                    }
                }
                None => {
                    tracing::warn!(path = %path.display(), "cached artifact failed its checksum; recompiling");
                    outcome = CacheOutcome::Corrupt;
                }
            }
        }
        let artifact = engine.precompile_component(bytes)?;
        // SAFETY: as above; these are the bytes just produced by this engine.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &artifact)? };
        if let Err(e) = store(&path, &artifact) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the artifact cache");
        }
        Ok((component, outcome))
    }
}

fn verified(file: &[u8]) -> Option<&[u8]> {
    let rest = file.strip_prefix(MAGIC.as_slice())?;
    if rest.len() < 32 {
        return None;
    }
    let (digest, artifact) = rest.split_at(32);
    (Sha256::digest(artifact).as_slice() == digest).then_some(artifact)
}

fn store(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut content = Vec::with_capacity(artifact.len() + 40);
    content.extend_from_slice(MAGIC);
    content.extend_from_slice(&Sha256::digest(artifact));
    content.extend_from_slice(artifact);
    // Write-then-rename: a crash mid-write leaves no half file under the real name.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &content)?;
    std::fs::rename(&tmp, path)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a component, hex.
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}
