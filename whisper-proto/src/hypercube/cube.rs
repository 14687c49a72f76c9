//! The base virtual hypercube: positions, neighbours and the exact block-delegation route.

use alloc::vec::Vec;

use super::{HypercubeError, MAX_DIMENSIONS, MAX_MEMBERS, ORIGIN};
use crate::NodeId;

/// A virtual hypercube over the sorted member list, seen from one member.
///
/// Positions are indices into the member list sorted byte-wise (duplicates collapse).
/// With `N` members the cube has `dimensions() = ceil(log2 N)` dimensions; positions
/// `N..2^dimensions` do not exist and their role is taken by a substitute in the same
/// aligned block (see the [module docs](super)).
///
/// Bounds: at most [`MAX_MEMBERS`] members, so at most [`MAX_DIMENSIONS`] dimensions.
#[derive(Clone, Debug)]
pub struct Hypercube {
    self_id: NodeId,
    /// Members in position order.
    members: Vec<NodeId>,
    /// `(id, position)` sorted by id, for O(log N) position lookups.
    by_id: Vec<(NodeId, u32)>,
    self_pos: Option<u32>,
    dims: u8,
    version: u64,
}

impl Hypercube {
    /// An empty cube for `self_id`: no members, no position, no routes, until
    /// [`rebuild`](Self::rebuild).
    pub fn new(self_id: NodeId) -> Self {
        let mut cube = Self {
            self_id,
            members: Vec::new(),
            by_id: Vec::new(),
            self_pos: None,
            dims: 0,
            version: 0,
        };
        cube.install(Vec::new());
        cube
    }

    /// Replaces the membership with `members` (self included), sorted byte-wise.
    ///
    /// Duplicates collapse to one position. On error the cube is left unchanged.
    ///
    /// # Errors
    ///
    /// [`HypercubeError::TooManyMembers`] when more than [`MAX_MEMBERS`] distinct ids remain.
    pub fn rebuild(
        &mut self,
        members: impl IntoIterator<Item = NodeId>,
    ) -> Result<(), HypercubeError> {
        let mut sorted: Vec<NodeId> = members.into_iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        self.rebuild_in_order(sorted)
    }

    /// Replaces the membership with `ordered`, whose order *is* the position order.
    ///
    /// Used by [`HypercubeExt`](super::HypercubeExt) for the region-aware and dual
    /// orderings. Duplicate ids keep their first position. On error the cube is unchanged.
    pub(crate) fn rebuild_in_order(&mut self, ordered: Vec<NodeId>) -> Result<(), HypercubeError> {
        let mut ordered = ordered;
        let mut seen: Vec<&NodeId> = ordered.iter().collect();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() > MAX_MEMBERS {
            return Err(HypercubeError::TooManyMembers { count: seen.len() });
        }
        if seen.len() != ordered.len() {
            ordered = dedup_keep_first(ordered);
        }
        self.install(ordered);
        Ok(())
    }

    /// Installs an already deduplicated, bounded list in position order.
    fn install(&mut self, ordered: Vec<NodeId>) {
        let mut by_id: Vec<(NodeId, u32)> = ordered
            .iter()
            .zip(0u32..)
            .map(|(id, pos)| (id.clone(), pos))
            .collect();
        by_id.sort_unstable();
        self.dims = dimensions_for(ordered.len());
        self.version = version_of(&ordered);
        self.members = ordered;
        self.by_id = by_id;
        self.self_pos = lookup(&self.by_id, &self.self_id);
    }

    /// The id this cube is seen from.
    pub fn self_id(&self) -> &NodeId {
        &self.self_id
    }

    /// Whether self holds a position, i.e. the cube can route. A one-member cube is valid
    /// (it has no neighbours); an empty cube or one without self is not.
    pub fn is_valid(&self) -> bool {
        self.self_pos.is_some()
    }

    /// A fingerprint of the ordered member list (BLAKE3, truncated to 64 bits). Two nodes
    /// with the same version route identically; it changes whenever a member joins,
    /// leaves or moves.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of members (positions).
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// `ceil(log2 N)` for `N > 1` members, else 0. At most [`MAX_DIMENSIONS`].
    pub fn dimensions(&self) -> u8 {
        self.dims
    }

    /// Members in position order.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// Self's position, or `None` when self is not a member.
    pub fn self_position(&self) -> Option<u32> {
        self.self_pos
    }

    /// The position of `id`, or `None` when it is not a member.
    pub fn position(&self, id: &NodeId) -> Option<u32> {
        lookup(&self.by_id, id)
    }

    /// The member at `pos`, or `None` when `pos` does not exist.
    pub fn member_at(&self, pos: u32) -> Option<&NodeId> {
        self.members.get(usize::try_from(pos).ok()?)
    }

    /// The block level a frame with `from_dim` hands to its receiver: `from_dim` itself,
    /// or all dimensions for [`ORIGIN`] (`0xFF`) and for any value `≥ dimensions()` (a
    /// sender with a larger view; treating it as an origin favours coverage over
    /// duplicates, which dedup absorbs).
    pub fn level_for(&self, from_dim: u8) -> u8 {
        if from_dim == ORIGIN {
            self.dims
        } else {
            from_dim.min(self.dims)
        }
    }

    /// The dimensions to forward on after receiving a frame tagged `from_dim`
    /// ([`ORIGIN`] when originating), highest first.
    ///
    /// The receiver of a frame tagged `d` covers its aligned block of `2^d` positions;
    /// it forwards on each lower dimension `k < d` whose other half-block has at least
    /// one member, tagging that frame `k`. Empty when self is not a member.
    pub fn route(&self, from_dim: u8) -> Vec<u8> {
        let Some(pos) = self.self_pos else {
            return Vec::new();
        };
        let n = self.len_u32();
        (0..self.level_for(from_dim))
            .rev()
            .filter(|&k| other_half_base(pos, k) < n)
            .collect()
    }

    /// The member that covers the other half-block on dimension `k`: the member at
    /// `self ^ 2^k`, or, when that position does not exist, the substitute obtained by
    /// clearing its bits below `k` from the highest down until it exists.
    ///
    /// `None` when self is not a member, `k ≥ dimensions()`, or that half-block is empty.
    pub fn dimension_neighbour(&self, k: u8) -> Option<&NodeId> {
        self.member_at(self.neighbour_position(k)?)
    }

    /// The position of [`dimension_neighbour`](Self::dimension_neighbour)`(k)`.
    pub fn neighbour_position(&self, k: u8) -> Option<u32> {
        self.neighbour_of(self.self_pos?, k)
    }

    /// The dimension-`k` neighbour position of any position `pos` (see
    /// [`neighbour_position`](Self::neighbour_position)).
    pub(crate) fn neighbour_of(&self, pos: u32, k: u8) -> Option<u32> {
        if k >= self.dims || pos >= self.len_u32() {
            return None;
        }
        representative(pos ^ (1 << k), k, self.len_u32())
    }

    /// The existing positions of `pos`'s aligned block of `2^level` positions.
    pub(crate) fn block(&self, pos: u32, level: u8) -> core::ops::Range<u32> {
        let base = pos & !low_mask(level);
        base..(base | low_mask(level))
            .saturating_add(1)
            .min(self.len_u32())
    }

    /// All dimension neighbours, in dimension order (each member at most once).
    pub fn neighbours(&self) -> Vec<&NodeId> {
        (0..self.dims)
            .filter_map(|k| self.dimension_neighbour(k))
            .collect()
    }

    /// The dimension separating self from `peer`: the highest bit in which their
    /// positions differ, i.e. the `from_dim` of a frame self would send toward `peer`'s
    /// block. `None` if either is not a member or `peer` is self.
    pub fn dimension_of(&self, peer: &NodeId) -> Option<u8> {
        let diff = self.self_pos? ^ self.position(peer)?;
        highest_bit(diff)
    }

    /// The primary takeover for a failed frame: when the frame tagged `level` to `failed`
    /// went unacknowledged, the member that, sent the same frame (same `level`), covers
    /// every other member of `failed`'s block of `2^level` positions exactly once.
    ///
    /// It is `failed ^ 1` when that position exists, else `failed − 1` (then `failed` is
    /// the last position and even). In the takeover's own delegation `failed` is then only
    /// ever a one-member block, so the single extra frame it receives needs no retry.
    /// `None` when `failed` is not a member or is alone in its block (nothing is lost).
    pub fn takeover_for(&self, level: u8, failed: &NodeId) -> Option<&NodeId> {
        let t = self.position(failed)?;
        let level = level.min(self.dims);
        if level == 0 {
            return None;
        }
        let n = self.len_u32();
        let sibling = t ^ 1;
        let pos = if sibling < n {
            sibling
        } else if t & low_mask(level) != 0 {
            t - 1
        } else {
            return None;
        };
        self.member_at(pos)
    }

    /// The member count as `u32` (bounded by [`MAX_MEMBERS`]).
    pub(crate) fn len_u32(&self) -> u32 {
        // INVARIANT: `install` only ever receives at most MAX_MEMBERS (2^16) members.
        u32::try_from(self.members.len()).unwrap_or(u32::MAX)
    }

    /// The same cube seen from another member: what that member would build from the
    /// same list. Lets simulations skip `N` sorts.
    #[cfg(test)]
    pub(crate) fn view_as(&self, id: &NodeId) -> Self {
        let mut view = self.clone();
        view.self_id = id.clone();
        view.self_pos = view.position(id);
        view
    }
}

/// `ceil(log2 n)` for `n > 1`, else 0.
pub(crate) fn dimensions_for(n: usize) -> u8 {
    if n <= 1 {
        0
    } else {
        // INVARIANT: a usize has at most 128 bits, so the count fits in u8.
        u8::try_from(usize::BITS - (n - 1).leading_zeros()).unwrap_or(MAX_DIMENSIONS)
    }
}

/// Positions below bit `level`.
pub(crate) fn low_mask(level: u8) -> u32 {
    (1u32 << level) - 1
}

/// The lowest position of the half-block `pos` hands off on dimension `k`.
fn other_half_base(pos: u32, k: u8) -> u32 {
    ((pos >> k) ^ 1) << k
}

/// The highest set bit of `x`, or `None` for 0.
pub(crate) fn highest_bit(x: u32) -> Option<u8> {
    // INVARIANT: the result is below 32.
    x.checked_ilog2().map(|b| b as u8)
}

/// The member standing for `ideal` in its aligned block of `2^level` positions: `ideal`
/// itself if it exists, else `ideal` with its bits below `level` cleared from the highest
/// down until it exists. `None` when the whole block lies at or beyond `n`.
pub(crate) fn representative(ideal: u32, level: u8, n: u32) -> Option<u32> {
    if ideal & !low_mask(level) >= n {
        return None;
    }
    let mut x = ideal;
    for bit in (0..level).rev() {
        if x < n {
            break;
        }
        x &= !(1 << bit);
    }
    Some(x)
}

/// The position of `id` in an id-sorted `(id, position)` table.
fn lookup(by_id: &[(NodeId, u32)], id: &NodeId) -> Option<u32> {
    let i = by_id.binary_search_by(|(probe, _)| probe.cmp(id)).ok()?;
    by_id.get(i).map(|&(_, pos)| pos)
}

/// Drops later duplicates, keeping the first occurrence's position.
fn dedup_keep_first(ordered: Vec<NodeId>) -> Vec<NodeId> {
    let mut seen: Vec<NodeId> = Vec::with_capacity(ordered.len());
    let mut out = Vec::with_capacity(ordered.len());
    for id in ordered {
        if let Err(i) = seen.binary_search(&id) {
            seen.insert(i, id.clone());
            out.push(id);
        }
    }
    out
}

/// BLAKE3 over the length-prefixed ids in position order, truncated to 64 bits.
fn version_of(ordered: &[NodeId]) -> u64 {
    let mut h = blake3::Hasher::new_derive_key("whisper hypercube version v1");
    for id in ordered {
        // INVARIANT: a NodeId is at most 64 bytes long.
        h.update(&[id.as_bytes().len() as u8]);
        h.update(id.as_bytes());
    }
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(out)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use alloc::{format, vec, vec::Vec};

    use quickcheck::{QuickCheck, TestResult};

    use super::*;
    use crate::hypercube::sim::{self, Outcome};
    use crate::rng::{RandomSource, Rng};

    fn id(s: &str) -> NodeId {
        NodeId::new(bytes::Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    fn ids(n: usize) -> Vec<NodeId> {
        (0..n).map(|i| id(&format!("node{i:05}"))).collect()
    }

    fn cube(self_id: &NodeId, members: &[NodeId]) -> Hypercube {
        let mut c = Hypercube::new(self_id.clone());
        c.rebuild(members.iter().cloned()).unwrap();
        c
    }

    /// One cube per member, all from the same list.
    fn cubes(members: &[NodeId]) -> Vec<Hypercube> {
        let base = cube(&members[0], members);
        base.members().iter().map(|m| base.view_as(m)).collect()
    }

    fn broadcast(cubes: &[Hypercube], origin: usize, failed: &[usize]) -> Outcome {
        sim::run(
            cubes.len(),
            origin,
            failed,
            |node, _, from_dim| {
                let c = &cubes[node];
                c.route(from_dim)
                    .into_iter()
                    .filter_map(|k| Some((c.neighbour_position(k)? as usize, k)))
                    .collect()
            },
            |node, level, dead, attempt| {
                let c = &cubes[node];
                if attempt > 0 {
                    return None;
                }
                let t = c.takeover_for(level, c.member_at(dead as u32)?)?;
                Some((c.position(t)? as usize, level))
            },
        )
    }

    fn assert_exact(out: &Outcome, n: usize, origin: usize) {
        assert!(
            out.received.iter().all(|&r| r == 1),
            "N={n} origin={origin}: receipts {:?}",
            out.received
        );
        assert_eq!(out.frames, n - 1, "N={n} origin={origin}");
        assert!(
            out.max_hop <= u32::from(dimensions_for(n)),
            "N={n} origin={origin}"
        );
    }

    #[test]
    fn worked_example_and_accessors() {
        let m = ids(4);
        let a = cube(&m[0], &m);
        assert!(a.is_valid());
        assert_eq!(a.dimensions(), 2);
        assert_eq!(a.member_count(), 4);
        assert_eq!(a.route(ORIGIN), vec![1, 0]);
        assert_eq!(a.neighbours(), vec![&m[1], &m[2]]);
        let b = a.view_as(&m[1]);
        assert_eq!(b.route(1), vec![0]);
        assert_eq!(b.dimension_neighbour(0), Some(&m[0]));
        let c = a.view_as(&m[2]);
        assert_eq!(c.route(0), Vec::<u8>::new());
        assert_eq!(a.dimension_of(&m[3]), Some(1));
        assert_eq!(a.dimension_of(&m[0]), None);
    }

    #[test]
    fn substitutes_stay_in_the_block() {
        // N = 11 (dims 4): position 5 = 0101; 5 ^ 8 = 13 does not exist, 13 → 9 (clear bit 2).
        let m = ids(11);
        let c = cube(&m[5], &m);
        assert_eq!(c.neighbour_position(3), Some(9));
        assert_eq!(c.neighbour_position(0), Some(4));
        // Position 10 = 1010: dim 2 half-block is 12..16, empty.
        let c = c.view_as(&m[10]);
        assert_eq!(c.neighbour_position(2), None);
        assert_eq!(c.route(ORIGIN), vec![3, 1], "dims 2 and 0 point past N");
    }

    #[test]
    fn degenerate_inputs_route_nothing() {
        let me = id("me");
        let empty = Hypercube::new(me.clone());
        assert!(!empty.is_valid());
        assert!(empty.route(ORIGIN).is_empty());
        assert_eq!(empty.dimension_neighbour(0), None);
        let alone = cube(&me, core::slice::from_ref(&me));
        assert!(alone.is_valid());
        assert_eq!(alone.dimensions(), 0);
        assert!(alone.route(ORIGIN).is_empty());
        let outsider = cube(&me, &ids(8));
        assert!(!outsider.is_valid());
        assert!(outsider.route(ORIGIN).is_empty());
        assert!(outsider.neighbours().is_empty());
        assert_eq!(outsider.dimension_of(&ids(8)[0]), None);
        assert_eq!(outsider.takeover_for(3, &me), None);
        // Out-of-range fromDim behaves as an origin frame.
        let c = cube(&ids(8)[0], &ids(8));
        assert_eq!(c.route(200), c.route(ORIGIN));
        assert_eq!(c.dimension_neighbour(3), None);
    }

    #[test]
    fn duplicates_collapse_and_bounds_hold() {
        let m = ids(5);
        let mut doubled = m.clone();
        doubled.extend(m.iter().cloned());
        let c = cube(&m[0], &doubled);
        assert_eq!(c.member_count(), 5);
        assert_eq!(c.version(), cube(&m[3], &m).version());

        let mut big = Hypercube::new(id("x"));
        let many = (0..=MAX_MEMBERS as u32)
            .map(|i| NodeId::new(bytes::Bytes::copy_from_slice(&i.to_be_bytes())).unwrap());
        assert_eq!(
            big.rebuild(many),
            Err(HypercubeError::TooManyMembers {
                count: MAX_MEMBERS + 1
            })
        );
        assert_eq!(
            big.member_count(),
            0,
            "a failed rebuild leaves the cube unchanged"
        );
        let max = (0..MAX_MEMBERS as u32)
            .map(|i| NodeId::new(bytes::Bytes::copy_from_slice(&i.to_be_bytes())).unwrap());
        big.rebuild(max).unwrap();
        assert_eq!(big.dimensions(), MAX_DIMENSIONS);
    }

    #[test]
    fn version_tracks_membership() {
        let m = ids(10);
        let v = cube(&m[0], &m).version();
        assert_eq!(
            v,
            cube(&m[0], &m.iter().rev().cloned().collect::<Vec<_>>()).version()
        );
        assert_ne!(v, cube(&m[0], &m[..9]).version());
        assert_ne!(v, cube(&m[0], &ids(11)[1..]).version());
        // Unlike an XOR of hashes, a repeated pair does not cancel out.
        assert_ne!(
            cube(&m[0], &m[..2]).version(),
            cube(&m[0], &m[..0]).version()
        );
    }

    #[test]
    fn dimensions_are_ceil_log2() {
        for (n, d) in [
            (0, 0),
            (1, 0),
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 3),
            (1024, 10),
            (1025, 11),
            (65_536, 16),
        ] {
            assert_eq!(dimensions_for(n), d, "n={n}");
        }
    }

    /// Reproduces the reference's non-power-of-two coverage gap, to show the simulator
    /// can fail: ascending routing without substitutes misses 7 of 10 nodes at N = 11.
    #[test]
    fn simulator_catches_the_reference_gap() {
        let n = 11u32;
        let dims = dimensions_for(n as usize);
        let out = sim::run(
            n as usize,
            10,
            &[],
            |node, _, from_dim| {
                let start = if from_dim == ORIGIN { 0 } else { from_dim + 1 };
                (start..dims)
                    .filter(|&k| (node as u32 ^ (1 << k)) < n)
                    .map(|k| ((node as u32 ^ (1 << k)) as usize, k))
                    .collect()
            },
            |_, _, _, _| None,
        );
        assert_eq!(out.received.iter().filter(|&&r| r == 0).count(), 7);
    }

    /// Exhaustive: every N in 1..=300, every origin, fault-free.
    #[test]
    fn exact_for_every_n_and_origin() {
        for n in 1..=300 {
            let cubes = cubes(&ids(n));
            for origin in 0..n {
                assert_exact(&broadcast(&cubes, origin, &[]), n, origin);
            }
        }
    }

    /// One failed node at a time (every node but the origin, every origin, N ≤ 64): every
    /// live node receives exactly once; the failed node costs exactly one retry when its
    /// block had other members and none otherwise, and receives at most two frames.
    #[test]
    fn single_failure_costs_one_retry() {
        for n in 2..=64 {
            let cubes = cubes(&ids(n));
            for origin in 0..n {
                for dead in (0..n).filter(|&d| d != origin) {
                    let out = broadcast(&cubes, origin, &[dead]);
                    for (i, &r) in out.received.iter().enumerate() {
                        let want = if i == dead { r.min(2) } else { 1 };
                        assert_eq!(r, want, "N={n} origin={origin} dead={dead} node={i}");
                    }
                    let lost_block = out.received[dead] == 2;
                    assert_eq!(
                        out.retries,
                        usize::from(lost_block),
                        "N={n} o={origin} d={dead}"
                    );
                    assert_eq!(out.frames, n - 1 + usize::from(lost_block));
                    assert!(out.max_hop <= u32::from(dimensions_for(n)));
                }
            }
        }
    }

    /// `n` distinct random ids of 1..=12 bytes.
    fn random_ids(rng: &mut Rng, n: usize) -> Vec<NodeId> {
        let mut out = alloc::collections::BTreeSet::new();
        while out.len() < n {
            let len = 1 + rng.below(12) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            out.insert(NodeId::new(bytes).unwrap());
        }
        out.into_iter().collect()
    }

    #[test]
    fn exact_for_sampled_n_up_to_4096() {
        fn prop(seed: u64, n: u16, origin: u16) -> TestResult {
            let n = usize::from(n % 4096) + 1;
            let mut rng = Rng::new(seed);
            let members = random_ids(&mut rng, n);
            let origin = usize::from(origin) % n;
            assert_exact(&broadcast(&cubes(&members), origin, &[]), n, origin);
            TestResult::passed()
        }
        QuickCheck::new()
            .tests(40)
            .quickcheck(prop as fn(u64, u16, u16) -> TestResult);
    }

    /// Prints frames, retries and hops for a few sizes and random origins, fault-free and
    /// with the origin's top-dimension delegate failed. Run with `--nocapture` to see the table.
    #[test]
    fn figures_table() {
        let mut rng = Rng::new(2024);
        std::println!(
            "|     N | D | origin | frames | max hop | failed | frames | retries | max hop | live missed |"
        );
        std::println!(
            "|------:|--:|-------:|-------:|--------:|-------:|-------:|--------:|--------:|------------:|"
        );
        for n in [16usize, 100, 1000, 1024, 4096] {
            let cubes = cubes(&random_ids(&mut rng, n));
            let dims = dimensions_for(n);
            for _ in 0..3 {
                let origin = rng.below(n as u64) as usize;
                let clean = broadcast(&cubes, origin, &[]);
                assert_exact(&clean, n, origin);
                // The worst single failure: the member handed the largest half-block.
                let dead = cubes[origin].neighbour_position(dims - 1).unwrap() as usize;
                let hurt = broadcast(&cubes, origin, &[dead]);
                let missed = (0..n)
                    .filter(|&i| i != dead && hurt.received[i] == 0)
                    .count();
                assert_eq!(missed, 0);
                std::println!(
                    "| {n:>5} | {dims:>2} | {origin:>6} | {:>6} | {:>7} | {dead:>6} | {:>6} | {:>7} | {:>7} | {missed:>11} |",
                    clean.frames,
                    clean.max_hop,
                    hurt.frames,
                    hurt.retries,
                    hurt.max_hop,
                );
            }
        }
    }
}
