//! Opt-in utilities for services built on the engine.
//!
//! The engine bakes in what every node needs (framing, routing, timers). The pieces here
//! are optional conveniences a subsystem imports when it needs them:
//!
//! | Utility | Serves |
//! |---|---|
//! | [`Correlator`] | matching replies to requests, fan-out queries with deadlines |
//! | [`SlidingWindowLimiter`] | pull requests and PEX, with a cached answer when limited |
//! | [`LogBatcher`], [`targets`] | per-subsystem `tracing` targets and batched log lines |
//! | [`RetryPolicy`], [`Retrier`] | exponential backoff with optional jitter |
//! | [`CircuitBreaker`] | failing fast on unreachable peers |
//! | [`ConsensusHelper`] | vote aggregation, e.g. the snapshot manifest quorum |
//! | [`DedupCache`] | TTL-based duplicate suppression |
//! | [`BatchCollector`] | coalescing outbound frames per connection |
//!
//! Like the engine, every utility is sans-IO:
//!
//! - time is always an [`Instant`](crate::time::Instant) passed in; none reads a clock, and
//!   those with timeouts expose `next_deadline()` for the driver's single timer;
//! - randomness only comes from a caller's `&mut impl`
//!   [`RandomSource`](crate::rng::RandomSource);
//! - no threads, no locks (except `BatchingLayer`, behind the `std` feature), no panics on
//!   any input;
//! - every table has a documented bound. Invalid settings are unrepresentable (`NonZero*`
//!   types), clamped, or refused with an error, as each constructor documents.

pub mod batch;
pub mod breaker;
pub mod consensus;
pub mod correlator;
pub mod dedup;
pub mod log;
#[cfg(feature = "std")]
pub mod log_layer;
mod lru;
pub mod retry;
pub mod sliding_window;

pub use batch::BatchCollector;
pub use breaker::{BreakerError, BreakerState, CircuitBreaker};
pub use consensus::{
    Aggregator, ConsensusConfigError, ConsensusHelper, TRIM_MADS, VoteError, majority, plurality,
    trimmed_mean,
};
pub use correlator::{Correlator, Expired, RegisterError, Reply};
pub use dedup::DedupCache;
pub use log::{
    DefaultFormatter, Formatter, Group, LogBatcher, LogBatcherConfig, LogEvent, english_list,
    targets,
};
#[cfg(feature = "std")]
pub use log_layer::BatchingLayer;
pub use retry::{Retrier, RetryDecision, RetryPolicy};
pub use sliding_window::{Admission, SlidingWindowLimiter, SlidingWindowStats};
