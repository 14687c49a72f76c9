//! iroh-gossip: its sans-IO `proto::State` (HyParView + PlumTree), driven by our own
//! virtual-time event loop with the shared link model.

use crate::common::{
    HopOracle, Links, MESSAGES, Row, SPACING_US, Scenario, TAIL_US, WARMUP_US, payload, payload_id,
};
use bytes::Bytes;
use iroh_gossip::proto::state::MessageKind;
use iroh_gossip::proto::{
    Command, Config, Event, InEvent, OutEvent, PeerData, Scope, State, TopicId,
};
use n0_future::time::{Duration, Instant};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::time::Instant as Wall;
use whisper_proto::rng::{RandomSource, Rng};
use whisper_tests::sim::metrics::DeliveryTracker;

/// A 32-byte peer id, like iroh's `EndpointId`, so message sizes are realistic.
type Pi = [u8; 32];

fn pi(i: usize) -> Pi {
    let mut p = [0x11u8; 32];
    p[..4].copy_from_slice(&(i as u32).to_be_bytes());
    p
}

fn idx(p: &Pi) -> usize {
    u32::from_be_bytes(p[..4].try_into().expect("4 bytes")) as usize
}

const TOPIC: TopicId = TopicId::from_bytes([7u8; 32]);

/// One run.
pub fn run(n: usize, scenario: Scenario, seed: u64) -> Row {
    let wall = Wall::now();
    let base = Instant::now();
    let mut rng = Rng::new(seed ^ 0x1f0);
    let mut links = Links::new(seed);
    let mut states: Vec<State<Pi, StdRng>> = (0..n)
        .map(|i| {
            State::new(
                pi(i),
                PeerData::default(),
                Config::default(),
                StdRng::seed_from_u64(seed.wrapping_mul(1_000_003) + i as u64),
            )
        })
        .collect();
    // (at µs, seq) → event; events kept in a side table.
    let mut queue: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut slots: Vec<Option<(usize, InEvent<Pi>)>> = Vec::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BinaryHeap<Reverse<(u64, u64, usize)>>,
                    slots: &mut Vec<Option<(usize, InEvent<Pi>)>>,
                    at: u64,
                    node: usize,
                    ev: InEvent<Pi>| {
        slots.push(Some((node, ev)));
        queue.push(Reverse((at, seq, slots.len() - 1)));
        seq += 1;
    };
    // Bootstrap like iroh's own simulator (`BootstrapMode::Single`): node 0 starts the
    // topic, every other node joins through node 0, joins spread over the first 2 s.
    push(
        &mut queue,
        &mut slots,
        0,
        0,
        InEvent::Command(TOPIC, Command::Join(vec![])),
    );
    for i in 1..n {
        let at = 1 + rng.below(2_000_000);
        push(
            &mut queue,
            &mut slots,
            at,
            i,
            InEvent::Command(TOPIC, Command::Join(vec![pi(0)])),
        );
    }
    let start = WARMUP_US;
    let origins = scenario.origins(n, seed);
    for (i, &o) in origins.iter().enumerate() {
        let at = start + i as u64 * SPACING_US;
        push(
            &mut queue,
            &mut slots,
            at,
            o,
            InEvent::Command(
                TOPIC,
                Command::Broadcast(Bytes::from(payload(i as u64)), Scope::Swarm),
            ),
        );
    }
    let end = start + MESSAGES * SPACING_US + TAIL_US;
    let mut conns: HashSet<(usize, usize)> = HashSet::new();
    let mut tracker = DeliveryTracker::default();
    let mut oracle = HopOracle::default();
    let (mut payload_msgs, mut control_msgs, mut bytes) = (0u64, 0u64, 0u64);
    let mut out = Vec::new();
    while let Some(Reverse((now, _, slot))) = queue.pop() {
        if now > end {
            break;
        }
        let (node, ev) = slots[slot].take().expect("each slot popped once");
        let measuring = now >= start;
        if let InEvent::Command(_, Command::Broadcast(content, _)) = &ev {
            let id = payload_id(content).expect("our payload");
            tracker.record_publish(node, id, whisper_proto::Instant::from_micros(now));
            oracle.publish(id, node);
        }
        if let InEvent::RecvMessage(from, _) = &ev {
            conns.insert((idx(from).min(node), idx(from).max(node)));
        }
        out.clear();
        out.extend(states[node].handle(ev, base + Duration::from_micros(now), None));
        for o in out.drain(..) {
            match o {
                OutEvent::SendMessage(to, msg) => {
                    let to = idx(&to);
                    if measuring {
                        match msg.kind() {
                            MessageKind::Data => payload_msgs += 1,
                            MessageKind::Control => control_msgs += 1,
                        }
                        bytes += msg.size().unwrap_or(0) as u64;
                    }
                    let at = links.arrival(now, node, to);
                    push(
                        &mut queue,
                        &mut slots,
                        at,
                        to,
                        InEvent::RecvMessage(pi(node), msg),
                    );
                }
                OutEvent::ScheduleTimer(after, timer) => {
                    let at = now + after.as_micros() as u64;
                    push(
                        &mut queue,
                        &mut slots,
                        at,
                        node,
                        InEvent::TimerExpired(timer),
                    );
                }
                OutEvent::DisconnectPeer(to) => {
                    // As iroh's simulator: the peer learns after a latency (plus 1 µs,
                    // so data already in flight arrives first).
                    let to = idx(&to);
                    if conns.remove(&(to.min(node), to.max(node))) {
                        let at = links.arrival(now, node, to) + 1;
                        push(
                            &mut queue,
                            &mut slots,
                            at,
                            to,
                            InEvent::PeerDisconnected(pi(node)),
                        );
                    }
                }
                OutEvent::EmitEvent(_, Event::Received(g)) => {
                    if let Some(id) = payload_id(&g.content) {
                        let hop = oracle.deliver(id, node, idx(&g.delivered_from));
                        tracker.record_delivery(
                            node,
                            id,
                            hop,
                            whisper_proto::Instant::from_micros(now),
                        );
                    }
                }
                OutEvent::EmitEvent(..) | OutEvent::PeerData(..) => {}
            }
        }
    }
    let summary = tracker.summary(n - 1, payload_msgs);
    Row {
        library: "iroh-gossip 0.101 proto".into(),
        n,
        scenario,
        overlay: "HyParView active view (default config)".into(),
        summary,
        payload_msgs,
        control_msgs,
        bytes_per_node: bytes as f64 / n as f64,
        wall_s: wall.elapsed().as_secs_f64(),
    }
}
