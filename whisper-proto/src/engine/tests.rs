//! Single-engine scenarios: craft bytes by hand, assert on the drained actions.

use super::*;
use crate::wire::codec::{G1Codec, ProtobufCodec};
use crate::wire::{Capabilities, DecodeError, Frame, Hello, magic};
use alloc::vec;
use alloc::vec::Vec;

const T0: Instant = Instant::ZERO;

fn engine(name: &'static str) -> Engine {
    Engine::new(NodeId::from_static(name), Config::default(), 7, T0).unwrap()
}

fn drain(e: &mut Engine) -> Vec<Action> {
    core::iter::from_fn(|| e.poll_action()).collect()
}

fn hello_from(name: &'static str) -> Vec<u8> {
    Frame::Hello(Hello {
        version: PROTOCOL_VERSION,
        capabilities: Capabilities::ALL,
        node_id: NodeId::from_static(name),
    })
    .to_bytes()
    .unwrap()
    .to_vec()
}

/// An engine with three identified peers on connections 1, 2 and 3.
fn with_three_peers() -> Engine {
    let mut e = engine("me");
    for (i, name) in [(1, "p1"), (2, "p2"), (3, "p3")] {
        e.handle_connected(T0, ConnId(i), Role::Acceptor, Identity::Hello)
            .unwrap();
        e.handle_bytes(T0, ConnId(i), &hello_from(name)).unwrap();
    }
    drain(&mut e);
    e
}

fn closes(actions: &[Action]) -> Vec<ConnId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Close { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect()
}

/// Feeds `bytes` on connection 2 and checks: a typed error, a close of connection 2 only,
/// a FrameError event, the counter, and connections 1 and 3 still served.
fn assert_isolated_close(bytes: &[u8], check: impl Fn(&ConnError) -> bool) {
    let mut e = with_three_peers();
    let err = e.handle_bytes(T0, ConnId(2), bytes).unwrap_err();
    assert!(check(&err), "unexpected error {err:?}");
    let actions = drain(&mut e);
    assert_eq!(closes(&actions), vec![ConnId(2)]);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Emit(Event::FrameError {
            conn: ConnId(2),
            error: InputError::Closed(closed),
            ..
        }) if *closed == err
    )));
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Emit(Event::PeerDown {
            conn: ConnId(2),
            ..
        })
    )));
    assert_eq!(e.stats().frame_errors, 1);
    assert_eq!(e.stats().peers, 2);
    assert!(e.peer(ConnId(2)).is_none());
    // Later bytes for the closed connection are ignored, not errors.
    assert!(e.handle_bytes(T0, ConnId(2), &[0x47]).is_ok());
    // The others still answer a G2 probe.
    for c in [1, 3] {
        let probe = Frame::Digest(Digest::probe(5)).to_bytes().unwrap();
        e.handle_bytes(T0, ConnId(c), &probe).unwrap();
        let out = drain(&mut e);
        assert!(matches!(
            out.as_slice(),
            [Action::Send { conn, .. }] if *conn == ConnId(c)
        ));
    }
}

#[test]
fn hello_handshake_brings_peer_up() {
    let mut e = engine("me");
    e.handle_connected(T0, ConnId(9), Role::Dialer, Identity::Hello)
        .unwrap();
    let out = drain(&mut e);
    let [Action::Send { conn, bytes }] = out.as_slice() else {
        panic!("expected one HELLO, got {out:?}");
    };
    assert_eq!(*conn, ConnId(9));
    assert_eq!(&bytes[..2], &magic::HELLO.to_be_bytes());
    e.handle_bytes(T0, ConnId(9), &hello_from("peer")).unwrap();
    let out = drain(&mut e);
    assert!(matches!(
        out.as_slice(),
        [Action::Emit(Event::PeerUp {
            conn: ConnId(9),
            ..
        })]
    ));
    assert_eq!(e.peer(ConnId(9)), Some(&NodeId::from_static("peer")));
}

#[test]
fn transport_identity_skips_hello() {
    let mut e = engine("me");
    let peer = NodeId::from_static("go-peer");
    e.handle_connected(
        T0,
        ConnId(1),
        Role::Dialer,
        Identity::Transport {
            peer: peer.clone(),
            capabilities: Capabilities::NONE,
        },
    )
    .unwrap();
    let out = drain(&mut e);
    assert!(matches!(
        out.as_slice(),
        [Action::Emit(Event::PeerUp { .. })]
    ));
    // A reference peer's first frame is accepted at once.
    e.handle_bytes(T0, ConnId(1), &[0x47, 0x31, 0, 0, 0, 0])
        .unwrap();
    assert_eq!(e.stats().frame_errors, 0);
}

#[test]
fn unknown_magic_closes_only_that_connection() {
    assert_isolated_close(&[0x12, 0x34, 0, 0], |e| {
        matches!(e, ConnError::Decode(DecodeError::UnknownMagic(0x1234)))
    });
}

#[test]
fn oversized_length_closes_before_buffering() {
    // G1 claiming 1 MiB + 1: refused on the header, no body needed.
    let mut bytes = vec![0x47, 0x31];
    bytes.extend_from_slice(&(crate::wire::MIB + 1).to_be_bytes());
    assert_isolated_close(&bytes, |e| {
        matches!(
            e,
            ConnError::Decode(DecodeError::Oversized { magic: 0x4731, .. })
        )
    });
}

#[test]
fn truncated_hello_body_closes() {
    // HELLO with len 8 but an idLen of 9: the id runs past the frame.
    let bytes = [0x47, 0x48, 0, 0, 0, 8, 1, 0, 0, 0, 0, 9, b'a', b'b'];
    let mut e = engine("me");
    e.handle_connected(T0, ConnId(1), Role::Acceptor, Identity::Hello)
        .unwrap();
    drain(&mut e);
    let err = e.handle_bytes(T0, ConnId(1), &bytes).unwrap_err();
    assert_eq!(err, ConnError::Decode(DecodeError::MalformedHello));
    assert_eq!(closes(&drain(&mut e)), vec![ConnId(1)]);
}

#[test]
fn stream_ending_mid_frame_is_a_truncation_error() {
    let mut e = with_three_peers();
    // Half a G2 probe, then EOF.
    e.handle_bytes(T0, ConnId(2), &[0x47, 0x32, 0, 0, 0])
        .unwrap();
    e.handle_disconnected(T0, ConnId(2));
    let out = drain(&mut e);
    assert!(out.iter().any(|a| matches!(
        a,
        Action::Emit(Event::FrameError {
            error: InputError::Closed(ConnError::Decode(DecodeError::Truncated {
                needed: 12,
                got: 5
            })),
            ..
        })
    )));
    assert_eq!(e.stats().frame_errors, 1);
    assert_eq!(e.stats().peers, 2);
}

#[test]
fn pull_with_empty_topic_closes() {
    // topicLen 0 reads as a reconcile length; since = 0 makes it 0: invalid.
    let mut bytes = vec![0x47, 0x34, 0x00];
    bytes.extend_from_slice(&0i64.to_be_bytes());
    bytes.extend_from_slice(&1024u32.to_be_bytes());
    assert_isolated_close(&bytes, |e| {
        matches!(
            e,
            ConnError::Decode(DecodeError::BadLength {
                magic: 0x4734,
                len: 0
            })
        )
    });
    // With a real timestamp the same mistake reads as an oversized reconcile length.
    let mut bytes = vec![0x47, 0x34, 0x00];
    bytes.extend_from_slice(&1_700_000_000_000_000_000i64.to_be_bytes());
    bytes.extend_from_slice(&0u32.to_be_bytes());
    assert_isolated_close(&bytes, |e| {
        matches!(
            e,
            ConnError::Decode(DecodeError::Oversized { magic: 0x4734, .. })
        )
    });
}

#[test]
fn frame_before_hello_closes() {
    let mut e = engine("me");
    for c in 1..=2 {
        e.handle_connected(T0, ConnId(c), Role::Acceptor, Identity::Hello)
            .unwrap();
    }
    drain(&mut e);
    let probe = Frame::Digest(Digest::probe(1)).to_bytes().unwrap();
    let err = e.handle_bytes(T0, ConnId(1), &probe).unwrap_err();
    assert_eq!(
        err,
        ConnError::FrameBeforeHello {
            magic: magic::DIGEST
        }
    );
    assert_eq!(closes(&drain(&mut e)), vec![ConnId(1)]);
    // Connection 2 still completes its handshake.
    e.handle_bytes(T0, ConnId(2), &hello_from("p2")).unwrap();
    assert_eq!(e.peer(ConnId(2)), Some(&NodeId::from_static("p2")));
}

#[test]
fn duplicate_hello_self_and_version_zero_close() {
    assert_isolated_close(&hello_from("p9"), |e| *e == ConnError::DuplicateHello);
    let mut e = engine("me");
    e.handle_connected(T0, ConnId(1), Role::Acceptor, Identity::Hello)
        .unwrap();
    assert_eq!(
        e.handle_bytes(T0, ConnId(1), &hello_from("me")),
        Err(ConnError::SelfConnection)
    );
    let mut v0 = hello_from("x");
    v0[6] = 0;
    e.handle_connected(T0, ConnId(2), Role::Acceptor, Identity::Hello)
        .unwrap();
    assert_eq!(
        e.handle_bytes(T0, ConnId(2), &v0),
        Err(ConnError::UnsupportedVersion(0))
    );
}

#[test]
fn digest_probe_is_answered_and_replies_are_not() {
    let mut e = with_three_peers();
    let probe = Frame::Digest(Digest::probe(0xABCD)).to_bytes().unwrap();
    e.handle_bytes(T0, ConnId(1), &probe).unwrap();
    let out = drain(&mut e);
    let [Action::Send { bytes, .. }] = out.as_slice() else {
        panic!("{out:?}");
    };
    // No store: fingerprint 0, no match, reply flag set.
    assert_eq!(
        bytes.as_ref(),
        &[0x47, 0x32, 0x80, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(e.peer_fingerprint(ConnId(1)), Some(0xABCD));
    // A reply is never answered.
    let reply = Frame::Digest(Digest::reply(5, 0)).to_bytes().unwrap();
    e.handle_bytes(T0, ConnId(1), &reply).unwrap();
    assert!(drain(&mut e).is_empty());
    // While our probe is out, a flagless G2 (a Go peer's reply) is not answered either.
    e.probe_digest(T0, ConnId(3)).unwrap();
    assert_eq!(drain(&mut e).len(), 1);
    let go_reply = [0x47, 0x32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    e.handle_bytes(T0, ConnId(3), &go_reply).unwrap();
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.peer_fingerprint(ConnId(3)), Some(9));
}

#[test]
fn keepalive_hello_timeout_and_idle_timeout() {
    let mut e = engine("me");
    e.handle_connected(T0, ConnId(1), Role::Dialer, Identity::Hello)
        .unwrap();
    e.handle_connected(T0, ConnId(2), Role::Dialer, Identity::Hello)
        .unwrap();
    drain(&mut e);
    e.handle_bytes(T0, ConnId(2), &hello_from("p2")).unwrap();
    drain(&mut e);
    // Connection 1 never says HELLO: closed at 10 s.
    let t = e.poll_timeout().unwrap();
    assert_eq!(t, Instant::from_secs(10));
    e.handle_timeout(t);
    let out = drain(&mut e);
    assert!(matches!(
        out.as_slice(),
        [Action::Close {
            conn: ConnId(1),
            reason: CloseReason::HelloTimeout
        }]
    ));
    // Connection 2 gets keepalives (27..=33 s after the last send) until the idle
    // timeout at 90 s with nothing received.
    let mut keepalives = 0;
    let mut closed_at = None;
    while let Some(t) = e.poll_timeout() {
        e.handle_timeout(t);
        for a in drain(&mut e) {
            match a {
                Action::Send { bytes, .. } => {
                    assert_eq!(bytes.as_ref(), &[0x47, 0x31, 0, 0, 0, 0]);
                    keepalives += 1;
                }
                Action::Close { reason, .. } => {
                    assert_eq!(reason, CloseReason::IdleTimeout);
                    closed_at = Some(t);
                }
                _ => {}
            }
        }
    }
    // Sends at t1 ∈ [27, 33] s, t2 ∈ [54, 66] s, t3 ∈ [81, 99] s: two or three before 90 s.
    assert!((2..=3).contains(&keepalives), "{keepalives} keepalives");
    assert_eq!(closed_at, Some(Instant::from_secs(90)));
    assert_eq!(e.stats().timeouts, 2);
    assert_eq!(e.poll_timeout(), None);
}

#[test]
fn custom_kinds_register_and_deliver() {
    let mut e = with_three_peers();
    for m in magic::BUILTIN {
        assert_eq!(e.register_frame_kind(m, 10), Err(RegisterError::Builtin(m)));
    }
    e.register_frame_kind(0x5801, 4).unwrap();
    assert_eq!(
        e.register_frame_kind(0x5801, 4),
        Err(RegisterError::Duplicate(0x5801))
    );
    e.handle_bytes(T0, ConnId(1), &[0x58, 0x01, 0, 0, 0, 2, b'h', b'i'])
        .unwrap();
    let out = drain(&mut e);
    assert!(matches!(
        out.as_slice(),
        [Action::Emit(Event::CustomFrame { magic: 0x5801, body, .. })] if body.as_ref() == b"hi"
    ));
    assert_eq!(
        e.send_custom(T0, ConnId(1), 0x5801, Bytes::from_static(b"toolong")),
        Err(CommandError::TooLarge)
    );
    // Over its cap on the way in: closed.
    assert!(
        e.handle_bytes(T0, ConnId(3), &[0x58, 0x01, 0, 0, 0, 5])
            .is_err()
    );
}

#[test]
fn connection_table_is_bounded() {
    let config = Config {
        max_connections: 2,
        ..Config::default()
    };
    let mut e = Engine::new(NodeId::from_static("me"), config, 1, T0).unwrap();
    for c in 0..2 {
        e.handle_connected(T0, ConnId(c), Role::Acceptor, Identity::Hello)
            .unwrap();
    }
    assert_eq!(
        e.handle_connected(T0, ConnId(5), Role::Acceptor, Identity::Hello),
        Err(CommandError::TooManyConnections)
    );
    assert_eq!(
        e.handle_connected(T0, ConnId(1), Role::Acceptor, Identity::Hello),
        Err(CommandError::DuplicateConnection(ConnId(1)))
    );
    assert_eq!(e.stats().connections_refused, 1);
}

#[test]
fn same_seed_same_actions() {
    fn run(seed: u64) -> Vec<Action> {
        let mut e = Engine::new(NodeId::from_static("me"), Config::default(), seed, T0).unwrap();
        let mut log = Vec::new();
        for c in 0..5 {
            e.handle_connected(T0, ConnId(c), Role::Dialer, Identity::Hello)
                .unwrap();
            e.handle_bytes(
                T0,
                ConnId(c),
                &hello_from(["a", "b", "c", "d", "e"][c as usize]),
            )
            .unwrap();
        }
        log.extend(drain(&mut e));
        for _ in 0..20 {
            let Some(t) = e.poll_timeout() else { break };
            e.handle_timeout(t);
            log.extend(drain(&mut e).into_iter().map(|a| match a {
                Action::Send { conn, bytes } => Action::Send {
                    conn: ConnId(conn.0 + (t.as_micros() << 8)),
                    bytes,
                },
                other => other,
            }));
        }
        log
    }
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4), "keepalive jitter comes from the seed");
}

#[test]
fn time_going_backwards_is_clamped() {
    let mut e = engine("me");
    e.handle_timeout(Instant::from_secs(100));
    e.handle_connected(
        Instant::from_secs(5),
        ConnId(1),
        Role::Dialer,
        Identity::Hello,
    )
    .unwrap();
    // The HELLO timeout counts from the clamped time, 100 s.
    drain(&mut e);
    let deadlines: Vec<_> = e.timers.iter().map(|(t, _, _)| *t).collect();
    assert!(deadlines.iter().all(|t| *t > Instant::from_secs(100)));
}

// ---- G1 exchange --------------------------------------------------------------------

fn stateful(name: &'static str) -> Engine {
    let mut e = engine(name);
    let store = crate::store::MemStore::new(NodeId::from_static(name), [1; 32]);
    e.register_topic("state", crate::topic::TopicConfig::stateful(store))
        .unwrap();
    e.put(T0, "state", b"k", b"v").unwrap();
    e
}

fn g1(body: &[u8]) -> Vec<u8> {
    Frame::Exchange(Exchange {
        body: Bytes::copy_from_slice(body),
    })
    .to_bytes()
    .unwrap()
    .to_vec()
}

fn sends(actions: &[Action]) -> Vec<Frame> {
    let cfg = WireConfig::default();
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { bytes, .. } => Frame::parse(bytes, &cfg).ok(),
            _ => None,
        })
        .collect()
}

#[test]
fn undecodable_g1_request_gets_an_empty_reply_and_is_counted() {
    let mut e = stateful("me");
    e.handle_connected(T0, ConnId(1), Role::Acceptor, Identity::Hello)
        .unwrap();
    e.handle_bytes(T0, ConnId(1), &hello_from("peer")).unwrap();
    drain(&mut e);
    // 0xff is not a protobuf key: the body does not decode.
    e.handle_bytes(T0, ConnId(1), &g1(&[0xff, 0xff])).unwrap();
    let out = drain(&mut e);
    let frames = sends(&out);
    let [Frame::Exchange(reply)] = frames.as_slice() else {
        panic!("expected one G1 reply, got {out:?}");
    };
    assert!(!reply.is_keepalive(), "a real (non-keepalive) reply");
    let body = G1Codec::decode(&ProtobufCodec, reply.body.clone()).unwrap();
    assert!(body.records.is_empty());
    assert_eq!(
        body.meta.cache_fingerprint,
        e.store("state").unwrap().fingerprint()
    );
    assert!(out.iter().any(|a| matches!(
        a,
        Action::Emit(Event::FrameError {
            error: InputError::Dropped(MessageError::Body(_)),
            ..
        })
    )));
    assert!(closes(&out).is_empty());
    assert_eq!(e.stats().bodies_rejected, 1);
    assert_eq!(e.stats().frame_errors, 0);
    assert_eq!(e.peer(ConnId(1)), Some(&NodeId::from_static("peer")));
}

#[test]
fn undecodable_g1_reply_ends_the_exchange_and_the_round() {
    let mut e = stateful("me");
    e.handle_connected(T0, ConnId(1), Role::Dialer, Identity::Hello)
        .unwrap();
    e.handle_bytes(T0, ConnId(1), &hello_from("peer")).unwrap();
    // PeerUp starts a round: a G2 probe with our fingerprint.
    let frames = sends(&drain(&mut e));
    assert!(matches!(frames.as_slice(), [_, Frame::Digest(d)] if d.flags == 0));
    let mismatch = Frame::Digest(Digest::reply(9, 0)).to_bytes().unwrap();
    e.handle_bytes(T0, ConnId(1), &mismatch).unwrap();
    let frames = sends(&drain(&mut e));
    assert!(matches!(frames.as_slice(), [Frame::Exchange(_)]));
    // The reply is garbage: counted, and the round ends (next one at about +10 s).
    e.handle_bytes(T0, ConnId(1), &g1(&[0xff])).unwrap();
    let out = drain(&mut e);
    assert!(sends(&out).is_empty());
    assert_eq!(e.stats().bodies_rejected, 1);
    let timers: Vec<_> = e
        .timers
        .iter()
        .filter(|(_, c, t)| *c == Some(ConnId(1)) && matches!(t, Timer::Gossip | Timer::Reply))
        .map(|(at, _, t)| (*at, *t))
        .collect();
    // The base interval (10 s) with the adaptive interval's ±15 % jitter.
    assert!(
        matches!(timers.as_slice(), [(at, Timer::Gossip)]
            if (Instant::from_millis(8_500)..Instant::from_millis(11_500)).contains(at)),
        "{timers:?}"
    );
}

#[test]
fn unanswered_request_closes_at_the_exchange_timeout() {
    let mut e = stateful("me");
    e.handle_connected(T0, ConnId(1), Role::Dialer, Identity::Hello)
        .unwrap();
    e.handle_bytes(T0, ConnId(1), &hello_from("peer")).unwrap();
    drain(&mut e);
    // Keep the connection alive with keepalives from the peer; never answer the probe.
    let mut t;
    let closed = loop {
        t = e.poll_timeout().unwrap();
        e.handle_timeout(t);
        let out = drain(&mut e);
        if let Some(Action::Close { reason, .. }) =
            out.iter().find(|a| matches!(a, Action::Close { .. }))
        {
            break reason.clone();
        }
        e.handle_bytes(t, ConnId(1), &[0x47, 0x31, 0, 0, 0, 0])
            .unwrap();
    };
    assert_eq!(closed, CloseReason::ExchangeTimeout);
    assert_eq!(t, Instant::from_secs(30));
}

#[test]
fn no_stateful_topic_means_no_rounds() {
    let mut e = engine("me");
    e.handle_connected(T0, ConnId(1), Role::Dialer, Identity::Hello)
        .unwrap();
    e.handle_bytes(T0, ConnId(1), &hello_from("peer")).unwrap();
    assert_eq!(sends(&drain(&mut e)).len(), 1, "only our HELLO");
    assert_eq!(e.stats().rounds_started, 0);
    // Registering one starts a round at once.
    let store = crate::store::MemStore::new(NodeId::from_static("me"), [1; 32]);
    e.register_topic("state", crate::topic::TopicConfig::stateful(store))
        .unwrap();
    assert_eq!(e.poll_timeout(), Some(T0));
    e.handle_timeout(T0);
    assert_eq!(e.stats().rounds_started, 1);
}
