//! StatefulMerge over G1/G2/G2B between 2..5 engines, step by step, no sockets.

use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use std::collections::BTreeMap;
use whisper_proto::runtime::JsonFile;
use whisper_proto::store::MemStore;
use whisper_proto::wire::{Record, magic};
use whisper_proto::{
    Bytes, Config, DeltaPersistence, Duration, Engine, Event, Instant, NodeId, PersistError,
    TopicConfig,
};
use whisper_tests::mesh::{Mesh, Tally, conn};

const TOPIC: &str = "state";
const KEY: [u8; 32] = [42; 32];
/// Unix time at Instant::ZERO: 2023-11-14.
const EPOCH: Duration = Duration::from_secs(1_700_000_000);
const NAMES: [&str; 5] = ["n0", "n1", "n2", "n3", "n4"];

fn config() -> Config {
    Config {
        wall_clock_offset: EPOCH,
        // These scenarios script exact 10 s rounds; the adaptive cadence has its own
        // tests (tests/flow.rs).
        adaptive_cadence: false,
        ..Config::default()
    }
}

fn node(i: usize) -> Engine {
    node_with(i, config())
}

/// A node whose writes spread by G1 alone (no rumor push): for the tests that count
/// what the G1 repair path carries.
fn g1_node(i: usize) -> Engine {
    node_with(
        i,
        Config {
            rumor_records: false,
            ..config()
        },
    )
}

fn node_with(i: usize, config: Config) -> Engine {
    let me = NodeId::from_static(NAMES[i]);
    let mut e = Engine::new(me.clone(), config, 100 + i as u64, Instant::ZERO).unwrap();
    e.register_topic(TOPIC, TopicConfig::stateful(MemStore::new(me, KEY)))
        .unwrap();
    e
}

fn fp(e: &Engine) -> u64 {
    e.store(TOPIC).unwrap().fingerprint()
}

fn mem(e: &Engine) -> &MemStore {
    e.mem_store(TOPIC).unwrap()
}

fn secs(s: u64) -> Instant {
    Instant::from_secs(s)
}

#[test]
fn disjoint_writes_converge_then_g2_skips_the_next_round() {
    let mut m = Mesh::new(vec![node(0), node(1)], Instant::ZERO);
    for k in 0..50 {
        m.nodes[0]
            .put(m.now, TOPIC, format!("a{k}").as_bytes(), b"from a")
            .unwrap();
        m.nodes[1]
            .put(m.now, TOPIC, format!("b{k}").as_bytes(), b"from b")
            .unwrap();
    }
    m.connect(0, 1);
    m.settle();
    assert_eq!(fp(&m.nodes[0]), fp(&m.nodes[1]));
    assert_eq!(mem(&m.nodes[0]).len(), 100);
    assert_eq!(mem(&m.nodes[1]).len(), 100);
    // The reply's piggybacked meta carried the responder's fingerprint.
    let meta = m.nodes[0].peer_meta(conn(1)).unwrap();
    assert_eq!(meta.cache_fingerprint, fp(&m.nodes[1]));
    assert!(!meta.backpressure_signal);
    // First round: G2 probe + reply (mismatch), one G1 each way with 50 records each.
    let first = Tally::of(m.sent_since(0));
    assert_eq!(
        (first.g2, first.g1, first.records),
        (2, 2, 100),
        "{first:?}"
    );
    // The next round, at the gossip interval, is one 12-byte probe each way.
    let mark = m.sent.len();
    m.run_until(secs(10));
    let idle = Tally::of(m.sent_since(mark));
    assert_eq!((idle.frames, idle.bytes, idle.g2), (2, 24, 2), "{idle:?}");
    let matches = m
        .take_events()
        .into_iter()
        .filter(|(_, e)| matches!(e, Event::DigestMatch { .. }))
        .count();
    assert!(matches >= 2, "both sides report the match");
    assert_eq!(m.nodes[0].stats().digest_skips, 1);
}

#[test]
fn delta_sends_only_records_newer_than_the_watermark() {
    let mut m = Mesh::new(vec![g1_node(0), g1_node(1)], Instant::ZERO);
    for k in 0..100 {
        m.nodes[0]
            .put(m.now, TOPIC, format!("k{k}").as_bytes(), b"v")
            .unwrap();
    }
    m.connect(0, 1);
    m.settle();
    assert_eq!(mem(&m.nodes[1]).len(), 100);
    // Five new writes on each side; the next round moves exactly those.
    for k in 0..5 {
        m.nodes[0]
            .put(m.now, TOPIC, format!("new-a{k}").as_bytes(), b"v")
            .unwrap();
        m.nodes[1]
            .put(m.now, TOPIC, format!("new-b{k}").as_bytes(), b"v")
            .unwrap();
    }
    let mark = m.sent.len();
    m.run_until(secs(10));
    let round: Vec<_> = m
        .sent_since(mark)
        .iter()
        .filter(|s| s.magic == magic::EXCHANGE)
        .map(|s| (s.from, s.records))
        .collect();
    assert_eq!(
        round,
        [(0, 5), (1, 5)],
        "request and reply carry only the delta"
    );
    assert_eq!(fp(&m.nodes[0]), fp(&m.nodes[1]));
    let stats = m.nodes[0].delta_stats(TOPIC);
    let peer = &stats[&NodeId::from_static("n1")];
    assert_eq!(peer.exchange_count, 2);
    assert_eq!(m.nodes[0].stats().full_syncs, 1);
    assert_eq!(m.nodes[0].stats().delta_syncs, 1);
}

#[test]
fn full_sync_follows_the_adaptive_schedule() {
    let mut m = Mesh::new(vec![g1_node(0), g1_node(1)], Instant::ZERO);
    m.nodes[0].put(m.now, TOPIC, b"seed", b"v").unwrap();
    m.connect(0, 1);
    m.settle();
    let mut full_rounds = vec![1];
    let mut last_full = m.nodes[0].stats().full_syncs;
    for round in 2..=45u64 {
        // One new write per round, so G2 never skips and every round is an exchange.
        let t = secs(10 * (round - 1));
        m.nodes[0]
            .put(t, TOPIC, format!("r{round}").as_bytes(), b"v")
            .unwrap();
        m.run_until(t);
        let full = m.nodes[0].stats().full_syncs;
        if full > last_full {
            full_rounds.push(round);
        }
        last_full = full;
    }
    // Base 10: exchanges 1, 11, 21. Those full syncs applied nothing on our side, so
    // the interval doubles to 20: the next is exchange 41.
    assert_eq!(full_rounds, [1, 11, 21, 41]);
    let s = m.nodes[0].delta_stats(TOPIC)[&NodeId::from_static("n1")];
    assert_eq!(s.adaptive_interval, 20);
    assert_eq!(s.full_sync_count, 4);
    assert_eq!(s.applied_on_full, 0);
    assert_eq!(fp(&m.nodes[0]), fp(&m.nodes[1]));
}

#[test]
fn g2b_repairs_what_the_delta_missed() {
    let mut config = config();
    config.full_sync_interval = std::num::NonZeroU32::new(1000).unwrap();
    let mut m = Mesh::new(
        vec![node_with(0, config.clone()), node_with(1, config)],
        Instant::ZERO,
    );
    for k in 0..200 {
        m.nodes[0]
            .put(m.now, TOPIC, format!("k{k}").as_bytes(), b"v")
            .unwrap();
    }
    m.connect(0, 1);
    m.settle();
    assert_eq!(fp(&m.nodes[0]), fp(&m.nodes[1]));
    // Node 1 gets a record from outside the exchange path, stamped *below* its
    // watermark for node 0 (a lost delta): a plain delta never sends it back.
    let foreign = MemStore::new(NodeId::from_static("zz"), KEY);
    let mut foreign = foreign;
    let rec = foreign
        .put(EPOCH.as_micros() as u64, b"lost", b"x")
        .unwrap();
    let wall = m.nodes[0].wall_clock_micros();
    m.nodes[0]
        .store_mut(TOPIC)
        .unwrap()
        .apply(wall, &rec)
        .unwrap();
    m.nodes[0].delta_mut(TOPIC).unwrap().update_watermark(
        &NodeId::from_static("n1"),
        u64::MAX / 2,
        wall,
    );
    let mark = m.sent.len();
    m.run_until(secs(10));
    let t = Tally::of(m.sent_since(mark));
    assert_eq!(t.g2b, 2, "{t:?}");
    assert_eq!(fp(&m.nodes[0]), fp(&m.nodes[1]));
    assert!(mem(&m.nodes[1]).get(b"lost").is_some());
    // Only the diverging bucket's records crossed, not all 201.
    assert!(t.records < 20, "{t:?}");
    assert!(
        m.events
            .iter()
            .any(|(_, e)| matches!(e, Event::DigestBucketMismatch { buckets: 1, .. }))
    );
}

#[test]
fn large_full_sync_is_split_under_the_g1_cap() {
    let mut m = Mesh::new(vec![node(0), node(1)], Instant::ZERO);
    let value = vec![7u8; 1000];
    for k in 0..3000 {
        m.nodes[0]
            .put(m.now, TOPIC, format!("k{k:05}").as_bytes(), &value)
            .unwrap();
    }
    m.connect(0, 1);
    m.settle();
    assert_eq!(fp(&m.nodes[0]), fp(&m.nodes[1]));
    let t = Tally::of(&m.sent);
    let biggest = m.sent.iter().map(|s| s.len).max().unwrap();
    assert!(biggest <= 6 + (1 << 20), "every frame under the cap");
    assert!(
        t.g1 >= 6,
        "3 MB needs at least three requests and three replies: {t:?}"
    );
    assert_eq!(t.records, 3000);
}

fn figures(records: usize, value_len: usize) {
    let mut m = Mesh::new(vec![g1_node(0), g1_node(1)], Instant::ZERO);
    let value = vec![b'x'; value_len];
    for k in 0..records {
        m.nodes[0]
            .put(m.now, TOPIC, format!("key-{k:06}").as_bytes(), &value)
            .unwrap();
    }
    m.connect(0, 1);
    m.settle();
    let hello = m.sent.iter().filter(|s| s.magic == magic::HELLO).count();
    let full = Tally::of(&m.sent);
    assert_eq!(fp(&m.nodes[0]), fp(&m.nodes[1]));
    for k in 0..100 {
        m.nodes[0]
            .put(
                secs(5),
                TOPIC,
                format!("key-{:06}", k * 7).as_bytes(),
                b"changed",
            )
            .unwrap();
    }
    let mark = m.sent.len();
    m.run_until(secs(10));
    let delta = Tally::of(m.sent_since(mark));
    assert_eq!(fp(&m.nodes[0]), fp(&m.nodes[1]));
    let mark = m.sent.len();
    m.run_until(secs(20));
    let idle = Tally::of(m.sent_since(mark));
    println!(
        "{records} records x {value_len} B values: full sync {} frames / {} bytes \
         ({} G1, {} records, incl. {hello} HELLO); delta of 100 changes {} frames / {} bytes \
         ({} records); idle round {} frames / {} bytes",
        full.frames,
        full.bytes,
        full.g1,
        full.records,
        delta.frames,
        delta.bytes,
        delta.records,
        idle.frames,
        idle.bytes
    );
    assert_eq!(delta.records, 100);
    assert_eq!((idle.frames, idle.bytes), (2, 24));
}

/// Run with `--nocapture` to see the figures.
#[test]
fn figures_for_10k_records() {
    figures(10_000, 16);
    figures(10_000, 200);
}

#[test]
fn delta_state_persists_across_restart() {
    let dir = std::env::temp_dir().join(format!("whisper-sync-{}", std::process::id()));
    let path = dir.join("watermarks.json");
    let mut m = Mesh::new(vec![node(0), node(1)], Instant::ZERO);
    m.nodes[0].put(m.now, TOPIC, b"k", b"v").unwrap();
    m.connect(0, 1);
    m.settle();
    let before = m.nodes[0].delta_stats(TOPIC);
    assert_eq!(before.len(), 1);
    let mut file = JsonFile::new(&path);
    assert_eq!(m.nodes[0].save_delta(&mut file).unwrap(), 1);
    let mut restarted = node(0);
    let n = restarted
        .load_delta(secs(60), &mut file, Duration::from_secs(1200))
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(restarted.delta_stats(TOPIC), before);
    // Too old: dropped on load.
    let mut late = node(0);
    assert_eq!(
        late.load_delta(secs(7200), &mut file, Duration::from_secs(1200))
            .unwrap(),
        0
    );
    // A corrupt file: a reported error and empty state, no panic.
    std::fs::write(&path, b"{\"version\":1,\"peers\":[{\"peer_id\":").unwrap();
    let mut fresh = node(0);
    let err = fresh
        .load_delta(secs(60), &mut file, Duration::from_secs(1200))
        .unwrap_err();
    assert!(matches!(err, PersistError::Corrupt { .. }), "{err}");
    assert!(fresh.delta_stats(TOPIC).is_empty());
    // A missing file is simply empty.
    let mut missing = JsonFile::new(dir.join("absent.json"));
    assert!(missing.load().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn watermarks_survive_a_reconnect() {
    let mut m = Mesh::new(vec![node(0), node(1)], Instant::ZERO);
    for k in 0..20 {
        m.nodes[0]
            .put(m.now, TOPIC, format!("k{k}").as_bytes(), b"v")
            .unwrap();
    }
    m.connect(0, 1);
    m.settle();
    // The responder commits its watermark when the next request proves its reply was
    // read: here the idle round's G2 probe.
    m.run_until(secs(10));
    m.disconnect(0, 1);
    m.nodes[0].put(secs(11), TOPIC, b"after", b"v").unwrap();
    m.now = secs(12);
    m.connect(0, 1);
    m.settle();
    let records: Vec<_> = m
        .sent
        .iter()
        .filter(|s| s.magic == magic::EXCHANGE && s.at == secs(12))
        .map(|s| s.records)
        .collect();
    assert_eq!(
        records,
        [1, 0],
        "a delta, not a snapshot, after reconnecting"
    );
    assert_eq!(fp(&m.nodes[0]), fp(&m.nodes[1]));
}

// ---- quickcheck: random writes, deletes and rounds among 3 engines ----------------------

#[derive(Clone, Debug)]
enum Op {
    Put { node: u8, key: u8, value: u8 },
    Delete { node: u8, key: u8 },
    Round { node: u8, peer: u8 },
    Tick { ms: u16 },
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = |g: &mut Gen| u8::arbitrary(g) % 3;
        match u8::arbitrary(g) % 8 {
            0..=2 => Self::Put {
                node: n(g),
                key: u8::arbitrary(g) % 12,
                value: u8::arbitrary(g),
            },
            3 => Self::Delete {
                node: n(g),
                key: u8::arbitrary(g) % 12,
            },
            4 | 5 => Self::Round {
                node: n(g),
                peer: n(g),
            },
            _ => Self::Tick {
                ms: u16::arbitrary(g) % 3000,
            },
        }
    }
}

fn converges(ops: Vec<Op>) -> TestResult {
    let mut m = Mesh::new(vec![node(0), node(1), node(2)], Instant::ZERO);
    m.connect_all();
    m.settle();
    // Every write made, by key: the winner under LWW is the greatest (hlc, origin).
    let mut winners: BTreeMap<Bytes, Record> = BTreeMap::new();
    for op in &ops {
        match *op {
            Op::Put { node, key, value } => {
                let rec = m.nodes[node as usize]
                    .put(m.now, TOPIC, &[b'k', key], &[value])
                    .unwrap();
                note(&mut winners, rec);
            }
            Op::Delete { node, key } => {
                let rec = m.nodes[node as usize]
                    .delete(m.now, TOPIC, &[b'k', key])
                    .unwrap();
                note(&mut winners, rec);
            }
            Op::Round { node, peer } => {
                let (a, b) = (node.min(peer) as usize, node.max(peer) as usize);
                if a != b {
                    let now = m.now;
                    m.nodes[a].exchange_now(now, conn(b)).unwrap();
                }
            }
            Op::Tick { ms } => {
                let t = m.now + Duration::from_millis(u64::from(ms));
                m.run_until(t);
            }
        }
        m.settle();
    }
    // Quiescence: two gossip intervals with no writes.
    let t = m.now + Duration::from_secs(25);
    m.run_until(t);
    let fps: Vec<u64> = m.nodes.iter().map(fp).collect();
    if fps.iter().any(|f| *f != fps[0]) {
        return TestResult::error(format!("fingerprints differ: {fps:x?}"));
    }
    for (i, e) in m.nodes.iter().enumerate() {
        for (key, want) in &winners {
            let got = mem(e).record(key);
            if got != Some(want) {
                return TestResult::error(format!("node {i} key {key:?}: {got:?} != {want:?}"));
            }
        }
        if mem(e).len() + mem(e).tombstones() != winners.len() {
            return TestResult::error(format!("node {i} holds extra keys"));
        }
    }
    TestResult::passed()
}

fn note(winners: &mut BTreeMap<Bytes, Record>, encoded: Bytes) {
    let rec = Record::decode(&encoded, usize::MAX).unwrap();
    match winners.get(&rec.key) {
        Some(cur) if (cur.hlc, &cur.origin) >= (rec.hlc, &rec.origin) => {}
        _ => {
            winners.insert(rec.key.clone(), rec);
        }
    }
}

#[test]
fn quickcheck_three_engines_converge_without_losing_writes() {
    QuickCheck::new()
        .tests(150)
        .quickcheck(converges as fn(Vec<Op>) -> TestResult);
}

/// A user codec: the protobuf envelope with every byte XORed, so its bytes differ from
/// the default codec's, and a count of the bodies it encoded.
#[derive(Debug)]
struct XorCodec(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl whisper_proto::wire::codec::G1Codec for XorCodec {
    fn encode(
        &self,
        body: &whisper_proto::wire::codec::ExchangeBody,
        out: &mut bytes::BytesMut,
    ) -> Result<(), whisper_proto::wire::codec::CodecError> {
        use whisper_proto::wire::codec::ProtobufCodec;
        let start = out.len();
        ProtobufCodec.encode(body, out)?;
        out[start..].iter_mut().for_each(|b| *b ^= 0x5A);
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn decode(
        &self,
        body: Bytes,
    ) -> Result<whisper_proto::wire::codec::ExchangeBody, whisper_proto::wire::codec::CodecError>
    {
        use whisper_proto::wire::codec::ProtobufCodec;
        let plain: Vec<u8> = body.iter().map(|b| b ^ 0x5A).collect();
        ProtobufCodec.decode(Bytes::from(plain))
    }
}

#[test]
fn a_user_g1_codec_carries_the_exchange() {
    let encoded = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut nodes = vec![g1_node(0), g1_node(1)];
    for e in &mut nodes {
        e.set_g1_codec(Box::new(XorCodec(encoded.clone())));
    }
    let mut m = Mesh::new(nodes, Instant::ZERO);
    for k in 0..20 {
        m.nodes[0]
            .put(m.now, TOPIC, format!("a{k}").as_bytes(), b"x")
            .unwrap();
        m.nodes[1]
            .put(m.now, TOPIC, format!("b{k}").as_bytes(), b"y")
            .unwrap();
    }
    m.connect(0, 1);
    m.settle();
    assert_eq!(mem(&m.nodes[0]).len(), 40);
    assert_eq!(fp(&m.nodes[0]), fp(&m.nodes[1]));
    assert!(encoded.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    assert_eq!(
        m.nodes[0].stats().bodies_rejected + m.nodes[1].stats().bodies_rejected,
        0
    );
}
