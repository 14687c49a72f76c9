//! Golden bytes for every frame kind, error cases, and quickcheck properties.

use super::*;
use crate::node::NodeId;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use quickcheck::{Arbitrary, Gen, QuickCheck};

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn config() -> WireConfig {
    WireConfig::default()
}

/// Emits `frame`, compares with `hex`, and parses the bytes back to `frame`.
fn golden(frame: Frame, hex: &str) {
    let want = unhex(hex);
    let got = frame.to_bytes().unwrap();
    assert_eq!(got.as_ref(), want.as_slice(), "emit of {frame:?}");
    assert_eq!(frame.encoded_len(), want.len());
    let parsed = Frame::parse(&Bytes::from(want), &config()).unwrap();
    assert_eq!(parsed, frame);
}

// ---- Appendix B of the reference ------------------------------------------------------

#[test]
fn appendix_b_g2_probe() {
    golden(
        Frame::Digest(Digest {
            flags: 1,
            fingerprint: 0xDEAD_BEEF_1234_5678,
        }),
        "47320001deadbeef12345678",
    );
}

#[test]
fn appendix_b_g1_header_and_keepalive() {
    golden(
        Frame::Exchange(Exchange {
            body: Bytes::from_static(b"hello"),
        }),
        "473100000005 68656c6c6f",
    );
    golden(Frame::Exchange(Exchange::keepalive()), "473100000000");
}

#[test]
fn appendix_b_g3_rumor() {
    golden(
        Frame::Rumor(Rumor {
            hop: 1,
            from_dim: FROM_DIM_ORIGIN,
            payload: Bytes::from_static(b"hi"),
        }),
        "47330000000201ff6869",
    );
}

#[test]
fn appendix_b_g3_ack() {
    let mut rumor_id = [0u8; 32];
    rumor_id[..7].copy_from_slice(b"rh:6869");
    golden(
        Frame::RumorAck(RumorAck { rumor_id }),
        "4735 72683a36383639 00000000000000000000000000000000000000000000000000",
    );
}

#[test]
fn appendix_b_g2b() {
    golden(
        Frame::BucketDigest(BucketDigest {
            flags: 0,
            digests: vec![1, 2],
        }),
        "474200000200000000000000010000000000000002",
    );
    // N = 256 encodes its count as 0, followed by 2048 bytes of digests.
    let digests: Vec<u64> = (0..256u64).collect();
    let frame = Frame::BucketDigest(BucketDigest { flags: 0, digests });
    let bytes = frame.to_bytes().unwrap();
    assert_eq!(&bytes[..5], &unhex("4742000000")[..]);
    assert_eq!(bytes.len(), 5 + 2048);
    assert_eq!(Frame::parse(&bytes, &config()).unwrap(), frame);
}

#[test]
fn appendix_b_pull() {
    golden(
        Frame::Pull(Pull {
            topic: Bytes::from_static(b"x"),
            since: 0,
            max_resp: 1024,
        }),
        "47340178000000000000000000000400",
    );
}

#[test]
fn appendix_b_g4_reconcile() {
    golden(
        Frame::Reconcile(Reconcile {
            kind: ReconcileKind::DecodeFailed,
            body: Bytes::new(),
        }),
        "47340000000103",
    );
    golden(
        Frame::Reconcile(Reconcile {
            kind: ReconcileKind::Table,
            body: Bytes::from_static(b"AB"),
        }),
        "473400000003004142",
    );
}

#[test]
fn appendix_b_g5_manifest_request() {
    golden(
        Frame::Snapshot(Snapshot {
            kind: SnapshotKind::ManifestRequest,
            body: Bytes::new(),
        }),
        "47360000000110",
    );
}

// ---- the rest of the kinds ------------------------------------------------------------

#[test]
fn golden_remaining_kinds() {
    golden(
        Frame::Reconcile(Reconcile {
            kind: ReconcileKind::Reply,
            body: Bytes::from_static(b"r"),
        }),
        "4734 00000002 01 72",
    );
    golden(
        Frame::Reconcile(Reconcile {
            kind: ReconcileKind::Request,
            body: Bytes::new(),
        }),
        "4734 00000001 02",
    );
    golden(
        Frame::Snapshot(Snapshot {
            kind: SnapshotKind::Manifest,
            body: Bytes::from_static(b"m"),
        }),
        "4736 00000002 11 6d",
    );
    golden(
        Frame::Snapshot(Snapshot {
            kind: SnapshotKind::ShardRequest,
            body: Bytes::new(),
        }),
        "4736 00000001 12",
    );
    golden(
        Frame::Snapshot(Snapshot {
            kind: SnapshotKind::Shard,
            body: Bytes::from_static(b"\x00\x01"),
        }),
        "4736 00000003 13 0001",
    );
    golden(
        Frame::Pull(Pull {
            topic: Bytes::from_static(b"users"),
            since: -1,
            max_resp: 0,
        }),
        "4734 05 7573657273 ffffffffffffffff 00000000",
    );
    golden(
        Frame::Digest(Digest::reply(7, 7)),
        "4732 8001 0000000000000007",
    );
}

#[test]
fn golden_hello() {
    golden(
        Frame::Hello(Hello {
            version: 1,
            capabilities: Capabilities::RUMOR_ACK.union(Capabilities::TOPICS),
            node_id: NodeId::from_static("alice"),
        }),
        "4748 0000000b 01 00000009 05 616c696365",
    );
    // A newer peer's longer HELLO: bytes after the id are ignored.
    let newer = unhex("4748 0000000a 02 00000001 01 62 ffffff");
    let Frame::Hello(h) = Frame::parse(&Bytes::from(newer), &config()).unwrap() else {
        panic!("not a hello");
    };
    assert_eq!(
        (h.version, h.capabilities, h.node_id.as_bytes()),
        (2, Capabilities::RUMOR_ACK, &b"b"[..])
    );
}

#[test]
fn golden_custom() {
    let mut cfg = config();
    cfg.register_custom(0x5801, 16).unwrap();
    let frame = Frame::Custom(Custom {
        magic: 0x5801,
        body: Bytes::from_static(b"ok"),
    });
    let bytes = frame.to_bytes().unwrap();
    assert_eq!(bytes.as_ref(), &unhex("5801 00000002 6f6b")[..]);
    assert_eq!(Frame::parse(&bytes, &cfg).unwrap(), frame);
    // Unregistered: unknown magic.
    assert_eq!(
        Frame::parse(&bytes, &config()),
        Err(DecodeError::UnknownMagic(0x5801))
    );
}

// ---- errors ---------------------------------------------------------------------------

fn parse_err(hex: &str) -> DecodeError {
    Frame::parse(&Bytes::from(unhex(hex)), &config()).unwrap_err()
}

#[test]
fn decode_errors_are_typed() {
    assert_eq!(parse_err("0000"), DecodeError::UnknownMagic(0));
    assert_eq!(
        parse_err("4731 00100001"),
        DecodeError::Oversized {
            magic: 0x4731,
            len: MIB + 1,
            max: MIB
        }
    );
    assert_eq!(
        parse_err("4733 00100001 0000"),
        DecodeError::Oversized {
            magic: 0x4733,
            len: MIB + 1,
            max: MIB
        }
    );
    assert_eq!(
        parse_err("4734 00000000"),
        DecodeError::BadLength {
            magic: 0x4734,
            len: 0
        }
    );
    assert_eq!(
        parse_err("4736 00000000"),
        DecodeError::BadLength {
            magic: 0x4736,
            len: 0
        }
    );
    assert_eq!(parse_err("4734 00000001 04"), DecodeError::ReconcileKind(4));
    assert_eq!(
        parse_err("4736 00000001 20"),
        DecodeError::SnapshotKind(0x20)
    );
    assert_eq!(
        parse_err("4748 00000003 010000"),
        DecodeError::BadLength {
            magic: 0x4748,
            len: 3
        }
    );
    // idLen 0 and idLen past the end.
    assert_eq!(
        parse_err("4748 00000007 01 00000000 00 61"),
        DecodeError::MalformedHello
    );
    assert_eq!(
        parse_err("4748 00000007 01 00000000 05 61"),
        DecodeError::MalformedHello
    );
    assert_eq!(
        parse_err("4732 0000"),
        DecodeError::Truncated { needed: 12, got: 4 }
    );
    assert_eq!(
        parse_err("4732 0000 0000000000000000 00"),
        DecodeError::TrailingBytes { extra: 1 }
    );
}

#[test]
fn encode_errors_write_nothing() {
    let mut out = Vec::new();
    let cases = [
        (
            Frame::BucketDigest(BucketDigest::default()),
            EncodeError::BucketCount(0),
        ),
        (
            Frame::BucketDigest(BucketDigest {
                flags: 0,
                digests: vec![0; 257],
            }),
            EncodeError::BucketCount(257),
        ),
        (Frame::Pull(Pull::default()), EncodeError::PullTopic(0)),
        (
            Frame::Pull(Pull {
                topic: Bytes::from(vec![b'a'; 256]),
                ..Pull::default()
            }),
            EncodeError::PullTopic(256),
        ),
        (
            Frame::Custom(Custom {
                magic: magic::RUMOR,
                body: Bytes::new(),
            }),
            EncodeError::BuiltinMagic(magic::RUMOR),
        ),
    ];
    for (frame, err) in cases {
        assert_eq!(frame.emit(&mut out), Err(err));
        assert!(out.is_empty());
    }
    let mut small = [0u8; 4];
    assert_eq!(
        Frame::Digest(Digest::default()).emit(&mut &mut small[..]),
        Err(EncodeError::BufferTooSmall)
    );
}

#[test]
fn registry_refuses_builtins_duplicates_and_overflow() {
    let mut cfg = config();
    for m in magic::BUILTIN {
        assert_eq!(cfg.register_custom(m, 1), Err(RegisterError::Builtin(m)));
    }
    for i in 0..WireConfig::MAX_CUSTOM_KINDS as u16 {
        cfg.register_custom(0x6000 + i, 1).unwrap();
    }
    assert_eq!(
        cfg.register_custom(0x6000, 1),
        Err(RegisterError::Duplicate(0x6000))
    );
    assert_eq!(cfg.register_custom(0x7000, 1), Err(RegisterError::TooMany));
}

#[test]
fn reconcile_cap_never_collides_with_pull() {
    let cfg = WireConfig::new(Limits {
        max_reconcile: u32::MAX,
        ..Limits::DEFAULT
    });
    assert_eq!(cfg.limits().max_reconcile, MAX_RECONCILE_CAP);
    assert_eq!(MAX_RECONCILE_CAP.to_be_bytes()[0], 0);
}

#[test]
fn decoder_zero_copy_path_shares_the_input() {
    let frame = Frame::Rumor(Rumor {
        hop: 0,
        from_dim: 3,
        payload: Bytes::from(vec![9u8; 4096]),
    });
    let mut input = frame.to_bytes().unwrap();
    let base = input.as_ptr() as usize;
    let mut dec = FrameDecoder::new();
    let Some(Frame::Rumor(r)) = dec.decode_bytes(&config(), &mut input).unwrap() else {
        panic!("no rumor");
    };
    assert_eq!(r.payload.as_ptr() as usize, base + RUMOR_HEADER_LEN);
    assert!(input.is_empty());
}

#[test]
fn decoder_is_poisoned_after_an_error() {
    let mut dec = FrameDecoder::new();
    let mut input: &[u8] = &[0x00, 0x00, 0x47, 0x31, 0, 0, 0, 0];
    assert!(dec.decode(&config(), &mut input).is_err());
    assert!(dec.is_poisoned());
    let mut more: &[u8] = &[0x47, 0x31, 0, 0, 0, 0];
    assert_eq!(dec.decode(&config(), &mut more), Err(DecodeError::Poisoned));
}

// ---- quickcheck -----------------------------------------------------------------------

#[derive(Clone, Debug)]
struct ArbFrame(Frame);

fn arb_bytes(g: &mut Gen, max: usize) -> Bytes {
    let len = usize::arbitrary(g) % (max + 1);
    Bytes::from((0..len).map(|_| u8::arbitrary(g)).collect::<Vec<u8>>())
}

impl Arbitrary for ArbFrame {
    fn arbitrary(g: &mut Gen) -> Self {
        let frame = match u8::arbitrary(g) % 11 {
            0 => Frame::Exchange(Exchange {
                body: arb_bytes(g, 300),
            }),
            1 => Frame::Digest(Digest {
                flags: u16::arbitrary(g),
                fingerprint: u64::arbitrary(g),
            }),
            2 => {
                let n = 1 + usize::arbitrary(g) % 256;
                Frame::BucketDigest(BucketDigest {
                    flags: u16::arbitrary(g),
                    digests: (0..n).map(|_| u64::arbitrary(g)).collect(),
                })
            }
            3 => Frame::Rumor(Rumor {
                hop: u8::arbitrary(g),
                from_dim: u8::arbitrary(g),
                payload: arb_bytes(g, 300),
            }),
            4 => {
                let mut rumor_id = [0u8; 32];
                rumor_id.iter_mut().for_each(|b| *b = u8::arbitrary(g));
                Frame::RumorAck(RumorAck { rumor_id })
            }
            5 => Frame::Reconcile(Reconcile {
                kind: *g
                    .choose(&[
                        ReconcileKind::Table,
                        ReconcileKind::Reply,
                        ReconcileKind::Request,
                        ReconcileKind::DecodeFailed,
                    ])
                    .unwrap(),
                body: arb_bytes(g, 300),
            }),
            6 => {
                let mut topic = arb_bytes(g, 255);
                if topic.is_empty() {
                    topic = Bytes::from_static(b"t");
                }
                Frame::Pull(Pull {
                    topic,
                    since: i64::arbitrary(g),
                    max_resp: u32::arbitrary(g),
                })
            }
            7 => Frame::Snapshot(Snapshot {
                kind: *g
                    .choose(&[
                        SnapshotKind::ManifestRequest,
                        SnapshotKind::Manifest,
                        SnapshotKind::ShardRequest,
                        SnapshotKind::Shard,
                    ])
                    .unwrap(),
                body: arb_bytes(g, 300),
            }),
            8 => {
                let mut id = arb_bytes(g, 64);
                if id.is_empty() {
                    id = Bytes::from_static(b"n");
                }
                Frame::Hello(Hello {
                    version: u8::arbitrary(g),
                    capabilities: Capabilities(u32::arbitrary(g)),
                    node_id: NodeId::new(id).unwrap(),
                })
            }
            9 => Frame::Custom(Custom {
                magic: CUSTOM_MAGIC,
                body: arb_bytes(g, 300),
            }),
            _ => Frame::Exchange(Exchange::keepalive()),
        };
        Self(frame)
    }
}

const CUSTOM_MAGIC: u16 = 0x5801;

fn qc_config() -> WireConfig {
    let mut cfg = config();
    cfg.register_custom(CUSTOM_MAGIC, 300).unwrap();
    cfg
}

fn qc() -> QuickCheck {
    QuickCheck::new().tests(500).max_tests(5000)
}

#[test]
fn prop_parse_of_emit_is_identity() {
    fn prop(f: ArbFrame) -> bool {
        let bytes = f.0.to_bytes().unwrap();
        bytes.len() == f.0.encoded_len() && Frame::parse(&bytes, &qc_config()) == Ok(f.0)
    }
    qc().quickcheck(prop as fn(ArbFrame) -> bool);
}

/// Decodes `stream` fed in chunks whose sizes come from `cuts`; returns the frames and
/// whether an error ended it. Checks the buffering bound on every step.
fn decode_chunked(stream: &[u8], cuts: &[u16], cfg: &WireConfig) -> (Vec<Frame>, bool) {
    let l = cfg.limits();
    let biggest = [
        l.max_exchange,
        l.max_rumor_read,
        l.max_reconcile,
        l.max_snapshot,
        300,
    ]
    .into_iter()
    .max()
    .unwrap() as usize
        + 2048
        + 16;
    let mut dec = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let step = if cuts.is_empty() {
            rest.len()
        } else {
            1 + usize::from(cuts[i % cuts.len()]) % 97
        };
        i += 1;
        let (mut chunk, tail) = rest.split_at(step.min(rest.len()));
        rest = tail;
        loop {
            match dec.decode(cfg, &mut chunk) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
            assert!(dec.buffered() <= biggest);
        }
        assert!(chunk.is_empty());
        assert!(dec.buffered() <= biggest);
    }
    (frames, false)
}

#[test]
fn prop_any_bytes_any_chunking_never_panics() {
    fn prop(garbage: Vec<u8>, cuts: Vec<u16>) -> bool {
        let cfg = qc_config();
        let _ = decode_chunked(&garbage, &cuts, &cfg);
        // Also with a valid magic in front, so that length paths are exercised.
        for m in magic::BUILTIN.iter().chain(&[CUSTOM_MAGIC]) {
            let mut s = m.to_be_bytes().to_vec();
            s.extend_from_slice(&garbage);
            let _ = decode_chunked(&s, &cuts, &cfg);
        }
        true
    }
    qc().quickcheck(prop as fn(Vec<u8>, Vec<u16>) -> bool);
}

#[test]
fn prop_huge_lengths_are_refused_on_the_header() {
    fn prop(len: u32, which: u8) -> bool {
        let cfg = qc_config();
        let m = [
            magic::EXCHANGE,
            magic::RUMOR,
            magic::SNAPSHOT,
            magic::HELLO,
            CUSTOM_MAGIC,
        ][usize::from(which) % 5];
        let mut head = m.to_be_bytes().to_vec();
        head.extend_from_slice(&len.to_be_bytes());
        head.extend_from_slice(&[0, 0]);
        match cfg.frame_len(&head) {
            Ok(Some(n)) => n <= 8 + MIB as usize,
            Ok(None) => false,
            Err(_) => true,
        }
    }
    qc().quickcheck(prop as fn(u32, u8) -> bool);
}

#[test]
fn prop_every_split_of_a_valid_stream_gives_the_same_frames() {
    fn prop(frames: Vec<ArbFrame>, cuts: Vec<u16>) -> bool {
        let cfg = qc_config();
        let frames: Vec<Frame> = frames.into_iter().take(8).map(|f| f.0).collect();
        let mut stream = Vec::new();
        for f in &frames {
            f.emit(&mut stream).unwrap();
        }
        let (whole, err) = decode_chunked(&stream, &[], &cfg);
        if err || whole != frames {
            return false;
        }
        let (chunked, err) = decode_chunked(&stream, &cuts, &cfg);
        if err || chunked != frames {
            return false;
        }
        // One byte at a time.
        let (bytewise, err) = decode_chunked(&stream, &[0], &cfg);
        !err && bytewise == frames
    }
    qc().tests(300)
        .quickcheck(prop as fn(Vec<ArbFrame>, Vec<u16>) -> bool);
}

#[test]
fn every_split_point_of_a_fixed_stream() {
    let cfg = qc_config();
    let frames = [
        Frame::Hello(Hello {
            version: 1,
            capabilities: Capabilities::ALL,
            node_id: NodeId::from_static("n1"),
        }),
        Frame::Exchange(Exchange::keepalive()),
        Frame::Digest(Digest::probe(42)),
        Frame::Pull(Pull {
            topic: Bytes::from_static(b"t"),
            since: 5,
            max_resp: 0,
        }),
        Frame::Rumor(Rumor {
            hop: 2,
            from_dim: 1,
            payload: Bytes::from_static(b"payload"),
        }),
        Frame::Reconcile(Reconcile {
            kind: ReconcileKind::Table,
            body: Bytes::from_static(b"xyz"),
        }),
    ];
    let mut stream = Vec::new();
    for f in &frames {
        f.emit(&mut stream).unwrap();
    }
    for at in 0..=stream.len() {
        let (a, b) = stream.split_at(at);
        let mut dec = FrameDecoder::new();
        let mut out = Vec::new();
        for mut part in [a, b] {
            while let Some(f) = dec.decode(&cfg, &mut part).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, frames, "split at {at}");
    }
}
