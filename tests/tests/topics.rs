//! BroadcastOnly and RequestResponse topics across 4–5 engines, step by step.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use whisper_proto::hypercube::MemberInfo;
use whisper_proto::{
    Bytes, Config, Duration, Engine, Event, Instant, NodeId, QueryError, TopicConfig,
};
use whisper_tests::mesh::Mesh;

const NAMES: [&str; 5] = ["n0", "n1", "n2", "n3", "n4"];

fn engine(i: usize) -> Engine {
    let config = Config {
        wall_clock_offset: Duration::from_secs(1_700_000_000),
        ..Config::default()
    };
    Engine::new(
        NodeId::from_static(NAMES[i]),
        config,
        7 + i as u64,
        Instant::ZERO,
    )
    .unwrap()
}

fn messages(m: &Mesh) -> Vec<(usize, String, Bytes)> {
    m.events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::Message { from, payload, .. } => Some((*i, from.to_string(), payload.clone())),
            _ => None,
        })
        .collect()
}

/// Five nodes in a ring with two chords: several paths to everyone. Not a full mesh,
/// so every node is told the member list ([`Engine::set_members`]); cube targets
/// without a link are covered by alternates.
fn broadcast_mesh(ttl: Option<Duration>) -> Mesh {
    let nodes = (0..5)
        .map(|i| {
            let mut e = engine(i);
            let mut cfg = TopicConfig::broadcast();
            if let Some(ttl) = ttl {
                cfg = cfg.with_ttl(ttl);
            }
            e.register_topic("news", cfg).unwrap();
            e.subscribe("news").unwrap();
            let members: Vec<_> = NAMES
                .iter()
                .map(|n| MemberInfo::new(NodeId::from_static(n)))
                .collect();
            e.set_members(Instant::ZERO, &members).unwrap();
            e
        })
        .collect();
    let mut m = Mesh::new(nodes, Instant::ZERO);
    for (a, b) in [(0, 1), (1, 2), (2, 3), (3, 4), (0, 4), (0, 2), (1, 3)] {
        m.connect(a, b);
    }
    m.settle();
    m
}

#[test]
fn every_subscriber_gets_each_broadcast_once() {
    let mut m = broadcast_mesh(None);
    let mark = m.sent.len();
    for (origin, text) in [(0, "first"), (3, "second"), (0, "first")] {
        let now = m.now;
        m.nodes[origin]
            .publish(now, "news", Bytes::from_static(text.as_bytes()))
            .unwrap();
        m.settle();
    }
    let got = messages(&m);
    // Three messages (the repeated payload is a new message) × five subscribers.
    assert_eq!(got.len(), 15, "{got:?}");
    for node in 0..5 {
        let mine: Vec<_> = got.iter().filter(|(i, ..)| *i == node).collect();
        assert_eq!(mine.len(), 3, "node {node}: {mine:?}");
        assert_eq!(mine[1].1, "n3");
    }
    let frames = m
        .sent_since(mark)
        .iter()
        .filter(|s| s.magic == whisper_proto::wire::magic::RUMOR)
        .count();
    // The cube tree with alternates for the missing links: at least one frame per
    // receiver, and far fewer than a flood over 7 links (3 × 14).
    println!("{frames} rumor frames for 3 messages");
    assert!((3 * 4..=3 * 8).contains(&frames), "{frames} rumor frames");
}

#[test]
fn no_delivery_after_the_ttl() {
    let mut m = broadcast_mesh(Some(Duration::from_secs(1)));
    // Node 4's inbound frames are delayed past the TTL.
    m.hold(4);
    let now = m.now;
    m.nodes[0]
        .publish(now, "news", Bytes::from_static(b"fresh"))
        .unwrap();
    m.settle();
    m.run_until(Instant::from_secs(2));
    m.release(4);
    let got = messages(&m);
    let mut receivers: Vec<usize> = got.iter().map(|(i, ..)| *i).collect();
    receivers.sort_unstable();
    assert_eq!(receivers, [0, 1, 2, 3], "{got:?}");
    assert!(m.nodes[4].stats().broadcasts_expired >= 1);
    // A message published later, with no delay, still reaches node 4 once. (From a
    // neighbour of node 4: node 4 is alone in the top half-block of the 5-member cube,
    // so a publisher without a link to it has no alternate to cover it; see
    // `engine/broadcast.rs`, "Membership".)
    let now = m.now;
    m.nodes[0]
        .publish(now, "news", Bytes::from_static(b"later"))
        .unwrap();
    m.settle();
    let late: Vec<_> = messages(&m)
        .into_iter()
        .filter(|(i, _, p)| *i == 4 && p.as_ref() == b"later")
        .collect();
    assert_eq!(late.len(), 1);
}

#[test]
fn publish_and_subscribe_errors() {
    let mut e = engine(0);
    e.register_topic("news", TopicConfig::broadcast()).unwrap();
    assert!(e.subscribe("nope").is_err());
    assert!(e.publish(Instant::ZERO, "nope", Bytes::new()).is_err());
    let big = Bytes::from(vec![0u8; 300 * 1024]);
    assert!(matches!(
        e.publish(Instant::ZERO, "news", big),
        Err(whisper_proto::PublishError::TooLarge { .. })
    ));
}

/// Node 0 queries; nodes 1 and 2 answer; node 3 never does (its handler returns None).
fn query_mesh(silent: bool) -> (Mesh, Arc<AtomicUsize>) {
    let asked = Arc::new(AtomicUsize::new(0));
    let nodes = (0..4)
        .map(|i| {
            let mut e = engine(i);
            let asked = asked.clone();
            let handler = move |from: &NodeId, _: &str, payload: &[u8]| {
                asked.fetch_add(1, Ordering::SeqCst);
                if silent && i == 3 {
                    return None;
                }
                Some(Bytes::from(format!("{i} heard {from}: {}", payload.len())))
            };
            e.register_topic("lookup", TopicConfig::request_response(handler))
                .unwrap();
            e
        })
        .collect();
    let mut m = Mesh::new(nodes, Instant::ZERO);
    for j in 1..4 {
        m.connect(0, j);
    }
    m.settle();
    (m, asked)
}

fn completions(m: &Mesh) -> Vec<(Instant, usize, bool)> {
    m.events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::QueryComplete {
                replies, timed_out, ..
            } => Some((replies.len(), *timed_out)),
            _ => None,
        })
        .map(|(n, t)| (m.now, n, t))
        .collect()
}

#[test]
fn query_with_one_silent_responder_completes_at_the_deadline() {
    let (mut m, asked) = query_mesh(true);
    let id = m.nodes[0]
        .query(
            m.now,
            "lookup",
            Bytes::from_static(b"who"),
            Duration::from_secs(5),
        )
        .unwrap();
    m.settle();
    assert_eq!(
        asked.load(Ordering::SeqCst),
        3,
        "all three responders were asked"
    );
    assert!(completions(&m).is_empty(), "still waiting for the third");
    assert_eq!(m.nodes[0].poll_timeout(), Some(Instant::from_secs(5)));
    m.run_until(Instant::from_secs(5));
    let done: Vec<_> = m
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::QueryComplete {
                id: got,
                replies,
                timed_out,
                ..
            } => Some((*got, replies.clone(), *timed_out)),
            _ => None,
        })
        .collect();
    assert_eq!(done.len(), 1);
    let (got, replies, timed_out) = &done[0];
    assert_eq!(*got, id);
    assert!(*timed_out);
    let from: Vec<String> = replies.iter().map(|r| r.from.to_string()).collect();
    assert_eq!(from, ["n1", "n2"]);
    assert_eq!(replies[0].payload.as_ref(), b"1 heard n0: 3");
    assert_eq!(m.nodes[0].stats().queries_timed_out, 1);
    assert_eq!(m.nodes[0].pending_queries(), 0);
}

#[test]
fn query_answered_by_all_completes_at_once() {
    let (mut m, _) = query_mesh(false);
    let id = m.nodes[0]
        .query(
            m.now,
            "lookup",
            Bytes::from_static(b"who"),
            Duration::from_secs(5),
        )
        .unwrap();
    m.settle();
    let done = completions(&m);
    assert_eq!(done, [(Instant::ZERO, 3, false)]);
    assert!(m.events.iter().any(|(_, e)| matches!(
        e,
        Event::QueryComplete { id: got, .. } if *got == id
    )));
    assert_eq!(m.nodes[0].stats().queries_completed, 1);
    // Nothing is left armed for the query.
    assert_eq!(m.nodes[0].pending_queries(), 0);
}

#[test]
fn query_errors() {
    let mut e = engine(0);
    e.register_topic("news", TopicConfig::broadcast()).unwrap();
    e.register_topic(
        "lookup",
        TopicConfig::request_response(|_: &NodeId, _: &str, _: &[u8]| None),
    )
    .unwrap();
    let t = Duration::from_secs(1);
    assert!(matches!(
        e.query(Instant::ZERO, "news", Bytes::new(), t),
        Err(QueryError::Topic(_))
    ));
    assert_eq!(
        e.query(Instant::ZERO, "lookup", Bytes::new(), t),
        Err(QueryError::NoResponders)
    );
}
