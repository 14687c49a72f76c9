//! The shape of the network and the simulator's node ids.

use std::collections::{BTreeMap, BTreeSet};
use whisper_proto::hypercube::{self, HypercubeExt, MemberInfo};
use whisper_proto::rng::{RandomSource, Rng};
use whisper_proto::{Bytes, Instant, NodeId};

/// The shape of the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Every pair of nodes is linked.
    FullMesh,
    /// Exactly these undirected edges (node indices; duplicates and self-loops ignored).
    Edges(Vec<(usize, usize)>),
    /// Each node links to `k` distinct random others (edges are undirected, so the
    /// average degree is `2k`, the minimum `k`); a full mesh when `2k ≥ N − 1`.
    Random {
        /// Edges started per node.
        k: usize,
    },
    /// No links at all.
    None,
    /// The hypercube overlay: each node linked to its
    /// [`HypercubeExt::overlay_peers`] for the member list of all `N` nodes (default
    /// cube [`hypercube::Config`]), `O(log N)` links per node on average. Pair it with
    /// [`Sim::set_all_members`](super::Sim::set_all_members): the engines route on that
    /// same list.
    Cube,
}

/// The id the simulator gives node `node`: `n` and 7 digits.
pub fn node_id(node: usize) -> NodeId {
    NodeId::new(Bytes::from(format!("n{node:07}"))).expect("INVARIANT: 8-byte ids are valid")
}

/// Every node of an `n`-node simulation as a hypercube member.
pub fn all_members(n: usize) -> Vec<MemberInfo> {
    (0..n).map(|i| MemberInfo::new(node_id(i))).collect()
}

impl Topology {
    /// The edges for `n` nodes, as `(a, b)` with `a < b`, deduplicated, in a
    /// deterministic order.
    pub fn edges(&self, n: usize, rng: &mut Rng) -> Vec<(usize, usize)> {
        let mut set = BTreeSet::new();
        match self {
            Self::FullMesh => (0..n)
                .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
                .collect(),
            Self::None => Vec::new(),
            Self::Cube => {
                let members = all_members(n);
                let index: BTreeMap<NodeId, usize> =
                    members.iter().map(|m| m.id.clone()).zip(0..).collect();
                for a in 0..n {
                    let mut cube = HypercubeExt::new(node_id(a), hypercube::Config::default());
                    cube.rebuild(&members, Instant::ZERO)
                        .expect("INVARIANT: distinct simulator ids within the member cap");
                    for peer in cube.overlay_peers() {
                        let b = index[&peer];
                        set.insert((a.min(b), a.max(b)));
                    }
                }
                set.into_iter().collect()
            }
            Self::Edges(list) => {
                let mut out = Vec::new();
                for &(a, b) in list {
                    let e = (a.min(b), a.max(b));
                    if a != b && a < n && b < n && set.insert(e) {
                        out.push(e);
                    }
                }
                out
            }
            Self::Random { k } => {
                if 2 * k >= n.saturating_sub(1) {
                    return Self::FullMesh.edges(n, rng);
                }
                let mut out = Vec::with_capacity(n * k);
                for a in 0..n {
                    let mut made = 0;
                    let mut tries = 0;
                    while made < *k && tries < 64 * k {
                        tries += 1;
                        let b = rng.below(n as u64) as usize;
                        let e = (a.min(b), a.max(b));
                        if b != a && set.insert(e) {
                            out.push(e);
                            made += 1;
                        }
                    }
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_topology_has_exact_edge_count() {
        let mut rng = Rng::new(3);
        let e = Topology::Random { k: 4 }.edges(1000, &mut rng);
        assert_eq!(e.len(), 4000);
        assert!(e.iter().all(|&(a, b)| a < b));
        assert_eq!(Topology::FullMesh.edges(5, &mut rng).len(), 10);
    }
}
