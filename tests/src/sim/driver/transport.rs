//! The transport of the driver simulator: connections ("pipes") between drivers, the
//! events it queues, and how each is processed: dials landing or refused, bytes
//! delivered in order within the read window, writes acknowledged, closes.

use super::super::Recorded;
use super::super::net::{Dir, split_frames};
use super::{DialRecord, DriverSim};
use std::collections::VecDeque;
use whisper_proto::driver::{DialId, Driver, Output};
use whisper_proto::{Bytes, ConnId, Event, Instant};

/// One end of a connection.
#[derive(Clone, Copy, Debug)]
pub(super) struct PEnd {
    pub(super) node: usize,
    pub(super) conn: ConnId,
    /// The driver at this end still holds the connection.
    pub(super) open: bool,
}

/// One direction of a connection.
#[derive(Debug, Default)]
pub(super) struct PDir {
    pub(super) net: Dir,
    /// Bytes sent and not yet consumed by the reader.
    pub(super) unconsumed: usize,
    /// A write the window did not admit yet (unacknowledged).
    pub(super) parked: Option<Bytes>,
    /// Arrived while the reader was stalled, not consumed yet.
    pub(super) buffered: VecDeque<Bytes>,
    /// The close arrived while the reader was stalled.
    pub(super) fin: bool,
}

/// A connection between two drivers: `ends[0]` dialed, `ends[1]` accepted;
/// `dirs[s]` is the traffic from `ends[s]`.
#[derive(Debug)]
pub(super) struct Pipe {
    pub(super) ends: [PEnd; 2],
    pub(super) dirs: [PDir; 2],
}

impl Pipe {
    pub(super) fn side(&self, node: usize, conn: ConnId) -> usize {
        usize::from(!(self.ends[0].node == node && self.ends[0].conn == conn))
    }
}

#[derive(Debug)]
pub(super) enum DEv {
    Start {
        node: usize,
        incarnation: u32,
    },
    Timer {
        node: usize,
        incarnation: u32,
        at: Instant,
    },
    /// A dial reaches its target.
    Dial {
        node: usize,
        incarnation: u32,
        dial: DialId,
        target: usize,
    },
    /// The target refused: the dial fails.
    Refused {
        node: usize,
        incarnation: u32,
        dial: DialId,
    },
    Deliver {
        pipe: usize,
        from: usize,
        bytes: Bytes,
    },
    Written {
        pipe: usize,
        side: usize,
    },
    Fin {
        pipe: usize,
        from: usize,
    },
}

impl DriverSim {
    pub(super) fn process(&mut self, ev: DEv) {
        let now = self.now;
        match ev {
            DEv::Start { node, incarnation } => {
                if !self.alive_as(node, incarnation) {
                    return;
                }
                self.mix(&[1, now.as_micros(), node as u64]);
                let addrs: Vec<String> = self.nodes[node]
                    .peers
                    .iter()
                    .map(|&p| self.nodes[p].addr.clone())
                    .collect();
                if let Some(d) = self.nodes[node].driver.as_mut() {
                    for addr in addrs {
                        d.add_peer(now, addr);
                    }
                }
                self.drain(node);
            }
            DEv::Timer {
                node,
                incarnation,
                at,
            } => {
                let n = &mut self.nodes[node];
                if n.incarnation != incarnation || n.timer != Some(at) {
                    return;
                }
                n.timer = None;
                if let Some(d) = n.driver.as_mut() {
                    d.handle_timeout(at);
                }
                self.mix(&[2, now.as_micros(), node as u64]);
                self.drain(node);
            }
            DEv::Dial {
                node,
                incarnation,
                dial,
                target,
            } => self.dial_arrives(node, incarnation, dial, target),
            DEv::Refused {
                node,
                incarnation,
                dial,
            } => {
                if !self.alive_as(node, incarnation)
                    || self.nodes[node].dials.remove(&dial).is_none()
                {
                    return;
                }
                self.mix(&[3, now.as_micros(), node as u64]);
                if let Some(d) = self.nodes[node].driver.as_mut() {
                    d.handle_dial_failed(now, dial);
                }
                self.drain(node);
            }
            DEv::Deliver { pipe, from, bytes } => {
                let to = 1 - from;
                let end = self.pipes[pipe].ends[to];
                if !end.open {
                    self.metrics.frames_dropped += 1;
                    return;
                }
                self.mix(&[4, now.as_micros(), end.node as u64, bytes.len() as u64]);
                if self.nodes[end.node].stalled {
                    self.pipes[pipe].dirs[from].buffered.push_back(bytes);
                } else {
                    self.consume(pipe, from, &bytes);
                }
            }
            DEv::Written { pipe, side } => {
                let end = self.pipes[pipe].ends[side];
                if !end.open {
                    return;
                }
                self.mix(&[5, now.as_micros(), end.node as u64]);
                if let Some(d) = self.nodes[end.node].driver.as_mut() {
                    d.handle_written(now, end.conn);
                }
                self.drain(end.node);
            }
            DEv::Fin { pipe, from } => {
                let to = 1 - from;
                let end = self.pipes[pipe].ends[to];
                if !end.open {
                    return;
                }
                if self.nodes[end.node].stalled {
                    self.pipes[pipe].dirs[from].fin = true;
                } else {
                    self.disconnected(pipe, to);
                }
            }
        }
    }

    pub(super) fn dial_arrives(
        &mut self,
        node: usize,
        incarnation: u32,
        dial: DialId,
        target: usize,
    ) {
        let now = self.now;
        // An aborted dial, or one from a driver that has crashed since, never lands.
        if !self.alive_as(node, incarnation) || !self.nodes[node].dials.contains_key(&dial) {
            return;
        }
        self.mix(&[6, now.as_micros(), node as u64, target as u64]);
        let remote = Some(self.nodes[node].addr.clone());
        let accepted = self.nodes[target]
            .driver
            .as_mut()
            .map(|d| d.handle_accepted(now, remote));
        let Some(Ok(conn_t)) = accepted else {
            // Nobody listening (crashed) or refused: the dialer learns one latency later.
            let at = now + self.latency();
            self.push(
                at,
                DEv::Refused {
                    node,
                    incarnation,
                    dial,
                },
            );
            self.drain(target);
            return;
        };
        self.nodes[node].dials.remove(&dial);
        let target_addr = Some(self.nodes[target].addr.clone());
        let dialed = self.nodes[node]
            .driver
            .as_mut()
            .expect("INVARIANT: alive_as checked")
            .handle_dialed(now, dial, target_addr);
        let pipe = self.pipes.len();
        let end = |node, conn, open| PEnd { node, conn, open };
        let (conn_d, open_d) = match dialed {
            Ok(c) => (c, true),
            Err(_) => (ConnId(0), false),
        };
        self.pipes.push(Pipe {
            ends: [end(node, conn_d, open_d), end(target, conn_t, true)],
            dirs: [PDir::default(), PDir::default()],
        });
        for d in &mut self.pipes[pipe].dirs {
            d.net = Dir::idle(now);
        }
        self.nodes[target].conns.insert(conn_t, pipe);
        self.metrics.connects += 1;
        if open_d {
            self.nodes[node].conns.insert(conn_d, pipe);
        } else {
            // The dialer dropped the socket: the listener sees it close.
            let at = now + self.latency();
            self.push(at, DEv::Fin { pipe, from: 0 });
        }
        self.drain(target);
        self.drain(node);
    }

    /// The reader at `1 - from` takes `bytes` in; the writer's window reopens.
    pub(super) fn consume(&mut self, pipe: usize, from: usize, bytes: &Bytes) {
        let to = 1 - from;
        let end = self.pipes[pipe].ends[to];
        let dir = &mut self.pipes[pipe].dirs[from];
        dir.unconsumed = dir.unconsumed.saturating_sub(bytes.len());
        if end.open {
            self.metrics.record_receive(end.node, bytes.len());
            if let Some(d) = self.nodes[end.node].driver.as_mut() {
                d.handle_bytes(self.now, end.conn, bytes);
            }
        }
        self.unpark(pipe, from);
        if end.open {
            self.drain(end.node);
        }
    }

    /// Sends the parked write of direction `from` if the window admits it now.
    pub(super) fn unpark(&mut self, pipe: usize, from: usize) {
        let dir = &self.pipes[pipe].dirs[from];
        let Some(len) = dir.parked.as_ref().map(Bytes::len) else {
            return;
        };
        if dir.unconsumed > 0 && dir.unconsumed + len > self.config.read_window {
            return;
        }
        let bytes = self.pipes[pipe].dirs[from]
            .parked
            .take()
            .expect("INVARIANT: checked above");
        self.send(pipe, from, bytes);
    }

    /// The bytes of one write go on the wire from side `from`.
    pub(super) fn send(&mut self, pipe: usize, from: usize, bytes: Bytes) {
        let latency = self.latency();
        let cfg = self.config.link;
        let dir = &mut self.pipes[pipe].dirs[from];
        dir.unconsumed += bytes.len();
        let (left, at) = dir.net.stream(self.now, &cfg, bytes.len(), latency);
        self.push(left, DEv::Written { pipe, side: from });
        self.push(at, DEv::Deliver { pipe, from, bytes });
    }

    /// The connection at `side` learns it is gone: its driver gets
    /// `handle_disconnected` (and answers with `Close`).
    pub(super) fn disconnected(&mut self, pipe: usize, side: usize) {
        let end = self.pipes[pipe].ends[side];
        self.mix(&[7, self.now.as_micros(), end.node as u64]);
        if let Some(d) = self.nodes[end.node].driver.as_mut() {
            d.handle_disconnected(self.now, end.conn);
        }
        self.drain(end.node);
        // A driver that no longer knew the connection says nothing: forget it anyway.
        if self.pipes[pipe].ends[side].open {
            self.nodes[end.node].conns.remove(&end.conn);
            self.close_end(pipe, end.node, end.conn);
        }
    }

    /// `node` is done with its end of `pipe`: the other end sees the close after the
    /// bytes in flight.
    pub(super) fn close_end(&mut self, pipe: usize, node: usize, conn: ConnId) {
        let side = self.pipes[pipe].side(node, conn);
        let p = &mut self.pipes[pipe];
        p.ends[side].open = false;
        p.dirs[side].parked = None;
        if p.ends[1 - side].open {
            self.metrics.link_breaks += 1;
            let latency = self.latency();
            let at = self.pipes[pipe].dirs[side].net.fin(self.now, latency);
            self.push(at, DEv::Fin { pipe, from: side });
        }
    }

    /// Drains every output of `node`'s driver, then re-arms its timer.
    pub(super) fn drain(&mut self, node: usize) {
        loop {
            let Some(driver) = self.nodes[node].driver.as_mut() else {
                return;
            };
            let Some(out) = driver.poll_output() else {
                break;
            };
            match out {
                Output::Write { conn, bytes } => self.write(node, conn, bytes),
                Output::Close { conn } => {
                    if let Some(pipe) = self.nodes[node].conns.remove(&conn) {
                        self.mix(&[8, self.now.as_micros(), node as u64]);
                        self.close_end(pipe, node, conn);
                    }
                }
                Output::Dial { dial, addr } => self.dial(node, dial, &addr),
                Output::AbortDial { dial } => {
                    self.nodes[node].dials.remove(&dial);
                }
                Output::Emit(event) => self.on_event(node, event),
                Output::Persist { key, bytes } => {
                    // Saved at once and never lost: the node's disk survives its crash.
                    self.mix(&[12, self.now.as_micros(), node as u64, bytes.len() as u64]);
                    self.disk.insert((node, key), bytes);
                    if let Some(d) = self.nodes[node].driver.as_mut() {
                        d.handle_persisted(self.now, key, true);
                    }
                }
                _ => {}
            }
        }
        let n = &mut self.nodes[node];
        let want = n.driver.as_ref().and_then(Driver::poll_timeout);
        if want != n.timer {
            n.timer = want;
            if let Some(at) = want {
                let incarnation = n.incarnation;
                self.push(
                    at,
                    DEv::Timer {
                        node,
                        incarnation,
                        at,
                    },
                );
            }
        }
    }

    pub(super) fn write(&mut self, node: usize, conn: ConnId, bytes: Bytes) {
        self.max_write = self.max_write.max(bytes.len());
        for (kind, f) in split_frames(&self.observer, &bytes) {
            self.metrics.record_send(node, kind, f.len());
        }
        let Some(&pipe) = self.nodes[node].conns.get(&conn) else {
            return;
        };
        let side = self.pipes[pipe].side(node, conn);
        let dir = &mut self.pipes[pipe].dirs[side];
        if dir.unconsumed > 0 && dir.unconsumed + bytes.len() > self.config.read_window {
            // The reader's buffers are full: the write is not acknowledged until it reads.
            dir.parked = Some(bytes);
            return;
        }
        self.send(pipe, side, bytes);
    }

    pub(super) fn dial(&mut self, node: usize, dial: DialId, addr: &str) {
        let target = self.by_addr.get(addr).copied();
        let incarnation = self.nodes[node].incarnation;
        self.nodes[node].dials.insert(dial, target);
        self.dial_log.push(DialRecord {
            at: self.now,
            node,
            target,
        });
        self.mix(&[9, self.now.as_micros(), node as u64]);
        // An unknown or unreachable address never answers: the driver's dial timeout.
        if let Some(t) = target.filter(|&t| self.reachable(node, t)) {
            let at = self.now + self.latency();
            self.push(
                at,
                DEv::Dial {
                    node,
                    incarnation,
                    dial,
                    target: t,
                },
            );
        }
    }

    pub(super) fn on_event(&mut self, node: usize, event: Event) {
        self.metrics.record_event(node, &event);
        let tag = match &event {
            Event::PeerUp { .. } => 10,
            Event::PeerDown { .. } => 11,
            _ => 19,
        };
        self.mix(&[tag, self.now.as_micros(), node as u64]);
        if self.config.record_events {
            self.events.push(Recorded {
                at: self.now,
                node,
                event,
            });
        }
    }
}
