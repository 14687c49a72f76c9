//! Two whisper engines joined in memory, driven step by step on virtual time. Prints
//! every frame that crosses the link, in hex, with its decoded form.
//!
//! `cargo run -p whisper-examples --bin pair`

use std::fmt::Write as _;
use whisper_proto::{Config, Duration, Engine, Instant, NodeId};
use whisper_tests::pair::{LINK, Pair, Side};

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b.iter().take(48) {
        let _ = write!(s, "{x:02x}");
    }
    if b.len() > 48 {
        s.push('…');
    }
    s
}

fn main() {
    let t0 = Instant::ZERO;
    let a = Engine::new(NodeId::from_static("alice"), Config::default(), 1, t0).expect("config");
    let b = Engine::new(NodeId::from_static("bob"), Config::default(), 2, t0).expect("config");
    let mut pair = Pair::connect(a, b, t0);
    pair.settle();

    // alice sends bob a frame of a custom kind both registered.
    pair.register_frame_kind(0x5801, 1024)
        .expect("custom kinds outside the built-in set register");
    pair.a
        .send_custom(
            t0,
            LINK,
            0x5801,
            whisper_proto::Bytes::from_static(b"hello, bob"),
        )
        .expect("peer is up");
    pair.settle();
    // alice probes bob's digest with a G2 frame, as an anti-entropy round would.
    pair.a.probe_digest(t0, LINK).expect("peer is up");
    pair.settle();

    // Let an idle minute pass: both sides send G1 keepalives.
    while let Some(t) = pair.next_timer() {
        if t > t0 + Duration::from_secs(65) {
            break;
        }
    }

    println!("{:>9}  {:<5}  {:<40}  frame", "time", "from", "bytes");
    for c in &pair.transcript {
        let who = match c.from {
            Side::A => "alice",
            Side::B => "bob",
        };
        println!(
            "{:>8.3}s  {:<5}  {:<40}  {:?}",
            c.at.as_micros() as f64 / 1e6,
            who,
            hex(&c.bytes),
            c.frame
        );
    }
    println!();
    for (side, e) in &pair.events {
        println!("event at {side:?}: {e:?}");
    }
    let (sa, sb) = (pair.a.stats(), pair.b.stats());
    println!(
        "\nalice: {} frames / {} bytes sent; bob: {} frames / {} bytes sent; errors {}",
        sa.frames_sent,
        sa.bytes_sent,
        sb.frames_sent,
        sb.bytes_sent,
        sa.frame_errors + sb.frame_errors
    );
}
