//! Integration tests for whisper: multi-engine steppers, conformance and (later) the
//! deterministic simulator. The reusable harness lives here; the tests in `tests/`.

#![forbid(unsafe_code)]

pub mod adapters;
pub mod mesh;
pub mod pair;
pub mod sim;
