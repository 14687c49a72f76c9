//! Node and link bookkeeping: spawning engines, opening connections, draining engine
//! actions onto the links, and processing queued events.

use super::net::{self, Link, LinkConfig, LinkMode, split_frames};
use super::queue::Ev;
use super::topology::node_id;
use super::{App, Sim};
use std::collections::BTreeMap;
use whisper_proto::rng::RandomSource;
use whisper_proto::{Action, Bytes, ConnId, Duration, Engine, Identity, Instant, NodeId, Role};

#[derive(Debug)]
pub(super) struct Node {
    pub(super) id: NodeId,
    pub(super) engine: Option<Engine>,
    /// Live connections of this node's engine → link index.
    pub(super) conns: BTreeMap<ConnId, usize>,
    /// Every link this node is an end of.
    pub(super) links: Vec<usize>,
    pub(super) next_conn: u64,
    /// The deadline of this node's pending timer event.
    pub(super) timer: Option<Instant>,
    /// Bumped at every crash and restart; older timer events are stale.
    pub(super) incarnation: u32,
    /// Left the cluster for good.
    pub(super) left: bool,
}

impl<A: App> Sim<A> {
    pub(super) fn spawn_node(&mut self) -> usize {
        let node = self.nodes.len();
        let id = node_id(node);
        let seed = self.rng.next_u64();
        let mut engine = Engine::new(id.clone(), self.config.engine.clone(), seed, self.now)
            .expect("SimConfig::engine must be a valid engine Config");
        for &(magic, max_len) in &self.kinds {
            let _ = engine.register_frame_kind(magic, max_len);
        }
        self.nodes.push(Node {
            id,
            engine: Some(engine),
            conns: BTreeMap::new(),
            links: Vec::new(),
            next_conn: 1,
            timer: None,
            incarnation: 0,
            left: false,
        });
        self.metrics.ensure(node);
        if let Some(g) = self.groups.as_mut() {
            g.push(u32::MAX);
        }
        node
    }

    pub(super) fn add_link(&mut self, a: usize, b: usize) -> usize {
        let key = (a.min(b), a.max(b));
        if let Some(&l) = self.edge_index.get(&key) {
            self.links[l].active = true;
            return l;
        }
        let (dialer, acceptor) = if self.nodes[a].id > self.nodes[b].id {
            (a, b)
        } else {
            (b, a)
        };
        let link = self.links.len();
        self.links.push(Link::new(dialer, acceptor));
        self.nodes[a].links.push(link);
        self.nodes[b].links.push(link);
        self.edge_index.insert(key, link);
        link
    }

    pub(super) fn link_config(&self, link: usize, from_side: usize) -> LinkConfig {
        let l = &self.links[link];
        let key = (l.ends[from_side].node, l.ends[1 - from_side].node);
        self.overrides
            .get(&key)
            .copied()
            .unwrap_or(self.config.link)
    }

    pub(super) fn queue_connect(&mut self, link: usize, at: Instant) {
        if !self.links[link].connect_pending {
            self.links[link].connect_pending = true;
            self.push(at, Ev::Connect { link });
        }
    }

    pub(super) fn process(&mut self, ev: Ev) {
        match ev {
            Ev::Timer {
                node,
                incarnation,
                at,
            } => {
                let n = &mut self.nodes[node];
                if n.incarnation != incarnation || n.timer != Some(at) {
                    return;
                }
                n.timer = None;
                if let Some(e) = n.engine.as_mut() {
                    e.handle_timeout(at);
                }
                self.mix(&[1, self.now.as_micros(), node as u64]);
                self.drain(node);
            }
            Ev::Deliver {
                link,
                generation,
                to,
                bytes,
            } => {
                let l = &self.links[link];
                let end = l.ends[to];
                if l.generation != generation || l.severed || !end.open {
                    self.metrics.frames_dropped += 1;
                    return;
                }
                self.mix(&[2, self.now.as_micros(), end.node as u64, bytes.len() as u64]);
                self.metrics.record_receive(end.node, bytes.len());
                if let Some(e) = self.nodes[end.node].engine.as_mut() {
                    // A protocol error closes the connection inside the engine, which
                    // queues Close: the drain below handles it.
                    let _ = e.handle_bytes(self.now, end.conn, &bytes);
                }
                self.drain(end.node);
            }
            Ev::Disconnect {
                node,
                incarnation,
                conn,
            } => {
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                let Some(link) = self.nodes[node].conns.remove(&conn) else {
                    return;
                };
                self.mix(&[3, self.now.as_micros(), node as u64]);
                let side = self.links[link].side(node);
                self.links[link].ends[side].open = false;
                if let Some(e) = self.nodes[node].engine.as_mut() {
                    e.handle_disconnected(self.now, conn);
                }
                self.drain(node);
                if self.links[link].is_down() {
                    self.maybe_reconnect(link);
                }
            }
            Ev::Connect { link } => {
                self.links[link].connect_pending = false;
                if !self.can_connect(link) {
                    return;
                }
                self.connect(link);
            }
            Ev::Sample => self.sample(),
        }
    }

    pub(super) fn connect(&mut self, link: usize) {
        self.metrics.connects += 1;
        let now = self.now;
        let l = &mut self.links[link];
        l.generation += 1;
        l.severed = false;
        l.dirs = [net::Dir::idle(now); 2];
        let ends = l.ends;
        self.mix(&[4, now.as_micros(), link as u64]);
        for (side, role) in [(0, Role::Dialer), (1, Role::Acceptor)] {
            let node = ends[side].node;
            let n = &mut self.nodes[node];
            let conn = ConnId(n.next_conn);
            n.next_conn += 1;
            n.conns.insert(conn, link);
            self.links[link].ends[side].conn = conn;
            self.links[link].ends[side].open = true;
            let engine = n.engine.as_mut().expect("INVARIANT: can_connect checked");
            if engine
                .handle_connected(now, conn, role, Identity::Hello)
                .is_err()
            {
                // Refused (connection limit): the driver closes the socket.
                self.nodes[node].conns.remove(&conn);
                self.links[link].ends[side].open = false;
                self.sever(link, Duration::ZERO);
            }
        }
        self.drain(ends[0].node);
        self.drain(ends[1].node);
    }

    /// Drains every action of `node`'s engine, then re-arms its timer.
    pub(super) fn drain(&mut self, node: usize) {
        loop {
            let Some(engine) = self.nodes[node].engine.as_mut() else {
                return;
            };
            let Some(action) = engine.poll_action() else {
                break;
            };
            match action {
                Action::Send { conn, bytes } => self.transmit(node, conn, bytes),
                Action::Close { conn, .. } => self.on_close(node, conn),
                Action::Emit(event) => self.on_event(node, event),
                _ => {}
            }
        }
        self.rearm(node);
    }

    pub(super) fn rearm(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let want = n.engine.as_ref().and_then(Engine::poll_timeout);
        if want != n.timer {
            n.timer = want;
            if let Some(at) = want {
                let incarnation = n.incarnation;
                self.push(
                    at,
                    Ev::Timer {
                        node,
                        incarnation,
                        at,
                    },
                );
            }
        }
    }

    /// The engine closed `conn`: the peer sees the close after the data in flight.
    pub(super) fn on_close(&mut self, node: usize, conn: ConnId) {
        let Some(link) = self.nodes[node].conns.remove(&conn) else {
            return;
        };
        let side = self.links[link].side(node);
        self.links[link].ends[side].open = false;
        let other = self.links[link].ends[1 - side];
        // Across a blackhole partition the close never arrives: the peer times out.
        if other.open && !self.links[link].severed && self.reachable(node, other.node) {
            let cfg = self.link_config(link, side);
            let latency = cfg.latency.sample(&mut self.rng);
            let at = self.links[link].dirs[side].fin(self.now, latency);
            let incarnation = self.nodes[other.node].incarnation;
            self.push(
                at,
                Ev::Disconnect {
                    node: other.node,
                    incarnation,
                    conn: other.conn,
                },
            );
        } else if self.links[link].is_down() {
            self.maybe_reconnect(link);
        }
    }

    pub(super) fn transmit(&mut self, node: usize, conn: ConnId, bytes: Bytes) {
        let frames = split_frames(&self.observer, &bytes);
        for (kind, f) in &frames {
            self.metrics.record_send(node, *kind, f.len());
        }
        let Some(&link) = self.nodes[node].conns.get(&conn) else {
            self.metrics.frames_dropped += frames.len() as u64;
            return;
        };
        let side = self.links[link].side(node);
        let peer = self.links[link].ends[1 - side].node;
        if self.links[link].severed || !self.reachable(node, peer) {
            self.metrics.frames_dropped += frames.len() as u64;
            return;
        }
        let cfg = self.link_config(link, side);
        let generation = self.links[link].generation;
        let to = 1 - side;
        match cfg.mode {
            LinkMode::Stream => {
                if cfg.loss > 0.0 && self.rng.unit_f64() < cfg.loss {
                    // A stream cannot lose a write and go on: the connection breaks.
                    self.metrics.frames_dropped += frames.len() as u64;
                    self.sever(link, Duration::ZERO);
                    return;
                }
                let latency = cfg.latency.sample(&mut self.rng);
                let dir = &mut self.links[link].dirs[side];
                let (_, at) = dir.stream(self.now, &cfg, bytes.len(), latency);
                self.push(
                    at,
                    Ev::Deliver {
                        link,
                        generation,
                        to,
                        bytes,
                    },
                );
            }
            LinkMode::Frames => {
                for (_, frame) in frames {
                    if cfg.loss > 0.0 && self.rng.unit_f64() < cfg.loss {
                        self.metrics.frames_dropped += 1;
                        continue;
                    }
                    let copies = if cfg.duplicate > 0.0 && self.rng.unit_f64() < cfg.duplicate {
                        self.metrics.frames_duplicated += 1;
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        let latency = cfg.latency.sample(&mut self.rng);
                        let jitter = self.rng.below(cfg.reorder.as_micros() as u64 + 1);
                        let dir = &mut self.links[link].dirs[side];
                        dir.busy_until =
                            dir.busy_until.max(self.now) + cfg.serialisation(frame.len());
                        let at = dir.busy_until + latency + Duration::from_micros(jitter);
                        dir.last_arrival = dir.last_arrival.max(at);
                        self.push(
                            at,
                            Ev::Deliver {
                                link,
                                generation,
                                to,
                                bytes: frame.clone(),
                            },
                        );
                    }
                }
            }
        }
    }
}
