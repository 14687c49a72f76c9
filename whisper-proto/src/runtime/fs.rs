//! Persistence files: where the driver's [`Output::Persist`] state goes.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::string::ToString;
use std::vec::Vec;

use crate::delta::{DeltaPersistence, PersistError, PersistedPeerState, json};
use crate::driver::PersistKey;
#[allow(unused_imports)] // doc links
use crate::driver::{Driver, Output};

/// A directory holding one file per [`PersistKey`]
/// ([`PersistKey::file_name`]). Writes are atomic and durable: the bytes go to a
/// temporary file that is synced, renamed over the old one, and the directory synced, so
/// a crash leaves either the old state or the new, never a torn file.
///
/// A node's loop saves synchronously when the driver asks (every
/// [`DriverConfig::persist_interval`](crate::driver::DriverConfig::persist_interval),
/// 30 s by default, and at shutdown): the state is small (a few hundred bytes per peer),
/// so the loop stalls for one `fsync`, not for the size of the data.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// The state kept in `dir`.
    ///
    /// # Errors
    /// `dir` exists but is not a directory, or it cannot be created.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        if dir.exists() && !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                std::format!("persistence path {} is not a directory", dir.display()),
            ));
        }
        fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// What was saved under `key`, if anything.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn load(&self, key: PersistKey) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.dir.join(key.file_name())) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Saves `bytes` under `key`, atomically.
    ///
    /// # Errors
    /// Any I/O error; the old state is then left as it was.
    pub fn save(&self, key: PersistKey, bytes: &[u8]) -> io::Result<()> {
        write_atomic(&self.dir.join(key.file_name()), bytes)
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.to_path_buf().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        fs::create_dir_all(dir)?;
    }
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    if let Some(dir) = dir {
        // The rename itself survives a power cut only once the directory is synced.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// One JSON file of delta state, for driving an [`Engine`](crate::Engine)'s
/// [`save_delta`](crate::Engine::save_delta) / [`load_delta`](crate::Engine::load_delta)
/// directly (without a [`Driver`]). Writes are atomic like [`StateDir`]'s; a missing
/// file loads as empty.
#[derive(Clone, Debug)]
pub struct JsonFile {
    path: PathBuf,
}

impl JsonFile {
    /// The file at `path` (created with its directory on the first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn backend(e: io::Error) -> PersistError {
    PersistError::Backend(e.to_string())
}

impl DeltaPersistence for JsonFile {
    fn save(&mut self, states: &[PersistedPeerState]) -> Result<(), PersistError> {
        write_atomic(&self.path, json::encode(states).as_bytes()).map_err(backend)
    }

    fn load(&mut self) -> Result<Vec<PersistedPeerState>, PersistError> {
        match fs::read(&self.path) {
            Ok(bytes) => json::decode(&bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(backend(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_atomically_loads_back_and_refuses_a_file_as_dir() {
        let root =
            std::env::temp_dir().join(std::format!("whisper-statedir-{}", std::process::id()));
        let dir = StateDir::open(root.join("a/b")).unwrap();
        assert_eq!(dir.load(PersistKey::DeltaState).unwrap(), None);
        dir.save(PersistKey::DeltaState, b"one").unwrap();
        dir.save(PersistKey::DeltaState, b"two").unwrap();
        assert_eq!(
            dir.load(PersistKey::DeltaState).unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert!(!root.join("a/b/delta.json.tmp").exists());
        let file = root.join("plain");
        fs::write(&file, b"x").unwrap();
        assert_eq!(
            StateDir::open(&file).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let _ = fs::remove_dir_all(&root);
    }
}
