//! Flow control through the engine (issue 5): per-peer limits and cooldown, egress
//! priority, the overload queue, the backpressure signal and backoff, the CPU gate and
//! the RTT measurer. Time is injected; every scenario is step by step.

use whisper_proto::flow::token_bucket::RateLimitConfig;
use whisper_proto::wire::codec::{ExchangeBody, G1Codec, ProtobufCodec};
use whisper_proto::wire::{Capabilities, Digest, Exchange, Frame, WireConfig};
use whisper_proto::{
    Action, Bytes, Config, ConnId, Duration, Engine, Event, Identity, Instant, MemStore, NodeId,
    Pressure, PublishError, Role, TopicConfig,
};

const T0: Instant = Instant::ZERO;

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

fn quiet_config() -> Config {
    Config {
        keepalive_interval: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(100_000),
        ..Config::default()
    }
}

fn engine(name: &'static str, config: Config) -> Engine {
    Engine::new(NodeId::from_static(name), config, 7, T0).unwrap()
}

fn connect(e: &mut Engine, conn: u64, role: Role, peer: &'static str) {
    let identity = Identity::Transport {
        peer: NodeId::from_static(peer),
        capabilities: Capabilities::ALL,
    };
    e.handle_connected(T0, ConnId(conn), role, identity)
        .unwrap();
}

fn drain(e: &mut Engine) -> Vec<Action> {
    core::iter::from_fn(|| e.poll_action()).collect()
}

fn frames_to(actions: &[Action], to: ConnId) -> Vec<Frame> {
    let cfg = WireConfig::default();
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { conn, bytes } if *conn == to => Frame::parse(bytes, &cfg).ok(),
            _ => None,
        })
        .collect()
}

fn probes(n: usize) -> Vec<u8> {
    let one = Frame::Digest(Digest::probe(5)).to_bytes().unwrap();
    one.iter().copied().cycle().take(one.len() * n).collect()
}

fn g1(body: &ExchangeBody) -> Vec<u8> {
    let mut buf = bytes::BytesMut::new();
    ProtobufCodec.encode(body, &mut buf).unwrap();
    Frame::Exchange(Exchange { body: buf.freeze() })
        .to_bytes()
        .unwrap()
        .to_vec()
}

fn decode(frame: &Frame) -> Option<ExchangeBody> {
    match frame {
        Frame::Exchange(ex) if !ex.is_keepalive() => ProtobufCodec.decode(ex.body.clone()).ok(),
        _ => None,
    }
}

fn stateful(e: &mut Engine, name: &'static str) {
    let store = MemStore::new(NodeId::from_static(name), [1; 32]);
    e.register_topic("state", TopicConfig::stateful(store))
        .unwrap();
}

#[test]
fn peer_over_its_bucket_is_throttled_then_cooled_down_others_keep_being_served() {
    let mut e = engine("me", quiet_config());
    connect(&mut e, 1, Role::Acceptor, "noisy");
    connect(&mut e, 2, Role::Acceptor, "calm");
    drain(&mut e);
    // 1500 probes at once: the burst (500) is answered, 1000 are throttled, and the
    // 1000th violation starts the cooldown.
    e.handle_bytes(T0, ConnId(1), &probes(1500)).unwrap();
    let out = drain(&mut e);
    assert_eq!(frames_to(&out, ConnId(1)).len(), 500);
    assert!(out.iter().any(|a| matches!(a, Action::Emit(Event::PeerCooldown { conn: ConnId(1), until, .. }) if *until == T0 + Duration::from_secs(300))));
    assert!(e.peer_in_cooldown(&NodeId::from_static("noisy")));
    let s = e.flow_stats();
    assert_eq!(
        (s.rate.admitted, s.rate.throttled, s.dropped_inbound),
        (500, 1000, 1000)
    );
    // The other peer is served.
    e.handle_bytes(T0, ConnId(2), &probes(10)).unwrap();
    assert_eq!(frames_to(&drain(&mut e), ConnId(2)).len(), 10);
    // Ten seconds later the bucket has refilled, but the cooldown holds.
    e.handle_bytes(ms(10_000), ConnId(1), &probes(5)).unwrap();
    assert!(frames_to(&drain(&mut e), ConnId(1)).is_empty());
    assert_eq!(e.flow_stats().rate.refused_cooldown, 5);
    // After the cooldown the peer is served again.
    e.handle_bytes(ms(300_000), ConnId(1), &probes(5)).unwrap();
    assert_eq!(frames_to(&drain(&mut e), ConnId(1)).len(), 5);
    // Per-peer state goes with the connection.
    assert_eq!(e.flow_stats().rate.peers, 2);
    e.handle_disconnected(ms(300_000), ConnId(1));
    assert_eq!(e.flow_stats().rate.peers, 1);
}

#[test]
fn under_egress_saturation_priority_0_is_refused_and_priority_10_passes() {
    let config = Config {
        rate_limit: RateLimitConfig {
            egress_bytes_per_sec: 1000.0,
            egress_burst: 10_000.0,
            ..RateLimitConfig::default()
        },
        ..quiet_config()
    };
    let mut e = engine("me", config);
    e.register_topic("low", TopicConfig::broadcast()).unwrap();
    e.register_topic("high", TopicConfig::broadcast().with_priority(10))
        .unwrap();
    connect(&mut e, 1, Role::Acceptor, "peer");
    drain(&mut e);
    let payload = Bytes::from(vec![0u8; 3000]);
    e.publish(T0, "low", payload.clone()).unwrap();
    // ~6.9 KB left: a second low-priority send would dip into the reserved half.
    assert_eq!(
        e.publish(T0, "low", payload.clone()),
        Err(PublishError::Backpressure(Pressure::Egress))
    );
    e.publish(T0, "high", payload.clone()).unwrap();
    assert_eq!(frames_to(&drain(&mut e), ConnId(1)).len(), 2);
    assert_eq!(e.flow_stats().rate.egress_refused, 1);
    // Refill: 5 s at 1000 B/s restores enough headroom for priority 0.
    e.publish(ms(5_000), "low", payload).unwrap();
}

#[test]
fn publish_past_the_queue_threshold_is_backpressure_and_nothing_queued_is_lost() {
    let config = Config {
        rate_limit: RateLimitConfig {
            queue_threshold: 16,
            ..RateLimitConfig::default()
        },
        ..quiet_config()
    };
    let mut e = engine("me", config);
    e.register_topic("low", TopicConfig::broadcast()).unwrap();
    e.register_topic("high", TopicConfig::broadcast().with_priority(1))
        .unwrap();
    connect(&mut e, 1, Role::Acceptor, "peer");
    drain(&mut e);
    let mut accepted = 0;
    let err = loop {
        match e.publish(T0, "low", Bytes::from_static(b"m")) {
            Ok(_) => accepted += 1,
            Err(err) => break err,
        }
        assert!(accepted < 100);
    };
    assert_eq!(err, PublishError::Backpressure(Pressure::Queue));
    // Each publish queues its rumor frame and a RumorSent event: the threshold of 16
    // undrained actions is reached after 8 publishes.
    assert_eq!(accepted, 8);
    assert_eq!(e.flow_stats().queue_depth, 16);
    // A higher priority still goes out.
    e.publish(T0, "high", Bytes::from_static(b"h")).unwrap();
    let rumors = frames_to(&drain(&mut e), ConnId(1))
        .into_iter()
        .filter(|f| matches!(f, Frame::Rumor(_)))
        .count();
    assert_eq!(
        rumors,
        accepted + 1,
        "every accepted publish is still queued"
    );
    assert_eq!(e.flow_stats().rate.backpressure_refused, 1);
    e.publish(T0, "low", Bytes::from_static(b"m")).unwrap();
}

#[test]
fn responder_with_more_than_5_pending_exchanges_signals_backpressure() {
    let mut e = engine("resp", quiet_config());
    stateful(&mut e, "resp");
    e.put(T0, "state", b"k", b"v").unwrap();
    for c in 1..=7 {
        connect(
            &mut e,
            c,
            Role::Acceptor,
            ["a", "b", "c", "d", "e", "f", "g"][c as usize - 1],
        );
    }
    drain(&mut e);
    let request = g1(&ExchangeBody::default());
    // Six requests, none of the replies taken by the driver yet.
    for c in 1..=6 {
        e.handle_bytes(T0, ConnId(c), &request).unwrap();
    }
    assert_eq!(e.flow_stats().pending_exchanges, 6);
    assert!(e.flow_stats().backpressure);
    let out = drain(&mut e);
    let signals: Vec<bool> = (1..=6)
        .map(|c| {
            let f = frames_to(&out, ConnId(c));
            decode(&f[0]).unwrap().meta.backpressure_signal
        })
        .collect();
    assert_eq!(signals, [false, false, false, false, false, true]);
    assert!(out.iter().any(|a| matches!(
        a,
        Action::Emit(Event::Backpressure {
            overloaded: true,
            pending: 6
        })
    )));
    // Drained: the next reply carries no signal, and the exit is evented.
    e.handle_bytes(T0, ConnId(7), &request).unwrap();
    let out = drain(&mut e);
    assert!(
        !decode(&frames_to(&out, ConnId(7))[0])
            .unwrap()
            .meta
            .backpressure_signal
    );
    assert!(out.iter().any(|a| matches!(
        a,
        Action::Emit(Event::Backpressure {
            overloaded: false,
            ..
        })
    )));
}

/// The next G1 request the dialer sends on conn 1 when driven to `at`.
fn request_at(e: &mut Engine, at: Instant) -> bool {
    e.handle_timeout(at);
    frames_to(&drain(e), ConnId(1))
        .iter()
        .any(|f| decode(f).is_some())
}

#[test]
fn initiator_backs_off_30_60_120_and_resumes_when_the_signal_stops() {
    let mut e = engine("init", quiet_config());
    stateful(&mut e, "init");
    connect(&mut e, 1, Role::Dialer, "resp");
    // PeerUp starts a round: our store is empty (fingerprint 0), so a G1 goes at once.
    assert!(
        frames_to(&drain(&mut e), ConnId(1))
            .iter()
            .any(|f| decode(f).is_some())
    );
    let mut t = T0;
    let mut backoffs = Vec::new();
    for _ in 0..4 {
        // The reply comes 40 ms later, with the signal.
        t = t + Duration::from_millis(40);
        let mut reply = ExchangeBody::default();
        reply.meta.backpressure_signal = true;
        e.handle_bytes(t, ConnId(1), &g1(&reply)).unwrap();
        drain(&mut e);
        assert_eq!(e.flow_stats().rtt_last, Duration::from_millis(40));
        let pf = e.peer_flow(ConnId(1)).unwrap();
        backoffs.push(pf.backoff.as_secs());
        let next = pf.next_round.unwrap();
        assert_eq!(next, t + pf.backoff, "the round waits for the backoff");
        // Ticks inside the backoff send nothing.
        assert!(!request_at(&mut e, t + pf.backoff / 2));
        assert!(request_at(&mut e, next), "resumes at the backoff's end");
        t = next;
    }
    assert_eq!(backoffs, [30, 60, 120, 120]);
    // The signal stops: no backoff, the adaptive base interval (10 s ± 15 %).
    t = t + Duration::from_millis(40);
    e.handle_bytes(t, ConnId(1), &g1(&ExchangeBody::default()))
        .unwrap();
    drain(&mut e);
    let pf = e.peer_flow(ConnId(1)).unwrap();
    assert_eq!(pf.backoff, Duration::ZERO);
    let wait = pf.next_round.unwrap().as_micros() - t.as_micros();
    assert!((8_500_000..11_500_000).contains(&wait), "{wait}");
    let s = e.flow_stats();
    assert_eq!(s.backpressure_signals_received, 4);
    assert_eq!((s.rtt_avg, s.rtt_samples), (Duration::from_millis(40), 5));
}

#[test]
fn cpu_gate_trips_on_late_ticks_recovers_and_threshold_0_disables_it() {
    let mut e = engine("me", quiet_config());
    e.register_topic("t", TopicConfig::broadcast()).unwrap();
    connect(&mut e, 1, Role::Acceptor, "peer");
    drain(&mut e);
    let late = |e: &mut Engine, by: u64| {
        let d = e.poll_timeout().unwrap();
        e.handle_timeout(d + Duration::from_millis(by));
        drain(e);
    };
    // 60 ms late is within one 50 ms tick plus 0.2: allowed.
    late(&mut e, 60);
    assert!(e.flow_stats().cpu_allow);
    // 200 ms late: load 1.
    late(&mut e, 200);
    assert_eq!(e.flow_stats().cpu_load, 1.0);
    assert_eq!(
        e.publish(e.poll_timeout().unwrap(), "t", Bytes::from_static(b"x")),
        Err(PublishError::Backpressure(Pressure::Cpu))
    );
    // Nine on-time ticks keep the late one in the window of 10; the tenth clears it.
    for _ in 0..9 {
        late(&mut e, 0);
        assert!(!e.flow_stats().cpu_allow);
    }
    late(&mut e, 0);
    assert!(e.flow_stats().cpu_allow);
    let now = e.poll_timeout().unwrap();
    e.publish(now, "t", Bytes::from_static(b"y")).unwrap();
    // An external reading is max-merged.
    e.set_external_load(0.95);
    assert!(e.publish(now, "t", Bytes::from_static(b"z")).is_err());
    // Threshold 0 disables the gate.
    e.set_cpu_threshold(0.0);
    late(&mut e, 500);
    e.publish(e.poll_timeout().unwrap(), "t", Bytes::from_static(b"w"))
        .unwrap();
    assert_eq!(e.flow_stats().cpu_refused_publishes, 2);
}

#[test]
fn overload_50_peers_at_10x_their_allowance_for_60_s() {
    const PEERS: u64 = 50;
    const STEP_MS: u64 = 100;
    // 100 msg/s × 10 = 1000 msg/s = 100 per 100 ms step.
    const PER_STEP: usize = 100;
    let mut e = engine(
        "me",
        Config {
            max_connections: 64,
            ..quiet_config()
        },
    );
    let names: Vec<NodeId> = (0..PEERS)
        .map(|i| NodeId::new(Bytes::from(format!("peer-{i:02}"))).unwrap())
        .collect();
    for (i, n) in names.iter().enumerate() {
        let identity = Identity::Transport {
            peer: n.clone(),
            capabilities: Capabilities::ALL,
        };
        e.handle_connected(T0, ConnId(i as u64 + 1), Role::Acceptor, identity)
            .unwrap();
    }
    drain(&mut e);
    let burst = probes(PER_STEP);
    let mut sent = 0u64;
    let mut answered = 0u64;
    let mut t = 0;
    while t < 60_000 {
        for c in 1..=PEERS {
            e.handle_bytes(ms(t), ConnId(c), &burst).unwrap();
            sent += PER_STEP as u64;
        }
        answered += drain(&mut e)
            .iter()
            .filter(|a| matches!(a, Action::Send { .. }))
            .count() as u64;
        t += STEP_MS;
    }
    let s = e.flow_stats();
    let r = s.rate;
    println!(
        "overload: {PEERS} peers x 1000 msg/s x 60 s = {sent} messages; admitted {} \
         (answered {answered}), throttled {}, refused in cooldown {}, cooldowns {}; \
         limiter state {} peers x {} B = {} B",
        r.admitted,
        r.throttled,
        r.refused_cooldown,
        r.cooldowns,
        r.peers,
        whisper_proto::flow::token_bucket::TokenBucketLimiter::ENTRY_BYTES,
        r.state_bytes,
    );
    assert_eq!(r.admitted + r.throttled + r.refused_cooldown, sent);
    assert_eq!(r.cooldowns, PEERS);
    assert_eq!(r.peers as u64, PEERS);
    // Per peer: the burst, the refill until the 1000th violation (in the 2nd second), and
    // nothing else during the 5-minute cooldown.
    assert!(r.admitted < PEERS * 700, "{}", r.admitted);
    assert!(answered >= r.admitted);
}

#[test]
fn adaptive_cadence_between_two_engines_converges_fast_then_backs_off_when_idle() {
    use whisper_tests::mesh::{Mesh, conn};
    let config = Config {
        wall_clock_offset: Duration::from_secs(1_700_000_000),
        idle_timeout: Duration::from_secs(100_000),
        // Writes travel by G1 only here, so that the cadence sees them applied.
        rumor_records: false,
        ..Config::default()
    };
    let mut nodes = Vec::new();
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        let mut e = Engine::new(NodeId::from_static(name), config.clone(), i as u64, T0).unwrap();
        stateful(&mut e, name);
        e.put(T0, "state", name.as_bytes(), b"v").unwrap();
        nodes.push(e);
    }
    let mut m = Mesh::new(nodes, T0);
    m.connect(0, 1);
    m.settle();
    let mut seq = Vec::new();
    for i in 0..7 {
        let pf = m.nodes[0].peer_flow(conn(1)).unwrap();
        seq.push(pf.interval.current.as_secs());
        let next = pf.next_round.unwrap();
        if i == 5 {
            // A write on the responder: the next round applies it and snaps to min.
            m.nodes[1].put(m.now, "state", b"new", b"v").unwrap();
        }
        m.run_until(next);
    }
    // Converging (records applied) → 2 s; then idle rounds (digest match, the peer's
    // fingerprint equals ours) → base, doubling to the 60 s cap; a new write → 2 s.
    assert_eq!(seq, [2, 10, 20, 40, 60, 60, 2]);
    // Idle again after that: back to base first (not 4 s as the Go code would).
    let pf = m.nodes[0].peer_flow(conn(1)).unwrap();
    assert_eq!(pf.interval.current.as_secs(), 10);
    // The mesh delivers in zero virtual time: a zero RTT is not a sample.
    assert_eq!(m.nodes[0].flow_stats().rtt_samples, 0);
}
