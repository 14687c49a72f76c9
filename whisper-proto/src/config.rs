//! Engine configuration, with the seed's defaults.

use crate::rumor::RumorConfig;
use crate::time::Duration;
use crate::wire::{Capabilities, Limits};
use core::num::NonZeroU32;

/// The default constants, re-exported from the leaf module [`crate::defaults`].
pub use crate::defaults;

/// Engine configuration. `Config::default()` gives the seed's defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// Caps on every length read from the wire.
    pub limits: Limits,
    /// Capabilities to advertise; the engine advertises only those it also implements
    /// ([`crate::Engine::SUPPORTED`]).
    pub capabilities: Capabilities,
    /// Close a connection whose HELLO has not arrived by then (default 10 s).
    pub hello_timeout: Duration,
    /// Send a G1 keepalive on a connection that sent nothing for this long (default 30 s).
    pub keepalive_interval: Duration,
    /// Close a connection that received nothing for this long (default 90 s: three
    /// missed keepalives).
    pub idle_timeout: Duration,
    /// Most live connections; more are refused (default 1024).
    pub max_connections: usize,
    /// Most actions queued for the driver before the engine refuses new commands
    /// (default 65,536). The driver drains after every call, so this is only reached
    /// by a driver that forgets to.
    pub max_queued_actions: usize,
    /// Base time between G1 rounds with each peer this node dialed (default 10 s). The
    /// first round starts right after `PeerUp`; later ones follow the per-peer adaptive
    /// interval ([`crate::flow::adaptive::AdaptiveInterval`]) around this base.
    pub gossip_interval: Duration,
    /// Fastest G1 cadence, after a round applied records (default 2 s; at most
    /// `gossip_interval`).
    pub gossip_min: Duration,
    /// Slowest G1 cadence, reached while idle (default 60 s; at least
    /// `gossip_interval`).
    pub gossip_max: Duration,
    /// Follow the per-peer adaptive interval (default true). False: every round starts
    /// exactly `gossip_interval` after the previous one ended (no jitter; the peer's
    /// backpressure backoff still applies), for tests and fixed schedules.
    pub adaptive_cadence: bool,
    /// Pending exchanges above which G1 replies signal backpressure (default 5).
    pub backpressure_threshold: u32,
    /// Per-peer inbound, global egress and overload-queue limits.
    pub rate_limit: crate::flow::token_bucket::RateLimitConfig,
    /// The CPU gate (threshold 0 disables it).
    pub cpu_gate: crate::flow::cpu_gate::CpuGateConfig,
    /// How long to wait for the reply to a G1/G2/G2B request before closing the
    /// connection (default 30 s).
    pub exchange_timeout: Duration,
    /// Full-sync baseline: every Nth exchange with a peer (default 10), scaled per peer
    /// by the delta tracker.
    pub full_sync_interval: NonZeroU32,
    /// Unix time at [`crate::Instant::ZERO`]: the engine's wall clock is the driver's
    /// instant plus this offset (default 0). It stamps HLC versions, broadcast TTLs and
    /// delta-tracker activity; the engine never reads a clock.
    pub wall_clock_offset: Duration,
    /// Delta-tracker entries idle longer than this are swept (default 1 h).
    pub delta_max_peer_age: Duration,
    /// How often the sweeper runs (default 5 min): delta entries and store expiry.
    pub delta_sweep_interval: Duration,
    /// Forget a peer's watermarks when its connection closes (default false: they
    /// survive reconnects, as they survive restarts through persistence).
    pub delta_reset_on_disconnect: bool,
    /// G2B bucket count, 1..=256 (default 64).
    pub digest_buckets: usize,
    /// Most open queries (default 1024).
    pub max_pending_queries: usize,
    /// Capacity of the dedup LRU for G3 rumors from peers without `TOPICS` (Go
    /// reference peers; default 4096). Rumors between `TOPICS` peers are deduplicated by
    /// the rumor pusher ([`Config::rumor`]'s `lru_capacity`).
    pub broadcast_dedup_capacity: NonZeroU32,
    /// G3 rumor push settings (default [`RumorConfig::service_mesh`]; pick
    /// [`RumorConfig::agent_mesh`] for meshes of hundreds of devices). Its `max_payload`
    /// is ignored: the engine uses [`Limits::max_rumor_send`].
    pub rumor: RumorConfig,
    /// Push every local StatefulMerge mutation (`put`, `delete`) to every member at once
    /// as a G3 rumor, ahead of the G1 rounds (default true). G1 anti-entropy runs either
    /// way; turn this off to spread records by G1 alone.
    pub rumor_records: bool,
    /// The hypercube the rumor pusher routes on (default: region ordering and dual cube
    /// on, eager rebuilds).
    pub hypercube: crate::hypercube::Config,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::DEFAULT,
            capabilities: Capabilities::ALL,
            hello_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            max_connections: 1024,
            max_queued_actions: 65_536,
            gossip_interval: defaults::GOSSIP_BASE,
            exchange_timeout: defaults::EXCHANGE_TIMEOUT,
            adaptive_cadence: true,
            gossip_min: defaults::GOSSIP_MIN,
            gossip_max: defaults::GOSSIP_MAX,
            backpressure_threshold: defaults::BACKPRESSURE_THRESHOLD,
            rate_limit: crate::flow::token_bucket::RateLimitConfig::default(),
            cpu_gate: crate::flow::cpu_gate::CpuGateConfig::default(),
            full_sync_interval: NonZeroU32::new(defaults::FULL_SYNC_INTERVAL)
                .unwrap_or(NonZeroU32::MIN),
            wall_clock_offset: Duration::ZERO,
            delta_max_peer_age: defaults::DELTA_MAX_PEER_AGE,
            delta_sweep_interval: defaults::DELTA_SWEEP_INTERVAL,
            delta_reset_on_disconnect: false,
            digest_buckets: defaults::DIGEST_BUCKETS,
            max_pending_queries: defaults::MAX_PENDING_QUERIES,
            broadcast_dedup_capacity: crate::rumor::DEFAULT_CAPACITY,
            rumor: RumorConfig::service_mesh(),
            rumor_records: true,
            hypercube: crate::hypercube::Config::default(),
        }
    }
}

impl Config {
    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.keepalive_interval.is_zero() {
            return Err(ConfigError::ZeroDuration("keepalive_interval"));
        }
        if self.idle_timeout <= self.keepalive_interval {
            return Err(ConfigError::IdleBelowKeepalive);
        }
        if self.hello_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration("hello_timeout"));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::ZeroLimit("max_connections"));
        }
        if self.max_queued_actions == 0 {
            return Err(ConfigError::ZeroLimit("max_queued_actions"));
        }
        if self.gossip_interval.is_zero() {
            return Err(ConfigError::ZeroDuration("gossip_interval"));
        }
        if self.exchange_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration("exchange_timeout"));
        }
        if self.delta_sweep_interval.is_zero() {
            return Err(ConfigError::ZeroDuration("delta_sweep_interval"));
        }
        if self.digest_buckets == 0 || self.digest_buckets > 256 {
            return Err(ConfigError::ZeroLimit("digest_buckets (1..=256)"));
        }
        if self.max_pending_queries == 0 {
            return Err(ConfigError::ZeroLimit("max_pending_queries"));
        }
        if self.limits.max_exchange < 4096 {
            return Err(ConfigError::ZeroLimit(
                "limits.max_exchange (at least 4096)",
            ));
        }
        if self.limits.max_rumor_send > self.limits.max_rumor_read {
            return Err(ConfigError::RumorSendAboveRead);
        }
        Ok(())
    }
}

/// A configuration that cannot work. The engine is not built.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("{0} must be positive")]
    ZeroDuration(&'static str),
    /// A count that must be positive is zero.
    #[error("{0} must be positive")]
    ZeroLimit(&'static str),
    /// `idle_timeout` must exceed `keepalive_interval`, or live peers would be closed.
    #[error("idle_timeout must exceed keepalive_interval")]
    IdleBelowKeepalive,
    /// This node would send rumors it refuses to read.
    #[error("max_rumor_send must not exceed max_rumor_read")]
    RumorSendAboveRead,
}
