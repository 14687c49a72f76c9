//! The seed's and the Go reference's default constants, in one place: a leaf module
//! that [`crate::config`] and the subsystems ([`crate::flow`]) read without depending on
//! each other.
//!
//! [`Config`](crate::Config) and the flow subsystems read every constant here. The rumor
//! pusher's defaults live with it (`DEFAULT_*` in [`crate::rumor::pusher`], used by
//! [`RumorConfig::service_mesh`](crate::rumor::RumorConfig::service_mesh)), and the
//! rumor dedup LRU's capacity is [`crate::rumor::DEFAULT_CAPACITY`].

use crate::time::Duration;

/// G1 exchange cadence: fastest (after records were applied).
pub const GOSSIP_MIN: Duration = Duration::from_secs(2);
/// G1 exchange cadence: base.
pub const GOSSIP_BASE: Duration = Duration::from_secs(10);
/// G1 exchange cadence: idle ceiling.
pub const GOSSIP_MAX: Duration = Duration::from_secs(60);
/// Jitter applied to every interval sample, as a fraction.
pub const GOSSIP_JITTER: f64 = 0.15;
/// Pending exchanges above which a node signals backpressure.
pub const BACKPRESSURE_THRESHOLD: u32 = 5;
/// First backoff after a peer signals backpressure.
pub const BACKPRESSURE_INITIAL_BACKOFF: Duration = Duration::from_secs(30);
/// Backoff ceiling.
pub const BACKPRESSURE_MAX_BACKOFF: Duration = Duration::from_secs(120);
/// Per-peer message allowance, messages per second.
pub const PEER_MESSAGES_PER_SEC: u32 = 100;
/// Per-peer burst.
pub const PEER_BURST: u32 = 500;
/// Global egress cap, bytes per second.
pub const EGRESS_BYTES_PER_SEC: u64 = 10 * 1024 * 1024;
/// Global egress burst, bytes.
pub const EGRESS_BURST: u64 = 10 * 1024 * 1024;
/// Outbound queue depth above which `publish` reports backpressure.
pub const OVERLOAD_QUEUE_THRESHOLD: usize = 1024;
/// Full sync every Nth exchange with a peer (before adaptive scaling).
pub const FULL_SYNC_INTERVAL: u32 = 10;
/// How long an initiator waits for the reply to a G1, G2 or G2B request.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Delta-tracker entries idle longer than this are swept.
pub const DELTA_MAX_PEER_AGE: Duration = Duration::from_secs(3600);
/// How often the delta sweeper (and store expiry) runs.
pub const DELTA_SWEEP_INTERVAL: Duration = Duration::from_secs(300);
/// How often a driver should save delta state.
pub const DELTA_SAVE_INTERVAL: Duration = Duration::from_secs(30);
/// Persisted delta entries older than this are dropped on load.
pub const DELTA_LOAD_MAX_AGE: Duration = Duration::from_secs(20 * 60);
/// G2B bucket count (the reference's default).
pub const DIGEST_BUCKETS: usize = 64;
/// Most open queries.
pub const MAX_PENDING_QUERIES: usize = 1024;
