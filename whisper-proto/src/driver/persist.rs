//! Persistence as outputs: the driver says what to save ([`Output::Persist`]) and is
//! handed it back at the next start ([`Driver::restore`]); the adapter owns the files.

use std::vec::Vec;

use super::{Driver, Output, PersistKey};
use crate::config::defaults::DELTA_LOAD_MAX_AGE;
use crate::delta::{PersistError, PersistedPeerState, json};
use crate::time::Instant;
use crate::util::log::targets;

impl Driver {
    /// Hands the driver state saved by an earlier run ([`Output::Persist`] under `key`).
    /// Call before registering topics, or after: delta state reaches each StatefulMerge
    /// topic as it is registered. Returns how many entries were read.
    ///
    /// # Errors
    /// [`PersistError`] when the bytes do not parse: nothing is installed, and every
    /// peer starts with a full sync (the saved state is an optimisation, never needed
    /// for correctness).
    pub fn restore(
        &mut self,
        now: Instant,
        key: PersistKey,
        bytes: &[u8],
    ) -> Result<usize, PersistError> {
        self.advance(now);
        match key {
            PersistKey::DeltaState => {
                let states = json::decode(bytes)?;
                let n = states.len();
                self.restored = states;
                for topic in self.stateful.clone() {
                    self.import_restored(&topic);
                }
                Ok(n)
            }
        }
    }

    /// Asks the adapter to save the driver's state now ([`Output::Persist`]), as it does
    /// every [`DriverConfig::persist_interval`](super::DriverConfig::persist_interval)
    /// and at the end of a shutdown. Returns how many delta entries the state holds.
    pub fn persist_now(&mut self, now: Instant) -> usize {
        self.advance(now);
        self.emit_persist()
    }

    /// The adapter finished an [`Output::Persist`]: `ok` is false when it could not
    /// save (counted in [`DriverStats::persist_errors`](super::DriverStats); the next
    /// period tries again).
    pub fn handle_persisted(&mut self, now: Instant, key: PersistKey, ok: bool) {
        self.advance(now);
        if !ok {
            self.stats.persist_errors += 1;
            tracing::warn!(target: targets::ADAPTER, ?key, "state not saved");
        }
    }

    pub(super) fn emit_persist(&mut self) -> usize {
        let states = self.engine.export_delta();
        let bytes = json::encode(&states).into_bytes();
        self.stats.persists += 1;
        self.out.push_back(Output::Persist {
            key: PersistKey::DeltaState,
            bytes: bytes.into(),
        });
        states.len()
    }

    /// Installs the restored delta entries of `topic` (registered just now).
    pub(super) fn import_restored(&mut self, topic: &str) {
        let mine: Vec<PersistedPeerState> = self
            .restored
            .iter()
            .filter(|s| s.topic == topic)
            .cloned()
            .collect();
        if mine.is_empty() {
            return;
        }
        self.restored.retain(|s| s.topic != topic);
        let n = self
            .engine
            .import_delta(self.now, &mine, DELTA_LOAD_MAX_AGE);
        tracing::debug!(target: targets::ADAPTER, topic, loaded = n, "delta state restored");
    }
}
