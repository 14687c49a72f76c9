//! Size- and time-bounded batching.
//!
//! [`BatchCollector`] accumulates items and hands back a batch when it reaches `max_size`
//! items or when its oldest item has waited `max_wait`, whichever comes first. It serves
//! coalescing of outbound frames per connection. Being sans-IO, it has no timer: the driver
//! asks with `now` through [`push`](BatchCollector::push) and [`poll`](BatchCollector::poll)
//! and arms its own timer from [`next_deadline`](BatchCollector::next_deadline).

use alloc::vec::Vec;
use core::num::NonZeroUsize;

use crate::time::{Duration, Instant};

/// Collects items of type `T` into batches of at most `max_size`.
///
/// Items come out in the order they were pushed; none is lost or duplicated.
///
/// # Bounds
///
/// At most `max_size` items are held: the push that reaches it returns the batch.
///
/// # Example
///
/// ```
/// use core::num::NonZeroUsize;
/// use whisper_proto::time::{Duration, Instant};
/// use whisper_proto::util::BatchCollector;
///
/// let mut frames = BatchCollector::new(NonZeroUsize::new(3).unwrap(), Duration::from_millis(5));
/// let t = Instant::from_millis(100);
/// assert_eq!(frames.push(t, "a"), None);
/// assert_eq!(frames.push(t, "b"), None);
/// assert_eq!(frames.push(t, "c"), Some(vec!["a", "b", "c"])); // full
///
/// assert_eq!(frames.push(t, "d"), None);
/// assert_eq!(frames.next_deadline(), Some(t + Duration::from_millis(5)));
/// assert_eq!(frames.poll(t + Duration::from_millis(4)), None);
/// assert_eq!(frames.poll(t + Duration::from_millis(5)), Some(vec!["d"])); // waited long enough
/// assert_eq!(frames.stop(), Vec::<&str>::new());
/// ```
#[derive(Clone, Debug)]
pub struct BatchCollector<T> {
    items: Vec<T>,
    max_size: NonZeroUsize,
    max_wait: Duration,
    /// When the current batch is due: its first push plus `max_wait`. `None` when empty.
    deadline: Option<Instant>,
}

impl<T> BatchCollector<T> {
    /// An empty collector flushing at `max_size` items or after `max_wait`. A zero
    /// `max_wait` flushes on every push.
    pub const fn new(max_size: NonZeroUsize, max_wait: Duration) -> Self {
        Self {
            items: Vec::new(),
            max_size,
            max_wait,
            deadline: None,
        }
    }

    /// Adds `item` at `now`. Returns the batch (including `item`) if it is now full or due.
    #[must_use = "a returned batch must be sent"]
    pub fn push(&mut self, now: Instant, item: T) -> Option<Vec<T>> {
        let deadline = *self.deadline.get_or_insert(now + self.max_wait);
        self.items.push(item);
        if self.items.len() >= self.max_size.get() || now >= deadline {
            return self.flush();
        }
        None
    }

    /// Returns the batch if its deadline is at or before `now`.
    ///
    /// Call after: the timer armed from [`next_deadline`](Self::next_deadline) fires.
    #[must_use = "a returned batch must be sent"]
    pub fn poll(&mut self, now: Instant) -> Option<Vec<T>> {
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            return self.flush();
        }
        None
    }

    /// When the current batch is due, or `None` when empty.
    pub const fn next_deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Returns the current batch now, or `None` when empty.
    #[must_use = "a returned batch must be sent"]
    pub fn flush(&mut self) -> Option<Vec<T>> {
        self.deadline = None;
        let batch = core::mem::take(&mut self.items);
        (!batch.is_empty()).then_some(batch)
    }

    /// Consumes the collector, returning the items not yet flushed (possibly none).
    pub fn stop(self) -> Vec<T> {
        self.items
    }

    /// Items waiting in the current batch.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The batch size that triggers a flush.
    pub const fn max_size(&self) -> NonZeroUsize {
        self.max_size
    }

    /// How long the first item of a batch may wait.
    pub const fn max_wait(&self) -> Duration {
        self.max_wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use quickcheck::{Arbitrary, Gen, quickcheck};

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn flushes_on_size() {
        let mut bc = BatchCollector::new(nz(2), Duration::from_secs(1));
        assert_eq!(bc.push(ms(0), 1), None);
        assert_eq!(bc.push(ms(1), 2), Some(vec![1, 2]));
        assert_eq!(bc.next_deadline(), None);
        assert!(bc.is_empty());
    }

    #[test]
    fn flushes_on_wait_from_first_item() {
        let mut bc = BatchCollector::new(nz(10), Duration::from_millis(10));
        assert_eq!(bc.push(ms(0), 1), None);
        assert_eq!(bc.push(ms(9), 2), None);
        assert_eq!(bc.next_deadline(), Some(ms(10)));
        assert_eq!(bc.poll(ms(9)), None);
        // A push at the deadline returns the due batch with it.
        assert_eq!(bc.push(ms(10), 3), Some(vec![1, 2, 3]));
        assert_eq!(bc.poll(ms(100)), None);
    }

    #[test]
    fn flush_and_stop() {
        let mut bc = BatchCollector::new(nz(10), Duration::from_millis(10));
        assert_eq!(bc.flush(), None);
        assert_eq!(bc.push(ms(0), 1), None);
        assert_eq!(bc.flush(), Some(vec![1]));
        assert_eq!(bc.push(ms(50), 2), None);
        assert_eq!(bc.next_deadline(), Some(ms(60)));
        assert_eq!(bc.stop(), vec![2]);
    }

    #[test]
    fn zero_wait_flushes_every_push() {
        let mut bc = BatchCollector::new(nz(10), Duration::ZERO);
        assert_eq!(bc.push(ms(5), 'x'), Some(vec!['x']));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push(u8),
        Poll(u8),
        Flush,
    }

    impl Arbitrary for Op {
        fn arbitrary(g: &mut Gen) -> Self {
            match u8::arbitrary(g) % 6 {
                0..=3 => Self::Push(u8::arbitrary(g) % 4),
                4 => Self::Poll(u8::arbitrary(g) % 8),
                _ => Self::Flush,
            }
        }
    }

    quickcheck! {
        /// Concatenating every batch and the remainder gives back exactly the pushed items,
        /// in order; no batch is empty, oversized or overdue.
        fn never_loses_or_duplicates(ops: Vec<Op>, size: u8, wait: u8) -> bool {
            let size = nz(usize::from(size % 5) + 1);
            let wait = Duration::from_millis(u64::from(wait % 10));
            let mut bc = BatchCollector::new(size, wait);
            let (mut now, mut next, mut pushed, mut out) = (0, 0u32, Vec::new(), Vec::new());
            let mut ok = true;
            for op in ops {
                let batch = match op {
                    Op::Push(dt) => {
                        now += u64::from(dt);
                        pushed.push(next);
                        next += 1;
                        bc.push(ms(now), next - 1)
                    }
                    Op::Poll(dt) => {
                        now += u64::from(dt);
                        bc.poll(ms(now))
                    }
                    Op::Flush => bc.flush(),
                };
                if let Some(batch) = batch {
                    ok &= !batch.is_empty() && batch.len() <= size.get();
                    out.extend(batch);
                }
                ok &= bc.len() < size.get() && bc.next_deadline().is_none_or(|d| d > ms(now));
            }
            out.extend(bc.stop());
            ok && out == pushed
        }
    }
}
