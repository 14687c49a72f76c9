//! Two engines over the in-memory stepper: frame and byte counts of the basic exchanges.

use whisper_proto::wire::{Frame, magic};
use whisper_proto::{Config, Duration, Engine, Event, Instant, NodeId};
use whisper_tests::pair::{LINK, Pair, Side};

fn pair() -> Pair {
    let t0 = Instant::ZERO;
    let a = Engine::new(NodeId::from_static("alice"), Config::default(), 1, t0).unwrap();
    let b = Engine::new(NodeId::from_static("bob"), Config::default(), 2, t0).unwrap();
    Pair::connect(a, b, t0)
}

#[test]
fn handshake_is_two_hellos() {
    let mut p = pair();
    assert_eq!(p.settle(), 2);
    let sizes: Vec<_> = p
        .transcript
        .iter()
        .map(|c| (c.from, c.bytes.len()))
        .collect();
    // 6-byte header + version + caps + idLen + id.
    assert_eq!(sizes, vec![(Side::A, 6 + 6 + 5), (Side::B, 6 + 6 + 3)]);
    let ups = p
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::PeerUp { .. }))
        .count();
    assert_eq!(ups, 2);
}

#[test]
fn idle_probe_round_is_one_12_byte_frame_each_way() {
    let mut p = pair();
    p.settle();
    let before = p.transcript.len();
    p.a.probe_digest(p.now, LINK).unwrap();
    assert_eq!(p.settle(), 2);
    let round: Vec<_> = p.transcript[before..].iter().collect();
    assert!(round.iter().all(|c| c.bytes.len() == 12));
    assert!(matches!(round[0].frame, Frame::Digest(d) if !d.is_reply()));
    assert!(matches!(round[1].frame, Frame::Digest(d) if d.is_reply()));
}

#[test]
fn an_idle_link_costs_only_keepalives_and_stays_up() {
    let mut p = pair();
    p.settle();
    let start = p.transcript.len();
    // Ten idle minutes: each side keeps the link alive, nobody times out.
    while let Some(t) = p.next_timer() {
        if t > Instant::ZERO + Duration::from_secs(600) {
            break;
        }
    }
    let frames = &p.transcript[start..];
    assert!(
        frames
            .iter()
            .all(|c| c.frame.magic() == magic::EXCHANGE && c.bytes.len() == 6)
    );
    // One keepalive per side every 27–33 s: between 18 and 23 each over 600 s.
    for side in [Side::A, Side::B] {
        let n = frames.iter().filter(|c| c.from == side).count();
        assert!((18..=23).contains(&n), "{side:?} sent {n} keepalives");
    }
    assert!(p.closed.is_empty());
    assert_eq!(p.a.stats().peers, 1);
    assert_eq!(p.b.stats().peers, 1);
}
