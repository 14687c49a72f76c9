//! A whisper node on tokio: listens, dials its peers (and redials them), and joins a
//! BroadcastOnly topic (`--topic`, default `chat`) and the StatefulMerge topic `kv`
//! (an in-memory store).
//!
//! stdin: `put KEY VALUE` writes a record, `stats` prints the store's record count and
//! fingerprint, any other line is published on the topic. stdout: `listening on ADDR`
//! once ready, then peers coming and going, messages and applied records.
//!
//! ```text
//! cargo run -p whisper-examples --bin node -- --id alice --listen 127.0.0.1:7000
//! cargo run -p whisper-examples --bin node -- --id bob --listen 127.0.0.1:7001 --peer 127.0.0.1:7000
//! ```

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::ExitCode;
use tracing_subscriber::layer::SubscriberExt as _;
use whisper_proto::util::{BatchingLayer, LogBatcher, LogBatcherConfig, targets};

use whisper_tokio::{Builder, Config, Event, MemStore, NodeId, TopicConfig};

/// The StatefulMerge topic `put` writes to.
const KV: &str = "kv";
/// Every node's store hashes with this key, so fingerprints compare across nodes.
const STORE_KEY: [u8; 32] = [0x5a; 32];

struct Args {
    id: NodeId,
    listen: SocketAddr,
    peers: Vec<String>,
    topic: String,
}

fn usage() -> String {
    "usage: node --id NAME --listen ADDR [--peer ADDR]... [--topic T]".into()
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut id, mut listen, mut peers) = (None, None, Vec::new());
    let mut topic = String::from("chat");
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--id" => id = Some(NodeId::new(value()?.into_bytes()).ok_or("id: 1..=64 bytes")?),
            "--listen" => listen = Some(value()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--peer" => peers.push(value()?),
            "--topic" => topic = value()?,
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other}\n{}", usage())),
        }
    }
    Ok(Args {
        id: id.ok_or_else(usage)?,
        listen: listen.ok_or_else(usage)?,
        peers,
        topic,
    })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), whisper_tokio::HandleError> {
    let me = args.id.clone();
    let config = Config {
        gossip_interval: std::time::Duration::from_millis(200),
        ..Config::default()
    };
    let mut builder = Builder::new(args.id)
        .config(config)
        .listen(args.listen)
        .seed(std::process::id().into());
    for peer in args.peers {
        builder = builder.peer(peer);
    }
    let mut events = builder.events();
    let log = batched_log();
    let mut log_tick = tokio::time::interval(std::time::Duration::from_millis(500));
    let node = builder.spawn().await?;
    node.register_topic(args.topic.clone(), TopicConfig::broadcast())
        .await?;
    let mut messages = node.subscribe(args.topic.clone()).await?;
    node.register_topic(
        KV,
        TopicConfig::stateful(MemStore::new(me.clone(), STORE_KEY)),
    )
    .await?;
    if let Some(addr) = node.local_addr() {
        println!("listening on {addr}");
    }

    // stdin is read on a plain thread; lines come in over a channel, EOF ends the node.
    let (line_tx, mut lines) = tokio::sync::mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });

    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Event::PeerUp { peer, conn, .. }) => {
                    println!("peer up: {peer} ({conn})");
                    tracing::info!(target: targets::ENGINE, kind = "connected to", actor = %peer, target = %me);
                }
                Some(Event::PeerDown { peer, conn }) => println!("peer down: {peer} ({conn})"),
                Some(Event::RecordApplied { peer, topic, records }) => {
                    println!("applied {records} record(s) on {topic} from {peer}");
                    tracing::info!(target: targets::SYNC, kind = "synced records to", actor = %peer, target = %me, count = records as u64);
                }
                Some(_) => {}
                None => break,
            },
            message = messages.next() => match message {
                Some(Event::Message { from, payload, hop, .. }) => {
                    println!("message from {from} (hop {hop}): {}", String::from_utf8_lossy(&payload));
                }
                Some(_) => {}
                None => break,
            },
            _ = log_tick.tick() => log.poll(),
            line = lines.recv() => match line {
                Some(line) => command(&node, &args.topic, line.trim()).await,
                None => break,
            },
        }
    }
    node.shutdown().await?;
    Ok(())
}

async fn command(node: &whisper_tokio::Handle, topic: &str, line: &str) {
    let mut words = line.splitn(3, ' ');
    let result = match (words.next(), words.next(), words.next()) {
        (Some("put"), Some(key), Some(value)) => {
            let (key, value) = (key.to_owned(), value.to_owned());
            node.put(KV, key, value).await.map(|()| "ok".to_owned())
        }
        (Some("stats"), None, None) => node.snapshot().await.map(|s| {
            let (n, f) = s
                .stores
                .iter()
                .find(|(t, _, _)| t == KV)
                .map_or((0, 0), |(_, n, f)| (*n, *f));
            format!("records {n} fingerprint {f:016x} peers {}", s.members.len())
        }),
        _ if line.is_empty() => return,
        _ => node
            .publish(topic.to_owned(), line.to_owned())
            .await
            .map(|id| format!("published {id}")),
    };
    match result {
        Ok(text) => println!("{text}"),
        Err(e) => println!("error: {e}"),
    }
}

/// Installs the batched service log on stderr: peer and sync events within 3 s are
/// grouped into one line per (service, kind, target), e.g.
/// `[engine] alice, bob, and carol connected to dave`. stdout stays line-per-event.
fn batched_log() -> BatchingLayer {
    let layer = BatchingLayer::stderr(LogBatcher::new(LogBatcherConfig::default()));
    let subscriber = tracing_subscriber::registry().with(layer.clone());
    // Only fails when a global subscriber is already set; the log is optional.
    let _ = tracing::subscriber::set_global_default(subscriber);
    layer
}
