//! An atomic JSON file backend for [`DeltaPersistence`] (the `std` feature).

use super::{DeltaPersistence, PersistError, PersistedPeerState, json};
use alloc::string::ToString;
use alloc::vec::Vec;
use std::fs;
use std::io::Write;
use std::path::PathBuf;

/// Delta state in one JSON file (the seed's `<dataDir>/.mesh/watermarks.json`), written
/// atomically: the JSON goes to `<path>.tmp`, is flushed to disk, and is renamed over
/// `path`. A crash mid-save leaves the previous file. A missing file loads as empty; an
/// unreadable or corrupt one is an error (the engine then starts empty).
#[derive(Clone, Debug)]
pub struct JsonFile {
    path: PathBuf,
}

impl JsonFile {
    /// A backend for `path`. Nothing is touched until `save` or `load`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

fn backend(e: std::io::Error) -> PersistError {
    PersistError::Backend(e.to_string())
}

impl DeltaPersistence for JsonFile {
    fn save(&mut self, states: &[PersistedPeerState]) -> Result<(), PersistError> {
        let text = json::encode(states);
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        if let Some(dir) = self.path.parent() {
            if !dir.as_os_str().is_empty() {
                fs::create_dir_all(dir).map_err(backend)?;
            }
        }
        let mut f = fs::File::create(&tmp).map_err(backend)?;
        f.write_all(text.as_bytes()).map_err(backend)?;
        f.sync_all().map_err(backend)?;
        drop(f);
        fs::rename(&tmp, &self.path).map_err(backend)
    }

    fn load(&mut self) -> Result<Vec<PersistedPeerState>, PersistError> {
        match fs::read(&self.path) {
            Ok(bytes) => json::decode(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(backend(e)),
        }
    }
}
