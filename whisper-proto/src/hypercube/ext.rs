//! `HypercubeExt`: the seven extensions over the base cube, all of them live.
//!
//! 1. **Region-aware ordering.** Members are sorted by `(region, id)`, so a region
//!    holds contiguous positions. Low-dimension edges and, because a delegated block is
//!    an interval, whole subtrees stay in-region.
//! 2. **Dimension caps.** A frame for block level `k` prefers a member whose effective
//!    cap, `min(self, peer, link)`, exceeds `k`.
//! 3. **Lazy rebuild.** Rebuilds wait for `dirty_threshold` changes or for `staleness`
//!    of injected time.
//! 4. **`route_to_far`.** Greedy next hop on positions.
//! 5. **Adaptive dimension weights.** They steer the random fallback.
//! 6. **Dual cube.** Ordered by a keyed BLAKE3 hash. It supplies retry candidates after
//!    the primary takeover.
//! 7. **Ephemeral members.** They are leaves hung off a deterministic full member.
//!
//! Every choice that only the sender makes (caps, alternates) picks *some* member of the
//! half-block being handed off. By the argument in the [module docs](super), broadcast
//! stays exact.

use alloc::{collections::BTreeMap, vec, vec::Vec};
use core::num::NonZeroU32;

use bytes::Bytes;

use super::cube::highest_bit;
use super::{Hypercube, HypercubeError, MAX_DIMENSIONS, MAX_EPHEMERALS, MAX_MEMBERS, ORIGIN};
use crate::NodeId;
use crate::rng::RandomSource;
use crate::time::{Duration, Instant};

/// How many members of a half-block the cap-aware choice inspects before giving up and
/// using the preferred member anyway (coverage beats caps).
const CAP_SCAN: usize = 32;

/// The most alternates [`HypercubeExt::alternates`] returns.
const MAX_ALTERNATES: usize = 8;

/// Lowest and highest dimension weight.
const WEIGHT_FLOOR: f32 = 0.1;
const WEIGHT_CEIL: f32 = 1.0;

/// What the cube knows about one member. Every member must see the same `region`,
/// `max_dimensions` and `ephemeral` for a peer (they come from signed PEX), or positions
/// differ between nodes.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct MemberInfo {
    /// The member.
    pub id: NodeId,
    /// Its region, for region-aware ordering. `None` sorts before every region.
    pub region: Option<Bytes>,
    /// The most dimensions it is willing to serve (its per-node cap).
    pub max_dimensions: Option<u8>,
    /// An ephemeral member gets no position; it hangs off a full member as a leaf.
    pub ephemeral: bool,
}

impl MemberInfo {
    /// A full member with no region and no cap.
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            region: None,
            max_dimensions: None,
            ephemeral: false,
        }
    }

    /// With `region`.
    pub fn with_region(self, region: impl Into<Bytes>) -> Self {
        Self {
            region: Some(region.into()),
            ..self
        }
    }

    /// With a per-node dimension cap.
    pub fn with_max_dimensions(self, cap: u8) -> Self {
        Self {
            max_dimensions: Some(cap),
            ..self
        }
    }

    /// As an ephemeral (leaf) member.
    pub fn into_ephemeral(self) -> Self {
        Self {
            ephemeral: true,
            ..self
        }
    }
}

/// When a membership change is applied to the cube.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub enum RebuildPolicy {
    /// Rebuild on every change.
    #[default]
    Eager,
    /// Rebuild once `dirty_threshold` changes are pending, or once changes are pending
    /// and `staleness` has passed since the last rebuild.
    Lazy {
        /// Pending changes that force a rebuild.
        dirty_threshold: NonZeroU32,
        /// Injected time after which any pending change is applied.
        staleness: Duration,
    },
}

impl RebuildPolicy {
    /// The reference's lazy defaults: 10 changes or 60 s.
    pub const LAZY: Self = Self::Lazy {
        dirty_threshold: NonZeroU32::new(10).unwrap(),
        staleness: Duration::from_secs(60),
    };
}

/// Which extensions are on.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Config {
    /// Sort the primary cube by `(region, id)` instead of `id`. Every node of a mesh
    /// must agree (a Go peer orders by `id` alone).
    pub region_ordering: bool,
    /// Maintain the dual cube (one BLAKE3 per member per rebuild).
    pub dual_cube: bool,
    /// When membership changes are applied.
    pub rebuild: RebuildPolicy,
}

impl Default for Config {
    /// Region ordering and dual cube on, eager rebuilds.
    fn default() -> Self {
        Self {
            region_ordering: true,
            dual_cube: true,
            rebuild: RebuildPolicy::Eager,
        }
    }
}

/// One frame to send: the G3 frame's `fromDim` and its receiver.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Target {
    /// Receiver.
    pub peer: NodeId,
    /// The frame's `fromDim`: the block level the receiver will cover.
    pub from_dim: u8,
}

/// The hypercube with its extensions, seen from one node.
///
/// Bounds: [`MAX_MEMBERS`] full members, [`MAX_EPHEMERALS`] ephemeral ones, one link
/// cap per current member, [`MAX_DIMENSIONS`] weights.
#[derive(Clone, Debug)]
pub struct HypercubeExt {
    config: Config,
    primary: Hypercube,
    dual: Option<Hypercube>,
    /// Per-node caps by primary position.
    node_caps: Vec<Option<u8>>,
    /// `(ephemeral id, host's primary position)`, sorted by id.
    ephemerals: Vec<(NodeId, u32)>,
    /// Ephemerals hosted by self.
    attached: Vec<NodeId>,
    link_caps: BTreeMap<NodeId, u8>,
    weights: [f32; MAX_DIMENSIONS as usize],
    dirty: u32,
    last_rebuilt: Option<Instant>,
    version: u64,
}

impl HypercubeExt {
    /// An empty cube for `self_id`; call [`rebuild`](Self::rebuild) before routing.
    pub fn new(self_id: NodeId, config: Config) -> Self {
        let dual = config.dual_cube.then(|| Hypercube::new(self_id.clone()));
        Self {
            config,
            primary: Hypercube::new(self_id),
            dual,
            node_caps: Vec::new(),
            ephemerals: Vec::new(),
            attached: Vec::new(),
            link_caps: BTreeMap::new(),
            weights: [WEIGHT_CEIL; MAX_DIMENSIONS as usize],
            dirty: 0,
            last_rebuilt: None,
            version: 0,
        }
    }

    /// Applies `members` (self included) now, whatever the policy: full members get
    /// positions in the primary (and dual) cube, ephemeral ones a host. Duplicate ids
    /// keep their first entry. Link caps of departed members are dropped. On error
    /// nothing changes.
    ///
    /// # Errors
    ///
    /// [`HypercubeError::TooManyMembers`] or [`HypercubeError::TooManyEphemerals`].
    pub fn rebuild(&mut self, members: &[MemberInfo], now: Instant) -> Result<(), HypercubeError> {
        let mut unique: Vec<&MemberInfo> = members.iter().collect();
        unique.sort_by(|a, b| a.id.cmp(&b.id)); // stable: the first entry of an id wins
        unique.dedup_by(|later, first| later.id == first.id);
        let (ephemeral, mut full): (Vec<&MemberInfo>, Vec<&MemberInfo>) =
            unique.into_iter().partition(|m| m.ephemeral);
        if full.len() > MAX_MEMBERS {
            return Err(HypercubeError::TooManyMembers { count: full.len() });
        }
        if ephemeral.len() > MAX_EPHEMERALS {
            return Err(HypercubeError::TooManyEphemerals {
                count: ephemeral.len(),
            });
        }

        if self.config.region_ordering {
            full.sort_by(|a, b| (&a.region, &a.id).cmp(&(&b.region, &b.id)));
        }
        self.primary
            .rebuild_in_order(full.iter().map(|m| m.id.clone()).collect())?;
        self.node_caps = full.iter().map(|m| m.max_dimensions).collect();
        if let Some(dual) = &mut self.dual {
            let dual_key = blake3::Hasher::new_derive_key(DUAL_KEY);
            let mut keyed: Vec<([u8; 32], &NodeId)> = full
                .iter()
                .map(|m| (keyed_hash(&dual_key, &m.id), &m.id))
                .collect();
            keyed.sort_unstable();
            dual.rebuild_in_order(keyed.into_iter().map(|(_, id)| id.clone()).collect())?;
        }

        let n = u64::from(self.primary.len_u32());
        let host_key = blake3::Hasher::new_derive_key(HOST_KEY);
        self.ephemerals = ephemeral
            .iter()
            .filter(|_| n > 0)
            .map(|m| {
                let h = keyed_hash(&host_key, &m.id);
                let host = u64::from_le_bytes(h[..8].try_into().unwrap_or_default()) % n;
                // INVARIANT: host < n ≤ MAX_MEMBERS.
                (m.id.clone(), host as u32)
            })
            .collect();
        let me = self.primary.self_position();
        self.attached = self
            .ephemerals
            .iter()
            .filter(|(_, h)| Some(*h) == me)
            .map(|(id, _)| id.clone())
            .collect();

        let (primary, ephemerals) = (&self.primary, &self.ephemerals);
        self.link_caps.retain(|peer, _| {
            primary.position(peer).is_some()
                || ephemerals.binary_search_by(|(e, _)| e.cmp(peer)).is_ok()
        });
        self.version = self.compute_version();
        self.dirty = 0;
        self.last_rebuilt = Some(now);
        Ok(())
    }

    /// Records one membership change (join, leave, region or cap change). Returns
    /// whether a rebuild is now due (see [`needs_rebuild`](Self::needs_rebuild)).
    pub fn note_change(&mut self, now: Instant) -> bool {
        self.dirty = self.dirty.saturating_add(1);
        self.needs_rebuild(now)
    }

    /// Whether the policy wants a rebuild at `now`. The first rebuild is always due.
    /// Otherwise it is due only with pending changes: at once when eager; when lazy,
    /// once `dirty_threshold` are pending or `staleness` has passed since the last one.
    pub fn needs_rebuild(&self, now: Instant) -> bool {
        let Some(last) = self.last_rebuilt else {
            return true;
        };
        if self.dirty == 0 {
            return false;
        }
        match self.config.rebuild {
            RebuildPolicy::Eager => true,
            RebuildPolicy::Lazy {
                dirty_threshold,
                staleness,
            } => {
                self.dirty >= dirty_threshold.get()
                    || now.saturating_duration_since(last) >= staleness
            }
        }
    }

    /// Rebuilds from `members` if [`needs_rebuild`](Self::needs_rebuild); returns
    /// whether it did.
    ///
    /// # Errors
    ///
    /// As [`rebuild`](Self::rebuild); the pending changes stay pending.
    pub fn maybe_rebuild(
        &mut self,
        members: &[MemberInfo],
        now: Instant,
    ) -> Result<bool, HypercubeError> {
        if !self.needs_rebuild(now) {
            return Ok(false);
        }
        self.rebuild(members, now)?;
        Ok(true)
    }

    /// The primary cube (region-ordered when configured).
    pub fn primary(&self) -> &Hypercube {
        &self.primary
    }

    /// The dual cube, when enabled.
    pub fn dual(&self) -> Option<&Hypercube> {
        self.dual.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A fingerprint of the primary order and the ephemeral attachments.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Membership changes noted since the last rebuild.
    pub fn pending_changes(&self) -> u32 {
        self.dirty
    }

    /// The full member an ephemeral member hangs off, or `None` if `id` is not ephemeral
    /// (or there are no full members).
    pub fn host_of(&self, id: &NodeId) -> Option<&NodeId> {
        self.primary.member_at(self.ephemeral(id)?.1)
    }

    /// The `(id, host position)` entry of an ephemeral member.
    fn ephemeral(&self, id: &NodeId) -> Option<&(NodeId, u32)> {
        let i = self.ephemerals.binary_search_by(|(e, _)| e.cmp(id)).ok()?;
        self.ephemerals.get(i)
    }

    /// The ephemeral members hanging off self.
    pub fn attached(&self) -> &[NodeId] {
        &self.attached
    }

    /// Sets (`Some`) or clears (`None`) the dimension cap of the link to `peer`. Returns
    /// `false`, changing nothing, when `peer` is not a current member (the table holds
    /// current members only).
    pub fn set_link_cap(&mut self, peer: &NodeId, cap: Option<u8>) -> bool {
        match cap {
            None => {
                self.link_caps.remove(peer);
                true
            }
            Some(_) if self.primary.position(peer).is_none() && self.host_of(peer).is_none() => {
                false
            }
            Some(cap) => {
                self.link_caps.insert(peer.clone(), cap);
                true
            }
        }
    }

    /// Dimensions usable on the link to `peer`: the minimum of self's cap, `peer`'s
    /// per-node cap, the link cap and the cube's dimensions (absent caps do not count).
    pub fn effective_dimensions(&self, peer: &NodeId) -> u8 {
        let peer_cap = self.primary.position(peer).and_then(|p| self.node_cap(p));
        self.effective(peer, peer_cap)
    }

    /// The frames to send after receiving one tagged `from_dim` from `sender` (`None`
    /// with [`ORIGIN`] when originating).
    ///
    /// - A full member hands each non-empty lower half-block to one of its members
    ///   (see [`delegate`](Self::delegate)), then sends to each attached ephemeral except
    ///   `sender`, tagged 0.
    /// - An ephemeral member only originates: it sends to its host, tagged [`ORIGIN`].
    ///
    /// Empty when self is neither a full nor an ephemeral member.
    pub fn forward_targets(&self, from_dim: u8, sender: Option<&NodeId>) -> Vec<Target> {
        if let Some(host) = self.host_of(self.primary.self_id()) {
            return match sender {
                None => vec![Target {
                    peer: host.clone(),
                    from_dim: ORIGIN,
                }],
                Some(_) => Vec::new(),
            };
        }
        let halves = self.primary.route(from_dim).into_iter().filter_map(|k| {
            let peer = self.delegate(k)?.clone();
            Some(Target { peer, from_dim: k })
        });
        let leaves = self
            .attached
            .iter()
            .filter(|e| Some(*e) != sender)
            .map(|e| Target {
                peer: e.clone(),
                from_dim: 0,
            });
        halves.chain(leaves).collect()
    }

    /// The members self sends rumor frames to: its targets when originating (on every
    /// broadcast, from any origin, a relay sends to a subset of these), each followed
    /// by the [primary takeover](Self::alternate_for) of that target, the first retry.
    /// Deduplicated, in order, self excluded.
    ///
    /// A deployment that gives every node the same member list
    /// ([`Engine::set_members`](crate::Engine::set_members)) but is not a full mesh keeps
    /// a connection to each of these: the union over all members is a connected overlay
    /// of `O(log N)` links per node on which every fault-free broadcast is exact and a
    /// single failure is retried over a live link.
    pub fn overlay_peers(&self) -> Vec<NodeId> {
        let me = self.primary.self_id();
        let mut out: Vec<NodeId> = Vec::new();
        for t in self.forward_targets(ORIGIN, None) {
            let takeover = self.alternate_for(t.from_dim, &t.peer).map(|a| a.peer);
            for peer in core::iter::once(t.peer).chain(takeover) {
                if &peer != me && !out.contains(&peer) {
                    out.push(peer);
                }
            }
        }
        out
    }

    /// The member that receives the half-block self hands off on dimension `k`.
    ///
    /// This is the [dimension neighbour](Hypercube::dimension_neighbour) unless its
    /// effective cap is `≤ k`. Then it is the first of up to 32 members of that half
    /// whose cap allows `k`, or still the neighbour if none does. Any member of the
    /// half keeps the broadcast exact.
    pub fn delegate(&self, k: u8) -> Option<&NodeId> {
        let preferred = self.primary.neighbour_position(k)?;
        let allows = |pos: u32| {
            let cap = self
                .primary
                .member_at(pos)
                .map(|id| self.effective(id, self.node_cap(pos)));
            cap.is_some_and(|cap| cap > k)
        };
        let chosen = core::iter::once(preferred)
            .chain(self.primary.block(preferred, k))
            .take(CAP_SCAN)
            .find(|&pos| allows(pos))
            .unwrap_or(preferred);
        self.primary.member_at(chosen)
    }

    /// The first of [`alternates`](Self::alternates): the primary takeover, which alone
    /// keeps a one-failure broadcast exact.
    pub fn alternate_for(&self, dim: u8, failed: &NodeId) -> Option<Target> {
        self.alternates(dim, failed).into_iter().next()
    }

    /// Where to resend a frame tagged `dim` that `failed` did not acknowledge, in order
    /// of preference (up to 8). Each is the same frame (same `fromDim`) to another member
    /// of `failed`'s half-block, the block `failed` was to cover:
    ///
    /// 1. the [primary takeover](Hypercube::takeover_for). It covers every other member
    ///    of the block exactly once, and `failed` receives one more frame, as a leaf;
    /// 2. `failed`'s dual-cube neighbours that lie in the block. They are independent of
    ///    primary adjacency, so they are the next try when the takeover is down too;
    /// 3. the block's remaining members in position order.
    ///
    /// Candidates after the first still cover the whole block; with two or more failed
    /// nodes a member may then receive twice (dedup absorbs it). Empty when `failed` is
    /// not a full member or is alone in its block: no one else was to hear from it.
    pub fn alternates(&self, dim: u8, failed: &NodeId) -> Vec<Target> {
        let Some(t) = self.primary.position(failed) else {
            return Vec::new();
        };
        let block = self.primary.block(t, self.primary.level_for(dim));
        let me = self.primary.self_position();
        let takeover = self
            .primary
            .takeover_for(dim, failed)
            .and_then(|id| self.primary.position(id));
        let dual_neighbours = self.dual.iter().flat_map(|dual| {
            let d = dual.position(failed);
            (0..dual.dimensions()).filter_map(move |j| {
                let id = dual.member_at(dual.neighbour_of(d?, j)?)?;
                self.primary.position(id)
            })
        });
        let mut picked: Vec<u32> = Vec::with_capacity(MAX_ALTERNATES);
        for pos in takeover
            .into_iter()
            .chain(dual_neighbours)
            .chain(block.clone())
        {
            if picked.len() == MAX_ALTERNATES {
                break;
            }
            if block.contains(&pos) && pos != t && Some(pos) != me && !picked.contains(&pos) {
                picked.push(pos);
            }
        }
        picked
            .into_iter()
            .filter_map(|pos| {
                Some(Target {
                    peer: self.primary.member_at(pos)?.clone(),
                    from_dim: dim,
                })
            })
            .collect()
    }

    /// The next hop toward `target` when only cube neighbours are connected.
    ///
    /// With `m` the highest bit in which self's and `target`'s positions differ, the
    /// next hop is self's dimension-`m` neighbour (or its substitute). It lies in the
    /// aligned block of `2^m` positions that holds `target`, so the highest differing
    /// bit strictly drops at every hop: at most `dimensions()` hops and no loops. An
    /// ephemeral target is reached through its host; an ephemeral self always hands
    /// off to its host. `None` when `target` is self or unknown, or self has no position.
    pub fn route_to_far(&self, target: &NodeId) -> Option<&NodeId> {
        let me = self.primary.self_id();
        if target == me {
            return None;
        }
        if let Some(host) = self.host_of(me) {
            return Some(host);
        }
        let goal = match self.ephemeral(target) {
            Some((leaf, host)) if Some(*host) == self.primary.self_position() => return Some(leaf),
            Some((_, host)) => self.primary.member_at(*host)?,
            None => target,
        };
        let diff = self.primary.self_position()? ^ self.primary.position(goal)?;
        self.primary.dimension_neighbour(highest_bit(diff)?)
    }

    /// The weight of dimension `dim`, in `[0.1, 1.0]` (1.0 for an unknown dimension).
    pub fn weight(&self, dim: u8) -> f32 {
        self.weights
            .get(usize::from(dim))
            .copied()
            .unwrap_or(WEIGHT_CEIL)
    }

    /// A push on `dim` went unacknowledged: its weight is multiplied by 0.9, down to 0.1.
    pub fn record_loss(&mut self, dim: u8) {
        if let Some(w) = self.weights.get_mut(usize::from(dim)) {
            *w = (*w * 0.9).max(WEIGHT_FLOOR);
        }
    }

    /// A push on `dim` was acknowledged: its weight gains 20 % of its gap to 1.0.
    pub fn record_success(&mut self, dim: u8) {
        if let Some(w) = self.weights.get_mut(usize::from(dim)) {
            *w = (*w + (WEIGHT_CEIL - *w) * 0.2).min(WEIGHT_CEIL);
        }
    }

    /// Picks up to `count` distinct entries of `candidates` for the random fallback.
    /// Each is drawn with probability proportional to the [weight](Self::weight) of its
    /// dimension from self ([`Hypercube::dimension_of`]; 1.0 when it has none), so
    /// lossy dimensions are avoided without being starved. Returns all candidates when
    /// `count ≥ candidates.len()`. Duplicated candidates may be picked twice.
    pub fn fallback_targets(
        &self,
        candidates: &[NodeId],
        count: usize,
        rng: &mut impl RandomSource,
    ) -> Vec<NodeId> {
        let weight_of = |id: &NodeId| {
            self.primary
                .dimension_of(id)
                .map_or(WEIGHT_CEIL, |d| self.weight(d))
        };
        let mut pool: Vec<(&NodeId, f64)> = candidates
            .iter()
            .map(|id| (id, f64::from(weight_of(id))))
            .collect();
        let mut out = Vec::with_capacity(count.min(pool.len()));
        while out.len() < count && !pool.is_empty() {
            let total: f64 = pool.iter().map(|(_, w)| w).sum();
            let mut pick = rng.unit_f64() * total;
            let mut index = pool.len() - 1;
            for (i, (_, w)) in pool.iter().enumerate() {
                if pick < *w {
                    index = i;
                    break;
                }
                pick -= w;
            }
            out.push(pool.swap_remove(index).0.clone());
        }
        out
    }

    /// The per-node cap of the member at primary position `pos`.
    fn node_cap(&self, pos: u32) -> Option<u8> {
        self.node_caps
            .get(usize::try_from(pos).ok()?)
            .copied()
            .flatten()
    }

    /// `min(self cap, peer cap, link cap, dimensions)` over the caps that are set.
    fn effective(&self, peer: &NodeId, peer_cap: Option<u8>) -> u8 {
        let self_cap = self.primary.self_position().and_then(|p| self.node_cap(p));
        [self_cap, peer_cap, self.link_caps.get(peer).copied()]
            .into_iter()
            .flatten()
            .fold(self.primary.dimensions(), u8::min)
    }

    fn compute_version(&self) -> u64 {
        let mut h = blake3::Hasher::new_derive_key("whisper hypercube ext version v1");
        h.update(&self.primary.version().to_le_bytes());
        for (id, host) in &self.ephemerals {
            // INVARIANT: a NodeId is at most 64 bytes long.
            h.update(&[id.as_bytes().len() as u8]);
            h.update(id.as_bytes());
            h.update(&host.to_le_bytes());
        }
        let mut out = [0u8; 8];
        out.copy_from_slice(&h.finalize().as_bytes()[..8]);
        u64::from_le_bytes(out)
    }
}

const DUAL_KEY: &str = "whisper hypercube dual order v1";
const HOST_KEY: &str = "whisper hypercube ephemeral host v1";

/// BLAKE3 of `id` in derive-key mode (`keyed` = `Hasher::new_derive_key(context)`): a
/// public, mesh-wide pseudo-random order.
fn keyed_hash(keyed: &blake3::Hasher, id: &NodeId) -> [u8; 32] {
    *keyed.clone().update(id.as_bytes()).finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    extern crate std;

    use alloc::{collections::BTreeMap, format, vec::Vec};

    use super::*;
    use crate::hypercube::cube::dimensions_for;
    use crate::hypercube::sim::{self, Outcome};
    use crate::rng::Rng;

    const T0: Instant = Instant::ZERO;

    fn id(s: &str) -> NodeId {
        NodeId::new(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    fn infos(n: usize) -> Vec<MemberInfo> {
        (0..n)
            .map(|i| MemberInfo::new(id(&format!("m{i:04}"))))
            .collect()
    }

    fn ext(me: &NodeId, members: &[MemberInfo], config: Config) -> HypercubeExt {
        let mut e = HypercubeExt::new(me.clone(), config);
        e.rebuild(members, T0).unwrap();
        e
    }

    /// A mesh of extended cubes, one per member, plus an id → index map.
    struct Mesh {
        ids: Vec<NodeId>,
        index: BTreeMap<NodeId, usize>,
        nodes: Vec<HypercubeExt>,
    }

    impl Mesh {
        fn new(members: &[MemberInfo], config: Config) -> Self {
            let ids: Vec<NodeId> = members.iter().map(|m| m.id.clone()).collect();
            let index = ids.iter().cloned().zip(0..).collect();
            let nodes = ids.iter().map(|me| ext(me, members, config)).collect();
            Self { ids, index, nodes }
        }

        fn broadcast(&self, origin: usize, failed: &[usize]) -> Outcome {
            let to_index = |t: Target| (self.index[&t.peer], t.from_dim);
            sim::run(
                self.ids.len(),
                origin,
                failed,
                |node, sender, dim| {
                    let sender = sender.map(|s| &self.ids[s]);
                    self.nodes[node]
                        .forward_targets(dim, sender)
                        .into_iter()
                        .map(to_index)
                        .collect()
                },
                |node, dim, dead, attempt| {
                    let alternates = self.nodes[node].alternates(dim, &self.ids[dead]);
                    alternates.into_iter().nth(attempt).map(to_index)
                },
            )
        }
    }

    /// Members with three regions, some per-node caps and every fifth one ephemeral.
    fn mixed_members(n: usize, rng: &mut Rng) -> Vec<MemberInfo> {
        (0..n)
            .map(|i| {
                let mut m = MemberInfo::new(id(&format!("x{:08x}", rng.next_u64() as u32)))
                    .with_region(["eu", "us", "ap"][rng.below(3) as usize]);
                if rng.below(3) == 0 {
                    m = m.with_max_dimensions(rng.below(4) as u8);
                }
                if i % 5 == 4 { m.into_ephemeral() } else { m }
            })
            .collect()
    }

    #[test]
    fn exact_with_regions_caps_and_ephemeral_leaves() {
        let mut rng = Rng::new(11);
        for n in 1..=60 {
            let members = mixed_members(n, &mut rng);
            let mut mesh = Mesh::new(&members, Config::default());
            for (i, node) in mesh.nodes.iter_mut().enumerate() {
                for (j, peer) in members.iter().enumerate() {
                    if (i + j) % 7 == 0 {
                        node.set_link_cap(&peer.id, Some(1));
                    }
                }
            }
            let ephemeral = members.iter().filter(|m| m.ephemeral).count();
            let full = n - ephemeral;
            for origin in 0..n {
                let out = mesh.broadcast(origin, &[]);
                assert!(
                    out.received.iter().all(|&r| r == 1),
                    "n={n} origin={origin} {:?}",
                    out.received
                );
                assert_eq!(out.frames, full - 1 + ephemeral, "n={n} origin={origin}");
                // Up to two extra hops: ephemeral origin → host, and host → leaf.
                assert!(out.max_hop <= u32::from(dimensions_for(full)) + 2);
            }
        }
    }

    #[test]
    fn ephemerals_hang_off_a_deterministic_host() {
        let mut members = infos(10);
        members.push(MemberInfo::new(id("phone")).into_ephemeral());
        let a = ext(&members[0].id, &members, Config::default());
        let b = ext(&members[7].id, &members, Config::default());
        let phone = id("phone");
        let host = a.host_of(&phone).unwrap().clone();
        assert_eq!(b.host_of(&phone), Some(&host));
        assert_eq!(a.primary().member_count(), 10, "no position for the leaf");
        assert_eq!(a.primary().position(&phone), None);
        let h = ext(&host, &members, Config::default());
        assert_eq!(h.attached(), core::slice::from_ref(&phone));
        let p = ext(&phone, &members, Config::default());
        assert_eq!(
            p.forward_targets(ORIGIN, None),
            [Target {
                peer: host.clone(),
                from_dim: ORIGIN
            }]
        );
        assert!(p.forward_targets(0, Some(&host)).is_empty());
        assert_eq!(p.route_to_far(&members[3].id), Some(&host));
        assert_eq!(h.route_to_far(&phone), Some(&phone));
        assert!(
            h.alternates(0, &phone).is_empty(),
            "a lost leaf loses nothing"
        );
    }

    #[test]
    fn one_failure_one_retry_through_the_extended_cube() {
        for n in 2..=40 {
            let mesh = Mesh::new(&infos(n), Config::default());
            for origin in 0..n {
                for dead in (0..n).filter(|&d| d != origin) {
                    let out = mesh.broadcast(origin, &[dead]);
                    let lost_block = out.received[dead] == 2;
                    assert!(out.received[dead] <= 2);
                    assert!(
                        out.received
                            .iter()
                            .enumerate()
                            .all(|(i, &r)| i == dead || r == 1)
                    );
                    assert_eq!(out.retries, usize::from(lost_block));
                }
            }
        }
    }

    /// Two failures: a node and its primary takeover. The dual-cube and block
    /// candidates still reach every live node (duplicates allowed).
    #[test]
    fn two_failures_fall_through_to_dual_candidates() {
        for n in 3..=40 {
            let mesh = Mesh::new(&infos(n), Config::default());
            let cube = mesh.nodes[0].primary();
            for dead in 0..n {
                let top = cube.dimensions();
                let Some(takeover) = cube.takeover_for(top, &mesh.ids[dead]) else {
                    continue;
                };
                let pair = [dead, mesh.index[takeover]];
                for origin in (0..n).filter(|o| !pair.contains(o)) {
                    let out = mesh.broadcast(origin, &pair);
                    for (i, &r) in out.received.iter().enumerate() {
                        assert!(
                            pair.contains(&i) || r >= 1,
                            "n={n} o={origin} dead={pair:?} missed {i}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn dual_cube_neighbours_really_differ() {
        for n in 4..=300 {
            let members = infos(n);
            let e = ext(&members[0].id, &members, Config::default());
            let (primary, dual) = (e.primary(), e.dual().unwrap());
            assert_ne!(primary.members(), dual.members(), "n={n}");
            let differs = members.iter().any(|m| {
                let (p, d) = (primary.view_as(&m.id), dual.view_as(&m.id));
                (0..p.dimensions()).any(|k| p.dimension_neighbour(k) != d.dimension_neighbour(k))
            });
            assert!(differs, "n={n}: identical neighbour sets");
        }
        let members = infos(64);
        let e = ext(&members[5].id, &members, Config::default());
        let mut p = e.primary().neighbours();
        let mut d = e.dual().unwrap().neighbours();
        p.sort();
        d.sort();
        assert_ne!(p, d, "as sets, not just by dimension");
    }

    /// Region blocks of uneven size over random ids: region ordering keeps every
    /// dimension-0 edge in-region except at most one per region boundary, and the
    /// broadcast crosses regions far less often.
    #[test]
    fn region_ordering_keeps_low_edges_and_subtrees_in_region() {
        let mut rng = Rng::new(5);
        let sizes = [37usize, 50, 13, 64, 36];
        let members: Vec<MemberInfo> = sizes
            .iter()
            .enumerate()
            .flat_map(|(r, &size)| core::iter::repeat_n(r, size))
            .map(|r| {
                let name = format!("{:016x}", rng.next_u64());
                MemberInfo::new(id(&name))
                    .with_region(Bytes::copy_from_slice(&[b'r', b'0' + r as u8]))
            })
            .collect();
        let region_of: BTreeMap<NodeId, Option<Bytes>> = members
            .iter()
            .map(|m| (m.id.clone(), m.region.clone()))
            .collect();
        let count = |config: Config| {
            let mesh = Mesh::new(&members, config);
            let cube = mesh.nodes[0].primary();
            let n = cube.len_u32();
            let same = |a: u32, b: u32| {
                region_of[cube.member_at(a).unwrap()] == region_of[cube.member_at(b).unwrap()]
            };
            let edges: Vec<(u32, u32)> = (0..n)
                .step_by(2)
                .filter(|p| p + 1 < n)
                .map(|p| (p, p + 1))
                .collect();
            let in_region = edges.iter().filter(|&&(a, b)| same(a, b)).count();
            let out = mesh.broadcast(0, &[]);
            assert!(out.received.iter().all(|&r| r == 1));
            // Cross-region frames: replay the delegation tree from member 0.
            let mut cross = 0;
            let mut stack = alloc::vec![(0usize, ORIGIN)];
            while let Some((node, dim)) = stack.pop() {
                for t in mesh.nodes[node].forward_targets(dim, None) {
                    let to = mesh.index[&t.peer];
                    cross += usize::from(region_of[&mesh.ids[node]] != region_of[&t.peer]);
                    stack.push((to, t.from_dim));
                }
            }
            (edges.len(), in_region, cross)
        };
        let lexicographic = Config {
            region_ordering: false,
            ..Config::default()
        };
        let (total, plain_in, plain_cross) = count(lexicographic);
        let (_, region_in, region_cross) = count(Config::default());
        assert!(
            region_in >= total - (sizes.len() - 1),
            "{region_in}/{total}"
        );
        assert!(
            plain_in * 2 < total,
            "random ids interleave regions: {plain_in}/{total}"
        );
        assert!(
            region_cross * 4 < plain_cross,
            "cross-region frames {region_cross} vs {plain_cross}"
        );
        std::println!(
            "dim-0 edges in-region {region_in} vs {plain_in} of {total}; cross-region frames {region_cross} vs {plain_cross}"
        );
    }

    #[test]
    fn route_to_far_is_greedy_and_loop_free() {
        for n in 1..=100 {
            let mesh = Mesh::new(&infos(n), Config::default());
            let dims = usize::from(mesh.nodes[0].primary().dimensions());
            for (s, start) in mesh.nodes.iter().enumerate() {
                assert_eq!(start.route_to_far(&mesh.ids[s]), None, "never self");
                assert_eq!(start.route_to_far(&id("stranger")), None);
                for t in (0..n).filter(|&t| t != s) {
                    let mut at = s;
                    let mut path = alloc::vec![s];
                    while at != t {
                        let next = mesh.nodes[at]
                            .route_to_far(&mesh.ids[t])
                            .expect("a next hop");
                        at = mesh.index[next];
                        assert!(!path.contains(&at), "loop n={n} {s}→{t}: {path:?}");
                        path.push(at);
                    }
                    assert!(path.len() - 1 <= dims, "n={n} {s}→{t}: {path:?}");
                }
            }
        }
    }

    #[test]
    fn caps_take_the_minimum_and_steer_delegation() {
        let mut members = infos(8);
        members[0] = members[0].clone().with_max_dimensions(2);
        members[4] = members[4].clone().with_max_dimensions(1);
        members[6] = members[6].clone().with_max_dimensions(3);
        let mut e = ext(&members[0].id, &members, Config::default());
        let ids: Vec<NodeId> = members.iter().map(|m| m.id.clone()).collect();
        let peer = |i: usize| ids[i].clone();
        assert_eq!(e.effective_dimensions(&peer(1)), 2, "self cap");
        assert_eq!(e.effective_dimensions(&peer(4)), 1, "peer cap");
        assert_eq!(
            e.effective_dimensions(&peer(6)),
            2,
            "self cap below peer cap"
        );
        assert!(e.set_link_cap(&peer(1), Some(0)));
        assert_eq!(e.effective_dimensions(&peer(1)), 0, "link cap");
        assert!(!e.set_link_cap(&id("stranger"), Some(1)));
        assert!(e.set_link_cap(&peer(1), None));
        assert_eq!(e.effective_dimensions(&peer(1)), 2);
        let uncapped = ext(&members[1].id, &infos(8), Config::default());
        assert_eq!(
            uncapped.effective_dimensions(&peer(5)),
            3,
            "the cube's dimensions"
        );

        // The dimension-2 half of node 0 is 4..8: node 4 (cap 1) cannot take level 2,
        // and self's own cap 2 rules out everyone, so coverage wins: still node 4.
        assert_eq!(e.delegate(2), Some(&peer(4)));
        // Seen from uncapped node 1 (5 is its dim-2 neighbour), and from node 0 without
        // its own cap: node 4 is passed over for node 5.
        members[0].max_dimensions = None;
        e = ext(&members[0].id, &members, Config::default());
        assert_eq!(e.delegate(2), Some(&peer(5)));
        assert_eq!(e.delegate(1), Some(&peer(2)));
        e.set_link_cap(&peer(2), Some(1));
        assert_eq!(
            e.delegate(1),
            Some(&peer(3)),
            "link cap steers to the other member"
        );
        e.set_link_cap(&peer(3), Some(0));
        assert_eq!(
            e.delegate(1),
            Some(&peer(2)),
            "nobody allowed: the neighbour anyway"
        );
        // A rebuild without node 3 drops its link cap.
        e.rebuild(&members[..3], T0).unwrap();
        assert!(!e.link_caps.contains_key(&peer(3)));
    }

    #[test]
    fn lazy_rebuild_waits_for_threshold_or_staleness() {
        let config = Config {
            rebuild: RebuildPolicy::LAZY,
            ..Config::default()
        };
        let members = infos(12);
        let mut e = HypercubeExt::new(members[0].id.clone(), config);
        assert!(e.needs_rebuild(T0), "first build is always due");
        assert!(e.maybe_rebuild(&members[..2], T0).unwrap());
        assert!(
            !e.maybe_rebuild(&members, Instant::from_secs(3600)).unwrap(),
            "nothing pending"
        );
        for i in 1..10 {
            assert!(!e.note_change(Instant::from_secs(i)), "change {i}");
        }
        assert!(!e.maybe_rebuild(&members, Instant::from_secs(10)).unwrap());
        assert_eq!(e.primary().member_count(), 2);
        assert!(e.note_change(Instant::from_secs(11)), "tenth change");
        assert!(e.maybe_rebuild(&members, Instant::from_secs(11)).unwrap());
        assert_eq!((e.primary().member_count(), e.pending_changes()), (12, 0));
        assert!(!e.note_change(Instant::from_secs(70)));
        assert!(
            e.note_change(Instant::from_secs(71)),
            "60 s after the last rebuild"
        );

        let mut eager = HypercubeExt::new(members[0].id.clone(), Config::default());
        eager.rebuild(&members, T0).unwrap();
        assert!(eager.note_change(T0));
    }

    #[test]
    fn weights_adapt_and_steer_the_fallback() {
        let members = infos(16);
        let mut e = ext(&members[0].id, &members, Config::default());
        for _ in 0..40 {
            e.record_loss(3);
        }
        assert!((e.weight(3) - 0.1).abs() < 1e-6, "floor");
        e.record_success(3);
        assert!((e.weight(3) - 0.28).abs() < 1e-6, "+20 % of the gap");
        e.record_loss(0);
        assert!((e.weight(0) - 0.9).abs() < 1e-6);
        for _ in 0..100 {
            e.record_success(0);
        }
        assert!(e.weight(0) <= 1.0 && e.weight(0) > 0.999);
        e.record_loss(200);
        assert_eq!(e.weight(200), 1.0);
        for _ in 0..40 {
            e.record_loss(3);
        }

        // Node 8 sits across dimension 3 (weight 0.1), node 1 across dimension 0 (1.0).
        let candidates = [members[8].id.clone(), members[1].id.clone()];
        let mut rng = Rng::new(2);
        let picks_of_8 = (0..10_000)
            .filter(|_| e.fallback_targets(&candidates, 1, &mut rng)[0] == candidates[0])
            .count();
        assert!(
            (600..1200).contains(&picks_of_8),
            "expected ≈ 1/11 of draws, got {picks_of_8}"
        );
        let mut all = e.fallback_targets(&candidates, 5, &mut rng);
        all.sort();
        assert_eq!(all, [members[1].id.clone(), members[8].id.clone()]);
        assert!(e.fallback_targets(&[], 3, &mut rng).is_empty());
    }

    #[test]
    fn version_covers_order_and_leaves() {
        let members = infos(6);
        let v = ext(&members[0].id, &members, Config::default()).version();
        assert_eq!(
            v,
            ext(&members[3].id, &members, Config::default()).version()
        );
        let mut with_leaf = members.clone();
        with_leaf.push(MemberInfo::new(id("leaf")).into_ephemeral());
        assert_ne!(
            v,
            ext(&members[0].id, &with_leaf, Config::default()).version()
        );
        let mut moved = members.clone();
        moved[0] = moved[0].clone().with_region("zz");
        assert_ne!(v, ext(&members[0].id, &moved, Config::default()).version());
    }
}
