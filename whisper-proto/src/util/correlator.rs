//! Request/response correlation with deadlines and fan-out.
//!
//! A [`Correlator`] tracks requests awaiting replies. Each is registered under an id with a
//! deadline and an expected number of replies (one for a plain request, more for a fan-out
//! query). Replies are matched with [`Correlator::complete`]; requests still open at their
//! deadline are handed back by [`Correlator::expire`] together with the partial replies
//! collected so far. Every registered id ends exactly once: completed, expired or cancelled.
//!
//! The correlator never reads a clock: the driver passes `now` and folds
//! [`Correlator::next_deadline`] into its single timer.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::num::NonZeroUsize;

use crate::time::Instant;

/// Pending requests keyed by `K`, each collecting replies of type `Resp`.
///
/// # Bounds
///
/// At most `capacity` requests are pending; [`register`](Self::register) fails with
/// [`RegisterError::Full`] beyond that. Each request keeps at most its `expected` replies.
///
/// # Example
///
/// ```
/// use core::num::NonZeroUsize;
/// use whisper_proto::time::{Duration, Instant};
/// use whisper_proto::util::{Correlator, Reply};
///
/// let mut pending = Correlator::new(NonZeroUsize::new(64).unwrap());
/// let now = Instant::from_secs(1);
/// let deadline = now + Duration::from_secs(5);
///
/// // A fan-out query expecting three answers.
/// pending.register_fan_out(7u64, deadline, NonZeroUsize::new(3).unwrap())?;
/// assert_eq!(pending.next_deadline(), Some(deadline));
/// assert_eq!(
///     pending.complete(now, &7, "a"),
///     Reply::Partial { received: 1, expected: 3 }
/// );
///
/// // Only one more answer arrives before the deadline.
/// let _ = pending.complete(now, &7, "b");
/// let expired = pending.expire(deadline);
/// assert_eq!(expired.len(), 1);
/// assert_eq!(expired[0].id, 7);
/// assert_eq!(expired[0].replies, ["a", "b"]);
/// assert!(pending.is_empty());
/// # Ok::<(), whisper_proto::util::RegisterError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Correlator<K, Resp> {
    pending: BTreeMap<K, Pending<Resp>>,
    /// The same requests ordered by deadline, for [`Correlator::expire`].
    deadlines: BTreeSet<(Instant, K)>,
    capacity: NonZeroUsize,
}

#[derive(Clone, Debug)]
struct Pending<Resp> {
    deadline: Instant,
    expected: NonZeroUsize,
    replies: Vec<Resp>,
}

/// What [`Correlator::complete`] did with a reply.
#[derive(Clone, Debug, Eq, PartialEq)]
#[must_use]
pub enum Reply<Resp> {
    /// The last expected reply arrived: the request is finished and removed. Holds every
    /// reply in arrival order.
    Complete(Vec<Resp>),
    /// The deadline has passed (`now >= deadline`): the reply is handed back unrecorded and
    /// the request waits for [`Correlator::expire`].
    Late(Resp),
    /// The reply was recorded; the request waits for more.
    Partial {
        /// Replies recorded so far.
        received: usize,
        /// Replies the request was registered with.
        expected: usize,
    },
    /// No request is pending under that id (never registered, or already finished). The
    /// reply is handed back; nothing changed.
    Unknown(Resp),
}

/// A request that reached its deadline before all its replies arrived.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Expired<K, Resp> {
    /// The request's id.
    pub id: K,
    /// The replies collected before the deadline, in arrival order.
    pub replies: Vec<Resp>,
}

/// Why [`Correlator::register`] refused a request.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The id is already pending. Does not affect state: the existing request is untouched.
    #[error("request id is already pending")]
    Duplicate,
    /// `capacity` requests are already pending. Does not affect state: the new request is
    /// not tracked.
    #[error("correlator full ({capacity} pending requests)")]
    Full {
        /// The correlator's bound.
        capacity: usize,
    },
}

impl<K: Ord + Clone, Resp> Correlator<K, Resp> {
    /// An empty correlator holding at most `capacity` pending requests.
    pub const fn new(capacity: NonZeroUsize) -> Self {
        Self {
            pending: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            capacity,
        }
    }

    /// Registers a request expecting a single reply by `deadline`.
    ///
    /// # Errors
    ///
    /// [`RegisterError`] if `id` is already pending or the correlator is full.
    pub fn register(&mut self, id: K, deadline: Instant) -> Result<(), RegisterError> {
        self.register_fan_out(id, deadline, NonZeroUsize::MIN)
    }

    /// Registers a fan-out request that finishes once `expected` replies have arrived, or
    /// expires at `deadline` with whatever arrived by then.
    ///
    /// # Errors
    ///
    /// [`RegisterError`] if `id` is already pending or the correlator is full.
    pub fn register_fan_out(
        &mut self,
        id: K,
        deadline: Instant,
        expected: NonZeroUsize,
    ) -> Result<(), RegisterError> {
        if self.pending.contains_key(&id) {
            return Err(RegisterError::Duplicate);
        }
        if self.pending.len() >= self.capacity.get() {
            return Err(RegisterError::Full {
                capacity: self.capacity.get(),
            });
        }
        self.deadlines.insert((deadline, id.clone()));
        let pending = Pending {
            deadline,
            expected,
            replies: Vec::new(),
        };
        self.pending.insert(id, pending);
        Ok(())
    }

    /// Matches a reply received at `now` to the request `id`.
    ///
    /// Call after: decoding a response that names its request.
    pub fn complete(&mut self, now: Instant, id: &K, resp: Resp) -> Reply<Resp> {
        let Some(pending) = self.pending.get_mut(id) else {
            return Reply::Unknown(resp);
        };
        if now >= pending.deadline {
            return Reply::Late(resp);
        }
        pending.replies.push(resp);
        let (received, expected) = (pending.replies.len(), pending.expected.get());
        if received < expected {
            return Reply::Partial { received, expected };
        }
        Reply::Complete(self.remove(id).unwrap_or_default())
    }

    /// Removes the request `id` without waiting for its deadline, returning the replies it
    /// collected, or `None` if it was not pending.
    pub fn cancel(&mut self, id: &K) -> Option<Vec<Resp>> {
        self.remove(id)
    }

    /// Removes and returns one request whose deadline is at or before `now`, earliest
    /// deadline first.
    ///
    /// Call after: the timer armed from [`next_deadline`](Self::next_deadline) fires; repeat
    /// until it returns `None`.
    pub fn poll_expired(&mut self, now: Instant) -> Option<Expired<K, Resp>> {
        let (deadline, id) = self.deadlines.first()?;
        if *deadline > now {
            return None;
        }
        let id = id.clone();
        let replies = self.remove(&id)?;
        Some(Expired { id, replies })
    }

    /// Removes and returns every request whose deadline is at or before `now`, earliest
    /// deadline first.
    pub fn expire(&mut self, now: Instant) -> Vec<Expired<K, Resp>> {
        core::iter::from_fn(|| self.poll_expired(now)).collect()
    }

    /// The earliest deadline among pending requests, for the driver's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Whether `id` is pending.
    pub fn contains(&self, id: &K) -> bool {
        self.pending.contains_key(id)
    }

    /// Number of pending requests.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no request is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The bound on pending requests.
    pub const fn capacity(&self) -> NonZeroUsize {
        self.capacity
    }

    fn remove(&mut self, id: &K) -> Option<Vec<Resp>> {
        let pending = self.pending.remove(id)?;
        self.deadlines.remove(&(pending.deadline, id.clone()));
        Some(pending.replies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;
    use alloc::vec;
    use quickcheck::{Arbitrary, Gen, quickcheck};

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn single_reply_completes() {
        let mut c = Correlator::new(nz(4));
        let t = Instant::from_secs(1);
        c.register(1u32, t + Duration::from_secs(1)).unwrap();
        assert_eq!(c.complete(t, &1, 'x'), Reply::Complete(vec!['x']));
        assert!(c.is_empty());
        assert_eq!(c.next_deadline(), None);
        assert_eq!(c.complete(t, &1, 'y'), Reply::Unknown('y'));
    }

    #[test]
    fn fan_out_collects_until_all_answered() {
        let mut c = Correlator::new(nz(4));
        let t = Instant::ZERO;
        c.register_fan_out(1u32, Instant::from_secs(9), nz(2))
            .unwrap();
        assert_eq!(
            c.complete(t, &1, 10),
            Reply::Partial {
                received: 1,
                expected: 2
            }
        );
        assert_eq!(c.complete(t, &1, 20), Reply::Complete(vec![10, 20]));
        assert!(c.expire(Instant::MAX).is_empty());
    }

    #[test]
    fn late_replies_are_not_recorded_and_expiry_reports_partials() {
        let mut c = Correlator::new(nz(4));
        let deadline = Instant::from_secs(2);
        c.register_fan_out(5u32, deadline, nz(3)).unwrap();
        let _ = c.complete(Instant::from_secs(1), &5, 'a');
        assert_eq!(c.complete(deadline, &5, 'b'), Reply::Late('b'));
        assert!(c.expire(Instant::from_secs(1)).is_empty());
        assert_eq!(
            c.expire(deadline),
            vec![Expired {
                id: 5,
                replies: vec!['a']
            }]
        );
    }

    #[test]
    fn bound_and_duplicates_are_rejected_without_change() {
        let mut c = Correlator::<u32, ()>::new(nz(2));
        c.register(1, Instant::from_secs(5)).unwrap();
        assert_eq!(
            c.register(1, Instant::from_secs(1)),
            Err(RegisterError::Duplicate)
        );
        c.register(2, Instant::from_secs(3)).unwrap();
        assert_eq!(
            c.register(3, Instant::from_secs(1)),
            Err(RegisterError::Full { capacity: 2 })
        );
        assert_eq!(c.next_deadline(), Some(Instant::from_secs(3)));
        assert_eq!(c.cancel(&2), Some(vec![]));
        assert_eq!(c.next_deadline(), Some(Instant::from_secs(5)));
        assert!(!c.contains(&2));
        c.register(3, Instant::from_secs(1)).unwrap();
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn expiry_is_in_deadline_order() {
        let mut c = Correlator::<u32, ()>::new(nz(8));
        for (id, s) in [(1, 4), (2, 1), (3, 3)] {
            c.register(id, Instant::from_secs(s)).unwrap();
        }
        let ids: Vec<u32> = c
            .expire(Instant::from_secs(3))
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, [2, 3]);
        assert_eq!(c.next_deadline(), Some(Instant::from_secs(4)));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Register { id: u8, ttl: u8, expected: u8 },
        Reply { id: u8 },
        Advance(u8),
        Cancel { id: u8 },
    }

    impl Arbitrary for Op {
        fn arbitrary(g: &mut Gen) -> Self {
            let id = u8::arbitrary(g) % 16;
            match u8::arbitrary(g) % 4 {
                0 => Self::Register {
                    id,
                    ttl: u8::arbitrary(g) % 10,
                    expected: u8::arbitrary(g) % 4,
                },
                1 => Self::Reply { id },
                2 => Self::Advance(u8::arbitrary(g) % 5),
                _ => Self::Cancel { id },
            }
        }
    }

    quickcheck! {
        fn bounded_and_every_id_ends_exactly_once(ops: Vec<Op>, cap: u8) -> bool {
            let cap = nz(usize::from(cap % 6) + 1);
            let mut c = Correlator::new(cap);
            let mut now = Instant::ZERO;
            // Registrations accepted, and ends observed, per id (ids are reused).
            let (mut registered, mut ended) = ([0u32; 16], [0u32; 16]);
            let mut ok = true;
            for op in ops {
                match op {
                    Op::Register { id, ttl, expected } => {
                        let deadline = now + Duration::from_secs(u64::from(ttl));
                        let expected = nz(usize::from(expected) + 1);
                        if c.register_fan_out(id, deadline, expected).is_ok() {
                            registered[usize::from(id)] += 1;
                        }
                    }
                    Op::Reply { id } => {
                        if let Reply::Complete(replies) = c.complete(now, &id, id) {
                            ok &= !replies.is_empty();
                            ended[usize::from(id)] += 1;
                        }
                    }
                    Op::Advance(s) => {
                        now = now + Duration::from_secs(u64::from(s));
                        for e in c.expire(now) {
                            ended[usize::from(e.id)] += 1;
                        }
                        ok &= c.next_deadline().is_none_or(|d| d > now);
                    }
                    Op::Cancel { id } => {
                        if c.cancel(&id).is_some() {
                            ended[usize::from(id)] += 1;
                        }
                    }
                }
                ok &= c.len() <= cap.get();
            }
            for e in c.expire(Instant::MAX) {
                ended[usize::from(e.id)] += 1;
            }
            ok && c.is_empty() && registered == ended
        }
    }
}
