//! A whisper node on tokio: listens, dials its peers (and redials them), prints peer
//! up/down events and the custom frames it receives, and sends every stdin line to all
//! peers as a custom frame of kind 0x5801 (a stand-in until `publish` lands).
//!
//! ```text
//! cargo run -p whisper-examples --bin node -- --id alice --listen 127.0.0.1:7000
//! cargo run -p whisper-examples --bin node -- --id bob --listen 127.0.0.1:7001 --peer 127.0.0.1:7000
//! ```

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::ExitCode;

use whisper_tokio::{Builder, Bytes, Event, NodeId};

/// The custom frame kind stdin lines travel in.
const LINE: u16 = 0x5801;

struct Args {
    id: NodeId,
    listen: SocketAddr,
    peers: Vec<String>,
}

fn usage() -> String {
    "usage: node --id NAME --listen ADDR [--peer ADDR]...".into()
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut id, mut listen, mut peers) = (None, None, Vec::new());
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--id" => id = Some(NodeId::new(value()?.into_bytes()).ok_or("id: 1..=64 bytes")?),
            "--listen" => listen = Some(value()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--peer" => peers.push(value()?),
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other}\n{}", usage())),
        }
    }
    Ok(Args {
        id: id.ok_or_else(usage)?,
        listen: listen.ok_or_else(usage)?,
        peers,
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
    let mut builder = Builder::new(args.id)
        .listen(args.listen)
        .frame_kind(LINE, 64 * 1024)
        .seed(std::process::id().into());
    for peer in args.peers {
        builder = builder.peer(peer);
    }
    let mut events = builder.events();
    let node = builder.spawn().await?;
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
                Some(Event::PeerUp { peer, conn, .. }) => println!("peer up: {peer} ({conn})"),
                Some(Event::PeerDown { peer, conn }) => println!("peer down: {peer} ({conn})"),
                Some(Event::CustomFrame { peer, magic: LINE, body, .. }) => {
                    println!("{peer}: {}", String::from_utf8_lossy(&body));
                }
                Some(_) => {}
                None => break,
            },
            line = lines.recv() => match line {
                Some(line) => {
                    let sent = node.broadcast_custom(LINE, Bytes::from(line)).await?;
                    if sent == 0 {
                        println!("(no peers)");
                    }
                }
                None => break,
            },
        }
    }
    node.shutdown().await;
    Ok(())
}
