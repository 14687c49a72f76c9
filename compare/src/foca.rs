//! foca 2.0: SWIM membership with custom broadcasts piggybacked on its messages, driven
//! in virtual time through `AccumulatingRuntime` with the shared link model.

use crate::common::{
    HopOracle, Links, MESSAGES, Row, SPACING_US, Scenario, TAIL_US, WARMUP_US, payload, payload_id,
};
use foca::{
    AccumulatingRuntime, BroadcastHandler, Config, Foca, Invalidates, PostcardCodec, Timer,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::num::NonZeroU32;
use std::rc::Rc;
use std::time::Instant as Wall;
use whisper_proto::rng::{RandomSource, Rng};
use whisper_tests::sim::metrics::DeliveryTracker;

type Id = SocketAddrV4;

fn addr(i: usize) -> Id {
    SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i as u32), 7946)
}

fn idx(a: &Id) -> usize {
    (u32::from(*a.ip()) - 0x0a00_0000) as usize
}

/// The broadcast key: the message id (a message only invalidates itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key(u64);

impl Invalidates for Key {
    fn invalidates(&self, other: &Self) -> bool {
        self == other
    }
}

#[derive(Debug)]
struct Never;
impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

/// What every node's handler shares with the event loop.
#[derive(Debug, Default)]
struct Shared {
    now: u64,
    seen: Vec<HashSet<u64>>,
    tracker: DeliveryTracker,
    oracle: HopOracle,
    /// Set when the packet being handled carried at least one broadcast.
    carried: bool,
}

struct Handler {
    me: usize,
    shared: Rc<RefCell<Shared>>,
}

impl BroadcastHandler<Id> for Handler {
    type Key = Key;
    type Error = Never;

    fn receive_item(&mut self, data: &[u8], sender: Option<&Id>) -> Result<Option<Key>, Never> {
        let Some(id) = payload_id(data) else {
            return Ok(None);
        };
        let mut s = self.shared.borrow_mut();
        s.carried = true;
        if !s.seen[self.me].insert(id) {
            return Ok(None);
        }
        if let Some(from) = sender {
            let hop = s.oracle.deliver(id, self.me, idx(from));
            let now = whisper_proto::Instant::from_micros(s.now);
            s.tracker.record_delivery(self.me, id, hop, now);
        }
        Ok(Some(Key(id)))
    }
}

enum Ev {
    Announce,
    Data { from: usize, bytes: bytes::Bytes },
    Timer(Timer<Id>),
    Publish(u64),
}

/// One run.
pub fn run(n: usize, scenario: Scenario, seed: u64) -> Row {
    let wall = Wall::now();
    let shared = Rc::new(RefCell::new(Shared {
        seen: vec![HashSet::new(); n],
        ..Shared::default()
    }));
    let config = Config::new_lan(NonZeroU32::new(n as u32).expect("n > 0"));
    let mut nodes: Vec<Foca<Id, PostcardCodec, StdRng, Handler>> = (0..n)
        .map(|i| {
            Foca::with_custom_broadcast(
                addr(i),
                config.clone(),
                StdRng::seed_from_u64(seed.wrapping_mul(1_000_003) + i as u64),
                PostcardCodec,
                Handler {
                    me: i,
                    shared: Rc::clone(&shared),
                },
            )
        })
        .collect();
    let mut rng = Rng::new(seed ^ 0xf0ca);
    let mut links = Links::new(seed);
    let mut queue: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut slots: Vec<Option<(usize, Ev)>> = Vec::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BinaryHeap<Reverse<(u64, u64, usize)>>,
                    slots: &mut Vec<Option<(usize, Ev)>>,
                    at: u64,
                    node: usize,
                    ev: Ev| {
        slots.push(Some((node, ev)));
        queue.push(Reverse((at, seq, slots.len() - 1)));
        seq += 1;
    };
    // Every node announces itself to node 0, spread over the first 2 s.
    for i in 1..n {
        let at = 1 + rng.below(2_000_000);
        push(&mut queue, &mut slots, at, i, Ev::Announce);
    }
    let start = WARMUP_US;
    for (i, o) in scenario.origins(n, seed).into_iter().enumerate() {
        let at = start + i as u64 * SPACING_US;
        push(&mut queue, &mut slots, at, o, Ev::Publish(i as u64));
    }
    let end = start + MESSAGES * SPACING_US + TAIL_US;
    let (mut payload_msgs, mut control_msgs, mut bytes_sent) = (0u64, 0u64, 0u64);
    let mut rt = AccumulatingRuntime::new();
    while let Some(Reverse((now, _, slot))) = queue.pop() {
        if now > end {
            break;
        }
        let (node, ev) = slots[slot].take().expect("each slot popped once");
        let measuring = now >= start;
        shared.borrow_mut().now = now;
        let f = &mut nodes[node];
        match ev {
            Ev::Announce => {
                let _ = f.announce(addr(0), &mut rt);
            }
            Ev::Data { from, bytes } => {
                shared.borrow_mut().carried = false;
                let _ = f.handle_data(&bytes, &mut rt);
                if measuring {
                    if shared.borrow().carried {
                        payload_msgs += 1;
                    } else {
                        control_msgs += 1;
                    }
                    bytes_sent += bytes.len() as u64;
                }
                let _ = from;
            }
            Ev::Timer(t) => {
                let _ = f.handle_timer(t, &mut rt);
            }
            Ev::Publish(id) => {
                {
                    let mut s = shared.borrow_mut();
                    s.tracker
                        .record_publish(node, id, whisper_proto::Instant::from_micros(now));
                    s.oracle.publish(id, node);
                }
                f.add_broadcast(&payload(id))
                    .expect("a fresh 64-byte broadcast is accepted");
                // Push it out now rather than waiting for the next probe or gossip tick.
                let _ = f.broadcast(&mut rt);
            }
        }
        while let Some((to, data)) = rt.to_send() {
            let to = idx(&to);
            let at = links.arrival(now, node, to);
            push(
                &mut queue,
                &mut slots,
                at,
                to,
                Ev::Data {
                    from: node,
                    bytes: data,
                },
            );
        }
        while let Some((after, timer)) = rt.to_schedule() {
            let at = now + after.as_micros() as u64;
            push(&mut queue, &mut slots, at, node, Ev::Timer(timer));
        }
        while rt.to_notify().is_some() {}
    }
    let s = shared.borrow();
    let summary = s.tracker.summary(n - 1, payload_msgs);
    Row {
        library: "foca 2.0".into(),
        n,
        scenario,
        overlay: "SWIM, Config::new_lan(N)".into(),
        summary,
        payload_msgs,
        control_msgs,
        bytes_per_node: bytes_sent as f64 / n as f64,
        wall_s: wall.elapsed().as_secs_f64(),
    }
}
