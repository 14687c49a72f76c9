//! The rumor fast path in the engine: exact hypercube broadcast over full meshes of
//! engines, StatefulMerge records pushed ahead of G1, and retries when a node leaves
//! mid-broadcast.

use whisper_proto::wire::{Frame, magic};
use whisper_proto::{
    Bytes, Config, Duration, Engine, Event, Instant, MemStore, NodeId, TopicConfig,
};
use whisper_tests::mesh::Mesh;

fn name(i: usize) -> NodeId {
    NodeId::new(Bytes::from(format!("node-{i:03}"))).unwrap()
}

fn engine(i: usize, stateful: bool) -> Engine {
    let config = Config {
        wall_clock_offset: Duration::from_secs(1_700_000_000),
        ..Config::default()
    };
    let mut e = Engine::new(name(i), config, 100 + i as u64, Instant::ZERO).unwrap();
    e.register_topic("news", TopicConfig::broadcast()).unwrap();
    e.subscribe("news").unwrap();
    if stateful {
        e.register_topic("kv", TopicConfig::stateful(MemStore::new(name(i), [9; 32])))
            .unwrap();
    }
    e
}

fn full_mesh(n: usize, stateful: bool) -> Mesh {
    let mut m = Mesh::new((0..n).map(|i| engine(i, stateful)).collect(), Instant::ZERO);
    m.connect_all();
    m.settle();
    m
}

fn ceil_log2(n: usize) -> u8 {
    (usize::BITS - (n - 1).leading_zeros()) as u8
}

/// Every node's `(node, hop)` deliveries of message `id`.
fn deliveries(m: &Mesh, id: whisper_proto::rumor::RumorId) -> Vec<(usize, u8)> {
    m.events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::Message { id: got, hop, .. } if *got == id => Some((*i, *hop)),
            _ => None,
        })
        .collect()
}

fn count(m: &Mesh, mark: usize, want: u16) -> usize {
    m.sent_since(mark)
        .iter()
        .filter(|s| s.magic == want)
        .count()
}

#[test]
fn broadcast_is_exact_on_full_meshes() {
    for n in [2, 3, 5, 9, 16] {
        let mut m = full_mesh(n, false);
        for origin in 0..n {
            let mark = m.sent.len();
            let now = m.now;
            let id = m.nodes[origin]
                .publish(now, "news", Bytes::from(format!("from {origin}")))
                .unwrap();
            m.settle();
            let got = deliveries(&m, id);
            let mut nodes: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
            nodes.sort_unstable();
            assert_eq!(nodes, (0..n).collect::<Vec<_>>(), "n={n} origin={origin}");
            let max_hop = got.iter().map(|(_, h)| *h).max().unwrap();
            assert!(
                max_hop <= ceil_log2(n),
                "n={n} origin={origin}: hop {max_hop}"
            );
            assert_eq!(
                got.iter().find(|(i, _)| *i == origin).map(|(_, h)| *h),
                Some(0)
            );
            let g3 = count(&m, mark, magic::RUMOR);
            let acks = count(&m, mark, magic::RUMOR_ACK);
            println!("n={n} origin={origin}: G3 {g3}, ACK {acks}, max hop {max_hop}");
            assert_eq!(g3, n - 1, "n={n} origin={origin}");
            assert_eq!(acks, n - 1, "n={n} origin={origin}");
        }
        let retries: u64 = m.nodes.iter().map(|e| e.rumor_stats().retries).sum();
        assert_eq!(retries, 0, "n={n}");
    }
}

#[test]
fn put_reaches_every_store_by_rumor_before_any_g1_round() {
    for n in [5, 9, 16] {
        let mut m = full_mesh(n, true);
        let mark = m.sent.len();
        let now = m.now;
        m.nodes[2].put(now, "kv", b"k", b"v").unwrap();
        m.settle();
        for (i, e) in m.nodes.iter().enumerate() {
            assert_eq!(
                e.mem_store("kv").unwrap().get(b"k").map(|v| v.as_ref()),
                Some(&b"v"[..]),
                "n={n} node {i}"
            );
        }
        // Time did not move: no G1 round ran, the rumor alone carried the record.
        assert_eq!(count(&m, mark, magic::EXCHANGE), 0, "n={n}");
        assert_eq!(count(&m, mark, magic::RUMOR), n - 1, "n={n}");
        assert_eq!(count(&m, mark, magic::RUMOR_ACK), n - 1, "n={n}");
        let applied = m
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::RecordApplied { topic, .. } if topic == "kv"))
            .count();
        assert_eq!(applied, n - 1);
        // A delete is pushed the same way.
        let mark = m.sent.len();
        m.nodes[0].delete(now, "kv", b"k").unwrap();
        m.settle();
        assert!(
            m.nodes
                .iter()
                .all(|e| e.mem_store("kv").unwrap().get(b"k").is_none())
        );
        assert_eq!(count(&m, mark, magic::EXCHANGE), 0);
    }
}

#[test]
fn a_node_leaving_mid_broadcast_costs_a_retry_not_a_delivery() {
    let n = 9;
    let mut total_retries = 0;
    for gone in 1..n {
        let mut m = full_mesh(n, false);
        m.hold(gone);
        let now = m.now;
        let id = m.nodes[0]
            .publish(now, "news", Bytes::from_static(b"hello"))
            .unwrap();
        m.settle();
        // The held node never answers: it leaves.
        for j in 0..n {
            if j != gone {
                m.disconnect(gone, j);
            }
        }
        m.settle();
        let retries: u64 = m.nodes.iter().map(|e| e.rumor_stats().retries).sum();
        total_retries += retries;
        let got = deliveries(&m, id);
        for i in (0..n).filter(|&i| i != gone) {
            let times = got.iter().filter(|(j, _)| *j == i).count();
            assert_eq!(times, 1, "gone={gone}: node {i} got it {times} times");
        }
        // Anything held for the gone node is now undeliverable.
        m.release(gone);
        println!("gone={gone}: retries {retries}");
    }
    assert!(total_retries > 0);
}

#[test]
fn an_ack_timeout_retries_over_an_alternate() {
    let n = 8;
    let mut total_retries = 0;
    for silent in 1..n {
        let mut m = full_mesh(n, false);
        // The node is alive but silent: its frames are parked, so no ACK comes back.
        m.hold(silent);
        let now = m.now;
        let id = m.nodes[0]
            .publish(now, "news", Bytes::from(format!("x{silent}")))
            .unwrap();
        m.settle();
        m.run_until(now + Duration::from_secs(4));
        let got = deliveries(&m, id);
        for i in (0..n).filter(|&i| i != silent) {
            assert_eq!(
                got.iter().filter(|(j, _)| *j == i).count(),
                1,
                "silent={silent}: node {i}"
            );
        }
        let retries: u64 = m.nodes.iter().map(|e| e.rumor_stats().retries).sum();
        total_retries += retries;
        // The silent node gets it exactly once too when its frames finally arrive.
        m.release(silent);
        assert_eq!(
            deliveries(&m, id)
                .iter()
                .filter(|(j, _)| *j == silent)
                .count(),
            1
        );
        assert!(m.sent.iter().any(|s| matches!(s.frame, Frame::RumorAck(_))));
        println!("silent={silent}: retries {retries}");
    }
    assert!(total_retries > 0);
}
