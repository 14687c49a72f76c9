//! whisper driven by smol.
//!
//! This crate will hold the thin smol adapter over [`whisper_proto::Engine`]: sockets,
//! timers and a command channel, with no protocol logic of its own. Until it lands,
//! drive the engine directly as the `whisper-proto` crate docs show.

#![forbid(unsafe_code)]

pub use whisper_proto;
