//! Vote collection and aggregation with outlier removal.
//!
//! A [`ConsensusHelper`] keeps one vote per voter (a later vote replaces the earlier one) and,
//! once a quorum has voted, combines the votes with an aggregator. It serves the snapshot
//! manifest quorum and any "what do my peers think this value is" question.
//!
//! Built-in aggregators:
//!
//! - [`trimmed_mean`]: median-centred mean that drops outliers (see its docs for the rule);
//! - [`majority`]: the value held by more than half of the votes, if any;
//! - [`plurality`]: the most common value, ties going to the smallest.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::num::NonZeroUsize;

/// Combines votes into one value, or `None` if they do not determine one.
///
/// Aggregators receive the votes in voter order. Any non-capturing closure coerces to this.
pub type Aggregator<T> = fn(&[T]) -> Option<T>;

/// Votes of type `T` from voters identified by `V`, aggregated once a quorum is reached.
///
/// # Bounds
///
/// At most `max_voters` distinct voters are held; votes from further voters are refused with
/// [`VoteError::Full`] (never evicting a vote, so a flood of voters cannot displace honest
/// ones). Voters already counted may still change their vote.
///
/// # Example
///
/// ```
/// use core::num::NonZeroUsize;
/// use whisper_proto::util::{ConsensusHelper, trimmed_mean};
///
/// let quorum = NonZeroUsize::new(3).unwrap();
/// let max_voters = NonZeroUsize::new(64).unwrap();
/// let mut uptime = ConsensusHelper::new(quorum, max_voters, trimmed_mean)?;
/// uptime.add_vote("alice", 100)?;
/// uptime.add_vote("bob", 104)?;
/// assert_eq!(uptime.result(), None); // no quorum yet
///
/// uptime.add_vote("mallory", 1_000_000_000)?;
/// assert_eq!(uptime.result(), Some(102)); // the outlier is ignored
///
/// uptime.add_vote("mallory", 98)?; // replaces mallory's earlier vote
/// assert_eq!(uptime.vote_count(), 3);
/// assert_eq!(uptime.result(), Some(100)); // (98 + 100 + 104) / 3, rounded down
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ConsensusHelper<T, V> {
    votes: BTreeMap<V, T>,
    quorum: NonZeroUsize,
    max_voters: NonZeroUsize,
    aggregator: Aggregator<T>,
}

/// Why [`ConsensusHelper::new`] refused its configuration.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsensusConfigError {
    /// The quorum could never be reached because fewer voters are held. No helper is created.
    #[error("quorum {quorum} exceeds the voter bound {max_voters}")]
    QuorumAboveMaxVoters {
        /// The requested quorum.
        quorum: usize,
        /// The requested voter bound.
        max_voters: usize,
    },
}

/// Why [`ConsensusHelper::add_vote`] refused a vote.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum VoteError {
    /// A new voter arrived while `max_voters` voters are held. Does not affect state: the
    /// vote is dropped and existing votes are kept.
    #[error("voter bound {max_voters} reached")]
    Full {
        /// The helper's voter bound.
        max_voters: usize,
    },
}

impl<T: Clone, V: Ord> ConsensusHelper<T, V> {
    /// A helper needing `quorum` votes, holding at most `max_voters` voters, combining votes
    /// with `aggregator`.
    ///
    /// # Errors
    ///
    /// [`ConsensusConfigError::QuorumAboveMaxVoters`] if `quorum > max_voters`.
    pub fn new(
        quorum: NonZeroUsize,
        max_voters: NonZeroUsize,
        aggregator: Aggregator<T>,
    ) -> Result<Self, ConsensusConfigError> {
        if quorum > max_voters {
            return Err(ConsensusConfigError::QuorumAboveMaxVoters {
                quorum: quorum.get(),
                max_voters: max_voters.get(),
            });
        }
        Ok(Self {
            votes: BTreeMap::new(),
            quorum,
            max_voters,
            aggregator,
        })
    }

    /// Records `voter`'s vote, returning the vote it replaced, if any.
    ///
    /// # Errors
    ///
    /// [`VoteError::Full`] if `voter` is new and `max_voters` voters are already held.
    pub fn add_vote(&mut self, voter: V, value: T) -> Result<Option<T>, VoteError> {
        if let Some(vote) = self.votes.get_mut(&voter) {
            return Ok(Some(core::mem::replace(vote, value)));
        }
        if self.votes.len() >= self.max_voters.get() {
            return Err(VoteError::Full {
                max_voters: self.max_voters.get(),
            });
        }
        self.votes.insert(voter, value);
        Ok(None)
    }

    /// Withdraws `voter`'s vote, returning it.
    pub fn remove_vote(&mut self, voter: &V) -> Option<T> {
        self.votes.remove(voter)
    }

    /// Number of voters counted.
    pub fn vote_count(&self) -> usize {
        self.votes.len()
    }

    /// Whether at least `quorum` voters have voted.
    pub fn has_quorum(&self) -> bool {
        self.votes.len() >= self.quorum.get()
    }

    /// The aggregated votes, or `None` without a quorum or if the aggregator finds no answer.
    pub fn result(&self) -> Option<T> {
        if !self.has_quorum() {
            return None;
        }
        let values: Vec<T> = self.votes.values().cloned().collect();
        (self.aggregator)(&values)
    }

    /// Forgets every vote.
    pub fn reset(&mut self) {
        self.votes.clear();
    }

    /// The votes, in voter order.
    pub fn votes(&self) -> impl Iterator<Item = (&V, &T)> {
        self.votes.iter()
    }

    /// Votes needed for a result.
    pub const fn quorum(&self) -> NonZeroUsize {
        self.quorum
    }

    /// The bound on voters.
    pub const fn max_voters(&self) -> NonZeroUsize {
        self.max_voters
    }
}

/// Values farther than this many MADs from the median are outliers in [`trimmed_mean`].
pub const TRIM_MADS: i128 = 3;

/// The mean of `values` after dropping outliers, or `None` if `values` is empty.
///
/// # Rule
///
/// Let `m` be the median (for an even count, the floor of the mean of the two middle values)
/// and `MAD` the median of the absolute deviations `|x − m|`, computed the same way. Values
/// with `|x − m| > TRIM_MADS × MAD` are dropped ([`TRIM_MADS`] is 3), and the rest are
/// averaged, rounding down. At least half the values are always kept, and the result lies
/// within `[min, max]` of the values.
///
/// When most values agree exactly, `MAD` is 0 and only the values equal to `m` are kept.
/// A single outlier among three or more votes is always dropped, however extreme.
///
/// ```
/// use whisper_proto::util::trimmed_mean;
///
/// assert_eq!(trimmed_mean(&[10, 12, 11, 9, i64::MAX]), Some(10));
/// assert_eq!(trimmed_mean(&[]), None);
/// ```
pub fn trimmed_mean(values: &[i64]) -> Option<i64> {
    let mut sorted: Vec<i128> = values.iter().map(|&v| i128::from(v)).collect();
    sorted.sort_unstable();
    let m = median(&sorted)?;
    let mut deviations: Vec<i128> = sorted.iter().map(|&v| (v - m).abs()).collect();
    deviations.sort_unstable();
    let limit = TRIM_MADS * median(&deviations)?;
    let kept = sorted.iter().filter(|&&v| (v - m).abs() <= limit);
    let (sum, count) = kept.fold((0i128, 0i128), |(sum, n), &v| (sum + v, n + 1));
    if count == 0 {
        return None;
    }
    i64::try_from(sum.div_euclid(count)).ok()
}

/// The value held by more than half of `values`, or `None` if there is none.
///
/// ```
/// use whisper_proto::util::majority;
///
/// assert_eq!(majority(&["a", "b", "a"]), Some("a"));
/// assert_eq!(majority(&["a", "b"]), None);
/// ```
pub fn majority<T: Ord + Clone>(values: &[T]) -> Option<T> {
    let (value, count) = most_common(values)?;
    (count * 2 > values.len()).then_some(value)
}

/// The most common value in `values`, ties going to the smallest, or `None` if empty.
///
/// ```
/// use whisper_proto::util::plurality;
///
/// assert_eq!(plurality(&[3, 1, 3, 1, 2]), Some(1));
/// ```
pub fn plurality<T: Ord + Clone>(values: &[T]) -> Option<T> {
    most_common(values).map(|(value, _)| value)
}

/// The most common value with its count; ties go to the smallest value.
fn most_common<T: Ord + Clone>(values: &[T]) -> Option<(T, usize)> {
    let mut counts: BTreeMap<&T, usize> = BTreeMap::new();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    // `max_by_key` keeps the last maximum; iterate in reverse so that is the smallest value.
    let (value, count) = counts.into_iter().rev().max_by_key(|&(_, count)| count)?;
    Some((value.clone(), count))
}

/// Median of a sorted slice (floor of the mean of the middle pair for even lengths).
fn median(sorted: &[i128]) -> Option<i128> {
    let upper = *sorted.get(sorted.len() / 2)?;
    if sorted.len() % 2 == 1 {
        return Some(upper);
    }
    let lower = *sorted.get(sorted.len() / 2 - 1)?;
    Some((lower + upper).div_euclid(2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use quickcheck::quickcheck;

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn quorum_and_replacement() {
        let mut c = ConsensusHelper::new(nz(2), nz(3), majority).unwrap();
        assert_eq!(c.add_vote(1u8, 'x'), Ok(None));
        assert!(!c.has_quorum());
        assert_eq!(c.result(), None);
        assert_eq!(c.add_vote(1, 'y'), Ok(Some('x')));
        assert_eq!(c.vote_count(), 1);
        assert_eq!(c.add_vote(2, 'y'), Ok(None));
        assert_eq!(c.result(), Some('y'));
        assert_eq!(c.add_vote(3, 'z'), Ok(None));
        assert_eq!(c.add_vote(4, 'y'), Err(VoteError::Full { max_voters: 3 }));
        assert_eq!(c.add_vote(3, 'y'), Ok(Some('z')));
        assert_eq!(c.votes().count(), 3);
        assert_eq!(c.remove_vote(&3), Some('y'));
        c.reset();
        assert_eq!(c.vote_count(), 0);
    }

    #[test]
    fn unreachable_quorum_is_refused() {
        let err = ConsensusHelper::<i64, u8>::new(nz(4), nz(3), trimmed_mean).unwrap_err();
        assert_eq!(
            err,
            ConsensusConfigError::QuorumAboveMaxVoters {
                quorum: 4,
                max_voters: 3
            }
        );
    }

    #[test]
    fn trimmed_mean_rule() {
        assert_eq!(trimmed_mean(&[7]), Some(7));
        assert_eq!(trimmed_mean(&[1, 3]), Some(2));
        assert_eq!(trimmed_mean(&[5, 5, 5, 6]), Some(5)); // MAD 0: only the median value
        assert_eq!(trimmed_mean(&[i64::MIN, i64::MIN]), Some(i64::MIN));
        assert_eq!(trimmed_mean(&[i64::MIN, 0, i64::MAX]), Some(-1)); // no overflow
        assert_eq!(trimmed_mean(&[-2, 0, 1]), Some(-1)); // -1/3 rounds down
        // m = 15, deviations 5 5 15 85, MAD = 10, limit 30: 100 is dropped.
        assert_eq!(trimmed_mean(&[0, 10, 20, 100]), Some(10));
    }

    #[test]
    fn majority_and_plurality() {
        assert_eq!(majority::<u8>(&[]), None);
        assert_eq!(majority(&[1, 1, 2, 2]), None);
        assert_eq!(majority(&[2, 1, 2]), Some(2));
        assert_eq!(plurality(&[2, 2, 1, 1]), Some(1));
        assert_eq!(plurality(&[5, 2, 5]), Some(5));
        assert_eq!(plurality::<u8>(&[]), None);
    }

    quickcheck! {
        fn trimmed_mean_within_min_max(values: Vec<i64>) -> bool {
            match (trimmed_mean(&values), values.iter().min(), values.iter().max()) {
                (Some(r), Some(&lo), Some(&hi)) => lo <= r && r <= hi,
                (None, None, None) => true,
                _ => false,
            }
        }

        /// Adding one extreme value to two or more ordinary ones leaves the result among the
        /// ordinary ones.
        fn trimmed_mean_ignores_single_outlier(base: Vec<i16>, first: i16, second: i16, outlier: i64, at: usize) -> bool {
            let mut values: Vec<i64> = vec![i64::from(first), i64::from(second)];
            values.extend(base.iter().map(|&v| i64::from(v)));
            let (lo, hi) = (*values.iter().min().unwrap(), *values.iter().max().unwrap());
            let far = 1_000_000_000_000i64;
            let outlier = if outlier < 0 { outlier.min(-far) } else { outlier.max(far) };
            values.insert(at % (values.len() + 1), outlier);
            trimmed_mean(&values).is_some_and(|r| lo <= r && r <= hi)
        }

        fn majority_is_strict(values: Vec<u8>) -> bool {
            let values: Vec<u8> = values.into_iter().map(|v| v % 3).collect();
            match majority(&values) {
                Some(m) => values.iter().filter(|&&v| v == m).count() * 2 > values.len(),
                None => (0..3).all(|m| values.iter().filter(|&&v| v == m).count() * 2 <= values.len()),
            }
        }
    }
}
