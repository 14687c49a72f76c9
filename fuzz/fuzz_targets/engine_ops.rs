//! A stateful sequence of connections, byte chunks, timeouts and commands against one
//! engine: never panics, the connection table stays within its bound, and every action
//! names a connection that was opened.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use whisper_proto::{
    Action, Bytes, Config, ConnId, Duration, Engine, Identity, Instant, NodeId, Role,
};

#[derive(Arbitrary, Debug)]
enum Op {
    Connect { conn: u8, dial: bool, transport: bool },
    Bytes { conn: u8, data: Vec<u8> },
    Hello { conn: u8, id: u8 },
    Disconnect { conn: u8 },
    Advance { millis: u16 },
    Probe { conn: u8 },
    Custom { conn: u8, data: Vec<u8> },
    Close { conn: u8 },
}

fuzz_target!(|ops: Vec<Op>| {
    let config = Config {
        max_connections: 8,
        ..Config::default()
    };
    let mut now = Instant::ZERO;
    let mut e = Engine::new(NodeId::from_static("me"), config, 1, now).unwrap();
    let _ = e.register_frame_kind(0x5801, 64);
    let mut opened = std::collections::BTreeSet::new();
    for op in ops {
        match op {
            Op::Connect { conn, dial, transport } => {
                let role = if dial { Role::Dialer } else { Role::Acceptor };
                let identity = if transport {
                    Identity::Transport {
                        peer: NodeId::new(vec![b'p', conn]).unwrap(),
                        capabilities: whisper_proto::wire::Capabilities::ALL,
                    }
                } else {
                    Identity::Hello
                };
                if e.handle_connected(now, ConnId(conn.into()), role, identity).is_ok() {
                    opened.insert(u64::from(conn));
                }
            }
            Op::Bytes { conn, data } => {
                let _ = e.handle_bytes(now, ConnId(conn.into()), &data);
            }
            Op::Hello { conn, id } => {
                let hello = whisper_proto::wire::Frame::Hello(whisper_proto::wire::Hello {
                    version: 1,
                    capabilities: whisper_proto::wire::Capabilities::ALL,
                    node_id: NodeId::new(vec![b'n', id]).unwrap(),
                });
                let _ = e.handle_bytes(now, ConnId(conn.into()), &hello.to_bytes().unwrap());
            }
            Op::Disconnect { conn } => e.handle_disconnected(now, ConnId(conn.into())),
            Op::Advance { millis } => {
                now = now + Duration::from_millis(u64::from(millis) * 50);
                e.handle_timeout(now);
            }
            Op::Probe { conn } => {
                let _ = e.probe_digest(now, ConnId(conn.into()));
            }
            Op::Custom { conn, data } => {
                let _ = e.send_custom(now, ConnId(conn.into()), 0x5801, Bytes::from(data));
            }
            Op::Close { conn } => {
                let _ = e.close_connection(now, ConnId(conn.into()));
            }
        }
        assert!(e.stats().connections <= 8);
        while let Some(a) = e.poll_action() {
            match a {
                Action::Send { conn, .. } | Action::Close { conn, .. } => {
                    assert!(opened.contains(&conn.0));
                }
                _ => {}
            }
        }
        if let Some(t) = e.poll_timeout() {
            assert!(t >= now || e.stats().connections > 0);
        }
    }
});
