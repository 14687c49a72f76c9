//! The driver's settings and counters.

use core::num::NonZeroU32;

#[allow(unused_imports)] // doc links
use super::{Driver, Output};
#[allow(unused_imports)]
use crate::engine::EngineStats;
use crate::time::Duration;
use crate::util::RetryPolicy;

/// Settings every adapter shares. `DriverConfig::default()` suits a LAN deployment.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Most bytes queued for one connection, including the write in flight (default
    /// 4 MiB). A send beyond it closes that connection as too slow. Keep it above the
    /// largest frame the engine sends, or such a frame closes every connection.
    pub write_queue_limit: usize,
    /// Most bytes coalesced into one [`Output::Write`] (default 64 KiB). A single larger
    /// send is passed through whole, without copying.
    pub max_write_batch: usize,
    /// Backoff between dials of a configured peer (default: 10 retries, 100 ms doubling
    /// to 30 s, 20 % jitter). When the policy gives up the backoff starts over.
    pub reconnect: RetryPolicy,
    /// Consecutive failed dials that open a configured peer's circuit (default 5).
    pub breaker_threshold: NonZeroU32,
    /// How long an open circuit refuses dials (default 30 s).
    pub breaker_reset: Duration,
    /// A dial that has not connected by then is aborted and counted as failed
    /// (default 5 s).
    pub dial_timeout: Duration,
    /// How long a closing connection may take to flush its queue before it is closed
    /// anyway (default 2 s). Shutdown waits at most this long for flushes.
    pub close_linger: Duration,
    /// Capacity of the command channel from handles to the driver (default 256). A full
    /// channel makes async callers wait and blocking callers block.
    pub command_capacity: usize,
    /// Capacity of each event subscriber's channel (default 1024). A subscriber that
    /// falls that far behind loses events, counted by the adapter (`runtime::Subscribers::dropped`).
    pub event_capacity: usize,
    /// Capacity of an async adapter's internal channel from connection tasks to the
    /// driver (default 1024). A full channel pauses reads: TCP backpressure.
    pub input_capacity: usize,
    /// Size of the buffer each read fills (default 64 KiB).
    pub read_buffer: usize,
    /// How often the driver asks for its state to be saved ([`Output::Persist`]), besides
    /// once at the end of a shutdown (default `None`: never). Whatever the adapter saves
    /// it hands back at the next start with [`Driver::restore`]. At least
    /// [`MIN_PERSIST_INTERVAL`](super::MIN_PERSIST_INTERVAL) (1 s); shorter ones are raised
    /// to it.
    pub persist_interval: Option<Duration>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            write_queue_limit: 4 << 20,
            max_write_batch: 64 << 10,
            reconnect: RetryPolicy::new(10, Duration::from_millis(100), Duration::from_secs(30))
                .with_jitter(0.2),
            breaker_threshold: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
            breaker_reset: Duration::from_secs(30),
            dial_timeout: Duration::from_secs(5),
            close_linger: Duration::from_secs(2),
            command_capacity: 256,
            event_capacity: 1024,
            input_capacity: 1024,
            read_buffer: 64 << 10,
            persist_interval: None,
        }
    }
}

/// Driver counters, next to the engine's [`EngineStats`]. Cheap to copy.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct DriverStats {
    /// Inbound connections handed to the engine.
    pub accepted: u64,
    /// Connections refused (engine limit, or shutting down).
    pub refused: u64,
    /// Dials started.
    pub dials: u64,
    /// Dials that failed, timed out, or closed before the peer's HELLO.
    pub dial_failures: u64,
    /// Configured peers connected again after an earlier connection to them was up.
    pub reconnects: u64,
    /// Connections closed by the dial tie-break.
    pub tie_breaks: u64,
    /// Connections closed because their write queue passed its bound.
    pub slow_closes: u64,
    /// Closing connections whose flush did not finish within the linger time.
    pub lingers_expired: u64,
    /// `Send` actions queued.
    pub sends: u64,
    /// Writes handed to the adapter (each one or more coalesced sends).
    pub writes: u64,
    /// Dials skipped because the peer's circuit was open.
    pub breaker_rejections: u64,
    /// [`Output::Persist`]s emitted.
    pub persists: u64,
    /// Saves the adapter reported as failed ([`Driver::handle_persisted`]).
    pub persist_errors: u64,
}
