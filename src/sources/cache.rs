//! The on-disk cache of fetched data. An entry is one file: a JSON header line, then the body.
//! It is written to a uniquely named temporary file in the same directory and renamed into
//! place, so concurrent writers never leave half an entry and readers never see one.

use serde::{Deserialize, Serialize};
use spotplan_core::market::DataError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The header line of an entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// What the entry is (a URL, or an API call with its parameters).
    pub key: String,
    pub fetched_at: jiff::Timestamp,
    /// The source's `Last-Modified`, when it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<jiff::Timestamp>,
}

/// The path of the entry for `key` of `kind` under `dir`.
pub fn path(dir: &Path, kind: &str, key: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{kind}-{hex}.cache"))
}

/// Reads an entry: `Ok(None)` when there is none, `Err(why)` when it is corrupt or belongs to
/// another key (the caller ignores it with a warning).
pub fn read(path: &Path, key: &str) -> Result<Option<(Meta, Vec<u8>)>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let split = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| "it has no header line".to_string())?;
    let meta: Meta = serde_json::from_slice(&bytes[..split])
        .map_err(|e| format!("its header does not parse: {e}"))?;
    if meta.key != key {
        return Err(format!("it belongs to {}", meta.key));
    }
    Ok(Some((meta, bytes[split + 1..].to_vec())))
}

/// Writes an entry atomically (see the module docs).
pub fn write(path: &Path, meta: &Meta, body: &[u8]) -> Result<(), DataError> {
    let dir = path.parent().expect("cache files live in a directory");
    let err = |e: &dyn std::fmt::Display| DataError::io(&dir.display().to_string(), e);
    std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
    let header = serde_json::to_vec(meta).expect("cache metadata serializes");
    let mut tmp = tempfile::Builder::new()
        .prefix(".spotplan-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| err(&e))?;
    tmp.write_all(&header)
        .and_then(|_| tmp.write_all(b"\n"))
        .and_then(|_| tmp.write_all(body))
        .and_then(|_| tmp.as_file().sync_data())
        .map_err(|e| err(&e))?;
    tmp.persist(path).map_err(|e| err(&e.error))?;
    Ok(())
}
