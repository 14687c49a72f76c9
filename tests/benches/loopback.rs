//! Loopback throughput through each adapter next to raw TCP on the same kind of sockets,
//! measured in the same run: published messages of 256 B and 64 KiB, 2 and 8 nodes (a
//! full mesh; the 8-node figure counts a message once it reached all 7 receivers, the
//! raw baseline writes each message to 7 sockets).
//!
//! ```text
//! cargo bench -p whisper-tests --bench loopback            # all
//! cargo bench -p whisper-tests --bench loopback -- tokio   # adapters whose name matches
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use whisper_proto::Bytes;
use whisper_proto::topic::TopicConfig;
use whisper_tests::adapters::Kind;
use whisper_tests::adapters::scenarios::mesh;

const TOPIC: &str = "bench";

fn name(kind: Kind) -> &'static str {
    match kind {
        Kind::Tokio => "tokio",
        Kind::Smol => "smol",
        Kind::Mio => "mio",
    }
}

/// Messages per second through the adapter: publish in batches from node 0 with a
/// bounded window of undelivered messages, until every receiver has `total`.
fn adapter_rate(kind: Kind, nodes: usize, size: usize, total: u64) -> f64 {
    let mut cluster = mesh(&vec![kind; nodes]);
    for n in &mut cluster {
        n.register_topic(TOPIC, TopicConfig::broadcast())
            .expect("topic");
        n.subscribe(TOPIC).expect("subscribe");
    }
    let payload = Bytes::from(vec![0xab; size]);
    // Keep at most ~2 MiB in flight per connection (the write queue bound is 4 MiB).
    let window = ((2 << 20) / (size as u64 + 128)).clamp(4, 4096);
    let batch = window.div_ceil(4).max(1) as usize;
    let delivered = |c: &[whisper_tests::adapters::TestNode]| {
        c[1..]
            .iter()
            .map(|n| n.stats().broadcasts_delivered)
            .min()
            .unwrap_or(0)
    };
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        let done = delivered(&cluster);
        if done >= total {
            break;
        }
        if sent < total && sent - done < window {
            let want = batch.min((total - sent) as usize);
            sent += cluster[0].publish_batch(TOPIC, payload.clone(), want) as u64;
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "stalled at {done}/{total}"
        );
    }
    let secs = start.elapsed().as_secs_f64();
    for n in cluster {
        n.shutdown();
    }
    total as f64 / secs
}

/// Messages per second over raw TCP: one writer thread per receiver socket, readers
/// count bytes.
fn raw_rate(kind: Kind, receivers: usize, size: usize, total: u64) -> f64 {
    let bytes = total * size as u64;
    let start = Instant::now();
    match kind {
        Kind::Tokio => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let mut tasks = Vec::new();
                for _ in 0..receivers {
                    let mut w = tokio::net::TcpStream::connect(addr).await.unwrap();
                    w.set_nodelay(true).unwrap();
                    let (mut r, _) = listener.accept().await.unwrap();
                    tasks.push(tokio::spawn(async move {
                        let msg = vec![0xab; size];
                        for _ in 0..total {
                            w.write_all(&msg).await.unwrap();
                        }
                    }));
                    tasks.push(tokio::spawn(async move {
                        let mut buf = vec![0; 64 << 10];
                        let mut got = 0;
                        while got < bytes {
                            got += r.read(&mut buf).await.unwrap() as u64;
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            });
        }
        Kind::Smol => smol::block_on(async {
            use futures_lite::{AsyncReadExt, AsyncWriteExt};
            let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mut tasks = Vec::new();
            for _ in 0..receivers {
                let mut w = smol::net::TcpStream::connect(addr).await.unwrap();
                w.set_nodelay(true).unwrap();
                let (mut r, _) = listener.accept().await.unwrap();
                tasks.push(smol::spawn(async move {
                    let msg = vec![0xab; size];
                    for _ in 0..total {
                        w.write_all(&msg).await.unwrap();
                    }
                }));
                tasks.push(smol::spawn(async move {
                    let mut buf = vec![0; 64 << 10];
                    let mut got = 0;
                    while got < bytes {
                        got += r.read(&mut buf).await.unwrap() as u64;
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
        }),
        Kind::Mio => {
            // mio's sockets are std sockets made non-blocking; the baseline uses them
            // blocking, one thread per direction.
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut threads = Vec::new();
            for _ in 0..receivers {
                let mut w = TcpStream::connect(addr).unwrap();
                w.set_nodelay(true).unwrap();
                let (mut r, _) = listener.accept().unwrap();
                threads.push(std::thread::spawn(move || {
                    let msg = vec![0xab; size];
                    for _ in 0..total {
                        w.write_all(&msg).unwrap();
                    }
                }));
                threads.push(std::thread::spawn(move || {
                    let mut buf = vec![0; 64 << 10];
                    let mut got = 0;
                    while got < bytes {
                        got += r.read(&mut buf).unwrap() as u64;
                    }
                }));
            }
            for t in threads {
                t.join().unwrap();
            }
        }
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    println!(
        "{:<6} {:>5} {:>8} {:>12} {:>10} {:>12} {:>10} {:>7}",
        "adapter", "nodes", "size", "msgs/s", "MB/s", "raw msgs/s", "raw MB/s", "ratio"
    );
    for kind in [Kind::Tokio, Kind::Smol, Kind::Mio] {
        if !filter.is_empty() && !filter.iter().any(|f| name(kind).contains(f.as_str())) {
            continue;
        }
        for nodes in [2, 8] {
            for (size, total) in [(256usize, 40_000u64), (64 << 10, 1_500)] {
                let total = if nodes == 8 { total / 4 } else { total };
                let ours = adapter_rate(kind, nodes, size, total);
                let raw = raw_rate(kind, nodes - 1, size, total);
                let mb = |r: f64| r * size as f64 / 1e6;
                println!(
                    "{:<6} {:>5} {:>8} {:>12.0} {:>10.1} {:>12.0} {:>10.1} {:>6.1}%",
                    name(kind),
                    nodes,
                    size,
                    ours,
                    mb(ours),
                    raw,
                    mb(raw),
                    100.0 * ours / raw
                );
            }
        }
    }
}
