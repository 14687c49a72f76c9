//! The real-socket scenarios, each written once for any mix of adapters.
//!
//! Every wait is bounded (a few seconds); callers wrap a whole scenario in
//! [`with_deadline`](super::with_deadline) as well.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use whisper_proto::topic::TopicConfig;
use whisper_proto::{Bytes, Event, MemStore, NodeId, Role};

use super::{KIND, Kind, Spec, TestNode, start, wait_event, wait_until};

/// How long any single expectation may take.
const WAIT: Duration = Duration::from_secs(5);

fn name(kind: Kind) -> &'static str {
    match kind {
        Kind::Tokio => "tokio",
        Kind::Smol => "smol",
        Kind::Mio => "mio",
    }
}

fn ids(nodes: &[TestNode]) -> Vec<NodeId> {
    nodes.iter().map(|n| n.id()).collect()
}

fn wait_peers(node: &TestNode, want: &[NodeId]) {
    let want: BTreeSet<NodeId> = want.iter().cloned().collect();
    let mut last = Vec::new();
    let ok = wait_until(WAIT, || {
        last = node.peers();
        last.iter().cloned().collect::<BTreeSet<_>>() == want && last.len() == want.len()
    });
    assert!(
        ok,
        "{} ({:?}) peers {last:?}, want {want:?}",
        node.id(),
        node.kind()
    );
}

fn wait_custom(node: &mut TestNode, from: &NodeId, body: &[u8]) {
    let got = wait_event(node, WAIT, |e| {
        matches!(e, Event::CustomFrame { peer, magic, body: b, .. }
            if peer == from && *magic == KIND && b.as_ref() == body)
    });
    assert!(
        got.is_some(),
        "{} never got {body:?} from {from}",
        node.id()
    );
}

/// Starts nodes of `kinds` in a full mesh (each dials every earlier one) and waits
/// until every node has every other as a peer.
pub fn mesh(kinds: &[Kind]) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = Vec::new();
    for (i, &kind) in kinds.iter().enumerate() {
        let mut spec = Spec::new(&format!("{}-{i}", name(kind)));
        for n in &nodes {
            spec = spec.peer(n.addr());
        }
        nodes.push(start(kind, &spec));
    }
    let all = ids(&nodes);
    for (i, n) in nodes.iter().enumerate() {
        let others: Vec<NodeId> = all
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, id)| id.clone())
            .collect();
        wait_peers(n, &others);
    }
    nodes
}

/// Nodes connect and see each other (`PeerUp`, the peer list, and through a closure
/// run on the engine); custom frames sent through the handle arrive, point to point
/// and broadcast.
pub fn connect_and_exchange(kinds: &[Kind]) {
    let mut nodes = mesh(kinds);
    let all = ids(&nodes);
    let n = nodes.len();
    for i in 0..n {
        let mut want: BTreeSet<NodeId> = all.iter().filter(|id| **id != all[i]).cloned().collect();
        while !want.is_empty() {
            let event = wait_event(&mut nodes[i], WAIT, |e| matches!(e, Event::PeerUp { .. }));
            match event {
                Some(Event::PeerUp { peer, .. }) => {
                    want.remove(&peer);
                }
                _ => panic!("{}: no PeerUp for {want:?}", all[i]),
            }
        }
        assert_eq!(nodes[i].engine_peer_count(), n - 1);
    }
    for (i, node) in nodes.iter().enumerate() {
        for (j, to) in all.iter().enumerate().filter(|(j, _)| *j != i) {
            let body = Bytes::from(format!("{i}->{j}"));
            node.send_custom(to, body).expect("send_custom");
        }
    }
    for j in 0..n {
        // Frames from different senders may arrive in any order.
        let mut want: BTreeSet<(NodeId, Vec<u8>)> = (0..n)
            .filter(|&i| i != j)
            .map(|i| (all[i].clone(), format!("{i}->{j}").into_bytes()))
            .collect();
        while !want.is_empty() {
            match wait_event(&mut nodes[j], WAIT, |e| {
                matches!(e, Event::CustomFrame { .. })
            }) {
                Some(Event::CustomFrame {
                    peer, magic, body, ..
                }) => {
                    assert_eq!(magic, KIND);
                    assert!(want.remove(&(peer, body.to_vec())), "unexpected frame");
                }
                _ => panic!("{} never got {want:?}", all[j]),
            }
        }
    }
    let sent = nodes[0]
        .broadcast_custom(Bytes::from_static(b"to all"))
        .expect("broadcast");
    assert_eq!(sent, n - 1);
    for node in nodes.iter_mut().skip(1) {
        wait_custom(node, &all[0], b"to all");
    }
    for node in nodes {
        assert_eq!(node.stats().frame_errors, 0);
        node.shutdown();
    }
}

/// A node is stopped and restarted on the same address; the node that has it
/// configured as a peer reconnects on its own, and counts it.
pub fn reconnect(dialer: Kind, restarted: Kind) {
    let b = start(restarted, &Spec::new("b"));
    let b_addr = b.addr();
    let b_id = b.id();
    let a = start(dialer, &Spec::new("a").peer(b_addr));
    wait_peers(&a, std::slice::from_ref(&b_id));
    wait_peers(&b, &[a.id()]);
    b.shutdown();
    wait_peers(&a, &[]);
    // While b is down the redials fail.
    assert!(wait_until(WAIT, || a.driver_stats().dial_failures >= 1));
    let b = start(restarted, &Spec::new("b").listen(b_addr));
    wait_peers(&a, &[b_id]);
    wait_peers(&b, &[a.id()]);
    let stats = a.driver_stats();
    assert_eq!(stats.reconnects, 1, "{stats:?}");
    assert!(stats.dials >= 3, "{stats:?}");
    a.shutdown();
    b.shutdown();
}

/// A raw TCP client that sends garbage is disconnected (it reads EOF), counted once,
/// while the node keeps serving its real peer.
pub fn garbage_is_closed(kind: Kind, peer_kind: Kind) {
    let mut server = start(kind, &Spec::new("server"));
    let mut client = start(peer_kind, &Spec::new("client").peer(server.addr()));
    wait_peers(&server, &[client.id()]);
    let mut raw = TcpStream::connect(server.addr()).expect("connect raw");
    raw.set_read_timeout(Some(WAIT)).expect("timeout");
    raw.write_all(&[0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4])
        .expect("write garbage");
    let mut got = Vec::new();
    let read = raw.read_to_end(&mut got);
    assert!(read.is_ok(), "expected EOF, got {read:?}");
    assert!(wait_until(WAIT, || server.stats().frame_errors == 1));
    // Still serving the real peer, both ways.
    server
        .send_custom(&client.id(), Bytes::from_static(b"still here"))
        .expect("send");
    wait_custom(&mut client, &server.id(), b"still here");
    client
        .send_custom(&server.id(), Bytes::from_static(b"me too"))
        .expect("send");
    wait_custom(&mut server, &client.id(), b"me too");
    wait_peers(&server, &[client.id()]);
    assert_eq!(server.stats().frame_errors, 1);
    assert_eq!(client.stats().frame_errors, 0);
    server.shutdown();
    client.shutdown();
}

/// Graceful shutdown flushes what was queued, closes every connection (peers see
/// `PeerDown`, a raw client reads EOF) and runs the shutdown hook.
pub fn shutdown_closes(kind: Kind, peer_kind: Kind) {
    let (tx, rx) = mpsc::channel();
    let mut spec = Spec::new("leaving");
    spec.on_shutdown = Some(tx);
    let leaving = start(kind, &spec);
    let leaving_id = leaving.id();
    let mut staying = start(peer_kind, &Spec::new("staying").peer(leaving.addr()));
    wait_peers(&leaving, &[staying.id()]);
    let mut raw = TcpStream::connect(leaving.addr()).expect("connect raw");
    raw.set_read_timeout(Some(WAIT)).expect("timeout");
    assert!(wait_until(WAIT, || leaving.stats().connections == 2));
    leaving
        .send_custom(&staying.id(), Bytes::from_static(b"bye"))
        .expect("send");
    leaving.shutdown();
    assert_eq!(
        rx.recv_timeout(WAIT).ok(),
        Some(leaving_id.clone()),
        "hook ran"
    );
    wait_custom(&mut staying, &leaving_id, b"bye");
    let down = wait_event(
        &mut staying,
        WAIT,
        |e| matches!(e, Event::PeerDown { peer, .. } if *peer == leaving_id),
    );
    assert!(down.is_some(), "no PeerDown");
    let mut got = Vec::new();
    let read = raw.read_to_end(&mut got);
    assert!(read.is_ok(), "expected EOF, got {read:?}");
    wait_peers(&staying, &[]);
    staying.shutdown();
}

/// Two nodes configured with each other: whoever dials first, they settle on exactly
/// one connection, the one dialed by the higher id, and keep it.
pub fn mutual_dial_settles(a_kind: Kind, b_kind: Kind) {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
    };
    let (a_addr, b_addr) = (free(), free());
    let a = start(a_kind, &Spec::new("a").listen(a_addr).peer(b_addr));
    let b = start(b_kind, &Spec::new("b").listen(b_addr).peer(a_addr));
    wait_peers(&a, &[b.id()]);
    wait_peers(&b, &[a.id()]);
    assert!(wait_until(WAIT, || a.stats().connections == 1
        && b.stats().connections == 1));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(a.stats().connections, 1);
    assert_eq!(b.stats().connections, 1);
    // Both dial at start (neither knows the other's id yet), so the duplicate is
    // always resolved by the tie-break: the connection "b" (the higher id) dialed stays.
    assert_eq!(a.peer_roles(), vec![(b.id(), Role::Acceptor)]);
    assert_eq!(b.peer_roles(), vec![(a.id(), Role::Dialer)]);
    let breaks = a.driver_stats().tie_breaks + b.driver_stats().tie_breaks;
    assert!(breaks >= 1, "tie-breaks {breaks}");
    a.shutdown();
    b.shutdown();
}

/// A peer that completes the HELLO and then never reads: the node's write queue for it
/// passes its bound, the node closes that connection (`slow_closes == 1`) and keeps
/// serving its other peer. Memory stays bounded by the queue limit.
pub fn slow_peer_is_closed(kind: Kind, peer_kind: Kind) {
    use whisper_proto::wire::{Capabilities, Frame, Hello, PROTOCOL_VERSION};

    let mut spec = Spec::new("server");
    spec.driver.write_queue_limit = 256 * 1024;
    let server = start(kind, &spec);
    let mut good = start(peer_kind, &Spec::new("good").peer(server.addr()));
    wait_peers(&server, &[good.id()]);

    let sink_id = NodeId::new(b"sink".to_vec()).expect("id");
    let hello = Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        capabilities: Capabilities::NONE,
        node_id: sink_id.clone(),
    });
    let mut raw = TcpStream::connect(server.addr()).expect("connect raw");
    raw.write_all(&hello.to_bytes().expect("hello encodes"))
        .expect("write hello");
    wait_peers(&server, &[good.id(), sink_id.clone()]);

    // The sink never reads: kernel buffers fill, then the driver's queue.
    let body = Bytes::from(vec![7u8; 60 * 1024]);
    let mut sent = 0usize;
    while server.send_custom(&sink_id, body.clone()).is_ok() {
        sent += 1;
        assert!(sent < 5_000, "never closed after {sent} frames");
    }
    // At least the queue's worth (256 KiB / 60 KiB) was accepted before the close.
    assert!(sent > 4, "closed after only {sent} frames");
    assert!(wait_until(WAIT, || server.driver_stats().slow_closes == 1));
    wait_peers(&server, &[good.id()]);
    server
        .send_custom(&good.id(), Bytes::from_static(b"unaffected"))
        .expect("send");
    wait_custom(&mut good, &server.id(), b"unaffected");
    assert_eq!(server.stats().frame_errors, 0);
    drop(raw);
    server.shutdown();
    good.shutdown();
}

// ---- topics through the typed handle methods ----------------------------------------------

/// The BroadcastOnly topic the topic scenarios publish on.
pub const CHAT: &str = "chat";
/// The StatefulMerge topic the topic scenarios write to.
pub const KV: &str = "kv";
/// The RequestResponse topic the query scenario asks.
pub const ASK: &str = "ask";
/// The key every node's [`MemStore`] hashes with (fingerprints compare across nodes).
pub const STORE_KEY: [u8; 32] = [0x5a; 32];

/// Registers [`CHAT`] (subscribed) and [`KV`] (a [`MemStore`]) on `node`.
pub fn register_topics(node: &mut TestNode) {
    node.register_topic(CHAT, TopicConfig::broadcast())
        .expect("register chat");
    node.subscribe(CHAT).expect("subscribe chat");
    node.register_topic(
        KV,
        TopicConfig::stateful(MemStore::new(node.id(), STORE_KEY)),
    )
    .expect("register kv");
}

/// `(record count, fingerprint)` of `node`'s [`KV`] store.
pub fn kv_state(node: &TestNode) -> (usize, u64) {
    node.snapshot()
        .stores
        .iter()
        .find(|(t, _, _)| t == KV)
        .map(|(_, n, f)| (*n, *f))
        .unwrap_or_default()
}

/// Waits until every node's [`KV`] store holds `records` records with one fingerprint.
pub fn wait_converged(nodes: &[TestNode], records: usize, limit: Duration) {
    let mut last = Vec::new();
    let ok = wait_until(limit, || {
        last = nodes.iter().map(kv_state).collect();
        last.iter().all(|s| s.0 == records) && last.windows(2).all(|w| w[0].1 == w[1].1)
    });
    assert!(ok, "stores did not converge on {records} records: {last:?}");
}

/// A message published on one node reaches every node (its publisher included) once.
pub fn broadcast_reaches_all(kinds: &[Kind]) {
    let mut nodes = mesh(kinds);
    for n in &mut nodes {
        register_topics(n);
    }
    let all = ids(&nodes);
    let id = nodes[0]
        .publish(CHAT, Bytes::from_static(b"hello all"))
        .expect("publish");
    for (i, node) in nodes.iter_mut().enumerate() {
        let got = node.next_message(WAIT);
        match got {
            Some(Event::Message {
                topic,
                from,
                payload,
                id: got_id,
                ..
            }) => {
                assert_eq!(topic, CHAT);
                assert_eq!(from, all[0]);
                assert_eq!(payload.as_ref(), b"hello all");
                assert_eq!(got_id, id);
            }
            other => panic!("{}: no message: {other:?}", all[i]),
        }
    }
    // Exactly once.
    std::thread::sleep(Duration::from_millis(100));
    for node in &mut nodes {
        assert!(node.next_message(Duration::ZERO).is_none());
    }
    // The rumor went over the cube with ACKs: every receiver ACKed its one frame, so
    // the ACKs received across the cluster equal the rumor frames sent (N − 1).
    let count = |nodes: &[TestNode]| {
        nodes.iter().fold((0, 0), |(s, a), n| {
            let r = n.stats().rumor;
            (s + r.sent, a + r.acks_received)
        })
    };
    let until = std::time::Instant::now() + WAIT;
    let (mut sent, mut acked) = count(&nodes);
    while acked < sent && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
        (sent, acked) = count(&nodes);
    }
    assert_eq!(sent, nodes.len() as u64 - 1, "N - 1 rumor frames");
    assert_eq!(acked, sent, "every rumor frame was ACKed");
    for node in nodes {
        node.shutdown();
    }
}

/// `records` records written on random nodes converge on every node.
pub fn records_converge(kinds: &[Kind], records: usize) {
    let mut nodes = mesh(kinds);
    for n in &mut nodes {
        register_topics(n);
    }
    for i in 0..records {
        let node = &nodes[(i * 7 + 3) % nodes.len()];
        node.put(
            KV,
            format!("key-{i}").as_bytes(),
            format!("value-{i}").as_bytes(),
        )
        .expect("put");
    }
    wait_converged(&nodes, records, Duration::from_secs(15));
    for node in nodes {
        node.shutdown();
    }
}

/// A query reaches every peer serving the topic and its replies come back.
pub fn query_gets_replies(kinds: &[Kind]) {
    let nodes = mesh(kinds);
    for (i, n) in nodes.iter().enumerate().skip(1) {
        let handler = move |_: &NodeId, _: &str, payload: &[u8]| {
            Some(Bytes::from(format!(
                "{i}:{}",
                String::from_utf8_lossy(payload)
            )))
        };
        n.register_topic(ASK, TopicConfig::request_response(handler))
            .expect("register ask");
    }
    // The asker registers too (it must know the topic); its handler is never asked.
    nodes[0]
        .register_topic(
            ASK,
            TopicConfig::request_response(|_: &NodeId, _: &str, _: &[u8]| None),
        )
        .expect("register ask");
    // Announcements travel after registration: retry until every responder is known.
    let want: BTreeSet<String> = (1..nodes.len()).map(|i| format!("{i}:ping")).collect();
    let mut last = None;
    let ok = wait_until(WAIT, || {
        match nodes[0].query(ASK, Bytes::from_static(b"ping"), Duration::from_secs(2)) {
            Ok(outcome) => {
                let got: BTreeSet<String> = outcome
                    .replies
                    .iter()
                    .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
                    .collect();
                let done = got == want && !outcome.timed_out;
                last = Some(format!("{outcome:?}"));
                done
            }
            Err(e) => {
                last = Some(e.to_string());
                false
            }
        }
    });
    assert!(ok, "query never got every reply: {last:?}");
    for node in nodes {
        node.shutdown();
    }
}

/// A node is shut down (saving its delta watermarks), records are written while it is
/// down, and after a restart on the same address with the same id it catches up.
pub fn restart_catches_up(kinds: &[Kind], restarted: Kind) {
    let dir = std::env::temp_dir().join(format!(
        "whisper-restart-{}-{}",
        std::process::id(),
        name(restarted)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut nodes = mesh(kinds);
    for n in &mut nodes {
        register_topics(n);
    }
    let peers: Vec<_> = nodes.iter().map(|n| n.addr()).collect();
    let mut spec = Spec::new("late");
    spec.persist = Some(dir.clone());
    for &p in &peers {
        spec = spec.peer(p);
    }
    let mut late = start(restarted, &spec);
    register_topics(&mut late);
    for i in 0..100 {
        nodes[i % nodes.len()]
            .put(KV, format!("before-{i}").as_bytes(), b"1")
            .expect("put");
    }
    nodes.push(late);
    wait_converged(&nodes, 100, Duration::from_secs(10));
    let late = nodes.pop().expect("late");
    let addr = late.addr();
    late.shutdown();
    assert!(
        dir.join("delta.json").exists(),
        "no delta state saved in {dir:?}"
    );
    for i in 0..200 {
        nodes[i % nodes.len()]
            .put(KV, format!("during-{i}").as_bytes(), b"2")
            .expect("put");
    }
    let mut late = start(restarted, &spec.listen(addr));
    register_topics(&mut late);
    nodes.push(late);
    wait_converged(&nodes, 300, Duration::from_secs(10));
    for node in nodes {
        node.shutdown();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two nodes whose processes started an hour apart (the first one's clock says it has
/// been up for an hour) stamp records with the same Unix time and converge: before the
/// wall clock was Unix time, the younger node rejected the older one's records as an
/// hour in the future.
pub fn started_an_hour_apart(old: Kind, young: Kind) {
    let hour = Duration::from_secs(3600);
    let unix = whisper_proto::driver::Clock::new().unix_now();
    let mut spec = Spec::new("old");
    spec.clock = Some(whisper_proto::driver::Clock::with_unix_start(
        whisper_proto::Instant::ZERO + hour,
        unix,
    ));
    let mut first = start(old, &spec);
    let mut second = start(young, &Spec::new("young").peer(first.addr()));
    register_topics(&mut first);
    register_topics(&mut second);
    for i in 0..50 {
        first
            .put(KV, format!("old-{i}").as_bytes(), b"1")
            .expect("put");
        second
            .put(KV, format!("young-{i}").as_bytes(), b"2")
            .expect("put");
    }
    let nodes = vec![first, second];
    wait_converged(&nodes, 100, Duration::from_secs(10));
    for node in nodes {
        node.shutdown();
    }
}
