//! The pusher's unit tests; [`net`] is their in-memory network.

extern crate std;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::{format, vec, vec::Vec};

use core::num::NonZeroU32;

use quickcheck::{QuickCheck, TestResult};

use super::*;
use crate::wire::Limits;

const T0: Instant = Instant::ZERO;

fn id(i: usize) -> NodeId {
    NodeId::new(Bytes::from(format!("n{i:05}").into_bytes())).unwrap()
}

fn infos(ids: &[NodeId]) -> Vec<MemberInfo> {
    ids.iter().cloned().map(MemberInfo::new).collect()
}

mod net;
use net::*;

/// The overlay of `overlay_peers` (links both ways) is enough: every fault-free
/// broadcast is exact, and a dead top delegate is still covered by a live link, with
/// O(log N) links per node on average.
#[test]
fn overlay_peers_keep_every_broadcast_exact() {
    let mut rng = Rng::new(17);
    let sizes = [2, 3, 5, 8, 13, 31, 64, 100, 257, 1000];
    for n in sizes {
        let mut net = Net::new(n, RumorConfig::default(), Links::Neighbourhood, &[]);
        // Mean degree: a member alone in a half-block (N = 257: node 256) is every
        // lower node's delegate, so the maximum can reach N − 1.
        let links: usize = (0..n).map(|i| net.nodes[i].stats().peers).sum();
        let dims = ceil_log2(n) as usize;
        assert!(
            links <= 4 * dims.max(1) * n,
            "N={n}: mean degree {}",
            links / n
        );
        let origins: Vec<usize> = if n <= 64 {
            (0..n).collect()
        } else {
            (0..8).map(|_| rng.below(n as u64) as usize).collect()
        };
        for origin in origins {
            let run = net.broadcast(origin, format!("overlay {n} {origin}").as_bytes());
            assert_exact(&net, &run, origin);
            if n < 4 {
                continue;
            }
            let top = net.nodes[origin].cube().delegate(dims as u8 - 1).unwrap();
            let dead = net.index[&top.clone()];
            net.dead = Some(dead);
            let hurt = net.broadcast(origin, format!("hurt {n} {origin}").as_bytes());
            net.dead = None;
            for i in (0..n).filter(|&i| i != dead) {
                assert_eq!(
                    hurt.delivered[i],
                    usize::from(i != origin),
                    "N={n} node {i}"
                );
            }
            assert!(hurt.fallback == 0, "N={n}: no random fallback needed");
        }
    }
}

#[test]
fn fault_free_exact_for_every_n_up_to_64_and_every_origin() {
    for n in 1..=64 {
        let mut net = Net::new(n, RumorConfig::default(), Links::Full, &[]);
        for origin in 0..n {
            let run = net.broadcast(origin, format!("N{n} o{origin}").as_bytes());
            assert_exact(&net, &run, origin);
        }
        assert_eq!(net.now, T0, "no timeout ever fired");
    }
}

#[test]
fn fault_free_exact_for_sampled_n_up_to_1024() {
    let mut rng = Rng::new(77);
    // A debug build (plain `cargo test`) samples fewer sizes; release runs them all.
    let sizes: &[usize] = if cfg!(debug_assertions) {
        &[65, 129, 300, 513]
    } else {
        &[65, 100, 127, 128, 129, 255, 300, 511, 700, 1000, 1023, 1024]
    };
    for &n in sizes {
        let links = if n <= 300 {
            Links::Full
        } else {
            Links::Neighbourhood
        };
        let mut net = Net::new(n, RumorConfig::default(), links, &[]);
        for k in 0..3 {
            let origin = rng.below(n as u64) as usize;
            let run = net.broadcast(origin, format!("N{n} #{k}").as_bytes());
            assert_exact(&net, &run, origin);
        }
    }
}

/// One dead node per run (it receives but never answers): every node in turn, for
/// every N ≤ 64, from every origin up to N = 40 and four sampled origins above.
/// Every live node receives exactly once. The dead node's block costs one retry to
/// the takeover when it has other members; then the dead node is a leaf (of the
/// takeover, or of its sender when alone in its block), and a leaf is retried in
/// place until the budget is spent.
#[test]
fn one_dead_node_costs_one_takeover_retry_and_the_leaf_budget() {
    let budget = usize::from(RumorConfig::default().ack_retries);
    let mut rng = Rng::new(9);
    let mut with_retry = 0;
    for n in 2..=64 {
        let mut net = Net::new(n, RumorConfig::default(), Links::Full, &[]);
        for dead in 0..n {
            // Every origin up to N = 40 in release (N = 16 in a debug build).
            let all_origins = if cfg!(debug_assertions) { 16 } else { 40 };
            let origins: BTreeSet<usize> = if n <= all_origins {
                (0..n).collect()
            } else {
                (0..4).map(|_| rng.below(n as u64) as usize).collect()
            };
            for origin in origins.into_iter().filter(|&o| o != dead) {
                net.dead = Some(dead);
                let run = net.broadcast(origin, format!("N{n} o{origin} d{dead}").as_bytes());
                net.dead = None;
                let cube = net.nodes[dead].cube().primary();
                let pos = cube.position(&net.ids[dead]).unwrap();
                let level = cube.level_for(run.first_dim[dead].unwrap());
                let expect = usize::from(cube.block(pos, level).len() > 1);
                with_retry += expect;
                let ctx = format!("N={n} origin={origin} dead={dead}");
                for i in (0..n).filter(|&i| i != dead) {
                    assert_eq!(run.delivered[i], usize::from(i != origin), "{ctx} node={i}");
                }
                assert_eq!(run.retries, expect + budget, "{ctx}");
                assert_eq!(run.received[dead], 1 + expect + budget, "{ctx}");
                assert_eq!(run.frames, n - 1 + expect + budget, "{ctx}");
                assert_eq!(run.acks, n - 2, "{ctx}: every live receipt is ACKed");
                assert_eq!(run.dropped, [DropReason::RetriesExhausted], "{ctx}");
                assert!(run.max_hop <= ceil_log2(n), "{ctx}");
                assert_eq!(net.pending(), 0, "{ctx}");
            }
        }
    }
    assert!(
        with_retry > 1000,
        "the retry path was exercised: {with_retry}"
    );
}

#[test]
fn retry_goes_to_the_takeover_not_the_dead_edge() {
    let mut net = Net::new(16, RumorConfig::default(), Links::Full, &[]);
    net.dead = Some(8);
    let run = net.broadcast(0, b"x");
    let takeover = net.nodes[0].cube().alternate_for(3, &net.ids[8]).unwrap();
    assert_eq!(takeover.peer, net.ids[9]);
    let to_8 = run.sends.iter().filter(|s| s.1 == 8).count();
    let from_0: Vec<_> = run.sends.iter().filter(|s| s.0 == 0).collect();
    // One retry to the takeover, then the budget of the takeover's leaf frame to 8.
    let budget = usize::from(RumorConfig::default().ack_retries);
    assert_eq!(run.retries, 1 + budget);
    assert_eq!(from_0.len(), 5, "four halves, then one retry");
    assert_eq!(
        *from_0[4],
        (0, 9, 1, 3),
        "same hop and fromDim, to the takeover"
    );
    assert_eq!(
        to_8,
        2 + budget,
        "the origin's frame, the leaf frame, resends"
    );
    // Untimed: 3 s at the origin, 3 s at the takeover. Then the takeover's own ACKs
    // were timed (0 in this harness, so the 1 s floor) and its resends to 8 wait
    // 2, then 3 s (the ceiling) four times.
    assert_eq!(net.now, Instant::from_secs(20));
}

#[test]
fn lost_ack_is_recovered_by_the_retrys_ack_without_a_second_delivery() {
    let mut net = Net::new(16, RumorConfig::default(), Links::Full, &[]);
    net.drop_ack.push((8, 0));
    let run = net.broadcast(0, b"lost ack");
    assert!(net.drop_ack.is_empty(), "the ACK was dropped");
    for (i, &d) in run.delivered.iter().enumerate() {
        assert_eq!(d, usize::from(i != 0), "node {i}");
    }
    assert_eq!(run.retries, 1);
    assert_eq!(run.frames, 16, "N − 1 and the retry");
    assert_eq!(run.acks, 16, "the retry's duplicate is ACKed too");
    assert_eq!(run.acked, 15);
    assert!(run.dropped.is_empty());
    assert_eq!(net.nodes[9].stats().duplicates, 1);
    assert_eq!(net.pending(), 0);
    assert_eq!(run.ack_ids.len(), 1);
    assert_eq!(net.nodes[0].stats().acks_unmatched, 0);
}

#[test]
fn peer_without_ack_support_gets_no_acks_and_causes_no_retries() {
    for legacy in [1, 4, 8, 15] {
        let mut net = Net::new(16, RumorConfig::default(), Links::Full, &[legacy]);
        for origin in 0..16 {
            let run = net.broadcast(origin, format!("l{legacy} o{origin}").as_bytes());
            for (i, &d) in run.delivered.iter().enumerate() {
                assert_eq!(d, usize::from(i != origin));
            }
            assert_eq!(run.acks_to[legacy], 0, "legacy={legacy} origin={origin}");
            assert_eq!(run.acks_from[legacy], 0, "legacy={legacy} origin={origin}");
            assert_eq!(run.retries, 0);
            assert!(run.dropped.is_empty());
            assert_eq!(run.frames, 15);
            // Frames to or from the legacy peer are neither ACKed nor awaited.
            let legacy_links = run
                .sends
                .iter()
                .filter(|s| s.0 == legacy || s.1 == legacy)
                .count();
            assert!(legacy_links >= 1);
            assert_eq!(
                run.acks,
                15 - legacy_links,
                "legacy={legacy} origin={origin}"
            );
            assert_eq!(
                run.acked,
                15 - legacy_links,
                "nobody waits on the legacy peer"
            );
            assert_eq!(net.pending(), 0);
        }
        assert_eq!(net.now, T0, "no ACK deadline ever passed");
    }
}

#[test]
fn own_rumor_coming_back_is_recognised() {
    let mut net = Net::new(4, RumorConfig::default(), Links::Full, &[]);
    let run = net.broadcast(0, b"mine");
    assert_eq!(run.delivered[0], 0);
    let origin = &mut net.nodes[0];
    let from = id(2);
    let back = Rumor {
        hop: 2,
        from_dim: 0,
        payload: Bytes::from_static(b"mine"),
    };
    let rid = origin.handle_rumor(Instant::from_secs(1), &from, back, true);
    assert_eq!(rid, rumor_id(b"mine"));
    let outs: Vec<PusherOutput> = core::iter::from_fn(|| origin.poll_output()).collect();
    assert_eq!(
        outs,
        [PusherOutput::Send {
            to: from,
            frame: PushFrame::Ack(RumorAck {
                rumor_id: *rid.as_bytes()
            }),
            origin: false,
        }],
        "only the ACK: no delivery, no forwarding"
    );
    assert_eq!(origin.stats().duplicates, 1);
    assert_eq!(
        origin.publish(Instant::from_secs(1), Bytes::from_static(b"mine")),
        Err(PushError::Duplicate { id: rid })
    );

    // And through a fallback flood, where frames do come back to the origin.
    let mut net = fallback_net(12, RumorConfig::service_mesh());
    let run = net.broadcast(3, b"flood");
    assert_eq!(run.delivered[3], 0);
    assert!(run.received[3] > 0, "the flood came back");
}

/// Each node knows every member but itself: no cube, so the random fallback.
fn fallback_net(n: usize, config: RumorConfig) -> Net {
    let ids: Vec<NodeId> = (0..n).map(id).collect();
    let all = infos(&ids);
    Net::build(ids, config, Links::Full, &[], |i| {
        let mut m = all.clone();
        m.remove(i);
        m
    })
}

#[test]
fn invalid_cube_uses_random_fanout_with_forward_probability_and_max_hops() {
    let n = 32;
    let config = RumorConfig::service_mesh();
    let mut net = fallback_net(n, config);
    assert!(!net.nodes[0].routes_on_cube());
    let fanout = adaptive_fanout(n - 1, 3);
    assert_eq!(fanout, 4);
    // Over many rumors: forwarders at hop h forward with probability 1/(1+h).
    let mut first_receipts = [0usize; 4];
    let mut forwarded = [0usize; 4];
    for r in 0..300 {
        let run = net.broadcast(r % n, format!("fb{r}").as_bytes());
        let origin_sends: Vec<_> = run.sends.iter().filter(|s| s.0 == r % n).collect();
        assert_eq!(origin_sends.len(), fanout);
        assert!(origin_sends.iter().all(|s| s.2 == 1 && s.3 == ORIGIN));
        assert!(
            run.max_hop <= config.max_hops,
            "MaxHops bounds the fallback"
        );
        assert!(run.sends.iter().all(|s| s.3 == ORIGIN));
        assert_eq!(run.fallback, run.frames);
        // Relays that forwarded, by the hop they received.
        let mut first_hop: BTreeMap<usize, u8> = BTreeMap::new();
        for &(_, to, hop, _) in &run.sends {
            first_hop.entry(to).or_insert(hop);
        }
        for (&node, &hop) in first_hop.iter().filter(|(node, _)| **node != r % n) {
            first_receipts[usize::from(hop)] += 1;
            let sent = run.sends.iter().any(|s| s.0 == node);
            forwarded[usize::from(hop)] += usize::from(sent);
        }
        assert_eq!(run.retries, 0);
    }
    let rate = |h: usize| forwarded[h] as f64 / first_receipts[h] as f64;
    assert!((rate(1) - 0.5).abs() < 0.06, "hop 1: {}", rate(1));
    assert!((rate(2) - 1.0 / 3.0).abs() < 0.08, "hop 2: {}", rate(2));
    assert_eq!(forwarded[3], 0, "hop 3 = MaxHops never forwards");

    // P = 0: only the origin's frames.
    let mut quiet = fallback_net(
        n,
        RumorConfig {
            forward_probability: 0.0,
            ..config
        },
    );
    let run = quiet.broadcast(0, b"quiet");
    assert_eq!(run.frames, fanout);
    // MaxHops = 1: likewise.
    let mut short = fallback_net(
        n,
        RumorConfig {
            max_hops: 1,
            ..config
        },
    );
    assert_eq!(short.broadcast(5, b"short").frames, fanout);
    // Deterministic for a seed.
    let a = fallback_net(n, config).broadcast(7, b"det").sends;
    let b = fallback_net(n, config).broadcast(7, b"det").sends;
    assert_eq!(a, b);
}

#[test]
fn unreachable_target_is_skipped_to_an_alternate_keeping_the_tree_exact() {
    let mut net = Net::new(8, RumorConfig::default(), Links::Full, &[]);
    net.nodes[0].peer_down(T0, &id(4));
    let run = net.broadcast(0, b"skip");
    for (i, &d) in run.delivered.iter().enumerate() {
        assert_eq!(d, usize::from(i != 0), "node {i}");
    }
    assert_eq!(run.frames, 7);
    assert_eq!(run.retries, 0);
    assert!(
        run.sends.contains(&(0, 5, 1, 2)),
        "the takeover got the level-2 frame"
    );
    assert_eq!(net.nodes[0].stats().alternate_sends, 1);
    assert_eq!(net.now, T0);
}

#[test]
fn peer_down_fails_its_pending_frames_at_once() {
    let mut net = Net::new(8, RumorConfig::default(), Links::Full, &[]);
    net.cut.insert((0, 4));
    net.run = Run::new(8);
    net.nodes[0]
        .publish(T0, Bytes::from_static(b"down"))
        .unwrap();
    net.drain(0);
    // The connection to 4 drops before anything moves.
    net.nodes[0].peer_down(T0, &id(4));
    net.drain(0);
    net.settle();
    let run = core::mem::take(&mut net.run);
    for (i, &d) in run.delivered.iter().enumerate() {
        assert_eq!(d, usize::from(i != 0), "node {i}");
    }
    assert_eq!(run.retries, 1);
    assert_eq!(net.now, T0, "no timeout was needed");
    assert_eq!(net.pending(), 0);
}

#[test]
fn last_resort_fallback_reaches_a_block_with_no_reachable_member() {
    let mut net = Net::new(8, RumorConfig::default(), Links::Full, &[]);
    for j in 4..8 {
        net.nodes[0].peer_down(T0, &id(j));
    }
    let run = net.broadcast(0, b"last resort");
    for (i, &d) in run.delivered.iter().enumerate() {
        assert_eq!(d, usize::from(i != 0), "node {i}");
    }
    assert!(run.fallback >= 1);
    assert!(run.dropped.is_empty());
    assert_eq!(net.pending(), 0);
}

#[test]
fn retry_budget_is_enforced() {
    let config = RumorConfig {
        ack_retries: 2,
        ..RumorConfig::default()
    };
    let mut net = Net::new(16, config, Links::Full, &[]);
    // Everyone in 8..16 is dead to the origin: the frame is tried on 3 members.
    for j in 8..16 {
        net.cut.insert((0, j));
    }
    let run = net.broadcast(0, b"budget");
    assert_eq!(run.retries, 2);
    assert_eq!(run.dropped, [DropReason::RetriesExhausted]);
    assert_eq!(run.sends.iter().filter(|s| s.0 == 0).count(), 6);
    assert_eq!(run.delivered.iter().sum::<usize>(), 7, "only 1..8");
}

#[test]
fn oversized_payload_is_refused_and_not_forwarded() {
    let mut p = RumorPusher::new(
        id(0),
        RumorConfig::default(),
        hypercube::Config::default(),
        1,
    );
    let max = Limits::DEFAULT.max_rumor_send as usize;
    assert_eq!(max, 256 * 1024);
    let big = Bytes::from(vec![7u8; max + 1]);
    assert_eq!(
        p.publish(T0, big.clone()),
        Err(PushError::TooLarge {
            len: max + 1,
            max: max as u32
        })
    );
    assert!(p.poll_output().is_none());
    assert_eq!(p.stats().refused_too_large, 1);
    assert!(p.publish(T0, Bytes::from(vec![7u8; max])).is_ok());

    // Received above the push cap: delivered, ACKed, not forwarded.
    let members = infos(&[id(0), id(1), id(2)]);
    p.set_members(T0, &members).unwrap();
    p.peer_up(id(1), true);
    p.peer_up(id(2), true);
    let frame = Rumor {
        hop: 1,
        from_dim: ORIGIN,
        payload: big,
    };
    p.handle_rumor(T0, &id(1), frame, true);
    let outs: Vec<PusherOutput> = core::iter::from_fn(|| p.poll_output()).collect();
    assert_eq!(outs.len(), 3, "ACK, Deliver, Received: {outs:?}");
    assert_eq!(p.stats().not_forwarded, 1);
}

#[test]
fn lru_and_pending_table_are_bounded() {
    let config = RumorConfig {
        lru_capacity: NonZeroU32::new(8).unwrap(),
        max_pending_acks: NonZeroU32::new(4).unwrap(),
        ..RumorConfig::default()
    };
    let mut p = RumorPusher::new(id(0), config, hypercube::Config::default(), 1);
    p.set_members(T0, &infos(&[id(0), id(1)])).unwrap();
    p.peer_up(id(1), true);
    let mut evicted = 0;
    for i in 0..100u32 {
        p.publish(T0, Bytes::from(i.to_be_bytes().to_vec()))
            .unwrap();
        while let Some(out) = p.poll_output() {
            if let PusherOutput::Event(RumorEvent::Dropped { reason, .. }) = out {
                assert_eq!(reason, DropReason::Evicted);
                evicted += 1;
            }
        }
        assert!(p.stats().seen <= 8);
        assert!(p.stats().pending_acks <= 4);
    }
    assert_eq!(evicted, 96);
    assert!(matches!(
        p.publish(T0, Bytes::from(99u32.to_be_bytes().to_vec())),
        Err(PushError::Duplicate { .. })
    ));
    assert!(
        p.publish(T0, Bytes::from(0u32.to_be_bytes().to_vec()))
            .is_ok(),
        "evicted"
    );
}

#[test]
fn configs_and_fanout() {
    let s = RumorConfig::service_mesh();
    assert_eq!((s.max_hops, s.fanout, s.forward_probability), (3, 3, 1.0));
    let a = RumorConfig::agent_mesh();
    assert_eq!((a.max_hops, a.fanout, a.forward_probability), (4, 3, 0.6));
    assert_eq!(s.ack_timeout, Duration::from_secs(3));
    assert_eq!(s.ack_retries, 5);
    assert_eq!(s.min_ack_timeout, Duration::from_secs(1));
    assert_eq!(s.max_payload, 256 * 1024);
    assert_eq!(RumorConfig::default(), s);
    let zero = RumorConfig {
        ack_timeout: Duration::ZERO,
        ..s
    };
    assert_eq!(zero.effective_ack_timeout(), Duration::from_secs(3));
    let cases = [
        (0, 0),
        (1, 1),
        (3, 3),
        (10, 3),
        (16, 4),
        (100, 6),
        (1024, 10),
    ];
    for (n, f) in cases {
        assert_eq!(adaptive_fanout(n, 3), f, "n={n}");
    }
    assert_eq!(adaptive_fanout(1, 0), 0, "floor(log2 1) = 0 with base 0");
    assert_eq!(adaptive_fanout(16, 1), 4);
}

/// The ACK timeout towards a peer follows its timed ACKs (RFC 6298) within
/// [min_ack_timeout, ack_timeout]; a resend in place doubles it, and its ACK is not
/// timed (Karn's rule).
#[test]
fn ack_timeout_adapts_to_the_ack_round_trip() {
    let config = RumorConfig {
        min_ack_timeout: Duration::from_millis(10),
        ..RumorConfig::default()
    };
    let mut p = RumorPusher::new(id(0), config, hypercube::Config::default(), 1);
    p.set_members(T0, &infos(&[id(0), id(1)])).unwrap();
    p.peer_up(id(1), true);
    assert_eq!(p.ack_timeout_for(&id(1)), Duration::from_secs(3), "untimed");
    assert_eq!(
        p.ack_timeout_for(&id(2)),
        Duration::from_secs(3),
        "nothing pooled"
    );
    let ms = Duration::from_millis;
    let mut t = Instant::from_secs(10);
    let send = |p: &mut RumorPusher, t: Instant, k: u32| {
        let rid = p.publish(t, Bytes::from(format!("m{k}"))).unwrap();
        while p.poll_output().is_some() {}
        rid
    };
    // First sample 40 ms: SRTT 40, RTTVAR 20 -> 120 ms.
    let rid = send(&mut p, t, 0);
    p.handle_ack(t + ms(40), &id(1), rid);
    assert_eq!(p.ack_timeout_for(&id(1)), ms(120));
    assert_eq!(
        p.ack_timeout_for(&id(2)),
        ms(240),
        "twice the pooled estimate"
    );
    // A second of 40 ms: RTTVAR 15 -> 100 ms; the next frame waits that long.
    t = t + ms(100);
    let rid = send(&mut p, t, 1);
    p.handle_ack(t + ms(40), &id(1), rid);
    assert_eq!(p.ack_timeout_for(&id(1)), ms(100));
    t = t + ms(100);
    let rid = send(&mut p, t, 2);
    assert_eq!(p.next_deadline(), Some(t + ms(100)));
    // Lost: resent in place (alone in its block) with 200 ms, then 400 ms.
    p.handle_timeout(t + ms(100));
    assert_eq!(p.next_deadline(), Some(t + ms(300)));
    p.handle_timeout(t + ms(300));
    assert_eq!(p.next_deadline(), Some(t + ms(700)));
    // The ACK of a resend is not a sample.
    p.handle_ack(t + ms(705), &id(1), rid);
    assert_eq!(p.ack_timeout_for(&id(1)), ms(100));
    // Clamped: 1 ms round trips reach the 10 ms floor; 5 s ones the 3 s ceiling.
    for (k, rtt, want) in [(3, ms(1), None), (4, Duration::from_secs(5), Some(3000))] {
        for j in 0..60 {
            t = t + Duration::from_secs(6);
            let rid = send(&mut p, t, 100 * k + j);
            p.handle_ack(t + rtt, &id(1), rid);
        }
        let got = p.ack_timeout_for(&id(1));
        match want {
            None => assert_eq!(got, ms(10)),
            Some(w) => assert_eq!(got, ms(w)),
        }
    }
    // Adaptation off: a floor at the ceiling.
    let mut q = RumorPusher::new(
        id(0),
        RumorConfig {
            min_ack_timeout: Duration::from_secs(3),
            ..RumorConfig::default()
        },
        hypercube::Config::default(),
        1,
    );
    q.set_members(T0, &infos(&[id(0), id(1)])).unwrap();
    q.peer_up(id(1), true);
    let rid = send(&mut q, t, 999);
    q.handle_ack(t + ms(40), &id(1), rid);
    assert_eq!(q.ack_timeout_for(&id(1)), Duration::from_secs(3));
}

#[test]
fn ack_timeout_follows_set_ack_timeout() {
    let mut p = RumorPusher::new(
        id(0),
        RumorConfig::default(),
        hypercube::Config::default(),
        1,
    );
    p.set_members(T0, &infos(&[id(0), id(1)])).unwrap();
    p.peer_up(id(1), true);
    p.set_ack_timeout(Duration::from_millis(200));
    let t = Instant::from_secs(10);
    p.publish(t, Bytes::from_static(b"a")).unwrap();
    assert_eq!(p.next_deadline(), Some(t + Duration::from_millis(200)));
    p.handle_timeout(t + Duration::from_millis(199));
    assert_eq!(p.stats().ack_timeouts, 0);
    // An older instant is clamped, not a panic.
    p.handle_timeout(T0);
    p.handle_timeout(t + Duration::from_millis(200));
    assert_eq!(p.stats().ack_timeouts, 1);
    // id(1) is alone in its block: the same frame again, on the same timeout.
    assert_eq!(p.stats().retries, 1);
    assert_eq!(p.next_deadline(), Some(t + Duration::from_millis(400)));
}

#[test]
fn refused_publish_changes_nothing_and_admits_the_actual_frames() {
    let mut p = RumorPusher::new(
        id(0),
        RumorConfig::default(),
        hypercube::Config::default(),
        1,
    );
    p.set_members(T0, &infos(&[id(0), id(1), id(2)])).unwrap();
    p.peer_up(id(1), true);
    p.peer_up(id(2), true);
    let payload = Bytes::from_static(b"a");
    let mut asked = None;
    let refused = p.publish_if(T0, payload.clone(), |frames| {
        asked = Some(frames);
        false
    });
    assert_eq!(refused, Err(PushError::Refused { frames: 2 }));
    assert_eq!(asked, Some(2));
    assert!(p.poll_output().is_none());
    assert_eq!((p.stats().published, p.stats().pending_acks), (0, 0));
    assert!(!p.tracker().contains(&rumor_id(&payload)));
    p.publish_if(T0, payload, |frames| frames == 2).unwrap();
    let origin_sends = core::iter::from_fn(|| p.poll_output())
        .filter(|o| matches!(o, PusherOutput::Send { origin: true, .. }))
        .count();
    assert_eq!(origin_sends, 2);
}

/// Arbitrary inputs never panic and keep every bound.
#[test]
fn arbitrary_inputs_keep_the_bounds() {
    fn prop(ops: Vec<(u8, u8, u8, u16)>) -> TestResult {
        let config = RumorConfig {
            lru_capacity: NonZeroU32::new(16).unwrap(),
            max_pending_acks: NonZeroU32::new(8).unwrap(),
            ack_retries: 2,
            ..RumorConfig::default()
        };
        let ids: Vec<NodeId> = (0..6).map(id).collect();
        let mut p = RumorPusher::new(ids[0].clone(), config, hypercube::Config::default(), 5);
        let mut now = T0;
        for (op, a, b, c) in ops {
            let peer = &ids[usize::from(a) % 6];
            let payload = Bytes::from(vec![b % 8; usize::from(c % 4)]);
            match op % 8 {
                0 => {
                    let _ = p.publish(now, payload);
                }
                1 => {
                    let frame = Rumor {
                        hop: b,
                        from_dim: (c >> 8) as u8,
                        payload,
                    };
                    p.handle_rumor(now, peer, frame, c % 2 == 0);
                }
                2 => p.handle_ack(now, peer, rumor_id(&payload)),
                3 => {
                    now = now + Duration::from_millis(u64::from(c));
                    p.handle_timeout(now);
                }
                4 => p.peer_up(peer.clone(), b % 2 == 0),
                5 => p.peer_down(now, peer),
                6 => {
                    let k = usize::from(b) % 7;
                    let members = infos(&ids[usize::from(a) % 3..k.max(usize::from(a) % 3)]);
                    p.set_members(now, &members).unwrap();
                }
                _ => p.handle_timeout(Instant::from_micros(u64::from(c))),
            }
            while p.poll_output().is_some() {}
            let s = p.stats();
            if s.seen > 16 || s.pending_acks > 8 {
                return TestResult::failed();
            }
            if p.next_deadline().is_some() != (s.pending_acks > 0) {
                return TestResult::failed();
            }
        }
        TestResult::passed()
    }
    QuickCheck::new()
        .tests(300)
        .quickcheck(prop as fn(Vec<(u8, u8, u8, u16)>) -> TestResult);
}

/// Frames, ACKs and hops per broadcast for a few sizes and random origins, fault-free
/// and with the origin's top-dimension delegate dead (the largest subtree). Run with
/// `cargo test --release -p whisper-proto figures -- --ignored --nocapture`.
#[test]
#[ignore = "prints a table; builds 4,096 pushers"]
fn figures_table() {
    let mut rng = Rng::new(2024);
    std::println!(
        "|     N | D | origin | frames | acks | max hop | dead | frames | acks | retries | dropped | max hop | live missed |"
    );
    std::println!(
        "|------:|--:|-------:|-------:|-----:|--------:|-----:|-------:|-----:|--------:|--------:|--------:|------------:|"
    );
    for n in [16usize, 100, 1000, 1024, 4096] {
        let links = if n <= 1024 {
            Links::Full
        } else {
            Links::Neighbourhood
        };
        let mut net = Net::new(n, RumorConfig::default(), links, &[]);
        let dims = ceil_log2(n);
        for k in 0..3 {
            let origin = rng.below(n as u64) as usize;
            let clean = net.broadcast(origin, format!("clean {n} {k}").as_bytes());
            assert_exact(&net, &clean, origin);
            let top = net.nodes[origin].cube().delegate(dims - 1).unwrap().clone();
            let dead = net.index[&top];
            net.dead = Some(dead);
            let hurt = net.broadcast(origin, format!("hurt {n} {k}").as_bytes());
            net.dead = None;
            let missed = (0..n)
                .filter(|&i| i != dead && i != origin && hurt.delivered[i] != 1)
                .count();
            assert_eq!(missed, 0);
            std::println!(
                "| {n:>5} | {dims:>2} | {origin:>6} | {:>6} | {:>4} | {:>7} | {dead:>4} | {:>6} | {:>4} | {:>7} | {:>7} | {:>7} | {missed:>11} |",
                clean.frames,
                clean.acks,
                clean.max_hop,
                hurt.frames,
                hurt.acks,
                hurt.retries,
                hurt.dropped.len(),
                hurt.max_hop,
            );
        }
    }
}
