//! An in-memory network of pushers for the unit tests.

use super::*;

/// Who is connected to whom.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Links {
    /// Everyone to everyone.
    Full,
    /// The overlay of [`HypercubeExt::overlay_peers`], both ways.
    Neighbourhood,
}

/// What one broadcast did, as seen by the router.
#[derive(Debug, Default)]
pub(super) struct Run {
    /// Per node: `Deliver` outputs.
    pub(super) delivered: Vec<usize>,
    /// Per node: rumor frames arriving (the dead node's included).
    pub(super) received: Vec<usize>,
    /// Per node: the `fromDim` of the first rumor frame it was sent.
    pub(super) first_dim: Vec<Option<u8>>,
    /// Per node: ACK frames addressed to it.
    pub(super) acks_to: Vec<usize>,
    /// Per node: ACK frames it sent.
    pub(super) acks_from: Vec<usize>,
    /// Rumor frames sent.
    pub(super) frames: usize,
    /// ACK frames sent (dropped ones included).
    pub(super) acks: usize,
    pub(super) max_hop: u8,
    pub(super) retries: usize,
    pub(super) dropped: Vec<DropReason>,
    pub(super) acked: usize,
    pub(super) fallback: usize,
    /// Every `(hop, fromDim)` sent, in order.
    pub(super) sends: Vec<(usize, usize, u8, u8)>,
    /// Ids carried by ACK frames.
    pub(super) ack_ids: BTreeSet<RumorId>,
}

impl Run {
    pub(super) fn new(n: usize) -> Self {
        Self {
            delivered: vec![0; n],
            received: vec![0; n],
            first_dim: vec![None; n],
            acks_to: vec![0; n],
            acks_from: vec![0; n],
            ..Self::default()
        }
    }
}

/// An in-memory router over `N` pushers: frames arrive in FIFO order with no
/// latency; when nothing is in flight, time jumps to the earliest ACK deadline.
pub(super) struct Net {
    pub(super) ids: Vec<NodeId>,
    pub(super) index: BTreeMap<NodeId, usize>,
    pub(super) nodes: Vec<RumorPusher>,
    pub(super) now: Instant,
    /// Receives frames but never processes them (no ACK, no forwarding).
    pub(super) dead: Option<usize>,
    /// Nodes that did not advertise ACK support: they neither send nor await ACKs.
    pub(super) legacy: BTreeSet<usize>,
    /// Drop the next ACK frame sent on each `(from, to)` link listed.
    pub(super) drop_ack: Vec<(usize, usize)>,
    /// Links (`from`, `to`) whose frames are lost (the connection died).
    pub(super) cut: BTreeSet<(usize, usize)>,
    pub(super) queue: VecDeque<(usize, usize, PushFrame)>,
    pub(super) run: Run,
}

impl Net {
    /// `n` nodes that all know the full member list.
    pub(super) fn new(n: usize, config: RumorConfig, links: Links, legacy: &[usize]) -> Self {
        let ids: Vec<NodeId> = (0..n).map(id).collect();
        let members = infos(&ids);
        Self::build(ids, config, links, legacy, |_| members.clone())
    }

    pub(super) fn build(
        ids: Vec<NodeId>,
        config: RumorConfig,
        links: Links,
        legacy: &[usize],
        members_of: impl Fn(usize) -> Vec<MemberInfo>,
    ) -> Self {
        let n = ids.len();
        let index: BTreeMap<NodeId, usize> = ids.iter().cloned().zip(0..).collect();
        let legacy: BTreeSet<usize> = legacy.iter().copied().collect();
        let mut nodes: Vec<RumorPusher> = (0..n)
            .map(|i| {
                let cube = hypercube::Config::default();
                let mut p = RumorPusher::new(ids[i].clone(), config, cube, 1000 + i as u64);
                p.set_members(T0, &members_of(i)).unwrap();
                p
            })
            .collect();
        // Links are undirected: a connection either end asked for serves both.
        let mut overlay: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
        if let Links::Neighbourhood = links {
            for (i, node) in nodes.iter().enumerate() {
                for peer in node.cube().overlay_peers() {
                    overlay[i].insert(index[&peer]);
                    overlay[index[&peer]].insert(i);
                }
            }
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            let peers: BTreeSet<usize> = match links {
                Links::Full => (0..n).filter(|&j| j != i).collect(),
                Links::Neighbourhood => core::mem::take(&mut overlay[i]),
            };
            // ACK support is negotiated: both ends must advertise it.
            let acks = |j: usize| !legacy.contains(&i) && !legacy.contains(&j);
            for j in peers {
                node.peer_up(ids[j].clone(), acks(j));
            }
        }
        Self {
            ids,
            index,
            nodes,
            now: T0,
            dead: None,
            legacy,
            drop_ack: Vec::new(),
            cut: BTreeSet::new(),
            queue: VecDeque::new(),
            run: Run::default(),
        }
    }

    pub(super) fn n(&self) -> usize {
        self.ids.len()
    }

    pub(super) fn drain(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].poll_output() {
            match out {
                PusherOutput::Send { to, frame, .. } => {
                    let j = self.index[&to];
                    match &frame {
                        PushFrame::Rumor(r) => {
                            self.run.frames += 1;
                            self.run.max_hop = self.run.max_hop.max(r.hop);
                            self.run.sends.push((i, j, r.hop, r.from_dim));
                            self.run.first_dim[j].get_or_insert(r.from_dim);
                        }
                        PushFrame::Ack(a) => {
                            self.run.acks += 1;
                            self.run.acks_to[j] += 1;
                            self.run.acks_from[i] += 1;
                            self.run.ack_ids.insert(RumorId::from_bytes(a.rumor_id));
                        }
                    }
                    self.queue.push_back((i, j, frame));
                }
                PusherOutput::Deliver { .. } => self.run.delivered[i] += 1,
                PusherOutput::Event(e) => match e {
                    RumorEvent::Retry { .. } => self.run.retries += 1,
                    RumorEvent::Dropped { reason, .. } => self.run.dropped.push(reason),
                    RumorEvent::Acked { .. } => self.run.acked += 1,
                    RumorEvent::Sent {
                        path: SendPath::Fallback,
                        ..
                    } => self.run.fallback += 1,
                    _ => {}
                },
            }
        }
    }

    /// Moves frames and fires timeouts until nothing is left to do.
    pub(super) fn settle(&mut self) {
        for _ in 0..10_000 {
            while let Some((from, to, frame)) = self.queue.pop_front() {
                if self.cut.contains(&(from, to)) {
                    continue;
                }
                match frame {
                    PushFrame::Rumor(r) => {
                        self.run.received[to] += 1;
                        if self.dead == Some(to) {
                            continue;
                        }
                        let acks = !self.legacy.contains(&from) && !self.legacy.contains(&to);
                        let from_id = self.ids[from].clone();
                        self.nodes[to].handle_rumor(self.now, &from_id, r, acks);
                    }
                    PushFrame::Ack(a) => {
                        if self.dead == Some(to) {
                            continue;
                        }
                        if let Some(k) = self.drop_ack.iter().position(|&l| l == (from, to)) {
                            self.drop_ack.remove(k);
                            continue;
                        }
                        let from_id = self.ids[from].clone();
                        let rid = RumorId::from_bytes(a.rumor_id);
                        self.nodes[to].handle_ack(self.now, &from_id, rid);
                    }
                }
                self.drain(to);
            }
            let dead = self.dead;
            let live = move |i: &usize| Some(*i) != dead;
            let Some(next) = (0..self.n())
                .filter(live)
                .filter_map(|i| self.nodes[i].next_deadline())
                .min()
            else {
                return;
            };
            self.now = self.now.max(next);
            for i in (0..self.n()).filter(live) {
                if self.nodes[i].next_deadline().is_some_and(|d| d <= self.now) {
                    self.nodes[i].handle_timeout(self.now);
                    self.drain(i);
                }
            }
        }
        panic!("the router did not settle");
    }

    pub(super) fn broadcast(&mut self, origin: usize, payload: &[u8]) -> Run {
        self.run = Run::new(self.n());
        let payload = Bytes::copy_from_slice(payload);
        let rid = self.nodes[origin]
            .publish(self.now, payload.clone())
            .unwrap();
        assert_eq!(rid, rumor_id(&payload));
        self.drain(origin);
        self.settle();
        for id in &self.run.ack_ids {
            assert_eq!(*id, rid, "every ACK carries the origin's id");
        }
        core::mem::take(&mut self.run)
    }

    pub(super) fn pending(&self) -> usize {
        self.nodes.iter().map(|p| p.stats().pending_acks).sum()
    }
}

pub(super) fn ceil_log2(n: usize) -> u8 {
    if n <= 1 {
        0
    } else {
        (usize::BITS - (n - 1).leading_zeros()) as u8
    }
}

pub(super) fn assert_exact(net: &Net, run: &Run, origin: usize) {
    let n = net.n();
    for (i, &d) in run.delivered.iter().enumerate() {
        assert_eq!(
            d,
            usize::from(i != origin),
            "N={n} origin={origin} node={i}"
        );
    }
    assert_eq!(run.frames, n - 1, "N={n} origin={origin}");
    assert!(run.max_hop <= ceil_log2(n), "N={n} origin={origin}");
    assert_eq!(run.acks, n - 1, "N={n} origin={origin}");
    assert_eq!(run.acked, n - 1, "N={n} origin={origin}");
    assert_eq!(run.retries, 0, "N={n} origin={origin}");
    assert!(run.dropped.is_empty(), "N={n} origin={origin}");
    assert_eq!(run.fallback, 0);
    assert_eq!(net.pending(), 0);
}
