//! The event queue: one `(virtual time, sequence number)` order for every event, and
//! the trace hash of what was processed.

use super::{App, Sim};
use std::collections::BinaryHeap;
use whisper_proto::{Bytes, ConnId, Instant};

/// What the engine simulator queues.
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

/// One queued event and its place in the order.
#[derive(Debug)]
pub(crate) struct Queued<E> {
    pub(crate) at: Instant,
    pub(crate) seq: u64,
    pub(crate) ev: E,
}

impl<E> PartialEq for Queued<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<E> Eq for Queued<E> {}
impl<E> PartialOrd for Queued<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Queued<E> {
    /// Reversed, so that [`BinaryHeap`] pops the earliest `(at, seq)` first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The discrete-event queue every simulator shares: events of type `E` popped in
/// `(at, seq)` order, so events at the same instant run in the order they were queued.
#[derive(Debug)]
pub(crate) struct EventQueue<E> {
    heap: BinaryHeap<Queued<E>>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// Queues `ev` at `at` (callers clamp `at` to the present).
    pub(crate) fn push(&mut self, at: Instant, ev: E) {
        self.seq += 1;
        self.heap.push(Queued {
            at,
            seq: self.seq,
            ev,
        });
    }

    /// The earliest event.
    pub(crate) fn pop(&mut self) -> Option<(Instant, E)> {
        self.heap.pop().map(|q| (q.at, q.ev))
    }

    /// When the earliest event is due.
    pub(crate) fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|q| q.at)
    }

    /// Events queued.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

/// An FNV-1a hash over everything a run processed: equal for equal seeds, almost surely
/// different otherwise.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Trace(u64);

impl Default for Trace {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Trace {
    /// Mixes `words` in.
    pub(crate) fn mix(&mut self, words: &[u64]) {
        for w in words {
            for b in w.to_le_bytes() {
                self.0 ^= u64::from(b);
                self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }

    /// The hash so far.
    pub(crate) fn value(self) -> u64 {
        self.0
    }
}

impl<A: App> Sim<A> {
    pub(super) fn push(&mut self, at: Instant, ev: Ev) {
        self.queue.push(at.max(self.now), ev);
    }

    pub(super) fn mix(&mut self, words: &[u64]) {
        self.trace.mix(words);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_orders_by_time_then_sequence() {
        let mut q = EventQueue::default();
        for (at, tag) in [(5, 'a'), (3, 'b'), (5, 'c'), (3, 'd')] {
            q.push(Instant::from_micros(at), tag);
        }
        let order: Vec<_> =
            std::iter::from_fn(|| q.pop().map(|(at, tag)| (at.as_micros(), tag))).collect();
        assert_eq!(order, [(3, 'b'), (3, 'd'), (5, 'a'), (5, 'c')]);
    }
}
