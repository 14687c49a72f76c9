//! Faults: partitions and heals, crashes and restarts, churn, and the re-dialling of
//! links that went down.

use super::net::PartitionMode;
use super::queue::Ev;
use super::{App, Sim};
use whisper_proto::rng::RandomSource;
use whisper_proto::{ConnId, Duration, Engine, NodeId};

impl<A: App> Sim<A> {
    /// Splits the nodes into groups that cannot reach each other; nodes not listed form
    /// one more group. Links across break or go silent
    /// ([`SimConfig::partition_mode`](super::SimConfig::partition_mode)).
    pub fn partition(&mut self, groups: &[&[usize]]) {
        self.groups = Some(group_of(self.nodes.len(), groups));
        if self.config.partition_mode == PartitionMode::Break {
            for link in 0..self.links.len() {
                let l = &self.links[link];
                if !l.is_down() && !self.reachable(l.ends[0].node, l.ends[1].node) {
                    self.sever(link, Duration::ZERO);
                }
            }
        }
    }

    /// Ends every partition; links that are down are re-dialled.
    pub fn heal(&mut self) {
        self.groups = None;
        for link in 0..self.links.len() {
            self.maybe_reconnect(link);
        }
    }

    /// Crashes a node: its engine is dropped without a word; its peers see their
    /// connections break one latency later. Its links are re-dialled once it restarts.
    pub fn crash(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        if n.engine.take().is_none() {
            return;
        }
        n.incarnation += 1;
        n.timer = None;
        n.conns.clear();
        let links = n.links.clone();
        for link in links {
            let side = self.links[link].side(node);
            if !self.links[link].ends[side].open {
                continue;
            }
            self.links[link].ends[side].open = false;
            self.metrics.link_breaks += 1;
            self.links[link].severed = true;
            let other = self.links[link].ends[1 - side];
            if other.open {
                let cfg = self.link_config(link, side);
                let at = self.now + cfg.latency.sample(&mut self.rng);
                self.push(
                    at,
                    Ev::Disconnect {
                        node: other.node,
                        incarnation: self.nodes[other.node].incarnation,
                        conn: other.conn,
                    },
                );
            } else {
                self.maybe_reconnect(link);
            }
        }
    }

    /// Restarts a crashed node with a fresh engine (same id, new seed from the run's
    /// RNG); its links are re-dialled.
    pub fn restart(&mut self, node: usize) {
        let seed = self.rng.next_u64();
        let (config, now) = (self.config.engine.clone(), self.now);
        self.restart_with(node, |id| {
            // INVARIANT: the simulator's engine config was validated at first use.
            Engine::new(id.clone(), config.clone(), seed, now).expect("valid engine config")
        });
    }

    /// Restarts a crashed node with the engine `restore` builds for its id (restoring
    /// whatever state the scenario persisted). Registered custom kinds are registered on
    /// it again; its links are re-dialled.
    pub fn restart_with(&mut self, node: usize, mut restore: impl FnMut(&NodeId) -> Engine) {
        if self.nodes[node].engine.is_some() || self.nodes[node].left {
            return;
        }
        let mut engine = restore(&self.nodes[node].id);
        for &(magic, max_len) in &self.kinds {
            // A restored engine may have registered it already.
            let _ = engine.register_frame_kind(magic, max_len);
        }
        let n = &mut self.nodes[node];
        n.engine = Some(engine);
        n.incarnation += 1;
        n.timer = None;
        self.rearm(node);
        for link in self.nodes[node].links.clone() {
            self.maybe_reconnect(link);
        }
    }

    /// A new node joins, linked to `neighbours`; returns its index.
    pub fn add_node(&mut self, neighbours: &[usize]) -> usize {
        let node = self.spawn_node();
        for &b in neighbours {
            if b != node && !self.nodes[b].left {
                let link = self.add_link(node, b);
                self.maybe_reconnect_after(link, Duration::ZERO);
            }
        }
        node
    }

    /// A node leaves for good: its engine closes every connection (peers get the close
    /// after the data in flight), then it is dropped; its links are never re-dialled.
    pub fn leave(&mut self, node: usize) {
        for &link in &self.nodes[node].links {
            self.links[link].active = false;
        }
        let conns: Vec<ConnId> = self.nodes[node].conns.keys().copied().collect();
        for conn in conns {
            self.with_engine(node, |e, now| e.close_connection(now, conn));
        }
        let n = &mut self.nodes[node];
        n.engine = None;
        n.left = true;
        n.incarnation += 1;
        n.timer = None;
        n.conns.clear();
    }

    pub(super) fn reachable(&self, a: usize, b: usize) -> bool {
        reachable_in(self.groups.as_deref(), a, b)
    }

    /// Re-dials a down link after the reconnect delay, if it should be up.
    pub(super) fn maybe_reconnect(&mut self, link: usize) {
        if let Some(d) = self.config.reconnect_delay {
            let jitter = self.rng.below(d.as_micros() as u64 + 1);
            self.maybe_reconnect_after(link, d + Duration::from_micros(jitter));
        }
    }

    pub(super) fn maybe_reconnect_after(&mut self, link: usize, delay: Duration) {
        if self.can_connect(link) {
            self.queue_connect(link, self.now + delay);
        }
    }

    pub(super) fn can_connect(&self, link: usize) -> bool {
        let l = &self.links[link];
        let (a, b) = (l.ends[0].node, l.ends[1].node);
        l.active
            && l.is_down()
            && self.nodes[a].engine.is_some()
            && self.nodes[b].engine.is_some()
            && self.reachable(a, b)
    }

    /// Tears a link down: nothing more is delivered; each open end is told after
    /// `after`.
    pub(super) fn sever(&mut self, link: usize, after: Duration) {
        self.metrics.link_breaks += 1;
        self.links[link].severed = true;
        for side in 0..2 {
            let end = self.links[link].ends[side];
            if end.open {
                let incarnation = self.nodes[end.node].incarnation;
                self.push(
                    self.now + after,
                    Ev::Disconnect {
                        node: end.node,
                        incarnation,
                        conn: end.conn,
                    },
                );
            }
        }
    }
}

/// Whether `a` and `b` are in the same partition group (`None`: no partition).
pub(super) fn reachable_in(groups: Option<&[u32]>, a: usize, b: usize) -> bool {
    groups.is_none_or(|g| g[a] == g[b])
}

/// Each of `n` nodes' partition group: its index in `groups`, or one more group for the
/// nodes not listed.
pub(super) fn group_of(n: usize, groups: &[&[usize]]) -> Vec<u32> {
    let mut g = vec![u32::MAX; n];
    for (i, group) in groups.iter().enumerate() {
        for &node in *group {
            g[node] = i as u32;
        }
    }
    g
}
