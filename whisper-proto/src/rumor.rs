//! G3 rumors: identity, deduplication, and the push over the hypercube.
//!
//! A rumor's identity is its [`RumorId`], the BLAKE3-256 digest of the payload
//! ([`rumor_id`]). The same function keys the originator's dedup entry, every receiver's
//! dedup entry and the 32-byte G3-ACK (`[0x4735][rumor_id]`). A node therefore recognises
//! its own rumor when it comes back, and every ACK matches the push it answers. In the Go
//! reference, the origin hashes with FNV-1a while receivers use `"rh:" + hex(prefix)`. So
//! its ACKs never match and an origin does not recognise its own rumor.
//!
//! [`RumorTracker`] is the bounded "seen" set. It is an LRU with O(1) insert, lookup,
//! touch and eviction: a hash map from id to slot, plus a doubly linked recency list
//! threaded through a slot vector by index. Re-seeing an id moves it to the front, so a
//! rumor still circulating is the last to be forgotten.
//!
//! [`RumorPusher`] is the sans-IO push engine: it originates, forwards and acknowledges
//! rumors down the exact hypercube tree, retries an unacknowledged frame over another
//! member of the same half-block, and falls back to a random fan-out when there is no
//! cube. Its [module docs](pusher) describe the algorithm.

pub mod pusher;
mod tracker;

pub use pusher::{
    DropReason, PushError, PushFrame, PusherOutput, RumorConfig, RumorEvent, RumorPusher,
    RumorStats, SendPath, adaptive_fanout,
};
pub use tracker::{DEFAULT_CAPACITY, MAX_CAPACITY, RumorId, RumorTracker, rumor_id};
