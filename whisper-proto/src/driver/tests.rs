//! Driver tests on virtual time: a tiny in-memory "network" plays the adapter.

use super::*;
use crate::store::MemStore;
use crate::topic::{QueryError, TopicConfig};
use crate::util::{BreakerState, RetryPolicy};
use bytes::Bytes;
use core::num::NonZeroU32;
use std::collections::BTreeMap;
use std::vec;

/// Unix time at every test node's start unless a test says otherwise (2027-01-15).
const UNIX_START: Duration = Duration::from_secs(1_800_000_000);

const KIND: u16 = 0x5801;

fn config() -> DriverConfig {
    DriverConfig {
        reconnect: RetryPolicy::new(3, Duration::from_millis(100), Duration::from_secs(1)),
        breaker_threshold: NonZeroU32::new(100).unwrap(),
        ..DriverConfig::default()
    }
}

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

/// Plays the adapters of several nodes: every `Write` is delivered and acknowledged at
/// once unless its connection is held; dials to a node that is up connect at once.
struct Net {
    nodes: Vec<Driver>,
    up: Vec<bool>,
    /// (node, conn) -> (node, conn)
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    /// Connections whose writes are not delivered nor acknowledged.
    held: Vec<(usize, ConnId)>,
    /// Writes captured on held connections.
    captured: Vec<(usize, ConnId, Bytes)>,
    /// Dials not yet answered when `defer_dials` is set.
    pending_dials: Vec<(usize, DialId, String)>,
    defer_dials: bool,
    events: Vec<(usize, Event)>,
    closes: Vec<(usize, ConnId)>,
    dials: Vec<(usize, String, Instant)>,
    aborted: Vec<(usize, DialId)>,
    persisted: Vec<(usize, PersistKey, Bytes)>,
    /// How long each node's process had been up when the net started: its instants
    /// are the net's plus this.
    uptimes: Vec<Duration>,
    now: Instant,
}

impl Net {
    fn new(names: &[&'static str], config: DriverConfig) -> Self {
        Self::with_uptimes(names, config, &vec![Duration::ZERO; names.len()])
    }

    /// Nodes whose processes started `uptimes` before the net (Unix time is the same
    /// for all).
    fn with_uptimes(names: &[&'static str], config: DriverConfig, uptimes: &[Duration]) -> Self {
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                Driver::new(
                    NodeId::from_static(n),
                    Config::default(),
                    i as u64,
                    config.clone(),
                    Instant::ZERO + uptimes[i],
                    UNIX_START,
                )
                .unwrap()
            })
            .collect::<Vec<_>>();
        Self {
            up: vec![true; nodes.len()],
            nodes,
            links: BTreeMap::new(),
            held: Vec::new(),
            captured: Vec::new(),
            pending_dials: Vec::new(),
            defer_dials: false,
            events: Vec::new(),
            closes: Vec::new(),
            dials: Vec::new(),
            aborted: Vec::new(),
            persisted: Vec::new(),
            uptimes: uptimes.to_vec(),
            now: Instant::ZERO,
        }
    }

    /// Node `i`'s instant now.
    fn t(&self, i: usize) -> Instant {
        self.now + self.uptimes[i]
    }

    fn addr(i: usize) -> String {
        std::format!("node{i}")
    }

    /// Drains every node until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(out) = self.nodes[i].poll_output() {
                    moved = true;
                    self.apply(i, out);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn apply(&mut self, i: usize, out: Output) {
        let now = self.t(i);
        match out {
            Output::Write { conn, bytes } => {
                if self.held.contains(&(i, conn)) {
                    self.captured.push((i, conn, bytes));
                    return;
                }
                if let Some(&(j, other)) = self.links.get(&(i, conn)) {
                    let t = self.t(j);
                    self.nodes[j].handle_bytes(t, other, &bytes);
                }
                self.nodes[i].handle_written(now, conn);
            }
            Output::Close { conn } => {
                self.closes.push((i, conn));
                if let Some((j, other)) = self.links.remove(&(i, conn)) {
                    self.links.remove(&(j, other));
                    let t = self.t(j);
                    self.nodes[j].handle_disconnected(t, other);
                }
            }
            Output::Emit(event) => self.events.push((i, event)),
            Output::Dial { dial, addr } => {
                self.dials.push((i, addr.clone(), now));
                if self.defer_dials {
                    self.pending_dials.push((i, dial, addr));
                } else {
                    self.answer_dial(i, dial, &addr);
                }
            }
            Output::AbortDial { dial } => self.aborted.push((i, dial)),
            Output::Persist { key, bytes } => {
                self.persisted.push((i, key, bytes));
                self.nodes[i].handle_persisted(now, key, true);
            }
        }
    }

    fn answer_dial(&mut self, i: usize, dial: DialId, addr: &str) {
        let now = self.t(i);
        let j = (0..self.nodes.len())
            .find(|&j| Self::addr(j) == addr)
            .unwrap();
        if !self.up[j] {
            self.nodes[i].handle_dial_failed(now, dial);
            return;
        }
        let Ok(c) = self.nodes[i].handle_dialed(now, dial, Some(addr.into())) else {
            return;
        };
        let t = self.t(j);
        let a = self.nodes[j].handle_accepted(t, None).unwrap();
        self.links.insert((i, c), (j, a));
        self.links.insert((j, a), (i, c));
    }

    fn answer_pending_dials(&mut self) {
        for (i, dial, addr) in std::mem::take(&mut self.pending_dials) {
            self.answer_dial(i, dial, &addr);
        }
    }

    /// Advances to `t`, firing timeouts as they fall due.
    fn run_until(&mut self, t: Instant) {
        self.pump();
        loop {
            let next = (0..self.nodes.len())
                .filter_map(|i| {
                    let at = self.nodes[i].poll_timeout()?;
                    Some(Instant::from_micros(
                        at.as_micros()
                            .saturating_sub(self.uptimes[i].as_micros() as u64),
                    ))
                })
                .min();
            match next {
                Some(at) if at <= t => {
                    self.now = self.now.max(at);
                    for i in 0..self.nodes.len() {
                        let now = self.t(i);
                        self.nodes[i].handle_timeout(now);
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = t;
        for i in 0..self.nodes.len() {
            let now = self.t(i);
            self.nodes[i].handle_timeout(now);
        }
        self.pump();
    }

    /// Kills node `j`: all its links drop (the others see EOF); it refuses dials.
    fn kill(&mut self, j: usize) {
        self.up[j] = false;
        let mine: Vec<_> = self.links.keys().filter(|k| k.0 == j).copied().collect();
        for key in mine {
            if let Some((o, oc)) = self.links.remove(&key) {
                self.links.remove(&(o, oc));
                let t = self.t(o);
                self.nodes[o].handle_disconnected(t, oc);
            }
        }
        self.pump();
    }

    fn peers(&self, i: usize) -> Vec<(ConnId, NodeId, Role)> {
        self.nodes[i]
            .peers()
            .into_iter()
            .map(|p| (p.conn, p.node, p.role))
            .collect()
    }

    fn connect(&mut self, i: usize, j: usize) {
        let now = self.t(i);
        self.nodes[i].add_peer(now, Self::addr(j));
        self.nodes[i].handle_timeout(now);
        self.pump();
    }

    fn register(&mut self) {
        for d in &mut self.nodes {
            d.engine_mut().register_frame_kind(KIND, 1024).unwrap();
        }
    }
}

#[test]
fn configured_peer_is_dialed_and_both_sides_see_peer_up() {
    let mut net = Net::new(&["a", "b"], config());
    net.connect(0, 1);
    assert_eq!(net.dials.len(), 1);
    assert_eq!(net.peers(0).len(), 1);
    assert_eq!(net.peers(0)[0].1, NodeId::from_static("b"));
    assert_eq!(net.peers(0)[0].2, Role::Dialer);
    assert_eq!(net.peers(1)[0].1, NodeId::from_static("a"));
    let ups = net
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::PeerUp { .. }))
        .count();
    assert_eq!(ups, 2);
    let book = net.nodes[0].peer_addrs();
    assert_eq!(book[0].node, Some(NodeId::from_static("b")));
    assert!(book[0].conn.is_some());
    // Nothing is redialed while connected.
    net.run_until(ms(5_000));
    assert_eq!(net.dials.len(), 1);
}

#[test]
fn sends_are_coalesced_one_write_in_flight() {
    let mut net = Net::new(&["a", "b"], config());
    net.register();
    net.connect(0, 1);
    let conn = net.peers(0)[0].0;
    net.held.push((0, conn));
    let b = NodeId::from_static("b");
    let now = net.now;
    for i in 0..3u8 {
        net.nodes[0]
            .send_custom(now, &b, KIND, Bytes::from(vec![i; 10]))
            .unwrap();
    }
    net.pump();
    // Three frames of 16 bytes went out in one write.
    assert_eq!(net.captured.len(), 1);
    assert_eq!(net.captured[0].2.len(), 3 * 16);
    // While it is in flight, more sends queue up ...
    for i in 0..2u8 {
        net.nodes[0]
            .send_custom(now, &b, KIND, Bytes::from(vec![i; 10]))
            .unwrap();
    }
    net.pump();
    assert_eq!(net.captured.len(), 1);
    // ... and go out together once it completes.
    net.nodes[0].handle_written(now, conn);
    net.pump();
    assert_eq!(net.captured.len(), 2);
    assert_eq!(net.captured[1].2.len(), 2 * 16);
    let stats = net.nodes[0].stats();
    assert_eq!(stats.sends, 1 + 5); // HELLO + five frames
    assert_eq!(stats.writes, 1 + 2);
}

#[test]
fn batches_respect_max_write_batch_and_pass_large_sends_whole() {
    let mut net = Net::new(
        &["a", "b"],
        DriverConfig {
            max_write_batch: 40,
            ..config()
        },
    );
    net.register();
    net.connect(0, 1);
    let conn = net.peers(0)[0].0;
    net.held.push((0, conn));
    let b = NodeId::from_static("b");
    let now = net.now;
    net.nodes[0]
        .send_custom(now, &b, KIND, Bytes::from(vec![0; 100]))
        .unwrap();
    for _ in 0..3 {
        net.nodes[0]
            .send_custom(now, &b, KIND, Bytes::from(vec![1; 10]))
            .unwrap();
    }
    net.pump();
    assert_eq!(net.captured[0].2.len(), 106);
    net.nodes[0].handle_written(now, conn);
    net.pump();
    assert_eq!(net.captured[1].2.len(), 32); // two 16-byte frames fit in 40
    net.nodes[0].handle_written(now, conn);
    net.pump();
    assert_eq!(net.captured[2].2.len(), 16);
}

#[test]
fn slow_connection_is_closed_when_its_queue_passes_the_bound() {
    let mut net = Net::new(
        &["a", "b"],
        DriverConfig {
            write_queue_limit: 100,
            ..config()
        },
    );
    net.register();
    net.connect(0, 1);
    let conn = net.peers(0)[0].0;
    net.held.push((0, conn));
    let b = NodeId::from_static("b");
    let now = net.now;
    // 6 × 16 bytes fit in 100; the 7th does not.
    for _ in 0..6 {
        net.nodes[0]
            .send_custom(now, &b, KIND, Bytes::from(vec![0; 10]))
            .unwrap();
        net.pump();
    }
    assert!(net.closes.is_empty());
    net.nodes[0]
        .send_custom(now, &b, KIND, Bytes::from(vec![0; 10]))
        .unwrap();
    net.pump();
    assert!(net.closes.contains(&(0, conn)));
    assert_eq!(net.nodes[0].stats().slow_closes, 1);
    assert_eq!(net.nodes[0].engine().stats().connections, 0);
    // The other side saw the connection go.
    assert_eq!(net.nodes[1].engine().stats().connections, 0);
}

#[test]
fn engine_close_flushes_queued_writes_first() {
    let mut net = Net::new(&["a", "b"], config());
    net.register();
    net.connect(0, 1);
    // On the accepting side, which has no configured peer to redial.
    let conn = net.peers(1)[0].0;
    net.held.push((1, conn));
    let now = net.now;
    net.nodes[1]
        .send_custom(
            now,
            &NodeId::from_static("a"),
            KIND,
            Bytes::from_static(b"x"),
        )
        .unwrap();
    net.nodes[1]
        .engine_mut()
        .close_connection(now, conn)
        .unwrap();
    net.pump();
    assert_eq!(net.captured.len(), 1);
    assert!(net.closes.is_empty(), "close waits for the flush");
    net.nodes[1].handle_written(now, conn);
    net.pump();
    assert_eq!(net.closes[0], (1, conn));
    assert_eq!(net.nodes[1].stats().lingers_expired, 0);
}

#[test]
fn a_flush_that_never_finishes_is_cut_off_after_the_linger() {
    let mut net = Net::new(&["a", "b"], config());
    net.register();
    net.connect(0, 1);
    // On the accepting side, which has no configured peer to redial.
    let conn = net.peers(1)[0].0;
    net.held.push((1, conn));
    let now = net.now;
    net.nodes[1]
        .send_custom(
            now,
            &NodeId::from_static("a"),
            KIND,
            Bytes::from_static(b"x"),
        )
        .unwrap();
    net.nodes[1]
        .engine_mut()
        .close_connection(now, conn)
        .unwrap();
    net.pump();
    assert_eq!(
        net.nodes[1].poll_timeout(),
        Some(now + Duration::from_secs(2))
    );
    net.run_until(now + Duration::from_secs(2));
    assert_eq!(net.closes[0], (1, conn));
    assert_eq!(net.nodes[1].stats().lingers_expired, 1);
}

#[test]
fn failed_dials_back_off_and_the_deadline_is_the_earliest() {
    let mut net = Net::new(&["a", "b"], config());
    net.up[1] = false;
    net.connect(0, 1);
    assert_eq!(net.dials.len(), 1);
    // No connections: the only deadline is the redial, after the base delay.
    assert_eq!(net.nodes[0].poll_timeout(), Some(ms(100)));
    net.run_until(ms(99));
    assert_eq!(net.dials.len(), 1);
    net.run_until(ms(100));
    assert_eq!(net.dials.len(), 2);
    assert_eq!(net.nodes[0].poll_timeout(), Some(ms(300))); // 100 + 200
    net.run_until(ms(1_750));
    let times: Vec<u64> = net.dials.iter().map(|d| d.2.as_micros() / 1000).collect();
    // 3 retries (100, 200, 400 ms), then the policy gives up: max delay (1 s), start over.
    assert_eq!(times, vec![0, 100, 300, 700, 1_700]);
    assert_eq!(net.nodes[0].stats().dial_failures, 5);
}

#[test]
fn dial_timeout_aborts_the_dial() {
    let mut net = Net::new(&["a", "b"], config());
    net.defer_dials = true;
    net.connect(0, 1);
    net.run_until(ms(5_000));
    assert_eq!(net.aborted.len(), 1);
    assert_eq!(net.nodes[0].stats().dial_failures, 1);
    // A late answer to the aborted dial is refused.
    let (_, dial, _) = net.pending_dials[0].clone();
    assert!(matches!(
        net.nodes[0].handle_dialed(net.now, dial, None),
        Err(OpenError::StaleDial(_))
    ));
}

#[test]
fn open_breaker_holds_dials_until_reset() {
    let mut net = Net::new(
        &["a", "b"],
        DriverConfig {
            breaker_threshold: NonZeroU32::new(2).unwrap(),
            breaker_reset: Duration::from_secs(10),
            ..config()
        },
    );
    net.up[1] = false;
    net.connect(0, 1);
    net.run_until(ms(9_000));
    // Dial at 0 fails, retry at 100 fails: the circuit opens until 10.1 s.
    assert_eq!(net.dials.len(), 2);
    assert_eq!(net.nodes[0].peer_addrs()[0].breaker, BreakerState::Open);
    net.up[1] = true;
    net.run_until(ms(10_100));
    assert_eq!(net.dials.len(), 3);
    assert_eq!(net.peers(0).len(), 1);
    assert_eq!(net.nodes[0].peer_addrs()[0].breaker, BreakerState::Closed);
}

#[test]
fn a_lost_peer_is_redialed_and_counted_as_reconnect() {
    let mut net = Net::new(&["a", "b"], config());
    net.connect(0, 1);
    assert_eq!(net.peers(0).len(), 1);
    net.kill(1);
    assert!(net.peers(0).is_empty());
    net.run_until(ms(250)); // redial at 100 fails, next at 300
    net.up[1] = true;
    net.run_until(ms(400));
    assert_eq!(net.peers(0).len(), 1);
    assert_eq!(net.nodes[0].stats().reconnects, 1);
    assert_eq!(net.dials.len(), 3);
}

#[test]
fn simultaneous_dials_keep_the_connection_dialed_by_the_higher_id() {
    let mut net = Net::new(&["a", "b"], config());
    net.defer_dials = true;
    net.nodes[0].add_peer(Instant::ZERO, Net::addr(1));
    net.nodes[1].add_peer(Instant::ZERO, Net::addr(0));
    net.run_until(Instant::ZERO);
    assert_eq!(net.pending_dials.len(), 2);
    net.answer_pending_dials();
    net.pump();
    // One connection left on each side, the one "b" dialed.
    let (a, b) = (net.peers(0), net.peers(1));
    assert_eq!(a.len(), 1);
    assert_eq!(b.len(), 1);
    assert_eq!(a[0].2, Role::Acceptor);
    assert_eq!(b[0].2, Role::Dialer);
    assert_eq!(net.links.get(&(1, b[0].0)), Some(&(0, a[0].0)));
    assert!(net.nodes[0].stats().tie_breaks + net.nodes[1].stats().tie_breaks >= 1);
    // "a" does not redial while b's connection covers it.
    net.defer_dials = false;
    net.run_until(ms(10_000));
    assert_eq!(net.dials.len(), 2);
    assert_eq!(net.peers(0).len(), 1);
    // When that connection goes, "a" dials again (b is down, so it keeps trying).
    net.kill(1);
    net.run_until(ms(10_150));
    assert_eq!(net.dials.len(), 3);
}

#[test]
fn shutdown_closes_everything_then_hands_out_the_state() {
    let cfg = DriverConfig {
        persist_interval: Some(Duration::from_secs(30)),
        ..config()
    };
    let mut net = Net::new(&["a", "b", "c"], cfg);
    net.connect(0, 1);
    net.defer_dials = true;
    net.connect(0, 2); // left dialing
    let now = net.now;
    net.nodes[0].shutdown(now);
    assert!(!net.nodes[0].is_finished());
    net.pump();
    assert!(net.nodes[0].is_finished());
    assert_eq!(net.aborted.len(), 1);
    assert_eq!(net.nodes[1].engine().stats().connections, 0);
    assert!(matches!(
        net.nodes[0].handle_accepted(now, None),
        Err(OpenError::ShuttingDown)
    ));
    // The final state comes out once, after the last connection closed.
    let mine: Vec<_> = net.persisted.iter().filter(|p| p.0 == 0).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].1, PersistKey::DeltaState);
    assert_eq!(net.nodes[0].stats().persists, 1);
}

#[test]
fn bad_input_closes_one_connection_only() {
    let mut net = Net::new(&["a", "b", "c"], config());
    net.connect(0, 1);
    let now = net.now;
    let raw = net.nodes[0].handle_accepted(now, None).unwrap();
    net.nodes[0].handle_bytes(now, raw, &[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0]);
    net.pump();
    assert!(net.closes.contains(&(0, raw)));
    assert_eq!(net.nodes[0].engine().stats().frame_errors, 1);
    assert_eq!(net.peers(0).len(), 1);
}

fn serve(net: &mut Net) {
    for (i, d) in net.nodes.iter_mut().enumerate() {
        let handler = move |_: &NodeId, _: &str, p: &[u8]| {
            let mut reply = p.to_vec();
            reply.push(b'0' + i as u8);
            Some(Bytes::from(reply))
        };
        d.register_topic(Instant::ZERO, "ask", TopicConfig::request_response(handler))
            .unwrap();
    }
}

#[test]
fn query_outcome_arrives_once_as_an_event() {
    let mut net = Net::new(&["a", "b", "c"], config());
    serve(&mut net);
    net.connect(0, 1);
    net.connect(0, 2);
    net.run_until(ms(100));
    let now = net.now;
    let id = net.nodes[0]
        .query(now, "ask", Bytes::from_static(b"q"), Duration::from_secs(1))
        .unwrap();
    net.run_until(ms(2_000));
    let outcomes: Vec<_> = net
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::QueryComplete {
                id: got,
                replies,
                timed_out,
                ..
            } if *i == 0 => Some((*got, replies.clone(), *timed_out)),
            _ => None,
        })
        .collect();
    assert_eq!(outcomes.len(), 1);
    let (got, replies, timed_out) = outcomes.into_iter().next().unwrap();
    assert_eq!(got, id);
    assert!(!timed_out);
    let mut replies: Vec<Bytes> = replies.into_iter().map(|r| r.payload).collect();
    replies.sort();
    assert_eq!(
        replies,
        vec![Bytes::from_static(b"q1"), Bytes::from_static(b"q2")]
    );
}

#[test]
fn typed_errors_for_unknown_topics_and_no_responders() {
    let mut net = Net::new(&["a"], config());
    let now = net.now;
    assert!(matches!(
        net.nodes[0].publish(now, "nope", Bytes::new()),
        Err(HandleError::Publish(_))
    ));
    assert!(matches!(
        net.nodes[0].put(now, "nope", b"k", b"v"),
        Err(HandleError::Store(_))
    ));
    serve(&mut net);
    let err = net.nodes[0]
        .query(now, "ask", Bytes::new(), Duration::from_secs(1))
        .unwrap_err();
    assert!(matches!(err, HandleError::Query(QueryError::NoResponders)));
}

fn stateful(net: &mut Net, topic: &str) {
    for i in 0..net.nodes.len() {
        let t = net.t(i);
        let me = net.nodes[i].engine().node_id().clone();
        net.nodes[i]
            .register_topic(t, topic, TopicConfig::stateful(MemStore::new(me, [1; 32])))
            .unwrap();
    }
}

fn fingerprint(d: &Driver, topic: &str) -> (usize, u64) {
    let snap = d.snapshot();
    let s = snap.stores.iter().find(|s| s.0 == topic).unwrap();
    (s.1, s.2)
}

#[test]
fn state_is_persisted_as_outputs_and_snapshot_reports_stores() {
    let cfg = DriverConfig {
        persist_interval: Some(Duration::from_secs(30)),
        ..config()
    };
    let mut net = Net::new(&["a", "b"], cfg);
    stateful(&mut net, "kv");
    net.connect(0, 1);
    let now = net.now;
    net.nodes[1].put(now, "kv", b"k", b"v").unwrap();
    // Nothing is handed out before the first period; then once per period, with no
    // shutdown (a crash loses at most one period).
    net.run_until(ms(29_000));
    assert!(net.persisted.iter().all(|p| p.0 != 0));
    net.run_until(ms(61_000));
    assert_eq!(net.nodes[0].stats().persists, 2);
    assert_eq!(net.nodes[0].stats().persist_errors, 0);
    let (_, key, bytes) = net
        .persisted
        .iter()
        .rev()
        .find(|p| p.0 == 0)
        .unwrap()
        .clone();
    assert_eq!(key, PersistKey::DeltaState);
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.contains("\"kv\"") && text.contains("\"b\""), "{text}");
    let snap = net.nodes[0].snapshot();
    assert_eq!(snap.members, vec![NodeId::from_static("b")]);
    assert_eq!(
        fingerprint(&net.nodes[0], "kv"),
        fingerprint(&net.nodes[1], "kv")
    );
    assert_eq!(fingerprint(&net.nodes[0], "kv").0, 1);
    // A failed save is counted, and the next period tries again.
    let t = net.now;
    net.nodes[0].handle_persisted(t, PersistKey::DeltaState, false);
    assert_eq!(net.nodes[0].stats().persist_errors, 1);
}

#[test]
fn a_zero_persist_interval_saves_once_a_second_not_at_every_timeout() {
    let cfg = DriverConfig {
        persist_interval: Some(Duration::ZERO),
        ..config()
    };
    let mut net = Net::new(&["a", "b"], cfg);
    stateful(&mut net, "kv");
    net.connect(0, 1);
    assert_eq!(
        net.nodes[0].config().persist_interval,
        Some(MIN_PERSIST_INTERVAL)
    );
    net.run_until(ms(10_500));
    assert_eq!(net.nodes[0].stats().persists, 10);
}

#[test]
fn restored_state_resumes_delta_sync_and_bad_state_is_refused() {
    let mut net = Net::new(&["a", "b"], config());
    stateful(&mut net, "kv");
    net.connect(0, 1);
    let now = net.now;
    net.nodes[1].put(now, "kv", b"k", b"v").unwrap();
    net.run_until(ms(5_000));
    let t = net.now;
    net.nodes[0].persist_now(t);
    net.pump();
    let saved = net
        .persisted
        .iter()
        .rev()
        .find(|p| p.0 == 0)
        .unwrap()
        .2
        .clone();
    let before = net.nodes[0].engine().delta_stats("kv");
    assert_eq!(before.len(), 1);
    // A new driver for "a" restores before and after registering its topic alike.
    for restore_first in [true, false] {
        let mut d = Driver::new(
            NodeId::from_static("a"),
            Config::default(),
            9,
            config(),
            t,
            UNIX_START + Duration::from_micros(t.as_micros()),
        )
        .unwrap();
        let me = NodeId::from_static("a");
        let topic = TopicConfig::stateful(MemStore::new(me, [1; 32]));
        if restore_first {
            assert_eq!(d.restore(t, PersistKey::DeltaState, &saved).unwrap(), 1);
            d.register_topic(t, "kv", topic).unwrap();
        } else {
            d.register_topic(t, "kv", topic).unwrap();
            assert_eq!(d.restore(t, PersistKey::DeltaState, &saved).unwrap(), 1);
        }
        assert_eq!(d.engine().delta_stats("kv"), before);
    }
    let mut d = Driver::new(
        NodeId::from_static("a"),
        Config::default(),
        9,
        config(),
        t,
        UNIX_START,
    )
    .unwrap();
    assert!(
        d.restore(t, PersistKey::DeltaState, b"{\"version\":1,\"peers\":[{")
            .is_err()
    );
}

// ---- the wall clock is Unix time, whenever the process started -------------------------

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn nodes_whose_processes_started_an_hour_apart_converge() {
    // "a" has been up for an hour when "b" starts: their monotonic clocks differ by an
    // hour, their Unix clocks agree.
    let mut net = Net::with_uptimes(&["a", "b"], config(), &[HOUR, Duration::ZERO]);
    stateful(&mut net, "kv");
    for i in 0..2 {
        let t = net.t(i);
        net.nodes[i].put(t, "kv", &[b'k', i as u8], b"v").unwrap();
        // Records are stamped with Unix time, not the process's uptime.
        let wall = Duration::from_micros(net.nodes[i].engine().wall_clock_micros());
        assert!(
            wall.abs_diff(UNIX_START) < Duration::from_secs(1),
            "{wall:?}"
        );
    }
    net.connect(1, 0);
    net.run_until(ms(30_000));
    assert_eq!(fingerprint(&net.nodes[0], "kv").0, 2);
    assert_eq!(
        fingerprint(&net.nodes[0], "kv"),
        fingerprint(&net.nodes[1], "kv")
    );
}

#[test]
fn broadcast_expiry_is_unix_time() {
    // "a" (another implementation, configured by hand) runs two hours slow: a one-hour
    // TTL it stamps expired an hour ago in Unix time, and "b" (an hour of uptime,
    // correct Unix clock) must drop it; a three-hour TTL is still alive.
    let mut net = Net::with_uptimes(&["a", "b"], config(), &[Duration::ZERO, HOUR]);
    let slow = Config {
        wall_clock_offset: UNIX_START - 2 * HOUR,
        ..Config::default()
    };
    let engine = Engine::new(NodeId::from_static("a"), slow, 0, Instant::ZERO).unwrap();
    net.nodes[0] = Driver::with_engine(engine, config(), 0, Instant::ZERO);
    for ttl in [HOUR, 3 * HOUR] {
        let name = std::format!("ttl{}", ttl.as_secs() / 3600);
        for j in 0..2 {
            let t = net.t(j);
            let topic = TopicConfig::broadcast().with_ttl(ttl);
            net.nodes[j].register_topic(t, &name, topic).unwrap();
            net.nodes[j].subscribe(&name).unwrap();
        }
    }
    net.connect(1, 0);
    net.run_until(ms(1_000));
    let t = net.t(0);
    net.nodes[0]
        .publish(t, "ttl1", Bytes::from_static(b"stale"))
        .unwrap();
    net.nodes[0]
        .publish(t, "ttl3", Bytes::from_static(b"fresh"))
        .unwrap();
    net.run_until(ms(3_000));
    let got: Vec<&str> = net
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::Message { topic, .. } if *i == 1 => Some(topic.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec!["ttl3"]);
}

#[test]
fn a_foreign_record_stamped_with_unix_time_is_applied() {
    // The writer is an engine configured by hand, as another implementation would be:
    // its records carry real Unix HLCs. "b" has been up for an hour.
    let mut net = Net::with_uptimes(&["x", "b"], config(), &[Duration::ZERO, HOUR]);
    let foreign = Config {
        wall_clock_offset: UNIX_START,
        ..Config::default()
    };
    let engine = Engine::new(NodeId::from_static("x"), foreign, 5, Instant::ZERO).unwrap();
    net.nodes[0] = Driver::with_engine(engine, config(), 5, Instant::ZERO);
    stateful(&mut net, "kv");
    let t = net.t(0);
    net.nodes[0].put(t, "kv", b"k", b"v").unwrap();
    net.connect(1, 0);
    net.run_until(ms(10_000));
    assert_eq!(fingerprint(&net.nodes[1], "kv").0, 1);
    assert_eq!(
        fingerprint(&net.nodes[0], "kv"),
        fingerprint(&net.nodes[1], "kv")
    );
}
