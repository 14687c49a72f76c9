//! Flow control, one concern per file: when to gossip and when to hold back.
//!
//! * [`adaptive`]: the per-peer adaptive G1 cadence, the backpressure monitor and the
//!   sender-side peer backoff.
//! * [`token_bucket`]: the engine's token-bucket limits (per-peer inbound messages,
//!   global egress bytes with priority headroom, the overload queue threshold). Not the
//!   sliding-window limiter of [`crate::util::sliding_window`].
//! * [`cpu_gate`]: the CPU gate, from the engine's own tick skew.
//! * [`rtt`]: round-trip estimators (the G1 exchange ring and the RFC 6298 estimator
//!   behind the rumor pusher's ACK timeout).
//!
//! The engine wires them in `engine/flow.rs` ([`crate::Engine::flow_stats`]).

pub mod adaptive;
pub mod cpu_gate;
pub mod rtt;
pub mod token_bucket;
