//! The event queue: one `(virtual time, sequence number)` order for every event, and
//! the trace hash of what was processed.

use super::{App, Sim};
use whisper_proto::{Bytes, ConnId, Instant};

#[derive(Debug)]
pub(super) enum Ev {
    Timer {
        node: usize,
        incarnation: u32,
        at: Instant,
    },
    Deliver {
        link: usize,
        generation: u32,
        to: usize,
        bytes: Bytes,
    },
    Disconnect {
        node: usize,
        incarnation: u32,
        conn: ConnId,
    },
    Connect {
        link: usize,
    },
    Sample,
}

#[derive(Debug)]
pub(super) struct Queued {
    pub(super) at: Instant,
    pub(super) seq: u64,
    pub(super) ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    /// Reversed, so that [`BinaryHeap`](std::collections::BinaryHeap) pops the earliest
    /// `(at, seq)` first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<A: App> Sim<A> {
    pub(super) fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued {
            at: at.max(self.now),
            seq: self.seq,
            ev,
        });
    }

    pub(super) fn mix(&mut self, words: &[u64]) {
        for w in words {
            for b in w.to_le_bytes() {
                self.trace ^= u64::from(b);
                self.trace = self.trace.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BinaryHeap;

    #[test]
    pub(super) fn queue_orders_by_time_then_sequence() {
        let mut h = BinaryHeap::new();
        for (at, seq) in [(5, 1), (3, 2), (5, 0), (3, 3)] {
            h.push(Queued {
                at: Instant::from_micros(at),
                seq,
                ev: Ev::Sample,
            });
        }
        let order: Vec<_> =
            std::iter::from_fn(|| h.pop().map(|q| (q.at.as_micros(), q.seq))).collect();
        assert_eq!(order, [(3, 2), (3, 3), (5, 0), (5, 1)]);
    }
}
