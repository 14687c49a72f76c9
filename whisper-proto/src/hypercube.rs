//! The virtual hypercube that carries G3 rumors, and its extensions.
//!
//! # The cube
//!
//! Every member sorts the member list (self included) and takes its index as its
//! *position*. With `N` members the cube has `D = ceil(log2 N)` dimensions, and the
//! dimension-`k` neighbour of position `p` is `p ^ 2^k`. When `N` is not a power of two,
//! positions `N..2^D` do not exist.
//!
//! # Routing: block delegation, highest dimension first
//!
//! A G3 frame carries only `hop` and `fromDim`. We read `fromDim = d` as a *block
//! level*: "you now cover your aligned block of `2^d` positions", the positions that
//! agree with yours on every bit `≥ d`. The origin covers everything (`fromDim = 0xFF`,
//! level `D`). A node covering level `d` splits its block in halves along each lower
//! dimension `k = d−1, …, 0`. It keeps the half that contains itself and hands the other
//! half, if it has any member, to one member of that half in a frame tagged `k`. The
//! receiver covers its own level-`k` block, which is exactly the half it was handed.
//!
//! The member chosen for a half is `p ^ 2^k` when that position exists. Otherwise it is
//! a *substitute* in the same half: `p ^ 2^k` with its bits below `k` cleared from the
//! highest down until the position exists. This is the issue's "deterministic member of
//! the same residue class", mirrored. We forward on *lower* dimensions, so a
//! responsibility is a set of positions agreeing on the *high* bits `≥ k` (a contiguous
//! interval), not on the low bits `0..=k` (a stride). The reference forwards on higher
//! dimensions; we reverse that. With contiguous blocks, region-aware ordering keeps
//! whole subtrees inside a region. The broadcast then needs one cross-region frame per
//! region block instead of nearly `N`.
//!
//! **Why it is exact.** The receiver's responsibility depends only on its own position
//! and `fromDim`, not on the origin or the sender. Each node's halves are disjoint and,
//! together with the node itself, make up its block. Each non-empty half is handed to
//! exactly one of its members. By induction on the level, every member of the origin's
//! block `[0, N)` receives exactly once: `N − 1` frames. The level strictly decreases
//! along every path, so no path has more than `D = ceil(log2 N)` hops. The tests check
//! this exhaustively for every `N ≤ 300` and every origin, and by sampling up to 4,096.
//!
//! **Any member of a half will do.** The proof never uses *which* member receives a
//! half. So the sender may substitute any member of the half: for a capped link, for a
//! failed node, or when the neighbour position does not exist. The choice stays exact
//! and purely local; receivers need not know it.
//!
//! **The reference's bug.** The Go cube forwards on dimensions `> fromDim`, only to
//! positions `p ^ 2^k < N`, with no substitute. For `N` not a power of two, whole
//! subtrees hang off non-existent positions. With 11 members, origin 10 reaches only 3
//! of the other 10. Probabilistic thinning and `MaxHops = 3` break it further.
//! Deterministic forwarding needs up to `D` hops; the rumor layer applies `P/(1+hop)` and
//! `MaxHops` only to the random fallback.
//!
//! **Retries.** If the frame tagged `k` to `t` is not acknowledged, the sender resends
//! the same frame to [`Hypercube::takeover_for`]: `t ^ 1` if it exists, else `t − 1`.
//! That member covers `t`'s whole block, and in its delegation `t` is always a
//! one-member half. With one failed node, every live member still receives exactly once
//! for one retry and at most one more (unanswered) frame to the failed node.
//! [`HypercubeExt::alternates`] extends this with dual-cube candidates for further
//! attempts.
//!
//! # Bounds
//!
//! At most [`MAX_MEMBERS`] (65,536) full members, so at most [`MAX_DIMENSIONS`] (16)
//! dimensions; more is [`HypercubeError::TooManyMembers`]. At most
//! [`MAX_EPHEMERALS`] ephemeral members. Nothing here panics on any input. An empty
//! list, or one without self, gives a cube that is not [valid](Hypercube::is_valid) and
//! routes nothing.

mod cube;
mod ext;

pub use cube::Hypercube;
pub use ext::{Config, HypercubeExt, MemberInfo, RebuildPolicy, Target};

/// `fromDim` of an origin frame (and of a random-fallback frame): cover all dimensions.
pub const ORIGIN: u8 = 0xFF;

/// The most full members a cube accepts.
pub const MAX_MEMBERS: usize = 1 << MAX_DIMENSIONS;

/// The most dimensions a cube can have (`log2 MAX_MEMBERS`).
pub const MAX_DIMENSIONS: u8 = 16;

/// The most ephemeral (leaf) members an extended cube accepts.
pub const MAX_EPHEMERALS: usize = 1 << 16;

/// Why a rebuild was refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HypercubeError {
    /// More than [`MAX_MEMBERS`] distinct full members. The cube keeps its previous
    /// membership.
    #[error("{count} members exceed the hypercube bound of {max}", max = MAX_MEMBERS)]
    TooManyMembers {
        /// Distinct full members offered.
        count: usize,
    },
    /// More than [`MAX_EPHEMERALS`] distinct ephemeral members. The cube keeps its
    /// previous membership.
    #[error("{count} ephemeral members exceed the bound of {max}", max = MAX_EPHEMERALS)]
    TooManyEphemerals {
        /// Distinct ephemeral members offered.
        count: usize,
    },
}

/// An in-memory broadcast simulator shared by the tests of both cubes.
#[cfg(test)]
pub(crate) mod sim {
    use alloc::{collections::VecDeque, vec, vec::Vec};

    use super::ORIGIN;

    /// What one broadcast did.
    #[derive(Debug)]
    pub(crate) struct Outcome {
        /// Per node: frames received (the origin counts as having received once).
        pub(crate) received: Vec<usize>,
        /// Frames sent, failed ones included.
        pub(crate) frames: usize,
        /// Frames resent to an alternate after a failed (unacknowledged) frame.
        pub(crate) retries: usize,
        /// Largest hop carried by any frame.
        pub(crate) max_hop: u32,
    }

    /// Floods from `origin` over `n` nodes. `forwards(node, sender, from_dim)` gives the
    /// `(receiver, from_dim)` frames a node sends on first receipt. Frames to a node in
    /// `failed` are lost; the sender then walks `alternate(sender, from_dim, first_failed,
    /// attempt)` for attempt 0, 1, … until a frame lands or it returns `None`.
    pub(crate) fn run(
        n: usize,
        origin: usize,
        failed: &[usize],
        forwards: impl Fn(usize, Option<usize>, u8) -> Vec<(usize, u8)>,
        alternate: impl Fn(usize, u8, usize, usize) -> Option<(usize, u8)>,
    ) -> Outcome {
        struct Frame {
            from: usize,
            to: usize,
            hop: u32,
            dim: u8,
            /// `(first failed receiver, attempts so far)` for a retry.
            retry: Option<(usize, usize)>,
        }
        let mut out = Outcome {
            received: vec![0; n],
            frames: 0,
            retries: 0,
            max_hop: 0,
        };
        out.received[origin] = 1;
        let first = |from: usize, hop: u32| {
            move |(to, dim): (usize, u8)| Frame {
                from,
                to,
                hop,
                dim,
                retry: None,
            }
        };
        let mut queue: VecDeque<Frame> = forwards(origin, None, ORIGIN)
            .into_iter()
            .map(first(origin, 1))
            .collect();
        while let Some(f) = queue.pop_front() {
            out.frames += 1;
            out.max_hop = out.max_hop.max(f.hop);
            assert!(out.frames <= 4 * n + 64, "runaway flood");
            out.received[f.to] += 1;
            if failed.contains(&f.to) {
                let (owner, attempt) = f.retry.unwrap_or((f.to, 0));
                if let Some((to, dim)) = alternate(f.from, f.dim, owner, attempt) {
                    out.retries += 1;
                    let retry = Some((owner, attempt + 1));
                    queue.push_back(Frame {
                        from: f.from,
                        to,
                        hop: f.hop,
                        dim,
                        retry,
                    });
                }
            } else if out.received[f.to] == 1 {
                let next = forwards(f.to, Some(f.from), f.dim);
                queue.extend(next.into_iter().map(first(f.to, f.hop + 1)));
            }
        }
        out
    }
}
