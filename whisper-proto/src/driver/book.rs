//! The address book: configured peer addresses, their dials and reconnect backoff.
//!
//! Each configured address ([`Driver::add_peer`]) is dialed at start and redialed after
//! every failure or loss with its [`RetryPolicy`](crate::util::RetryPolicy) backoff
//! (restarting at the base delay once the policy gives up), and not at all while its
//! [`CircuitBreaker`] is open. A dial counts as a success only once the peer's HELLO
//! arrived (`PeerUp`). A configured peer that is already connected some other way (it
//! dialed us) is not dialed again until that connection goes away.

use std::string::String;
use std::vec::Vec;

use super::{DialId, Driver, Output, PeerSlot};
use crate::node::{ConnId, NodeId};
use crate::time::Instant;
use crate::util::{BreakerState, CircuitBreaker, Retrier, RetryDecision};

/// A configured peer address and its reconnect state.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct PeerAddr {
    /// The slot.
    pub slot: PeerSlot,
    /// The address.
    pub addr: String,
    /// The node last seen there.
    pub node: Option<NodeId>,
    /// The connection to it, when connected.
    pub conn: Option<ConnId>,
    /// Its circuit breaker's state.
    pub breaker: BreakerState,
    /// Failed attempts since the last success.
    pub retries: u32,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum SlotState {
    Waiting {
        at: Instant,
    },
    Dialing {
        dial: DialId,
        deadline: Instant,
    },
    Connected {
        conn: ConnId,
    },
    /// Connected to its node through another connection; redialed when that goes.
    Covered,
    Stopped,
}

#[derive(Debug)]
pub(super) struct Slot {
    pub(super) addr: String,
    pub(super) node: Option<NodeId>,
    pub(super) retrier: Retrier,
    pub(super) breaker: CircuitBreaker,
    pub(super) state: SlotState,
    pub(super) ever_up: bool,
}

impl Driver {
    /// Adds a peer address to dial now and to redial whenever the connection is lost.
    pub fn add_peer(&mut self, now: Instant, addr: impl Into<String>) -> PeerSlot {
        self.advance(now);
        let slot = PeerSlot(self.slots.len());
        self.slots.push(Slot {
            addr: addr.into(),
            node: None,
            retrier: Retrier::new(self.config.reconnect),
            breaker: CircuitBreaker::new(self.config.breaker_threshold, self.config.breaker_reset),
            state: if self.shutting_down {
                SlotState::Stopped
            } else {
                SlotState::Waiting { at: self.now }
            },
            ever_up: false,
        });
        slot
    }

    /// The address book: configured peers and their reconnect state.
    pub fn peer_addrs(&self) -> Vec<PeerAddr> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| PeerAddr {
                slot: PeerSlot(i),
                addr: s.addr.clone(),
                node: s.node.clone(),
                conn: match s.state {
                    SlotState::Connected { conn } => Some(conn),
                    _ => None,
                },
                breaker: s.breaker.state(self.now),
                retries: s.retrier.retries(),
            })
            .collect()
    }

    pub(super) fn dialing(&self, dial: DialId) -> Option<PeerSlot> {
        self.slots
            .iter()
            .position(|s| matches!(s.state, SlotState::Dialing { dial: d, .. } if d == dial))
            .map(PeerSlot)
    }

    pub(super) fn dial(&mut self, slot: PeerSlot) {
        let now = self.now;
        let connected = self.slots[slot.0]
            .node
            .as_ref()
            .is_some_and(|n| self.conn_to(n).is_some());
        let s = &mut self.slots[slot.0];
        if connected {
            s.state = SlotState::Covered;
            return;
        }
        if !s.breaker.allow_request(now) {
            self.stats.breaker_rejections += 1;
            s.state = SlotState::Waiting {
                at: now + s.breaker.reset_timeout(),
            };
            return;
        }
        let dial = DialId(self.next_dial);
        self.next_dial += 1;
        self.stats.dials += 1;
        s.state = SlotState::Dialing {
            dial,
            deadline: now + self.config.dial_timeout,
        };
        self.out.push_back(Output::Dial {
            dial,
            addr: s.addr.clone(),
        });
    }

    /// A dial failed, or its connection closed before the peer identified itself.
    pub(super) fn slot_failed(&mut self, slot: PeerSlot) {
        self.stats.dial_failures += 1;
        let now = self.now;
        self.slots[slot.0].breaker.record_failure(now);
        self.reschedule(slot);
    }

    /// Schedules the next dial of `slot` with its backoff, or parks it while its node is
    /// connected some other way.
    pub(super) fn reschedule(&mut self, slot: PeerSlot) {
        let now = self.now;
        if self.shutting_down {
            self.slots[slot.0].state = SlotState::Stopped;
            return;
        }
        let covered = self.slots[slot.0]
            .node
            .as_ref()
            .is_some_and(|n| self.conn_to(n).is_some());
        let s = &mut self.slots[slot.0];
        if covered {
            s.state = SlotState::Covered;
            return;
        }
        let mut at = match s.retrier.record_failure(now, &mut self.rng) {
            RetryDecision::RetryAt(at) => at,
            RetryDecision::Done | RetryDecision::GiveUp => {
                s.retrier.reset();
                now + s.retrier.policy().max_delay()
            }
        };
        if s.breaker.state(now) == BreakerState::Open {
            at = at.max(now + s.breaker.reset_timeout());
        }
        s.state = SlotState::Waiting { at };
    }
}
