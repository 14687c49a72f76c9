//! [`RumorConfig`] and its defaults.

use core::num::NonZeroU32;

use crate::rumor::DEFAULT_CAPACITY;
use crate::time::Duration;
use crate::wire::Limits;

/// Default ACK timeout (the reference's `EnableACKs` default).
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(3);

/// Default floor of the adaptive ACK timeout ([`RumorConfig::min_ack_timeout`]): RFC
/// 6298's minimum RTO. A spurious timeout is not free: the retry goes to the block's
/// takeover, which covers the whole block again (its members get duplicates), so the
/// floor stays well above a stalled but live peer's delay. Lower it on lossy datagram
/// transports with steady round trips.
pub const DEFAULT_MIN_ACK_TIMEOUT: Duration = Duration::from_secs(1);

/// Default retry budget per frame. The reference's `EnableACKs` uses 3; with 5 a frame
/// is lost only if six copies are (at 5 % frame loss, 1.6 in 10⁸ instead of 6 in 10⁶).
pub const DEFAULT_ACK_RETRIES: u8 = 5;

/// Default bound of the pending-ACK table.
pub const DEFAULT_MAX_PENDING_ACKS: NonZeroU32 = NonZeroU32::new(4096).unwrap();

/// Rumor push settings.
///
/// The reference's `RumorConfig` has `{MaxHops, Fanout, ForwardProbability, Enabled}`.
/// Its zero value disables forwarding and `Enabled` is never read (§t item 15). Here
/// [`Default`] is [`service_mesh`](Self::service_mesh), and whether rumors are pushed at
/// all is the engine's choice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RumorConfig {
    /// Random fallback only: the most hops a fallback frame may carry. The origin always
    /// sends. A relay forwards a fallback frame it received with hop `h` only if
    /// `h < max_hops`. Cube routing ignores it.
    pub max_hops: u8,
    /// Random fallback only: the base fan-out, raised to `floor(log2 C)` for `C`
    /// candidates (see [`adaptive_fanout`](super::adaptive_fanout)).
    pub fanout: u8,
    /// Random fallback only: a relay forwards with probability
    /// `forward_probability / (1 + hop)`. Values outside `[0, 1]` act as the nearest
    /// bound; NaN never forwards.
    pub forward_probability: f64,
    /// How long to wait for a G3-ACK before retrying, at most. Zero means the default,
    /// 3 s. It is the timeout towards a peer until one of its ACKs was timed.
    pub ack_timeout: Duration,
    /// The floor of the adaptive ACK timeout. Towards a peer whose ACKs were timed, the
    /// timeout is `SRTT + 4·RTTVAR` of its ACK round trips (RFC 6298, sampled only from
    /// frames sent to it once: Karn's rule), between this floor and
    /// [`ack_timeout`](Self::ack_timeout); towards a peer not yet timed, twice that
    /// estimate pooled over all peers, until the first ACK at all. A frame sent again to the same peer waits
    /// twice as long each time, up to `ack_timeout`. A floor at or above `ack_timeout`
    /// turns adaptation off.
    pub min_ack_timeout: Duration,
    /// Retries per unacknowledged frame (0: none).
    pub ack_retries: u8,
    /// Capacity of the seen-rumor LRU (clamped to [`crate::rumor::MAX_CAPACITY`]).
    pub lru_capacity: NonZeroU32,
    /// Most frames awaiting an ACK at once.
    pub max_pending_acks: NonZeroU32,
    /// Largest payload pushed by G3 (`Limits::max_rumor_send`, default 256 KiB).
    pub max_payload: u32,
}

impl RumorConfig {
    /// The reference's `ServiceMeshRumorConfig` (`{3, 3, 1.0}`), for small meshes, with
    /// the default ACK settings (adaptive timeout from 1 s to 3 s, 5 retries) and a
    /// 4096-entry LRU.
    pub const fn service_mesh() -> Self {
        Self {
            max_hops: 3,
            fanout: 3,
            forward_probability: 1.0,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            min_ack_timeout: DEFAULT_MIN_ACK_TIMEOUT,
            ack_retries: DEFAULT_ACK_RETRIES,
            lru_capacity: DEFAULT_CAPACITY,
            max_pending_acks: DEFAULT_MAX_PENDING_ACKS,
            max_payload: Limits::DEFAULT.max_rumor_send,
        }
    }

    /// The reference's `AgentMeshRumorConfig` (`{4, 3, 0.6}`), for meshes of hundreds of
    /// devices, with the same ACK and LRU defaults.
    pub const fn agent_mesh() -> Self {
        Self {
            max_hops: 4,
            forward_probability: 0.6,
            ..Self::service_mesh()
        }
    }

    /// The ACK timeout actually used: [`ack_timeout`](Self::ack_timeout), or 3 s when
    /// it is zero.
    pub fn effective_ack_timeout(&self) -> Duration {
        if self.ack_timeout.is_zero() {
            DEFAULT_ACK_TIMEOUT
        } else {
            self.ack_timeout
        }
    }
}

impl Default for RumorConfig {
    /// [`RumorConfig::service_mesh`].
    fn default() -> Self {
        Self::service_mesh()
    }
}
