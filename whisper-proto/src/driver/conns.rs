//! Live connections: their bounded, coalescing write queues and the dial tie-break.
//!
//! When two nodes dial each other at the same time they end up with two connections.
//! After each `PeerUp` the driver compares them: **the connection dialed by the higher
//! [`NodeId`] is kept and the other closed** (between two connections from the same
//! dialer, the newer one wins). Both sides decide the same way without talking. Events
//! stay per connection, so the application sees `PeerUp` and then `PeerDown` for the
//! losing connection while the peer stays up on the other ([`Driver::peers`] is the
//! current set).

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::string::String;
use std::vec::Vec;

use super::{Driver, Output, PeerSlot, SlotState};
use crate::engine::Role;
use crate::node::{ConnId, NodeId};
use crate::time::Instant;
use crate::util::log::targets;

/// An identified peer on a live connection.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The connection.
    pub conn: ConnId,
    /// The peer.
    pub node: NodeId,
    /// Who dialed.
    pub role: Role,
    /// The remote address, when the transport has one.
    pub remote: Option<String>,
    /// Bytes queued for the peer, the write in flight included; never more than
    /// [`DriverConfig::write_queue_limit`](super::DriverConfig::write_queue_limit).
    pub queued: usize,
}

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) role: Role,
    pub(super) remote: Option<String>,
    pub(super) slot: Option<PeerSlot>,
    pub(super) peer: Option<NodeId>,
    /// The engine still knows the connection.
    pub(super) open: bool,
    pub(super) queue: VecDeque<Bytes>,
    /// Bytes in `queue` plus the write in flight.
    pub(super) queued: usize,
    pub(super) in_flight: usize,
    /// Set once the engine closed it: flush until then, then close.
    pub(super) linger_until: Option<Instant>,
}

impl Driver {
    /// Identified peers on live connections, in connection order.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.conns
            .iter()
            .filter(|(_, c)| c.open)
            .filter_map(|(&conn, c)| {
                Some(PeerInfo {
                    conn,
                    node: c.peer.clone()?,
                    role: c.role,
                    remote: c.remote.clone(),
                    queued: c.queued,
                })
            })
            .collect()
    }

    /// The live connection to `node`, if any.
    pub fn conn_to(&self, node: &NodeId) -> Option<ConnId> {
        self.conns
            .iter()
            .find(|(_, c)| c.open && c.peer.as_ref() == Some(node))
            .map(|(&id, _)| id)
    }

    pub(super) fn queue(&mut self, conn: ConnId, bytes: Bytes) {
        let limit = self.config.write_queue_limit;
        let Some(c) = self.conns.get_mut(&conn) else {
            tracing::debug!(target: targets::ADAPTER, %conn, "send for unknown connection dropped");
            return;
        };
        if c.queued.saturating_add(bytes.len()) > limit {
            tracing::debug!(target: targets::ADAPTER, %conn, queued = c.queued, "closing slow connection");
            self.stats.slow_closes += 1;
            c.queue.clear();
            let open = c.open;
            if open {
                let _ = self.engine.close_connection(self.now, conn);
                self.gone(conn);
            }
            self.remove(conn);
            return;
        }
        self.stats.sends += 1;
        c.queued += bytes.len();
        c.queue.push_back(bytes);
        if c.in_flight == 0 && c.queue.len() == 1 {
            self.dirty.push(conn);
        }
    }

    /// Emits the next coalesced write for `conn` if none is in flight.
    pub(super) fn flush(&mut self, conn: ConnId) {
        let max = self.config.max_write_batch;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.in_flight != 0 {
            return;
        }
        let Some(first) = c.queue.pop_front() else {
            return;
        };
        let bytes = if first.len() >= max || c.queue.is_empty() {
            first
        } else {
            let mut buf = BytesMut::with_capacity(max);
            buf.extend_from_slice(&first);
            while let Some(next) = c.queue.front() {
                if buf.len() + next.len() > max {
                    break;
                }
                buf.extend_from_slice(next);
                c.queue.pop_front();
            }
            buf.freeze()
        };
        c.in_flight = bytes.len();
        self.stats.writes += 1;
        self.out.push_back(Output::Write { conn, bytes });
    }

    /// Forgets `conn` and tells the adapter to close it.
    pub(super) fn remove(&mut self, conn: ConnId) {
        if self.conns.remove(&conn).is_some() {
            self.out.push_back(Output::Close { conn });
        }
    }

    /// The engine has forgotten `conn`: update reconnect state.
    pub(super) fn gone(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.open {
            return;
        }
        c.open = false;
        let (slot, peer) = (c.slot, c.peer.clone());
        if let Some(slot) = slot {
            if self.slots[slot.0].state == (SlotState::Connected { conn }) {
                if peer.is_some() {
                    self.reschedule(slot);
                } else {
                    self.slot_failed(slot);
                }
            }
        }
        if let Some(node) = peer {
            if self.conn_to(&node).is_none() {
                for i in 0..self.slots.len() {
                    let s = &self.slots[i];
                    if s.state == SlotState::Covered && s.node.as_ref() == Some(&node) {
                        self.reschedule(PeerSlot(i));
                    }
                }
            }
        }
    }

    pub(super) fn peer_up(&mut self, conn: ConnId, peer: NodeId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.peer = Some(peer.clone());
        if let Some(slot) = c.slot {
            let now = self.now;
            let s = &mut self.slots[slot.0];
            if s.ever_up {
                self.stats.reconnects += 1;
            }
            s.ever_up = true;
            s.node = Some(peer.clone());
            s.retrier.reset();
            s.breaker.record_success(now);
        }
        // The tie-break: keep the connection dialed by the higher node id.
        let me = self.engine.node_id().clone();
        let dialer = |role: Role| if role == Role::Dialer { &me } else { &peer };
        let others: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(id, c)| **id != conn && c.open && c.peer.as_ref() == Some(&peer))
            .map(|(&id, _)| id)
            .collect();
        for other in others {
            let key = |id: ConnId| (dialer(self.conns[&id].role), id);
            let loser = if key(conn) > key(other) { other } else { conn };
            tracing::debug!(target: targets::ADAPTER, %peer, kept = %if loser == conn { other } else { conn }, closed = %loser, "dial tie-break");
            self.stats.tie_breaks += 1;
            let _ = self.engine.close_connection(self.now, loser);
            self.gone(loser);
            if loser == conn {
                break;
            }
        }
    }
}
